// A driver from another language: psycopg 3 (installed by hack/install-python-deps.sh), with
// every query prepared server-side and SETs per connection, through a pool of two backends.
import { join } from 'node:path';
import { homedir } from 'node:os';
import type { PgCluster } from '../../hack/postgres.js';
import { run, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';

const cache = process.env.DBPROXY_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dbproxy');
const python = join(cache, 'pyenv-psycopg-3.3.9', 'bin', 'python');

let cluster: PgCluster;
let proxy: RunningProxy;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
  // budget floor(40 * 8 / 100) = 3: two backends for four connections
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 8 } });
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

test('psycopg 3: prepared statements and SET, multiplexed, never pinned', async () => {
  const dsn = `host=127.0.0.1 port=${proxy.port} user=app password=${USERS[0]!.password} dbname=postgres`;
  const r = await run(python, [join(import.meta.dirname, 'psycopg_session.py'), dsn]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const report = JSON.parse(r.stdout) as {
    results: Array<[number, number]>;
    settings: Array<[string, string]>;
    errors: string[];
    after_error: number;
    prepared_names: number;
  };
  expect(report.results).toHaveLength(80);
  for (const [got, want] of report.results) expect(got).toBe(want);
  for (const [got, want] of report.settings) expect(got).toBe(want);
  expect(report.errors).toEqual(['22012']);
  expect(report.after_error).toBe(5);
  expect(report.prepared_names).toBeGreaterThan(0);
  expect(proxy.server.stats().pinsByReason).toEqual({});
  expect(proxy.server.stats().pool.maxDatabaseConnections).toBe(2);
});
