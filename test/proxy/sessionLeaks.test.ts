// Issue 11, defects 4 and 6: no session state a client sets, by any path, survives into the next
// client's transaction on the same backend, and what one tenant prepared never answers another.
// One backend serves every client here, so a leak cannot hide on another connection. After each
// session a probe compares what a new client sees through the proxy with what a new client sees
// connecting to PostgreSQL directly.
import pg from 'pg';
import type { PgCluster } from '../../hack/postgres.js';
import { type RunningProxy, USERS, connected, eventually, startCluster, startProxy } from '../support/harness.js';
import { RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const app = USERS[0]!;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
  cluster.psql(`
    CREATE ROLE reader NOLOGIN; GRANT reader TO app;
    CREATE SCHEMA private; GRANT USAGE ON SCHEMA private TO app;
    CREATE TABLE private.app_only (secret text); INSERT INTO private.app_only VALUES ('s3cret');
    GRANT SELECT ON private.app_only TO app;
    CREATE FUNCTION public.sneaky_name() RETURNS void LANGUAGE sql AS $$ SELECT set_config('application_name', 'sneaky', false) $$;
    GRANT EXECUTE ON FUNCTION public.sneaky_name() TO PUBLIC;
  `);
  // 40 × 5 % = a budget of 2: the health check and one backend shared by every client.
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 5 } });
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

const SNAPSHOT = `SELECT current_user AS "user", session_user AS "session",
  current_setting('search_path') AS search_path, current_setting('work_mem') AS work_mem,
  current_setting('statement_timeout') AS statement_timeout, current_setting('application_name') AS application_name,
  current_setting('default_transaction_isolation') AS isolation, current_setting('default_transaction_read_only') AS read_only,
  current_setting('default_transaction_deferrable') AS deferrable, current_setting('TimeZone') AS tz,
  -- Once any session on a server connection has used a custom parameter, it exists there (empty)
  -- until the connection ends: NULL and '' are the same here (see the README's limits).
  coalesce(current_setting('app.tenant', true), '') AS tenant,
  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks,
  (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temp_objects,
  (SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql IS FALSE) AS sql_prepared,
  (SELECT count(*) FROM pg_cursors) AS cursors,
  (SELECT count(*) FROM pg_listening_channels()) AS listening`;

/** What a brand-new client sees, through the proxy and directly: they must be the same. */
async function expectPristine(extra: Partial<pg.ClientConfig> = {}): Promise<void> {
  const snap = async (port: number): Promise<unknown> => {
    const c = await connected(port, 'app', extra);
    try {
      return (await c.query(SNAPSHOT)).rows[0];
    } finally {
      await c.end();
    }
  };
  const direct = await snap(cluster.port);
  expect(await snap(proxy.port)).toEqual(direct);
}

/** Runs `f` in a session through the proxy, ends it, and checks the next session is pristine. */
async function session(f: (c: pg.Client) => Promise<void>, extra: Partial<pg.ClientConfig> = {}): Promise<void> {
  const c = await connected(proxy.port, 'app', extra);
  try {
    await f(c);
  } finally {
    await c.end();
  }
  await eventually(() => proxy.server.stats().clientConnections === 0, 'the session to end');
  await expectPristine();
}

const one = async (c: pg.Client, sql: string): Promise<unknown> => Object.values((await c.query(sql)).rows[0] as object)[0];

test('the probe itself: a fresh client through the proxy sees what a fresh direct client sees', async () => {
  await expectPristine();
});

test('SET SESSION CHARACTERISTICS travels with its client and leaks to no other', async () => {
  const a = await connected(proxy.port);
  try {
    await a.query('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY');
    // Another client uses the only backend in between.
    await expectPristine();
    expect(await one(a, "SELECT current_setting('transaction_isolation')")).toBe('serializable');
    expect(await one(a, "SELECT current_setting('transaction_read_only')")).toBe('on');
  } finally {
    await a.end();
  }
  await expectPristine();
});

describe('settings changed inside a DO block', () => {
  test.each([
    ['nested in IF and an exception block', "DO $$ BEGIN IF true THEN BEGIN SET search_path = pg_catalog; SET work_mem = '77MB'; EXCEPTION WHEN others THEN NULL; END; END IF; END $$"],
    ['by EXECUTE of a constant string', "DO $$ BEGIN EXECUTE 'SET work_mem = ''78MB'''; EXECUTE 'SET search_path = pg_catalog'; END $$"],
    ['by PERFORM set_config', "DO $$ BEGIN PERFORM set_config('work_mem', '79MB', false); PERFORM set_config('app.tenant', 'acme', false); END $$"],
  ])('%s follow the client and leak to no other', async (_name, sql) => {
    const a = await connected(proxy.port);
    try {
      await a.query(sql);
      const mine = (await a.query(SNAPSHOT)).rows[0];
      await expectPristine();
      expect((await a.query(SNAPSHOT)).rows[0]).toEqual(mine);
    } finally {
      await a.end();
    }
    await expectPristine();
  });

  test('SET ROLE nested in a DO block pins the session; the next client is back to its own role', async () => {
    await session(async (c) => {
      await c.query("DO $$ BEGIN IF true THEN SET ROLE reader; END IF; END $$");
      expect(await one(c, 'SELECT current_user')).toBe('reader');
      expect(proxy.server.stats().pinned).toBe(1);
    });
  });

  test('EXECUTE of a computed string pins the session (it cannot be read before it runs)', async () => {
    await session(async (c) => {
      await c.query("DO $$ BEGIN EXECUTE format('SET work_mem = %L', '80MB'); EXECUTE 'SET ROLE ' || 'reader'; END $$");
      expect(await one(c, 'SELECT current_user')).toBe('reader');
      expect(proxy.server.stats().pinsByReason).toEqual({ dynamic_sql: 1 });
    });
  });
});

