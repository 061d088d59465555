// Issue 13, items 2 and 3, against real PostgreSQL: the timeouts PgBouncer users rely on
// (idleTransactionTimeout, queryTimeout) and per-user fairness (users[].maxConnections).
import pg from 'pg';
import type { PgCluster } from '../../hack/postgres.js';
import { parseConfig } from '../../proxy/contract/config.js';
import { type RunningProxy, adminQuery, connected, eventually, startCluster, startProxy, writePasswordFiles } from '../support/harness.js';

let cluster: PgCluster;
const running: RunningProxy[] = [];

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
});

afterEach(async () => {
  // Each test counts the server's connections: none may be left from the one before.
  for (const p of running.splice(0)) await p.stop();
});

afterAll(() => {
  cluster?.destroy();
});

async function proxyWith(overrides: Parameters<typeof startProxy>[1]): Promise<RunningProxy> {
  const p = await startProxy(cluster, overrides);
  running.push(p);
  return p;
}

/** The error a client gets, or 'no error'. */
async function errorOf(p: Promise<unknown>): Promise<{ code?: string; message: string; severity?: string } | 'no error'> {
  try {
    await p;
    return 'no error';
  } catch (e) {
    const err = e as { code?: string; message: string; severity?: string };
    return { code: err.code, message: err.message, severity: err.severity };
  }
}

describe('idleTransactionTimeout', () => {
  test('a client idle inside a transaction is closed with the FATAL PostgreSQL gives, and its backend discarded', async () => {
    const proxy = await proxyWith({ pool: { idleTransactionTimeout: '600ms' } });
    // PostgreSQL's own idle_in_transaction_session_timeout, for the words.
    const direct = await connected(cluster.port, 'app', { options: '-c idle_in_transaction_session_timeout=600' } as object);
    const viaProxy = await connected(proxy.port);
    const events = async (c: pg.Client): Promise<unknown> => {
      // The first error is the server's FATAL; the connection's end follows it.
      const gotError = new Promise<{ code?: string; message: string; severity?: string }>((resolve) => c.on('error', (e) => resolve(e as never)));
      await c.query('BEGIN');
      await c.query('SELECT 1');
      const e = await gotError;
      return { code: e.code, message: e.message, severity: e.severity };
    };
    const [d, p] = await Promise.all([events(direct), events(viaProxy)]);
    expect(d).toEqual({ code: '25P03', message: 'terminating connection due to idle-in-transaction timeout', severity: 'FATAL' });
    expect(p).toEqual(d);
    // The backend that held the transaction is gone, not lent to anyone.
    await eventually(() => proxy.server.stats().borrowed === 0 && proxy.server.stats().clientConnections === 0, 'the session and its backend to be gone');
    const next = await connected(proxy.port);
    expect((await next.query("SELECT current_setting('transaction_isolation') AS i, now() = statement_timestamp() AS fresh")).rows).toEqual([{ i: 'read committed', fresh: true }]);
    await next.end();
  });

  test('idle outside a transaction, or busy inside one, is not a timeout', async () => {
    const proxy = await proxyWith({ pool: { idleTransactionTimeout: '400ms' } });
    const c = await connected(proxy.port);
    await c.query('SELECT 1');
    await c.query('BEGIN');
    // Busy for longer than the timeout, inside the transaction: a running query is not idle.
    await c.query('SELECT pg_sleep(0.9)');
    await c.query('COMMIT');
    // Idle between transactions: not in a transaction at all.
    await eventually(async () => (await proxy.server.stats()).borrowed === 0, 'the backend to be returned');
    await new Promise((r) => setTimeout(r, 900)); // the absence of a timeout takes time to show
    expect((await c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
    await c.end();
  });
});

describe('queryTimeout', () => {
  test('a query running longer is cancelled on the server: 57014, and the connection goes on', async () => {
    const proxy = await proxyWith({ pool: { queryTimeout: '500ms' } });
    const c = await connected(proxy.port);
    const started = Date.now();
    const e = await errorOf(c.query('SELECT pg_sleep(20)'));
    expect(e).toMatchObject({ code: '57014', severity: 'ERROR' });
    expect(Date.now() - started).toBeLessThan(5000);
    // The statement is gone from the server, the session is fine.
    expect((await c.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    expect(proxy.logs.some((l) => l.includes('queryTimeout'))).toBe(true);
    await c.end();
  });

  test('quick queries and a transaction idle between them are left alone', async () => {
    const proxy = await proxyWith({ pool: { queryTimeout: '300ms' } });
    const c = await connected(proxy.port);
    await c.query('BEGIN');
    for (let i = 0; i < 5; i++) await c.query('SELECT pg_sleep(0.1)');
    await c.query('COMMIT');
    await c.end();
  });
});

describe('users[].maxConnections', () => {
  test('one user flooding the pool cannot starve another: it holds at most its cap, the other is served promptly', async () => {
    const files = writePasswordFiles();
    const users = files.users.map((u) => (u.name === 'app' ? { ...u, maxConnections: 2 } : u));
    // budget floor(40 × 20 / 100) = 8: 7 backends for the two users.
    const proxy = await proxyWith({ users, pool: { maxConnectionsPercent: 20 } });
    const flood = await Promise.all(Array.from({ length: 12 }, () => connected(proxy.port, 'app')));
    const other = await connected(proxy.port, 'legacy');
    let stop = false;
    let background: Promise<unknown> = Promise.resolve();
    try {
      const maxApp = { n: 0 };
      const flooding = flood.map(async (c) => {
        while (!stop) await c.query('SELECT pg_sleep(0.05)');
      });
      const sampler = (async () => {
        while (!stop) {
          const n = Number(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend' AND application_name <> 'dbproxy health check'"));
          maxApp.n = Math.max(maxApp.n, n);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      background = Promise.all([...flooding, sampler]);
      const latencies: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t = Date.now();
        await other.query('SELECT 1');
        latencies.push(Date.now() - t);
      }
      // Shown per user in /stats, SHOW POOLS and /metrics, while the flood goes on.
      const appStats = proxy.server.stats().pool.users?.find((u) => u.user === 'app');
      expect(appStats).toMatchObject({ maxConnections: 2 });
      expect(appStats!.connections).toBeLessThanOrEqual(2);
      const showPools = await adminQuery(proxy.port, 'SHOW POOLS');
      expect(Number(showPools.rows.find((r: { user: string }) => r.user === 'app')?.pool_size)).toBe(2);
      const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
      expect(metrics).toContain('dbproxy_user_database_connections_limit{user="app"} 2');
      expect(metrics).toMatch(/dbproxy_user_database_connections\{user="app"\} [0-2]\n/);
      stop = true;
      await background;
      latencies.sort((a, b) => a - b);
      // Bounded, never queued behind the flood's own line (12 clients for 2 connections); the
      // margin is for a machine busy with other work.
      expect(latencies[latencies.length - 1]).toBeLessThan(2000);
      expect(maxApp.n).toBeLessThanOrEqual(2);
    } finally {
      stop = true;
      await background.catch(() => undefined);
      await Promise.all([...flood.map((c) => c.end()), other.end()]);
    }
  });

  test('config: maxConnections must be a positive integer, named in the error', () => {
    const base = { targets: ['db:5432'] };
    expect(() => parseConfig({ ...base, users: [{ name: 'app', passwordFile: '/p', maxConnections: 0 }] })).toThrow(/users\[0\]\.maxConnections/);
    expect(() => parseConfig({ ...base, pool: { queryTimeout: '-1s' } as never, users: [{ name: 'app', passwordFile: '/p' }] })).toThrow(/pool\.queryTimeout/);
  });
});
