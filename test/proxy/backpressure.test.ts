// Backpressure: a client reading a huge result slowly must pause the proxy's reads from the
// backend, so proxy memory stays bounded; leaving mid-result must not lend the backend dirty.
import type { PgCluster } from '../../hack/postgres.js';
import { connected, eventually, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';
import { RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;

beforeAll(async () => {
  cluster = await startCluster();
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 10 } });
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

test('a slow reader of a 1 GB result keeps proxy memory bounded; leaving mid-result closes the backend', async () => {
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const c = await RawClient.login(proxy.port, 'app', USERS[0]!.password);
  // ~1 GB of rows; the client reads nothing for a while.
  c.send(serialize.query("SELECT repeat('x', 1000) FROM generate_series(1, 1000000)"));
  c.socket.pause();
  const pid = await eventually(() => Number(cluster.psql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT repeat%' AND state = 'active'")) || 0, 'the query to run');
  // The server ends up blocked writing, not finished: the proxy stopped reading from it...
  await eventually(() => cluster.psql(`SELECT wait_event FROM pg_stat_activity WHERE pid = ${pid}`) === 'ClientWrite', 'the server to block writing to the proxy');
  // ...having taken in no more than socket buffers' worth.
  const grown = process.memoryUsage().rss - rssBefore;
  expect(grown).toBeLessThan(100 * 1024 * 1024);
  c.close();
  await eventually(() => Number(cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${pid}`)) === 0, 'the backend left mid-result to be closed');
  const next = await connected(proxy.port);
  expect((await next.query('SELECT 1 AS x')).rows[0].x).toBe(1);
  await next.end();
}, 60_000);

test('a fast reader gets the whole large result intact', async () => {
  const c = await connected(proxy.port);
  const r = await c.query("SELECT count(*)::int AS n, sum(length(v))::bigint AS bytes FROM (SELECT repeat('y', 500) AS v FROM generate_series(1, 20000)) s");
  expect(r.rows[0]).toEqual({ n: 20000, bytes: '10000000' });
  const rows = await c.query("SELECT i, repeat('z', 100) AS v FROM generate_series(1, 50000) i");
  expect(rows.rows).toHaveLength(50000);
  expect(rows.rows[49999]).toEqual({ i: 50000, v: 'z'.repeat(100) });
  await c.end();
});
