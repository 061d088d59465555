// Transaction pooling: backends are lent per transaction, queued first in first out, bounded by
// the budget derived from the target's max_connections, trimmed, recycled and initialized.
import type { PgCluster } from '../../hack/postgres.js';
import { allProxyConnections, connected, eventually, pgBin, run, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';

let cluster: PgCluster;
const MAX_CONNECTIONS = 40;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: MAX_CONNECTIONS });
});

afterAll(() => cluster?.destroy());

/** A proxy whose pool holds `backends` connections (plus its health check). */
async function proxyWithPool(backends: number, pool: Record<string, unknown> = {}): Promise<RunningProxy> {
  // budget = floor(40 * pct / 100); backends = budget - 1
  const pct = Math.ceil(((backends + 1) * 100) / MAX_CONNECTIONS);
  const p = await startProxy(cluster, { pool: { maxConnectionsPercent: pct, ...pool } });
  expect(p.server.stats().pool.maxDatabaseConnections).toBe(backends);
  return p;
}

test('clients take turns on one backend, a transaction at a time', async () => {
  const proxy = await proxyWithPool(1);
  const a = await connected(proxy.port);
  const b = await connected(proxy.port);
  try {
    const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    const pidB = (await b.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    expect(pidB).toBe(pidA);
    await a.query('BEGIN');
    await a.query('CREATE TABLE IF NOT EXISTS turns (n int)');
    const bWaits = b.query('SELECT 1 AS x');
    await eventually(() => proxy.server.stats().waiting === 1, 'b to wait');
    await a.query('COMMIT');
    expect((await bWaits).rows[0].x).toBe(1);
  } finally {
    await a.end();
    await b.end();
    await proxy.stop();
  }
});

test('waiters are served first in, first out', async () => {
  const proxy = await proxyWithPool(1);
  const holder = await connected(proxy.port);
  const waiters = await Promise.all([1, 2, 3, 4].map(() => connected(proxy.port)));
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1');
    const order: number[] = [];
    const done: Array<Promise<unknown>> = [];
    for (const [i, w] of waiters.entries()) {
      done.push(w.query('SELECT 1').then(() => order.push(i)));
      await eventually(() => proxy.server.stats().waiting === i + 1, `waiter ${i} queued`);
    }
    await holder.query('COMMIT');
    await Promise.all(done);
    expect(order).toEqual([0, 1, 2, 3]);
  } finally {
    await Promise.all([holder, ...waiters].map((c) => c.end()));
    await proxy.stop();
  }
});

test('a borrow timeout is SQLSTATE 53300 saying how long it waited and the pool size; the client can retry', async () => {
  const proxy = await proxyWithPool(1, { borrowTimeout: '300ms' });
  const holder = await connected(proxy.port);
  const late = await connected(proxy.port);
  try {
    await holder.query('BEGIN');
    await holder.query('SELECT 1');
    const err = await late.query('SELECT 1').catch((e: { code: string; message: string }) => e);
    expect(err).toMatchObject({ code: '53300' });
    expect((err as { message: string }).message).toMatch(/timed out after 0\.[3-9] s waiting for a database connection \(pool size 1/);
    expect(proxy.server.stats().borrowTimeouts).toBe(1);
    // Extended protocol too: the error comes once and the client stays usable.
    const err2 = await late.query('SELECT $1::int AS v', [5]).catch((e: { code: string }) => e);
    expect(err2).toMatchObject({ code: '53300' });
    await holder.query('COMMIT');
    expect((await late.query('SELECT $1::int AS v', [5])).rows[0].v).toBe(5);
  } finally {
    await holder.end();
    await late.end();
    await proxy.stop();
  }
});

test.each(['simple', 'extended'])('pgbench -M %s: 100 clients over a pool of 10, no errors, never over the budget', async (mode) => {
  const proxy = await proxyWithPool(10);
  const budget = proxy.server.stats().pool.budget!;
  expect(budget).toBe(11);
  const env = { PGPASSWORD: USERS[0]!.password };
  const init = await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'app', 'postgres'], env);
  expect(init.code).toBe(0);
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, allProxyConnections(cluster));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const bench = await run(pgBin('pgbench'), ['-n', '-c', '100', '-j', '2', '-t', '30', '-M', mode, '-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'app', 'postgres'], env);
  sampling = false;
  await sampler;
  await proxy.stop();
  expect(bench.stderr).not.toMatch(/error/i);
  expect(bench.code).toBe(0);
  expect(bench.stdout).toMatch(/number of transactions actually processed: 3000\/3000/);
  expect(bench.stdout).toMatch(/number of failed transactions: 0 /);
  expect(peak).toBeGreaterThan(1);
  expect(peak).toBeLessThanOrEqual(budget);
}, 120_000);

test('idle backends above maxIdleConnectionsPercent are closed after idleConnectionTimeout', async () => {
  // budget 11: 10 backends; idle cap floor(40 * 5 / 100) = 2
  const proxy = await proxyWithPool(10, { maxIdleConnectionsPercent: 5, idleConnectionTimeout: '300ms' });
  const clients = await Promise.all(Array.from({ length: 8 }, () => connected(proxy.port)));
  try {
    await Promise.all(clients.map((c) => c.query('BEGIN')));
    await Promise.all(clients.map((c) => c.query('COMMIT')));
    expect(proxy.server.stats().databaseConnections).toBeGreaterThanOrEqual(8);
    await eventually(() => proxy.server.stats().databaseConnections === 2, 'idle backends trimmed to 2');
    expect(allProxyConnections(cluster)).toBe(3);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
    await proxy.stop();
  }
});

test('backends are recycled after maxConnectionLifetime', async () => {
  const proxy = await proxyWithPool(1, { maxConnectionLifetime: '300ms' });
  const c = await connected(proxy.port);
  try {
    const first = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
    await eventually(async () => (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p !== first, 'a new backend after the lifetime');
  } finally {
    await c.end();
    await proxy.stop();
  }
});

test('initQuery runs on every new backend connection', async () => {
  const proxy = await proxyWithPool(2, { initQuery: "SELECT set_config('dbproxy.initialized', 'yes', false)" });
  const c = await connected(proxy.port);
  try {
    expect((await c.query("SELECT current_setting('dbproxy.initialized', true) AS v")).rows[0].v).toBe('yes');
  } finally {
    await c.end();
    await proxy.stop();
  }
});

test('borrowers wait while the pool is at budget for another user, then get a connection', async () => {
  const proxy = await proxyWithPool(1, { borrowTimeout: '5s' });
  const app = await connected(proxy.port, 'app');
  const legacy = await connected(proxy.port, 'legacy');
  try {
    expect((await app.query('SELECT current_user AS u')).rows[0].u).toBe('app');
    // The one backend is app's and idle: legacy's borrow closes it and opens its own.
    expect((await legacy.query('SELECT current_user AS u')).rows[0].u).toBe('legacy');
    expect((await app.query('SELECT current_user AS u')).rows[0].u).toBe('app');
    expect(allProxyConnections(cluster)).toBeLessThanOrEqual(2);
  } finally {
    await app.end();
    await legacy.end();
    await proxy.stop();
  }
});
