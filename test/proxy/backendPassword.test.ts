// Separate database passwords (users[].backendAuth.passwordFile): clients log in with the
// client-facing password, the proxy logs in to PostgreSQL with the other one — for client
// sessions and for its health checks alike — and the database password is no client password.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PgCluster } from '../../hack/postgres.js';
import { client, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const dir = mkdtempSync(join(tmpdir(), 'dbproxy-backend-pw-'));
const file = (name: string, content: string): string => {
  const p = join(dir, name);
  writeFileSync(p, `${content}\n`);
  return p;
};
const dbPassword = USERS.find((u) => u.name === 'app')!.password;

beforeAll(async () => {
  cluster = await startCluster();
  proxy = await startProxy(cluster, {
    // app first: the health checks log in as it, so the pool only becomes ready with the database password.
    users: [
      { name: 'app', passwordFile: file('app-client', 'client-facing-only'), backendAuth: { passwordFile: file('app-db', dbPassword) } },
      { name: 'boss', passwordFile: file('boss', USERS.find((u) => u.name === 'boss')!.password) },
    ],
  });
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

test('a client logs in with the client-facing password; the proxy reaches the database with the separate one', async () => {
  const c = client(proxy.port, 'app', { password: 'client-facing-only' });
  await c.connect();
  expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
  await c.end();
});

test('the database password is not a client password', async () => {
  const c = client(proxy.port, 'app', { password: dbPassword });
  await expect(c.connect()).rejects.toMatchObject({ code: '28P01' });
});
