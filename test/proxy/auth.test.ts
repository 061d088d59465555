// Client authentication (SCRAM-SHA-256 by default, md5 when configured) against the configured
// passwords, and backend authentication with the same password however the server asks.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PgCluster } from '../../hack/postgres.js';
import { client, connected, startCluster, startProxy, USERS, writePasswordFiles, type RunningProxy } from '../support/harness.js';

let cluster: PgCluster;
let scramProxy: RunningProxy;
let md5Proxy: RunningProxy;

beforeAll(async () => {
  cluster = await startCluster();
  scramProxy = await startProxy(cluster, { clientAuth: { failureDelay: '300ms' } });
  md5Proxy = await startProxy(cluster, { clientAuth: { method: 'md5', failureDelay: '300ms' } });
});

afterAll(async () => {
  await scramProxy?.stop();
  await md5Proxy?.stop();
  cluster?.destroy();
});

async function loginError(port: number, user: string, password: string): Promise<{ code: string; message: string; ms: number }> {
  const c = client(port, user, { password });
  const started = Date.now();
  try {
    await c.connect();
  } catch (e) {
    const err = e as { code: string; message: string };
    return { code: err.code, message: err.message, ms: Date.now() - started };
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

test.each([
  ['scram', () => scramProxy.port],
  ['md5', () => md5Proxy.port],
])('%s: wrong password gets 28P01, unknown user 28000, after the same delay', async (_name, port) => {
  const wrong = await loginError(port(), 'app', 'not-the-password');
  const unknown = await loginError(port(), 'nobody', 'whatever');
  expect(wrong.code).toBe('28P01');
  expect(wrong.message).toBe('password authentication failed for user "app"');
  expect(unknown.code).toBe('28000');
  expect(unknown.message).toMatch(/nobody/);
  for (const r of [wrong, unknown]) expect(r.ms).toBeGreaterThanOrEqual(290);
  expect(Math.abs(wrong.ms - unknown.ms)).toBeLessThan(250);
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
