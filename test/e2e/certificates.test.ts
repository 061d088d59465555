// Certificate logins end to end: a user `kubectl create secret`s the proxy's serving certificate,
// the CA client certificates must chain to, the database's CA and a kubernetes.io/tls Secret with
// the certificate the proxy shows the database for `batch`, and `kubectl apply`s a DatabaseProxy
// with tls.clientCaSecretRef, users[].clientAuth cert and users[].backendCertificate. On the pod
// runner, with the operator installed from the chart, psql through the Service logs in as `batch`
// with a client certificate and PostgreSQL (pg_hba method cert) sees the proxy log in with the
// mounted certificate; without a certificate the proxy refuses as PostgreSQL would; the password
// user is unaffected; a rotated backend certificate Secret reaches new database connections with
// no pod restart. Two CAs keep the sides apart: appCa signs the proxy's serving certificate and
// the clients' certificates, dbCa signs PostgreSQL's certificate and the proxy's own for `batch`.
import { jest } from '@jest/globals';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PgCluster, type PgUser, startPostgres } from '../../hack/postgres.js';
import { runCommand, type CommandResult } from '../../hack/demo/localStack.js';
import { makeCa, makeLeaf, postgresTlsSettings, serialOf, type LeafCert, type TestCa } from '../support/certs.js';
import { freePort } from '../support/harness.js';
import { applyDatabaseProxy, databaseProxyManifest, getJson, kubectlOk, waitFor, type TestCluster } from '../operator/support/cluster.js';
import { startE2eStack, type E2eStack } from '../support/e2eStack.js';

jest.setTimeout(600_000);

const NAME = 'orders-db';
const APP: PgUser = { name: 'app', password: 'app-e2e-password', auth: 'scram-sha-256' };
// PostgreSQL logs `batch` in by certificate only (hostssl ... cert); the password is never used.
const BATCH: PgUser = { name: 'batch', password: 'unused-by-cert', auth: 'cert' };
const SECRETS = { tls: `${NAME}-tls`, clientCa: `${NAME}-client-ca`, dbCa: 'db-ca', app: `${NAME}-app`, batchCert: `${NAME}-batch-cert` };
const WHO = 'SELECT current_user, (SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid())';

let stack: E2eStack | undefined;
let cluster: TestCluster;
let appNs: string;
let db: PgCluster | undefined;
let appCa: TestCa;
let dbCa: TestCa;
/** What clients hold: batch's certificate from the client CA, and one from the database's CA that the proxy must not trust. */
let clientCerts: { batch: LeafCert; batchFromDbCa: LeafCert };
/** The proxy's certificate for the database, as first created. */
let backendCert: LeafCert;
let serviceIp: string;

type Obj = Record<string, any>;

const tmpDir = (): string => mkdtempSync(join(tmpdir(), 'dbproxy-e2e-cert-'));

/** A kubernetes.io/tls Secret manifest from a certificate, as `kubectl create secret tls --dry-run=client -o yaml` prints it. */
async function tlsSecret(name: string, leaf: LeafCert): Promise<string> {
  return kubectlOk(cluster, ['create', 'secret', 'tls', name, '-n', appNs, '--cert', leaf.certFile, '--key', leaf.keyFile, '--dry-run=client', '-o', 'yaml']);
}

/**
 * psql through the Service as a client would: TCP to the Service address, the server certificate
 * checked (verify-full) against appCa for the Service's DNS name, and a client certificate when given.
 */
function psqlThrough(user: string, sql: string, o: { cert?: LeafCert; password?: string } = {}): Promise<CommandResult> {
  const conninfo = [
    `host=${NAME}.${appNs}.svc`,
    `hostaddr=${serviceIp}`,
    'port=5432',
    `user=${user}`,
    'dbname=postgres',
    'sslmode=verify-full',
    `sslrootcert=${appCa.certFile}`,
    // libpq reads ~/.postgresql/postgresql.crt otherwise; a path that does not exist means none.
    `sslcert=${o.cert?.certFile ?? '/nonexistent/client.crt'}`,
    `sslkey=${o.cert?.keyFile ?? '/nonexistent/client.key'}`,
  ].join(' ');
  return runCommand(join(db!.bindir, 'psql'), ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', sql], {
    env: { PGPASSWORD: o.password ?? '', PGCONNECT_TIMEOUT: '10' },
    timeoutMs: 30_000,
  });
}

