// Session state without pinning: protocol-level prepared statements multiplexed across backends,
// and session parameters tracked and replayed. Where PostgreSQL's own answer is the standard, the
// same exchange runs against PostgreSQL directly and through the proxy, and must look the same.
import type { PgCluster } from '../../hack/postgres.js';
import { allProxyConnections, connected, pgBin, run, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';
import { RawClient, serialize, type Msg } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const app = USERS[0]!;
const MAX_CONNECTIONS = 40;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: MAX_CONNECTIONS });
  cluster.psql('CREATE TABLE public.shape (a int); INSERT INTO public.shape VALUES (1); GRANT ALL ON public.shape TO app;');
  // budget floor(40 * 8 / 100) = 3: two backends, so clients share and move between them.
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 8 } });
  expect(proxy.server.stats().pool.maxDatabaseConnections).toBe(2);
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

const describeMsg = (m: Msg): string => {
  if (m.name === 'error') return `error:${String(m.code)}:${String(m.message)}`;
  if (m.name === 'readyForQuery') return `Z:${String(m.status)}`;
  if (m.name === 'dataRow') return `row:${JSON.stringify(m.fields)}`;
  return m.name;
};

/** Runs the same batches against PostgreSQL and the proxy; returns both transcripts. */
async function compare(batches: Buffer[][]): Promise<{ direct: string[]; proxied: string[] }> {
  const transcript = async (port: number): Promise<string[]> => {
    const c = await RawClient.login(port, app.name, app.password);
    const out: string[] = [];
    for (const batch of batches) {
      c.send(batch);
      out.push(...(await c.untilReady()).map(describeMsg));
    }
    c.close();
    return out;
  };
  return { direct: await transcript(cluster.port), proxied: await transcript(proxy.port) };
}

