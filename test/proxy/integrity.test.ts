// Issue 11, defect 1: messages of any size and any chunking reach the other side byte for byte,
// and no client can make the proxy lose its place in the stream. Each exchange runs against
// PostgreSQL directly and through the proxy (one backend, so clients share it) and the answers
// are compared.
import pg from 'pg';
import type { PgCluster } from '../../hack/postgres.js';
import { type RunningProxy, USERS, connected, eventually, psql, startCluster, startProxy } from '../support/harness.js';
import { RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const app = USERS[0]!;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
  // 40 × 5 % = a budget of 2: the health check and one backend that every client shares.
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 5 } });
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

/** Runs `f` with a client connected directly to PostgreSQL, then with one through the proxy. */
async function both<T>(f: (c: pg.Client) => Promise<T>): Promise<{ direct: T; proxied: T }> {
  const results: T[] = [];
  for (const port of [cluster.port, proxy.port]) {
    const c = await connected(port);
    try {
      results.push(await f(c));
    } finally {
      await c.end();
    }
  }
  return { direct: results[0]!, proxied: results[1]! };
}

const big = (n: number, fill = 'x'): string => fill.repeat(n);

test('a 300 KB simple query arrives whole', async () => {
  const { direct, proxied } = await both(async (c) => (await c.query(`SELECT length('${big(300_000)}') AS n, md5('${big(300_000, 'y')}') AS h`)).rows);
  expect(direct).toEqual([{ n: 300_000, h: expect.any(String) }]);
  expect(proxied).toEqual(direct);
});

test('a 300 KB Bind parameter arrives whole (extended protocol)', async () => {
  const value = big(300_000, 'z') + 'end';
  const { direct, proxied } = await both(async (c) => (await c.query('SELECT length($1::text) AS n, right($1::text, 3) AS tail', [value])).rows);
  expect(direct).toEqual([{ n: 300_003, tail: 'end' }]);
  expect(proxied).toEqual(direct);
});

test('a 300 KB result row and a 300 KB NOTICE from the server arrive whole', async () => {
  const { direct, proxied } = await both(async (c) => {
    const notices: string[] = [];
    c.on('notice', (n) => notices.push(n.message ?? ''));
    const r = await c.query(`DO $$ BEGIN RAISE NOTICE '%', repeat('n', 300000); END $$`);
    const rows = (await c.query(`SELECT repeat('r', 300000) AS v`)).rows as Array<{ v: string }>;
    return { command: r.command, notices: notices.map((n) => n.length), row: rows[0]!.v.length };
  });
  expect(direct).toEqual({ command: 'DO', notices: [300_000], row: 300_000 });
  expect(proxied).toEqual(direct);
});

test('psql keeps its synchronization through a large NOTICE and a large query', async () => {
  // On stdin: one argument may not exceed 128 KB.
  const input = `DO $$ BEGIN RAISE NOTICE '%', repeat('n', 300000); END $$;\nSELECT length('${big(300_000)}');\n`;
  const direct = await psql(cluster.port, '', { input });
  const proxied = await psql(proxy.port, '', { input });
  expect(direct.code).toBe(0);
  expect(direct.stdout.trim().split('\n')).toEqual(['DO', '300000']);
  expect({ code: proxied.code, stdout: proxied.stdout, stderrLength: proxied.stderr.length }).toEqual({
    code: direct.code,
    stdout: direct.stdout,
    stderrLength: direct.stderr.length,
  });
});

test('a message announced large cannot smuggle messages past the proxy or hand its results to another client', async () => {
  cluster.psql('CREATE TABLE public.smuggled (who text); GRANT ALL ON public.smuggled TO app;');
  const attacker = await RawClient.login(proxy.port, app.name, app.password);
  const victim = await connected(proxy.port);
  const seenByVictim: unknown[] = [];
  try {
    // A Bind header announcing 200 KB, then, in a later read, what looks like whole Query
    // messages: they are the Bind's body, never messages of their own.
    const header = Buffer.alloc(5);
    header[0] = 'B'.charCodeAt(0);
    header.writeUInt32BE(200_000, 1);
    attacker.send(header);
    await new Promise((r) => setTimeout(r, 20));
    const forged = [serialize.query("INSERT INTO public.smuggled VALUES ('A')"), serialize.query("SELECT pg_sleep(0.2), 'INJECTED-BY-A' AS v")];
    attacker.send(forged);
    await new Promise((r) => setTimeout(r, 20));
    attacker.send(forged);
    // The victim shares the only backend; each of its queries gets its own answer.
    for (let i = 0; i < 5; i++) {
      const rows = (await victim.query(`SELECT 'mine-${i}' AS v`)).rows;
      seenByVictim.push(...rows);
      expect(rows).toEqual([{ v: `mine-${i}` }]);
    }
  } finally {
    attacker.close();
    await victim.end();
  }
  // After the attacker leaves mid-message, the shared backend still answers correctly, and
  // nothing the attacker hid inside its message ever ran.
  const after = await connected(proxy.port);
  try {
    expect((await after.query("SELECT 'clean' AS v")).rows).toEqual([{ v: 'clean' }]);
  } finally {
    await after.end();
  }
  expect(cluster.psql('SELECT count(*) FROM public.smuggled')).toBe('0');
  expect(attacker.messages.filter((m) => m.name === 'dataRow' || m.name === 'commandComplete')).toEqual([]);
});