/** The server's FATAL line without libpq's "connection to server at ..., port N failed:" prefix. */
const fatal = (r: CommandResult): string => (/FATAL:\s+(.*)/.exec(r.stderr)?.[1] ?? `(no FATAL) ${r.stderr.trim()}`).trim();

/** pg_stat_ssl.client_serial is a decimal numeric; openssl prints the serial in hex. */
const decimalSerial = (certPem: string): string => BigInt(`0x${serialOf(certPem)}`).toString();

async function proxyPods(): Promise<Array<{ name: string; uid: string; restarts: number }>> {
  const list = await getJson<Obj>(cluster, ['pods', '-n', appNs, '-l', `app.kubernetes.io/instance=${NAME}`]);
  return list!.items
    .filter((p: Obj) => !p.metadata.deletionTimestamp)
    .map((p: Obj) => ({ name: p.metadata.name, uid: p.metadata.uid, restarts: p.status?.containerStatuses?.[0]?.restartCount ?? 0 }));
}

/** kubectl wait for Ready; when it does not come, the error says what the DatabaseProxy's conditions say. */
async function waitReady(): Promise<void> {
  const r = await cluster.kubectl(['wait', `dbp/${NAME}`, '-n', appNs, '--for=condition=Ready', '--timeout=120s'], { timeoutMs: 130_000 });
  if (r.code === 0) return;
  const o = await getJson<Obj>(cluster, ['dbp', NAME, '-n', appNs]);
  throw new Error(`DatabaseProxy ${NAME} is not Ready: ${r.stderr.trim()}; conditions: ${JSON.stringify(o?.status?.conditions ?? [])}`);
}

function dbpSpec(tls: Obj): Obj {
  return {
    replicas: 1,
    target: { endpoints: [`127.0.0.1:${db!.port}`], database: 'postgres' },
    users: [
      { name: APP.name, passwordSecretRef: { name: SECRETS.app } },
      { name: BATCH.name, clientAuth: 'cert', backendCertificate: { secretName: SECRETS.batchCert } },
    ],
    tls,
    healthCheck: { user: APP.name },
    pool: { maxConnectionsPercent: 50 },
  };
}

beforeAll(async () => {
  appCa = makeCa('dbproxy e2e client-facing CA');
  dbCa = makeCa('dbproxy e2e database CA');
  const pgTls = postgresTlsSettings(dbCa, { ips: ['127.0.0.1'] });
  // PostgreSQL reads its CA file as the postgres user (when run as root): next to its own certificate.
  const pgCa = join(pgTls.ssl_cert_file!.replace(/^'|'$/g, '').replace(/\/[^/]+$/, ''), 'client-ca.crt');
  copyFileSync(dbCa.certFile, pgCa);
  db = startPostgres({ port: await freePort(), users: [APP, BATCH], maxConnections: 40, settings: { ...pgTls, ssl_ca_file: `'${pgCa}'` } });

  const client = (name: string, ca: TestCa): LeafCert => makeLeaf(ca, name, { cn: 'batch', usage: 'client', dir: tmpDir() });
  clientCerts = { batch: client('client-batch', appCa), batchFromDbCa: client('client-batch-db-ca', dbCa) };
  backendCert = client('backend-batch', dbCa);

  stack = await startE2eStack({ prefix: 'certs' });
  ({ cluster, appNamespace: appNs } = stack);
  // The proxy's serving certificate names the Service as clients in the cluster reach it.
  const svc = `${NAME}.${appNs}.svc`;
  const serving = makeLeaf(appCa, 'proxy', { dns: [NAME, `${NAME}.${appNs}`, svc, `${svc}.cluster.local`], dir: tmpDir() });

  await kubectlOk(cluster, ['create', 'secret', 'tls', SECRETS.tls, '-n', appNs, '--cert', serving.certFile, '--key', serving.keyFile]);
  await kubectlOk(cluster, ['create', 'secret', 'generic', SECRETS.clientCa, '-n', appNs, `--from-file=ca.crt=${appCa.certFile}`]);
  await kubectlOk(cluster, ['create', 'secret', 'generic', SECRETS.dbCa, '-n', appNs, `--from-file=ca.crt=${dbCa.certFile}`]);
  await kubectlOk(cluster, ['create', 'secret', 'generic', SECRETS.app, '-n', appNs, `--from-literal=password=${APP.password}`]);
  await kubectlOk(cluster, ['create', 'secret', 'tls', SECRETS.batchCert, '-n', appNs, '--cert', backendCert.certFile, '--key', backendCert.keyFile]);
  await applyDatabaseProxy(
    cluster,
    appNs,
    NAME,
    dbpSpec({
      secretName: SECRETS.tls,
      clientCaSecretRef: { name: SECRETS.clientCa },
      backend: { mode: 'verify-full', caSecretRef: { name: SECRETS.dbCa } },
    }),
  );
  await waitReady();
  serviceIp = await waitFor('the pod runner to serve the Service', async () => stack!.runner.serviceIp(appNs, NAME));
});

