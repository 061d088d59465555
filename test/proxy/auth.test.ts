// Client authentication (SCRAM-SHA-256 by default, md5 when configured) against the configured
// passwords, and backend authentication with the same password however the server asks.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PgCluster } from '../../hack/postgres.js';
import { client, connected, eventually, startCluster, startProxy, USERS, writePasswordFiles, type RunningProxy } from '../support/harness.js';

let cluster: PgCluster;
let scramProxy: RunningProxy;
let md5Proxy: RunningProxy;

/** Users that exist nowhere, for which the server's pg_hba.conf asks for a password (by SCRAM, by md5). */
const GHOST = 'ghost';
const PHANTOM = 'phantom';

/** Lets the server answer logins of roles it does not have, as it does for most pg_hba.conf setups. */
async function passwordAuthForUnknownRoles(c: PgCluster): Promise<void> {
  const file = join(c.dataDir, 'pg_hba.conf');
  const lines = readFileSync(file, 'utf8').split('\n');
  const reject = lines.findIndex((l) => l.startsWith('host all all'));
  lines.splice(reject, 0, `host all ${GHOST} 127.0.0.1/32 scram-sha-256`, `host all ${PHANTOM} 127.0.0.1/32 md5`);
  writeFileSync(file, lines.join('\n'));
  c.psql('SELECT pg_reload_conf()');
  await eventually(async () => (await loginError(c.port, GHOST, 'x')).code === '28P01', 'the server to use the new pg_hba.conf');
}

beforeAll(async () => {
  cluster = await startCluster();
  await passwordAuthForUnknownRoles(cluster);
  scramProxy = await startProxy(cluster, { clientAuth: { failureDelay: '300ms' } });
  md5Proxy = await startProxy(cluster, { clientAuth: { method: 'md5', failureDelay: '300ms' } });
});

afterAll(async () => {
  await scramProxy?.stop();
  await md5Proxy?.stop();
  cluster?.destroy();
});

async function loginError(port: number, user: string, password: string): Promise<{ code: string; message: string; severity?: string; detail?: string; ms: number }> {
  const c = client(port, user, { password });
  const started = Date.now();
  try {
    await c.connect();
  } catch (e) {
    const err = e as { code: string; message: string; severity?: string; detail?: string };
    return { code: err.code, message: err.message, severity: err.severity, detail: err.detail, ms: Date.now() - started };
  }
  await c.end();
  throw new Error('login unexpectedly succeeded');
}

test.each([
  ['app', 'SCRAM-SHA-256 on the server'],
  ['legacy', 'md5 on the server'],
])('SCRAM client login as %s, backend auth by %s', async (user) => {
  const c = await connected(scramProxy.port, user);
  try {
    expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe(user);
  } finally {
    await c.end();
  }
});

test('md5 client login when configured', async () => {
  const c = await connected(md5Proxy.port, 'app');
  try {
    expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
  } finally {
    await c.end();
  }
});

async function rejections(proxy: RunningProxy, reason: string): Promise<number> {
  return (await proxy.server.metrics.clientRejections.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

// PostgreSQL answers a login for a role it does not have exactly like a wrong password (it runs a
// mock exchange), so that nobody can probe which roles exist. The proxy must not tell them apart
// either: the same SQLSTATE, the same message, the same delay. Only its own metrics and logs may.
test.each([
  ['scram', () => scramProxy, 'app', GHOST],
  ['md5', () => md5Proxy, 'legacy', PHANTOM],
])('%s: an unknown user gets exactly what a wrong password gets, as from PostgreSQL itself, after the same delay', async (_name, proxy, known, unknown) => {
  const seen = (e: { code: string; message: string; severity?: string; detail?: string }) => ({ code: e.code, message: e.message, severity: e.severity, detail: e.detail });
  const serverWrong = seen(await loginError(cluster.port, known, 'not-the-password'));
  const serverUnknown = seen(await loginError(cluster.port, unknown, 'whatever'));
  expect(serverUnknown).toEqual({ code: '28P01', message: `password authentication failed for user "${unknown}"`, severity: 'FATAL', detail: undefined });

  const unknownBefore = await rejections(proxy(), 'unknown_user');
  const wrong = await loginError(proxy().port, known, 'not-the-password');
  const unknownUser = await loginError(proxy().port, unknown, 'whatever');
  expect(seen(wrong)).toEqual(serverWrong);
  expect(seen(unknownUser)).toEqual(serverUnknown);
  for (const r of [wrong, unknownUser]) expect(r.ms).toBeGreaterThanOrEqual(290);
  expect(Math.abs(wrong.ms - unknownUser.ms)).toBeLessThan(250);
  // Inside, the reasons stay apart.
  expect(await rejections(proxy(), 'unknown_user')).toBe(unknownBefore + 1);
  expect(proxy().logs.some((l) => l.includes('"reason":"unknown_user"') && l.includes(`"user":"${unknown}"`))).toBe(true);
});

test('a failed login leaves other clients alone and is never logged with the password', async () => {
  const c = await connected(scramProxy.port);
  await loginError(scramProxy.port, 'app', 'hunter2-wrong');
  expect((await c.query('SELECT 1 AS x')).rows[0].x).toBe(1);
  await c.end();
  const logs = scramProxy.logs.join('\n');
  expect(logs).toMatch(/client authentication failed/);
  for (const secret of ['hunter2-wrong', ...USERS.map((u) => u.password)]) expect(logs).not.toContain(secret);
});

test('an RDS-style JSON secret file works as the password source', async () => {
  const files = writePasswordFiles();
  const secretFile = join(files.dir, 'app.json');
  writeFileSync(secretFile, JSON.stringify({ username: 'app', password: USERS[0]!.password, engine: 'postgres' }));
  const proxy = await startProxy(cluster, { users: [{ name: 'app', secretFile }] });
  try {
    const c = await connected(proxy.port, 'app');
    expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
    await c.end();
  } finally {
    await proxy.stop();
  }
});
