// Pinning: what cannot be shared keeps its backend for the rest of the session, counted by reason
// and logged once with a digest; when the client leaves, nothing of its session reaches the next.
import type pg from 'pg';
import type { PgCluster } from '../../hack/postgres.js';
import { connected, eventually, startCluster, startProxy, type RunningProxy } from '../support/harness.js';

let cluster: PgCluster;
let proxy: RunningProxy;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
  // budget floor(40 * 5 / 100) = 2: one backend, so every client lands on the same server session.
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 5, borrowTimeout: '5s' } });
  expect(proxy.server.stats().pool.maxDatabaseConnections).toBe(1);
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

async function withClient<T>(fn: (c: pg.Client) => Promise<T>, user = 'app'): Promise<T> {
  const c = await connected(proxy.port, user);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

const pinsOf = (reason: string): number => proxy.server.stats().pinsByReason[reason] ?? 0;

test.each([
  ['temporary_object', 'CREATE TEMP TABLE scratch (v int)', "SELECT count(*)::int AS n FROM pg_class WHERE relname = 'scratch' AND relpersistence = 't'", 0],
  ['set_role', 'SET ROLE app', "SELECT current_setting('role') AS n", 'none'],
  ['sql_prepare', 'PREPARE p1 AS SELECT 1', "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = 'p1'", 0],
  ['listen', 'LISTEN orders', "SELECT count(*)::int AS n FROM pg_listening_channels() c WHERE c = 'orders'", 0],
  ['session_advisory_lock', 'SELECT pg_advisory_lock(4242)', "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242", 0],
  ['cursor_with_hold', 'DECLARE held CURSOR WITH HOLD FOR SELECT 1', "SELECT count(*)::int AS n FROM pg_cursors WHERE name = 'held'", 0],
])('%s pins the session, and the next client on that backend sees none of it', async (reason, statement, probe, clean) => {
  const before = pinsOf(reason);
  const metricBefore = (await proxy.server.metrics.pins.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  const pidPinned = await withClient(async (c) => {
    await c.query(statement);
    expect(proxy.server.stats().pinned).toBe(1);
    expect(pinsOf(reason)).toBe(before + 1);
    // Still pinned between transactions: the state stays reachable.
    expect((await c.query(probe)).rows[0].n).not.toEqual(clean);
    return (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
  });
  await eventually(() => proxy.server.stats().pinned === 0 && proxy.server.stats().borrowed === 0, 'the pinned backend to come back');
  await withClient(async (c) => {
    expect((await c.query('SELECT pg_backend_pid() AS p')).rows[0].p).toBe(pidPinned);
    expect((await c.query(probe)).rows[0].n).toEqual(clean);
  });
  const metricAfter = (await proxy.server.metrics.pins.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  expect(metricAfter).toBe(metricBefore + 1);
  const line = proxy.logs.reverse().find((l) => l.includes('session pinned') && l.includes(`"reason":"${reason}"`));
  proxy.logs.reverse();
  expect(line).toBeDefined();
});

test('the pin log line carries a digest, never literal values', async () => {
  await withClient((c) => c.query("CREATE TEMP TABLE secretive AS SELECT 'sekrit-literal-99' AS v"));
  const line = proxy.logs.find((l) => l.includes('session pinned') && l.includes('secretive'));
  expect(line).toBeDefined();
  expect(line).not.toContain('sekrit-literal-99');
});

test('harmless neighbours do not pin', async () => {
  await withClient(async (c) => {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(77)');
    await c.query("SET LOCAL statement_timeout = '1s'");
    await c.query("SELECT set_config('work_mem', '8MB', true)");
    await c.query('DECLARE plain CURSOR FOR SELECT 1');
    await c.query('CREATE TABLE IF NOT EXISTS not_temp (v int)');
    await c.query('COMMIT');
    await c.query("SELECT 'temp' AS word, 'pg_advisory_lock' AS fn");
    expect(proxy.server.stats().pinned).toBe(0);
    expect(proxy.server.stats().borrowed).toBe(0);
  });
});

test('LOAD pins, and its backend is closed rather than reused', async () => {
  const pid = await withClient(async (c) => {
    await c.query("LOAD 'auto_explain'");
    return (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
  }, 'boss');
  await eventually(() => Number(cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === 0, 'the LOADed backend to be closed');
});

test('a client that leaves mid-transaction has its backend closed, not lent dirty', async () => {
  const c = await connected(proxy.port);
  c.on('error', () => undefined);
  await c.query('BEGIN');
  await c.query('CREATE TEMP TABLE IF NOT EXISTS mid (v int) ON COMMIT DROP');
  const pid = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p as number;
  (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  await eventually(() => Number(cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === 0, 'the dirty backend to be closed');
  await withClient(async (n) => expect((await n.query('SELECT 1 AS x')).rows[0].x).toBe(1));
});
