// Secret rotation without restart: the password files are re-read when they change; new client
// logins and new backend connections use the new value; backend connections already open stay
// in the pool; a password the database refuses shows in /stats and the logs, once per reason,
// and the proxy neither crashes nor retries in a loop.
import { renameSync, writeFileSync } from 'node:fs';
import type { PgCluster } from '../../hack/postgres.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { client, connected, eventually, startCluster, startProxy, type RunningProxy } from '../support/harness.js';

let cluster: PgCluster;
let proxy: RunningProxy;

beforeAll(async () => {
  cluster = await startCluster();
  proxy = await startProxy(cluster);
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

function passwordFile(user: string): string {
  return proxy.server.config.users.find((u) => u.name === user)!.passwordFile!;
}

/** Rotates a mounted Secret the way the kubelet does: a new file swapped in atomically. */
function rotateFile(user: string, password: string): void {
  const file = passwordFile(user);
  writeFileSync(`${file}.tmp`, password + '\n');
  renameSync(`${file}.tmp`, file);
}

async function stats(): Promise<ProxyStats> {
  return (await fetch(`http://127.0.0.1:${proxy.adminPort}/stats`)).json() as Promise<ProxyStats>;
}

/** Server pids of the proxy's pool connections for a user. */
function backendPids(user: string): number[] {
  return cluster
    .psql(`SELECT pid FROM pg_stat_activity WHERE usename = '${user}' AND application_name <> 'dbproxy health check' ORDER BY pid`)
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

async function loginFails(user: string, password: string): Promise<{ code: string; message: string }> {
  const c = client(proxy.port, user, { password });
  try {
    await c.connect();
  } catch (e) {
    return e as { code: string; message: string };
  }
  await c.end();
  throw new Error(`login as ${user} unexpectedly succeeded`);
}

test('a rotated password: new logins and new backends use it; the pool is kept', async () => {
  // Three backends in the pool, idle.
  const holders = await Promise.all([1, 2, 3].map(() => connected(proxy.port, 'app')));
  await Promise.all(holders.map((c) => c.query('BEGIN')));
  await Promise.all(holders.map((c) => c.query('COMMIT')));
  await Promise.all(holders.map((c) => c.end()));
  const before = backendPids('app');
  expect(before.length).toBeGreaterThanOrEqual(3);

  // The database and the Secret change (here the database first, as RDS rotation does).
  cluster.psql(`ALTER ROLE app PASSWORD 'app-rotated-1'`);
  rotateFile('app', 'app-rotated-1');

  // Within the recheck interval, the old password stops working at the proxy and the new one works.
  await eventually(async () => (await loginFails('app', 'app-secret')).code === '28P01', 'the old password to be refused');
  const c = await connected(proxy.port, 'app', { password: 'app-rotated-1' });

  // Existing idle backends were kept and still serve.
  expect(backendPids('app')).toEqual(expect.arrayContaining(before));
  const served = Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
  expect(before).toContain(served);

  // More concurrent transactions than idle backends: new backends log in with the new password.
  const many = await Promise.all([1, 2, 3, 4, 5, 6].map(() => connected(proxy.port, 'app', { password: 'app-rotated-1' })));
  await Promise.all(many.map((m) => m.query('BEGIN')));
  const pids = await Promise.all(many.map(async (m) => Number((await m.query('SELECT pg_backend_pid() AS pid')).rows[0].pid)));
  const fresh = pids.filter((p) => !before.includes(p));
  expect(fresh.length).toBeGreaterThan(0);
  await Promise.all(many.map((m) => m.query('COMMIT')));
  await Promise.all(many.map((m) => m.end()));
  await c.end();
  expect(backendPids('app')).toEqual(expect.arrayContaining(before));
  expect((await stats()).backendAuthFailures).toBeUndefined();
});

test('a password the database refuses is reported in /stats and the logs, without a retry loop; fixing the server side heals it', async () => {
  // The Secret is rotated but the database was not: the proxy accepts the client, the server refuses the proxy.
  rotateFile('legacy', 'legacy-rotated');
  await eventually(async () => (await loginFails('legacy', 'legacy-secret')).code === '28P01', 'the proxy to use the new file');
  const refused = await loginFails('legacy', 'legacy-rotated');
  expect(refused.code).toBe('28P01');
  expect(refused.message).toBe('password authentication failed for user "legacy"');

  const s = await stats();
  expect(s.backendAuthFailures).toMatchObject({ total: 1, last: { user: 'legacy', database: 'postgres', code: '28P01' } });
  const logged = proxy.logs.filter((l) => l.includes('the database refused the configured password'));
  expect(logged).toHaveLength(1);
  expect(logged[0]).toContain('"user":"legacy"');
  expect(proxy.logs.join('\n')).not.toContain('legacy-rotated');

  // Nothing retries on its own: no connection is being opened and nobody waits for one, so the
  // count can move only with a client's attempt.
  const pool = proxy.server.pool.stats();
  expect({ opening: pool.opening, waiting: pool.waiting }).toEqual({ opening: 0, waiting: 0 });
  expect((await stats()).backendAuthFailures!.total).toBe(1);
  // A second attempt counts, but is not logged again (same reason).
  await loginFails('legacy', 'legacy-rotated');
  expect((await stats()).backendAuthFailures!.total).toBe(2);
  expect(proxy.logs.filter((l) => l.includes('the database refused the configured password'))).toHaveLength(1);

  // Other users are not disturbed.
  const app = await connected(proxy.port, 'app', { password: 'app-rotated-1' });
  expect((await app.query('SELECT 1 AS x')).rows[0].x).toBe(1);
  await app.end();

  // The server catches up: the next login works, no restart.
  cluster.psql(`SET password_encryption = 'md5'; ALTER ROLE legacy PASSWORD 'legacy-rotated'`);
  const healed = await connected(proxy.port, 'legacy', { password: 'legacy-rotated' });
  expect((await healed.query('SELECT current_user AS u')).rows[0].u).toBe('legacy');
  await healed.end();
  expect((await stats()).ready).toBe(true);
});

test('a password file that disappears or is emptied refuses logins with a clear log, and recovers when it returns', async () => {
  const file = passwordFile('boss');
  writeFileSync(file, '');
  await eventually(async () => (await loginFails('boss', 'boss-secret')).code === '28P01', 'logins with an empty file to be refused');
  expect(proxy.logs.join('\n')).toMatch(/passwordFile .* for user \\"boss\\" is empty/);
  writeFileSync(file, 'boss-secret\n');
  const c = await eventually(async () => connected(proxy.port, 'boss'), 'logins to work again');
  await c.end();
});
