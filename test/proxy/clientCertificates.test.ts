// Client-certificate logins (PostgreSQL's cert method) on both sides of the proxy: clients log in
// to dbproxy with a certificate whose CN is the user name (users[].clientAuth cert, checked
// against tls.clientCaFile), and dbproxy logs in to PostgreSQL with a certificate of its own for
// that user (backendAuth method cert). PostgreSQL is the oracle: each exchange runs against the
// server directly (ssl_ca_file, a hostssl ... cert rule) and through the proxy, and the answers
// are compared. All certificates are made here with openssl.
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PgCluster, type PgUser, startPostgres } from '../../hack/postgres.js';
import type { ProxyConfigInput } from '../../proxy/contract/config.js';
import { makeCa, makeLeaf, postgresTlsSettings, type LeafCert, type TestCa } from '../support/certs.js';
import { freePort, psql, startProxy, USERS, writePasswordFiles, type CommandResult, type RunningProxy } from '../support/harness.js';

const CERT_USER: PgUser = { name: 'certuser', password: 'unused-by-cert', auth: 'cert' };

let ca: TestCa;
let otherCa: TestCa;
let cluster: PgCluster;
let proxyLeaf: LeafCert;
/** What clients hold. */
let clientCerts: { certuser: LeafCert; app: LeafCert; strangerCertuser: LeafCert };
/** What the proxy presents to PostgreSQL for certuser, and one made out to another user. */
let backendCerts: { certuser: LeafCert; app: LeafCert };
const running: RunningProxy[] = [];