test('named statements from many clients are shared, never pinned, and stay within the pool', async () => {
  const clients = await Promise.all(Array.from({ length: 6 }, () => connected(proxy.port)));
  try {
    for (let round = 0; round < 5; round++) {
      await Promise.all(
        clients.map(async (c, i) => {
          const r = await c.query({ name: 'lookup', text: 'SELECT $1::int * 2 AS v', values: [i + round] });
          expect(r.rows[0].v).toBe((i + round) * 2);
          const s = await c.query({ name: 'other', text: 'SELECT $1::text AS t', values: [`c${i}`] });
          expect(s.rows[0].t).toBe(`c${i}`);
        }),
      );
    }
    expect(proxy.server.stats().pinned).toBe(0);
    expect(proxy.server.stats().pinsByReason).toEqual({});
    // Two backends and the health check, whatever the number of clients and statements.
    expect(allProxyConnections(cluster)).toBeLessThanOrEqual(3);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
});

test('a second Parse of a name in use gets 42P05, as from PostgreSQL', async () => {
  const { direct, proxied } = await compare([
    [serialize.parse({ name: 's1', text: 'SELECT 1' }), serialize.sync()],
    [serialize.parse({ name: 's1', text: 'SELECT 2' }), serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync()],
    [serialize.bind({ statement: 's1' }), serialize.execute({}), serialize.sync()],
  ]);
  expect(direct.join('|')).toMatch(/error:42P05/);
  expect(proxied).toEqual(direct);
});

test('Bind or Describe of an unknown name gets 26000, as from PostgreSQL', async () => {
  const { direct, proxied } = await compare([
    [serialize.bind({ statement: 'nope' }), serialize.execute({}), serialize.sync()],
    [serialize.describe({ type: 'S', name: 'nope' }), serialize.sync()],
    [serialize.query('SELECT 5')],
  ]);
  expect(direct.join('|')).toMatch(/error:26000/);
  expect(proxied).toEqual(direct);
});

test('Close is answered in order, the name can be reused, and an error skips to Sync as PostgreSQL does', async () => {
  const { direct, proxied } = await compare([
    [
      serialize.parse({ name: 'c1', text: 'SELECT 10' }),
      serialize.bind({ statement: 'c1' }),
      serialize.execute({}),
      serialize.close({ type: 'S', name: 'c1' }),
      serialize.parse({ name: 'c1', text: 'SELECT 11' }),
      serialize.bind({ statement: 'c1' }),
      serialize.execute({}),
      serialize.sync(),
    ],
    [
      serialize.parse({ name: 'bad', text: 'SELEC 1' }),
      serialize.bind({ statement: 'bad' }),
      serialize.execute({}),
      serialize.close({ type: 'S', name: 'c1' }),
      serialize.sync(),
    ],
    [serialize.bind({ statement: 'c1' }), serialize.execute({}), serialize.sync()],
    [serialize.bind({ statement: 'bad' }), serialize.execute({}), serialize.sync()],
  ]);
  expect(direct.join('|')).toMatch(/error:42601/);
  expect(proxied).toEqual(direct);
});

test('DEALLOCATE ALL and DISCARD ALL clear the client names', async () => {
  const { direct, proxied } = await compare([
    [serialize.parse({ name: 'd1', text: 'SELECT 1' }), serialize.sync()],
    [serialize.query('DEALLOCATE ALL')],
    [serialize.bind({ statement: 'd1' }), serialize.execute({}), serialize.sync()],
    [serialize.parse({ name: 'd1', text: 'SELECT 1' }), serialize.sync()],
    [serialize.query('DISCARD ALL')],
    [serialize.bind({ statement: 'd1' }), serialize.execute({}), serialize.sync()],
    [serialize.parse({ name: 'd1', text: 'SELECT 1' }), serialize.bind({ statement: 'd1' }), serialize.execute({}), serialize.sync()],
  ]);
  expect(proxied).toEqual(direct);
  expect(proxy.server.stats().pinned).toBe(0);
});

test('after DDL changes a result type the client gets what PostgreSQL gives, and re-preparing works', async () => {
  const prepare = [serialize.parse({ name: 'star', text: 'SELECT * FROM public.shape' }), serialize.sync()];
  const use = [serialize.bind({ statement: 'star' }), serialize.execute({}), serialize.sync()];
  const reprepare = [serialize.close({ type: 'S', name: 'star' }), serialize.parse({ name: 'star', text: 'SELECT * FROM public.shape' }), serialize.sync()];
  const transcript = async (port: number, alter: string): Promise<string[]> => {
    const c = await RawClient.login(port, app.name, app.password);
    const out: string[] = [];
    for (const batch of [prepare, use]) {
      c.send(batch);
      out.push(...(await c.untilReady()).map(describeMsg));
    }
    cluster.psql(alter);
    for (const batch of [use, use, reprepare, use]) {
      c.send(batch);
      out.push(...(await c.untilReady()).map(describeMsg));
    }
    c.close();
    return out.map((l) => l.replace(/row:\[.*\]/, 'row'));
  };
  const direct = await transcript(cluster.port, 'ALTER TABLE public.shape ADD COLUMN b int');
  const proxied = await transcript(proxy.port, 'ALTER TABLE public.shape ADD COLUMN c int');
  expect(direct.join('|')).toMatch(/error:0A000:cached plan must not change result type/);
  expect(proxied).toEqual(direct);
});

test('the per-backend cache is bounded: evicted statements are closed on the server and re-prepared on use', async () => {
  const small = await startProxy(cluster, { pool: { maxConnectionsPercent: 5 }, session: { maxPreparedStatements: 3 } });
  const c = await connected(small.port);
  try {
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 6; i++) {
        const r = await c.query({ name: `q${i}`, text: `SELECT ${i} + $1::int AS v`, values: [round] });
        expect(r.rows[0].v).toBe(i + round);
      }
    }
    const onServer = await c.query("SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'dbproxy_%'");
    expect(onServer.rows[0].n).toBeLessThanOrEqual(3);
  } finally {
    await c.end();
    await small.stop();
  }
});

test("the unnamed statement follows its client to another backend", async () => {
  const single = await startProxy(cluster, { pool: { maxConnectionsPercent: 5 } });
  try {
    const a = await RawClient.login(single.port, app.name, app.password);
    const b = await RawClient.login(single.port, app.name, app.password);
    a.send([serialize.parse({ text: "SELECT 'from a'" }), serialize.sync()]);
    await a.untilReady();
    b.send([serialize.parse({ text: "SELECT 'from b'" }), serialize.sync()]);
    await b.untilReady();
    a.send([serialize.bind({}), serialize.execute({}), serialize.sync()]);
    const rows = (await a.untilReady()).filter((m) => m.name === 'dataRow').map((m) => (m.fields as string[])[0]);
    expect(rows).toEqual(['from a']);
    a.close();
    b.close();
  } finally {
    await single.stop();
  }
});