test('a large message written one byte at a time arrives whole', async () => {
  const c = await RawClient.login(proxy.port, app.name, app.password);
  try {
    const q = serialize.query(`SELECT length('${big(3000)}') AS n`);
    // Headers and bodies split across many reads: Nagle is off, each write is its own segment.
    c.socket.setNoDelay(true);
    for (let i = 0; i < q.length; i += 7) {
      c.send(q.subarray(i, Math.min(q.length, i + 7)));
      if (i % 70 === 0) await new Promise((r) => setImmediate(r));
    }
    const answer = await c.untilReady();
    expect(answer.map((m) => m.name)).toEqual(['rowDescription', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect((answer[1] as unknown as { fields: string[] }).fields).toEqual(['3000']);
  } finally {
    c.close();
  }
});

/** A frontend message of any type with any body. */
function message(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** The same raw exchange against PostgreSQL directly and through the proxy: the messages each returns. */
async function rawBoth(exchange: (c: RawClient) => Promise<string[]>): Promise<{ direct: string[]; proxied: string[] }> {
  const out: string[][] = [];
  for (const port of [cluster.port, proxy.port]) {
    const c = await RawClient.login(port, app.name, app.password);
    try {
      out.push(await exchange(c));
    } finally {
      c.close();
    }
  }
  return { direct: out[0]!, proxied: out[1]! };
}

const names = (ms: Array<{ name: string }>): string[] => ms.map((m) => m.name);

describe('COPY messages outside a COPY (defect 3)', () => {
  test('are ignored as PostgreSQL ignores them, and hold no backend', async () => {
    const { direct, proxied } = await rawBoth(async (c) => {
      // A 6-byte CopyData, a CopyDone and a CopyFail, sent while idle: no answer is due.
      c.send([message('d', 'x'), message('c'), message('f', 'stop\0')]);
      c.send(serialize.query('SELECT 1 AS one'));
      return names(await c.untilReady());
    });
    expect(direct).toEqual(['rowDescription', 'dataRow', 'commandComplete', 'readyForQuery']);
    expect(proxied).toEqual(direct);
    // Nothing is borrowed once the client is idle again, so the only backend serves others.
    await expect(connected(proxy.port).then(async (c) => ((await c.query('SELECT 2 AS two')).rows as unknown[]).concat(await c.end()))).resolves.toEqual([{ two: 2 }, undefined]);
  });

  test('a lone CopyData never drains the pool', async () => {
    const stray = await RawClient.login(proxy.port, app.name, app.password);
    try {
      stray.send(message('d', 'x'));
      // The stray message is the last thing this client sends; it keeps its connection open.
      const other = await connected(proxy.port, 'app', { query_timeout: 5000 } as object);
      try {
        expect((await other.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
      } finally {
        await other.end();
      }
      expect(proxy.server.stats().borrowed).toBe(0);
    } finally {
      stray.close();
    }
  });

  test('CopyData pipelined behind a COPY FROM STDIN still reaches the server in order', async () => {
    cluster.psql('CREATE TABLE IF NOT EXISTS public.copied (v text); GRANT ALL ON public.copied TO app;');
    const { direct, proxied } = await rawBoth(async (c) => {
      c.send([serialize.query('COPY public.copied FROM STDIN'), message('d', 'one\n'), message('d', 'two\n'), message('c')]);
      const answer = names(await c.untilReady());
      c.send(serialize.query("SELECT count(*) FROM public.copied WHERE v IN ('one','two')"));
      const rows = (await c.untilReady()).filter((m) => m.name === 'dataRow').map((m) => String((m as unknown as { fields: string[] }).fields[0]));
      c.send(serialize.query('TRUNCATE public.copied'));
      await c.untilReady();
      return [...answer, ...rows];
    });
    expect(direct).toEqual(['copyInResponse', 'commandComplete', 'readyForQuery', '2']);
    expect(proxied).toEqual(direct);
  });
});

test('half a CopyData left behind by a client never reaches the next client of its backend', async () => {
  cluster.psql('CREATE TABLE IF NOT EXISTS public.copied (v text); GRANT ALL ON public.copied TO app;');
  const c = await RawClient.login(proxy.port, app.name, app.password);
  c.send(serialize.query('COPY public.copied FROM STDIN'));
  expect((await c.next()).name).toBe('copyInResponse');
  // CopyDone, then the first 10 bytes of a CopyData announcing 100: the server ends the COPY
  // (CommandComplete, ReadyForQuery) while the client is in the middle of a message.
  const partial = message('d', 'x'.repeat(95)).subarray(0, 10);
  c.send([message('c'), partial]);
  expect(names(await c.untilReady())).toEqual(['commandComplete', 'readyForQuery']);
  c.close();
  await eventually(() => proxy.server.stats().clientConnections === 0, 'the client to be gone');
  // The next client on the only backend: its query is not swallowed as the rest of that CopyData.
  const next = await connected(proxy.port, 'app', { query_timeout: 5000 } as object);
  try {
    expect((await next.query("SELECT 'whole' AS v")).rows).toEqual([{ v: 'whole' }]);
  } finally {
    await next.end();
  }
});