beforeAll(async () => {
  ca = makeCa();
  otherCa = makeCa('a CA nobody trusts');
  proxyLeaf = makeLeaf(ca, 'proxy', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const own = (name: string, cn: string, by: TestCa = ca): LeafCert => makeLeaf(by, name, { cn, usage: 'client', dir: mkdtempSync(join(tmpdir(), 'dbproxy-client-cert-')) });
  clientCerts = { certuser: own('client-certuser', 'certuser'), app: own('client-app', 'app'), strangerCertuser: own('stranger-certuser', 'certuser', otherCa) };
  backendCerts = { certuser: own('backend-certuser', 'certuser'), app: own('backend-app', 'app') };
  const pgTls = postgresTlsSettings(ca, { ips: ['127.0.0.1'] });
  // PostgreSQL must read its CA file as the postgres user: next to its own certificate.
  const pgCa = join(pgTls.ssl_cert_file!.replace(/^'|'$/g, '').replace(/\/[^/]+$/, ''), 'client-ca.crt');
  copyFileSync(ca.certFile, pgCa);
  cluster = startPostgres({
    port: await freePort(),
    users: [...USERS, CERT_USER],
    maxConnections: 40,
    settings: { ...pgTls, ssl_ca_file: `'${pgCa}'` },
  });
});

afterAll(async () => {
  for (const p of running) await p.stop();
  cluster?.destroy();
});

function certConfig(backend: LeafCert): Partial<ProxyConfigInput> {
  return {
    users: [...writePasswordFiles().users, { name: 'certuser', clientAuth: 'cert', backendAuth: { method: 'cert', certFile: backend.certFile, keyFile: backend.keyFile } }],
    tls: { certFile: proxyLeaf.certFile, keyFile: proxyLeaf.keyFile, clientCaFile: ca.certFile },
    backendTls: { mode: 'verify-full', caFile: ca.certFile },
    healthCheck: { interval: '200ms', user: 'app' },
  };
}

async function proxyWith(overrides: Partial<ProxyConfigInput>): Promise<RunningProxy> {
  const p = await startProxy(cluster, overrides);
  running.push(p);
  return p;
}

/** psql as `user` with libpq's TLS settings: verify-full against the test CA, and a client certificate when given. */
function psqlAs(port: number, user: string, sql: string, cert?: LeafCert, sslmode = 'verify-full'): Promise<CommandResult> {
  return psql(port, sql, {
    user,
    password: USERS.find((u) => u.name === user)?.password ?? '',
    env: {
      PGHOST: '127.0.0.1',
      PGSSLMODE: sslmode,
      PGSSLROOTCERT: ca.certFile,
      // libpq reads ~/.postgresql/postgresql.crt otherwise; a path that does not exist means none.
      PGSSLCERT: cert?.certFile ?? '/nonexistent/client.crt',
      PGSSLKEY: cert?.keyFile ?? '/nonexistent/client.key',
    },
  });
}

/** The server's FATAL line without libpq's "connection to server at ..., port N failed:" prefix, which names the port. */
const fatal = (r: CommandResult): string => (/FATAL:\s+(.*)/.exec(r.stderr)?.[1] ?? `(no FATAL) ${r.stderr.trim()}`).trim();

describe('client-certificate login, directly and through dbproxy', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await proxyWith(certConfig(backendCerts.certuser));
  });

  test('a certificate whose CN is the user logs in without a password; the server sees the proxy log in by certificate too', async () => {
    const sql = "SELECT current_user, (SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid())";
    const direct = await psqlAs(cluster.port, 'certuser', sql, clientCerts.certuser);
    const through = await psqlAs(proxy.port, 'certuser', sql, clientCerts.certuser);
    expect(direct.stderr).toBe('');
    expect(direct.stdout.trim()).toBe('certuser|/CN=certuser');
    expect(through.stderr).toBe('');
    expect(through.stdout.trim()).toBe(direct.stdout.trim());
  });

  test('no certificate: FATAL "connection requires a valid client certificate", as PostgreSQL', async () => {
    const direct = await psqlAs(cluster.port, 'certuser', 'SELECT 1');
    const through = await psqlAs(proxy.port, 'certuser', 'SELECT 1');
    expect(direct.code).not.toBe(0);
    expect(fatal(direct)).toBe('connection requires a valid client certificate');
    expect(through.code).not.toBe(0);
    expect(fatal(through)).toBe(fatal(direct));
  });

  test("another user's certificate: FATAL certificate authentication failed, as PostgreSQL", async () => {
    const direct = await psqlAs(cluster.port, 'certuser', 'SELECT 1', clientCerts.app);
    const through = await psqlAs(proxy.port, 'certuser', 'SELECT 1', clientCerts.app);
    expect(fatal(direct)).toBe('certificate authentication failed for user "certuser"');
    expect(fatal(through)).toBe(fatal(direct));
    expect(proxy.logs.join('')).toContain('provided user name (certuser) and authenticated user name (app) do not match');
  });

  test('a certificate from a CA nobody trusts is refused on both sides (PostgreSQL in the handshake, dbproxy with FATAL 28000 saying why)', async () => {
    const direct = await psqlAs(cluster.port, 'certuser', 'SELECT 1', clientCerts.strangerCertuser);
    const through = await psqlAs(proxy.port, 'certuser', 'SELECT 1', clientCerts.strangerCertuser);
    expect(direct.code).not.toBe(0);
    expect(direct.stderr).toMatch(/unknown ca|certificate verify failed/);
    expect(through.code).not.toBe(0);
    // Node verifies the chain after the handshake, so the refusal comes as an error message.
    expect(fatal(through)).toMatch(/^client certificate verify failed: /);
    // Whoever the user: PostgreSQL with ssl_ca_file refuses any certificate it cannot chain.
    const appDirect = await psqlAs(cluster.port, 'app', 'SELECT 1', clientCerts.strangerCertuser);
    const appThrough = await psqlAs(proxy.port, 'app', 'SELECT 1', clientCerts.strangerCertuser);
    expect(appDirect.code).not.toBe(0);
    expect(fatal(appThrough)).toMatch(/^client certificate verify failed: /);
  });

  test('over plaintext a certificate user is refused with 28000 on both sides', async () => {
    const direct = await psqlAs(cluster.port, 'certuser', 'SELECT 1', undefined, 'disable');
    const through = await psqlAs(proxy.port, 'certuser', 'SELECT 1', undefined, 'disable');
    // PostgreSQL's hostssl rule does not match a plaintext connection; dbproxy names what is missing.
    expect(fatal(direct)).toMatch(/host "127.0.0.1", user "certuser", database "postgres", no encryption$/);
    expect(fatal(through)).toBe('connection requires a valid client certificate');
  });

  test('password users are unaffected: with or without a trusted certificate they log in with their password', async () => {
    for (const cert of [undefined, clientCerts.app, clientCerts.certuser]) {
      const direct = await psqlAs(cluster.port, 'app', 'SELECT current_user', cert);
      const through = await psqlAs(proxy.port, 'app', 'SELECT current_user', cert);
      expect(direct.stderr).toBe('');
      expect(through.stderr).toBe('');
      expect(through.stdout.trim()).toBe(direct.stdout.trim());
    }
    const wrong = await psql(proxy.port, 'SELECT 1', { user: 'app', password: 'wrong', env: { PGSSLMODE: 'require', PGSSLCERT: clientCerts.app.certFile, PGSSLKEY: clientCerts.app.keyFile } });
    expect(fatal(wrong)).toBe('password authentication failed for user "app"');
  });

  test('a certificate user shares pooled server connections across its clients (transactions multiplexed as usual)', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => psqlAs(proxy.port, 'certuser', 'SELECT count(*) >= 0 FROM pg_stat_activity', clientCerts.certuser)));
    for (const r of results) expect(r.stderr).toBe('');
    const stats = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/stats`)).json()) as { pool: { users?: Array<{ user: string }> } };
    expect(JSON.stringify(stats.pool)).toContain('certuser');
  });
});

describe('the proxy’s own certificate for the database', () => {
  test('a certificate made out to another user: the server refuses it, the client gets the server’s 28000 and /stats says why', async () => {
    const proxy = await proxyWith(certConfig(backendCerts.app));
    const r = await psqlAs(proxy.port, 'certuser', 'SELECT 1', clientCerts.certuser);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('certificate authentication failed for user "certuser"');
    const stats = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/stats`)).json()) as { backendAuthFailures?: { last: { user: string; code: string } } };
    expect(stats.backendAuthFailures?.last).toMatchObject({ user: 'certuser', code: '28000' });
    expect(proxy.logs.join('')).toContain("the database refused the proxy's client certificate");
  });

  test('a key that does not match its certificate stops the start, naming the user', async () => {
    const mismatched = { ...backendCerts.certuser, keyFile: backendCerts.app.keyFile };
    await expect(startProxy(cluster, certConfig(mismatched))).rejects.toThrow(/users certuser: backendAuth certFile .* unusable/);
  });
});