test('set_config through the FunctionCall message follows its client and leaks to no other', async () => {
  const a = await RawClient.login(proxy.port, app.name, app.password);
  try {
    // FunctionCall (F): set_config (OID 2078) with text arguments, text result.
    const args = ['work_mem', '81MB', 'false'].map((v) => Buffer.from(v));
    const body = Buffer.alloc(4 + 2 + 2 + 2 + args.reduce((n, a) => n + 4 + a.length, 0) + 2);
    let o = body.writeUInt32BE(2078, 0);
    o = body.writeUInt16BE(1, o);
    o = body.writeUInt16BE(0, o);
    o = body.writeUInt16BE(args.length, o);
    for (const arg of args) {
      o = body.writeUInt32BE(arg.length, o);
      o += arg.copy(body, o);
    }
    body.writeUInt16BE(0, o);
    const head = Buffer.alloc(5);
    head[0] = 'F'.charCodeAt(0);
    head.writeUInt32BE(4 + body.length, 1);
    // pg-protocol's parser does not know FunctionCallResponse ('V'): look at the bytes.
    const bytes: Buffer[] = [];
    a.socket.on('data', (d: Buffer) => bytes.push(d));
    a.send(Buffer.concat([head, body]));
    await a.untilReady();
    const answer = Buffer.concat(bytes);
    expect(String.fromCharCode(answer[0]!)).toBe('V');
    expect(answer.subarray(9, 9 + answer.readInt32BE(5)).toString()).toBe('81MB');
    await expectPristine();
    a.send(serialize.query("SELECT current_setting('work_mem')"));
    expect((await a.untilReady()).find((m) => m.name === 'dataRow')).toMatchObject({ fields: ['81MB'] });
  } finally {
    a.close();
  }
  await eventually(() => proxy.server.stats().clientConnections === 0, 'the session to end');
  await expectPristine();
});

test('a setting a function changes behind the proxy\'s back and the server reports (application_name) follows its client', async () => {
  const a = await connected(proxy.port);
  try {
    await a.query('SELECT public.sneaky_name()');
    await expectPristine();
    expect(await one(a, "SELECT current_setting('application_name')")).toBe('sneaky');
  } finally {
    await a.end();
  }
  await expectPristine();
});

test('a startup parameter the server refuses refuses the connection, as PostgreSQL does, and nothing leaks', async () => {
  const options = '-c statement_timeout=bogus';
  const refusal = async (port: number): Promise<unknown> => {
    const c = new pg.Client({ host: '127.0.0.1', port, user: app.name, password: app.password, database: 'postgres', options } as pg.ClientConfig);
    try {
      await c.connect();
      await c.end();
      return 'connected';
    } catch (e) {
      const err = e as { code?: string; message: string; severity?: string };
      return { code: err.code, message: err.message, severity: err.severity };
    }
  };
  // A client that set search_path and work_mem at startup, using the backend first.
  const a = await connected(proxy.port, 'app', { options: '-c search_path=pg_catalog -c work_mem=82MB' } as object);
  await a.query('SELECT 1');
  await a.end();
  const direct = await refusal(cluster.port);
  expect(direct).toEqual({ code: '22023', message: 'invalid value for parameter "statement_timeout": "bogus"', severity: 'FATAL' });
  expect(await refusal(proxy.port)).toEqual(direct);
  await eventually(() => proxy.server.stats().clientConnections === 0, 'the sessions to end');
  await expectPristine();
});

test('RESET ALL returns to the startup values within the same query string, as on PostgreSQL', async () => {
  const extra = { options: '-c search_path=pg_catalog,public -c work_mem=83MB', application_name: 'resetter' } as object;
  const sql = "SET search_path = public; SET work_mem = '1MB'; RESET ALL; SELECT current_setting('search_path') AS s, current_setting('work_mem') AS w, current_setting('application_name') AS a";
  const run = async (port: number): Promise<unknown> => {
    const c = await connected(port, 'app', extra);
    try {
      const results = (await c.query(sql)) as unknown as pg.QueryResult[];
      const reset = (await c.query("RESET search_path; SET work_mem TO DEFAULT; SELECT current_setting('search_path') AS s, current_setting('work_mem') AS w")) as unknown as pg.QueryResult[];
      const after = (await c.query("SELECT current_setting('search_path') AS s, current_setting('work_mem') AS w")).rows;
      return { commands: results.map((r) => r.command), rows: results[results.length - 1]!.rows, reset: reset.map((r) => [r.command, r.rows]), after };
    } finally {
      await c.end();
    }
  };
  const direct = await run(cluster.port);
  expect(direct).toMatchObject({ commands: ['SET', 'SET', 'RESET', 'SELECT'], rows: [{ s: 'pg_catalog,public', w: '83MB', a: 'resetter' }] });
  expect(await run(proxy.port)).toEqual(direct);
  await expectPristine();
});

