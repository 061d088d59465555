// Which password the proxy logs in to the database with: the separate backendAuth.passwordFile
// when the config names one (database passwords kept apart from the client-facing ones), else the
// client-facing file; IAM users have none. (test/proxy/backendPassword.test.ts logs in to a real
// PostgreSQL this way.)
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from './contract/config.js';
import { backendCredentialStore } from './proxyServer.js';

const dir = mkdtempSync(join(tmpdir(), 'dbproxy-backend-pw-'));
const file = (name: string, content: string): string => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

test('backendAuth.passwordFile is what the proxy sends to the database; otherwise the client-facing password', () => {
  const config = parseConfig({
    targets: ['db:5432'],
    backendTls: { mode: 'require' },
    users: [
      { name: 'app', passwordFile: file('app-client', 'client-secret\n'), backendAuth: { passwordFile: file('app-db', 'db-secret\n') } },
      { name: 'report', secretFile: file('report.json', JSON.stringify({ username: 'report', password: 'same-both-sides' })) },
      { name: 'iam', passwordFile: file('iam-client', 'iam-client-secret'), backendAuth: { method: 'iam', region: 'eu-west-1' } },
    ],
  });
  const store = backendCredentialStore(config);
  expect(store.password('app')).toBe('db-secret');
  expect(store.password('report')).toBe('same-both-sides');
  expect(store.has('iam')).toBe(false);
});

test('a separate database password is for backendAuth.method password only', () => {
  expect(() =>
    parseConfig({
      targets: ['db:5432'],
      backendTls: { mode: 'require' },
      users: [{ name: 'app', backendAuth: { method: 'iam', region: 'eu-west-1', passwordFile: '/x' } }],
    }),
  ).toThrow(/users\[0\]\.backendAuth\.passwordFile: passwordFile is for method password only/);
});