describe('session parameters', () => {
  test('SET follows the client across backends; other clients keep their own; nothing pins', async () => {
    const a = await connected(proxy.port);
    const b = await connected(proxy.port);
    const statuses: Array<[string, string]> = [];
    (a as unknown as { connection: { on(e: string, f: (m: { parameterName: string; parameterValue: string }) => void): void } }).connection.on('parameterStatus', (m) =>
      statuses.push([m.parameterName, m.parameterValue]),
    );
    try {
      await a.query("SET statement_timeout = '4321ms'");
      await a.query("SET search_path TO pg_catalog, public");
      await a.query("SET TIME ZONE 'Asia/Tokyo'");
      expect(proxy.server.stats().pinned).toBe(0);
      for (let i = 0; i < 10; i++) {
        // Interleave with b so that a lands on whichever backend is free.
        const [ra, rb] = await Promise.all([
          a.query("SELECT current_setting('statement_timeout') AS t, current_setting('search_path') AS s, current_setting('TimeZone') AS z"),
          b.query("SELECT current_setting('statement_timeout') AS t, current_setting('TimeZone') AS z"),
        ]);
        expect(ra.rows[0]).toEqual({ t: '4321ms', s: 'pg_catalog, public', z: 'Asia/Tokyo' });
        expect(rb.rows[0].t).toBe('0');
        expect(rb.rows[0].z).not.toBe('Asia/Tokyo');
      }
      expect(statuses).toContainEqual(['TimeZone', 'Asia/Tokyo']);
      // RESET goes back to the default; SET LOCAL and rolled-back SETs leave nothing behind.
      await a.query('RESET statement_timeout');
      await a.query('BEGIN');
      await a.query("SET LOCAL work_mem = '7MB'");
      await a.query("SET lock_timeout = '9s'");
      await a.query('ROLLBACK');
      await b.query('BEGIN');
      await b.query('SELECT 1');
      const r = await a.query("SELECT current_setting('statement_timeout') AS t, current_setting('work_mem') AS w, current_setting('lock_timeout') AS l");
      await b.query('COMMIT');
      expect(r.rows[0]).toEqual({ t: '0', w: '4MB', l: '0' });
      expect(proxy.server.stats().pinsByReason).toEqual({});
    } finally {
      await a.end();
      await b.end();
    }
  });

  test('RESET ALL returns to the startup values', async () => {
    const a = await connected(proxy.port, 'app', { application_name: 'started-as', options: '-c statement_timeout=2222' } as object);
    try {
      await a.query("SET application_name = 'changed'");
      await a.query("SET statement_timeout = '1111ms'");
      await a.query('RESET ALL');
      const r = await a.query("SELECT current_setting('application_name') AS n, current_setting('statement_timeout') AS t");
      expect(r.rows[0]).toEqual({ n: 'started-as', t: '2222ms' });
    } finally {
      await a.end();
    }
  });

  test('SET ROLE pins; a parameter named in untrackedParameters pins; trackSettings: false pins any SET', async () => {
    const strict = await startProxy(cluster, { session: { trackSettings: false, untrackedParameters: [] } });
    // Written in any case: PostgreSQL folds parameter names, and so does the proxy.
    const listed = await startProxy(cluster, { session: { untrackedParameters: ['Work_Mem'] } });
    try {
      const role = await connected(proxy.port);
      await role.query('SET ROLE app');
      expect(proxy.server.stats().pinsByReason).toEqual({ set_role: 1 });
      await role.end();
      const s = await connected(strict.port);
      await s.query("SET statement_timeout = '1s'");
      expect(strict.server.stats().pinsByReason).toEqual({ set: 1 });
      await s.end();
      const l = await connected(listed.port);
      await l.query("SET statement_timeout = '1s'");
      expect(listed.server.stats().pinned).toBe(0);
      await l.query("SET work_mem = '16MB'");
      expect(listed.server.stats().pinsByReason).toEqual({ set: 1 });
      await l.end();
    } finally {
      await strict.stop();
      await listed.stop();
    }
  });
});

test('pgbench -M prepared: 100 clients over a pool of 10, zero pinned, zero errors, within the budget', async () => {
  // budget floor(40 * 28 / 100) = 11: 10 backends plus the health check
  const p = await startProxy(cluster, { pool: { maxConnectionsPercent: 28 } });
  const budget = p.server.stats().pool.budget!;
  expect(p.server.stats().pool.maxDatabaseConnections).toBe(10);
  const env = { PGPASSWORD: app.password };
  try {
    const init = await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(p.port), '-U', 'app', 'postgres'], env);
    expect(init.code).toBe(0);
    let peak = 0;
    let peakPinned = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, allProxyConnections(cluster) - (proxy.server.stats().databaseConnections + 1));
        peakPinned = Math.max(peakPinned, p.server.stats().pinned);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const bench = await run(pgBin('pgbench'), ['-n', '-c', '100', '-j', '2', '-t', '30', '-M', 'prepared', '-h', '127.0.0.1', '-p', String(p.port), '-U', 'app', 'postgres'], env);
    sampling = false;
    await sampler;
    expect(bench.stderr).not.toMatch(/error/i);
    expect(bench.code).toBe(0);
    expect(bench.stdout).toMatch(/number of transactions actually processed: 3000\/3000/);
    expect(bench.stdout).toMatch(/number of failed transactions: 0 /);
    expect(peakPinned).toBe(0);
    expect(p.server.stats().pinsByReason).toEqual({});
    expect(peak).toBeLessThanOrEqual(budget);
  } finally {
    await p.stop();
  }
}, 120_000);