test('DISCARD ALL returns to the startup values, as on PostgreSQL', async () => {
  const extra = { options: '-c work_mem=84MB' } as object;
  const run = async (port: number): Promise<unknown> => {
    const c = await connected(port, 'app', extra);
    try {
      await c.query("SET work_mem = '2MB'");
      await c.query('DISCARD ALL');
      return (await c.query("SELECT current_setting('work_mem') AS w")).rows;
    } finally {
      await c.end();
    }
  };
  const direct = await run(cluster.port);
  expect(direct).toEqual([{ w: '84MB' }]);
  expect(await run(proxy.port)).toEqual(direct);
});

test("a statement another user prepared is not answered for a user who may not run it (defect 6)", async () => {
  // Names are looked up when a statement is parsed: a schema this user may not use fails the Parse.
  const text = 'SELECT secret FROM private.app_only';
  const prepare = async (port: number, user: string): Promise<string[]> => {
    const u = USERS.find((x) => x.name === user)!;
    const c = await RawClient.login(port, u.name, u.password);
    try {
      c.send([serialize.parse({ name: 'peek', text }), serialize.sync()]);
      return (await c.untilReady()).map((m) => (m.name === 'error' ? `error:${String(m.code)}` : m.name));
    } finally {
      c.close();
    }
  };
  // app may read the table and prepares the statement through the proxy first.
  expect(await prepare(proxy.port, 'app')).toEqual(['parseComplete', 'readyForQuery']);
  const direct = await prepare(cluster.port, 'legacy');
  expect(direct).toEqual(['error:42501', 'readyForQuery']);
  expect(await prepare(proxy.port, 'legacy')).toEqual(direct);
});

test('RESET ALL through the extended protocol returns to the startup values before the next statement, as on PostgreSQL', async () => {
  const run = async (port: number): Promise<string[]> => {
    const c = await RawClient.login(port, app.name, app.password, 'postgres', { options: '-c search_path=pg_catalog,public' });
    try {
      c.send([
        serialize.query("SET search_path = public; SET work_mem = '3MB'"),
        serialize.parse({ text: 'RESET ALL' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: "SELECT current_setting('search_path') || ' ' || current_setting('work_mem')" }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      ]);
      const out = [...(await c.untilReady()), ...(await c.untilReady())];
      return out.map((m) => (m.name === 'dataRow' ? `row:${String((m as unknown as { fields: string[] }).fields[0])}` : m.name));
    } finally {
      c.close();
    }
  };
  const direct = await run(cluster.port);
  expect(direct).toContain('row:pg_catalog,public 4MB');
  expect(await run(proxy.port)).toEqual(direct);
});

test("a client's settings that no longer apply fail its query rather than run it with another client's", async () => {
  const a = await connected(proxy.port, 'app', { options: '-c role=reader' } as object);
  const b = await connected(proxy.port);
  try {
    expect(await one(a, 'SELECT current_user')).toBe('reader');
    await b.query("SET work_mem = '99MB'");
    expect(await one(b, "SELECT current_setting('work_mem')")).toBe('99MB');
    cluster.psql('REVOKE reader FROM app');
    // The only backend has b's work_mem; a needs its role back there, which the server now refuses.
    await expect(a.query("SELECT current_setting('work_mem') AS w, current_user AS u")).rejects.toMatchObject({ code: '42501' });
  } finally {
    cluster.psql('GRANT reader TO app');
    await a.end();
    await b.end();
  }
  await eventually(() => proxy.server.stats().clientConnections === 0, 'the sessions to end');
  await expectPristine();
});

test('the function OIDs the proxy recognises in FunctionCall are those of the server', () => {
  expect(cluster.psql("SELECT string_agg(oid::text || ':' || proname, ' ' ORDER BY oid) FROM pg_proc WHERE oid IN (1574, 1575, 1576, 1765, 2078, 2559, 2880, 2881, 2882, 2883, 2886, 2887, 2888, 2889)")).toBe(
    '1574:nextval 1575:currval 1576:setval 1765:setval 2078:set_config 2559:lastval 2880:pg_advisory_lock 2881:pg_advisory_lock_shared 2882:pg_try_advisory_lock 2883:pg_try_advisory_lock_shared 2886:pg_advisory_lock 2887:pg_advisory_lock_shared 2888:pg_try_advisory_lock 2889:pg_try_advisory_lock_shared',
  );
});