afterAll(async () => {
  await stack?.stop();
  db?.destroy();
});

test('batch logs in through the Service with its client certificate, and PostgreSQL sees the proxy log in with the mounted certificate', async () => {
  // The proxy checked the client's certificate against the mounted client CA, and logged in to
  // PostgreSQL (hostssl ... cert, ssl_ca_file = dbCa) with the backendCertificate Secret.
  const r = await psqlThrough('batch', `${WHO}, (SELECT client_serial FROM pg_stat_ssl WHERE pid = pg_backend_pid())`, { cert: clientCerts.batch });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout.trim()).toBe(`batch|/CN=batch|${decimalSerial(backendCert.cert)}`);
});

test('without a client certificate, or with one the client CA did not sign, batch is refused', async () => {
  const none = await psqlThrough('batch', 'SELECT 1');
  expect(none.code).not.toBe(0);
  expect(fatal(none)).toBe('connection requires a valid client certificate');
  // Signed by the database's CA, which the proxy trusts for the database only.
  const stranger = await psqlThrough('batch', 'SELECT 1', { cert: clientCerts.batchFromDbCa });
  expect(stranger.code).not.toBe(0);
  expect(fatal(stranger)).toMatch(/^client certificate verify failed: /);
  // A password gets batch nowhere either: its clients log in by certificate.
  const password = await psqlThrough('batch', 'SELECT 1', { password: BATCH.password });
  expect(fatal(password)).toBe('connection requires a valid client certificate');
});

test('the password user logs in with its password over TLS, with or without a certificate', async () => {
  for (const cert of [undefined, clientCerts.batch]) {
    const r = await psqlThrough(APP.name, 'SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())', { password: APP.password, ...(cert ? { cert } : {}) });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('app|t');
  }
  const wrong = await psqlThrough(APP.name, 'SELECT 1', { password: 'wrong' });
  expect(fatal(wrong)).toBe('password authentication failed for user "app"');
});

test('a rotated backendCertificate Secret reaches new database connections without a pod restart', async () => {
  const before = await proxyPods();
  expect(before).toHaveLength(1);
  const renewed = makeLeaf(dbCa, 'backend-batch-renewed', { cn: 'batch', usage: 'client', dir: tmpDir() });
  expect(serialOf(renewed.cert)).not.toBe(serialOf(backendCert.cert));
  // As cert-manager renews it: the same Secret, a new certificate.
  await kubectlOk(cluster, ['apply', '-f', '-'], await tlsSecret(SECRETS.batchCert, renewed));

  const sql = 'SELECT client_serial FROM pg_stat_ssl WHERE pid = pg_backend_pid()';
  const serial = await waitFor(
    'a new database connection for batch with the renewed certificate',
    async () => {
      // Close batch's pooled database connections, so the next client needs a new one.
      db!.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'batch'");
      const r = await psqlThrough('batch', sql, { cert: clientCerts.batch });
      if (r.code !== 0) throw new Error(r.stderr);
      const got = r.stdout.trim();
      if (got !== decimalSerial(renewed.cert)) throw new Error(`client_serial still ${got}`);
      return got;
    },
    60_000,
    500,
  );
  expect(serial).toBe(decimalSerial(renewed.cert));
  expect(await proxyPods()).toEqual(before);
});

test('kubectl apply of clientAuth cert without tls.clientCaSecretRef is refused with the CRD’s message', async () => {
  const spec = dbpSpec({ secretName: SECRETS.tls, backend: { mode: 'verify-full', caSecretRef: { name: SECRETS.dbCa } } });
  const r = await cluster.kubectl(['apply', '-f', '-'], { input: databaseProxyManifest(appNs, `${NAME}-no-client-ca`, spec) });
  expect(r.code).not.toBe(0);
  expect(r.stderr).toContain('users[].clientAuth cert needs tls.clientCaSecretRef: the CA bundle client certificates are checked against');
  expect(await getJson(cluster, ['dbp', `${NAME}-no-client-ca`, '-n', appNs])).toBeUndefined();
});
