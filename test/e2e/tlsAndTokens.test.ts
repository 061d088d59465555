// End to end, the secured setup a production user writes: client-facing TLS from a
// kubernetes.io/tls Secret with requireTLS, verify-full TLS to the database against a CA bundle
// Secret, database passwords in a Secret of their own (apart from the client-facing ones), and
// Kubernetes ServiceAccount tokens as passwords (TokenReview by the proxy's own ServiceAccount,
// bound to system:auth-delegator). The operator from the Helm chart renders all of it into the
// proxy config and the pod's mounts; the pod runner runs the pods with those files and the
// in-cluster API token; psql and node-postgres connect through the Service as applications do.
import { jest } from '@jest/globals';
import pg from 'pg';
import { stringify } from 'yaml';
import { type PgCluster, startPostgres } from '../../hack/postgres.js';
import type { PodRunner } from '../../hack/podRunner/podRunner.js';
import { makeCa, makeLeaf, postgresTlsSettings, serialOf, type TestCa } from '../support/certs.js';
import { freePort, pgBin, run } from '../support/harness.js';
import { getJson, kubectlOk, waitFor, type TestCluster } from '../operator/support/cluster.js';
import { startE2eStack, type E2eStack } from '../support/e2eStack.js';

jest.setTimeout(300_000);

const NAME = 'secure';
const CLIENT_PASSWORD = 'client-facing-password';
const DB_PASSWORD = 'database-only-password';

let stack: E2eStack | undefined;
let cluster: TestCluster;
let appNs: string;
let db: PgCluster | undefined;
let runner: PodRunner;
let ca: TestCa;
let serviceIp: string;
/** The name clients verify the proxy's certificate against (they connect to the Service IP). */
let serviceHost: string;
let audience: string;
const bindingName = (): string => `${appNs}-${NAME}-token-review`;

const tlsSecret = (leaf: { cert: string; key: string }) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: `${NAME}-tls`, namespace: appNs },
  type: 'kubernetes.io/tls',
  stringData: { 'tls.crt': leaf.cert, 'tls.key': leaf.key },
});

/** psql through the Service: TCP to its IP, TLS verified against the Service's DNS name (libpq's hostaddr). */
function psqlService(sql: string, o: { password: string; sslmode: string }) {
  const conninfo = `host=${serviceHost} hostaddr=${serviceIp} port=5432 user=app dbname=postgres sslmode=${o.sslmode} sslrootcert=${ca.certFile} connect_timeout=10`;
  return run(pgBin('psql'), ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', conninfo, '-c', sql], { PGPASSWORD: o.password });
}

async function nodePgClient(password: string): Promise<pg.Client> {
  const c = new pg.Client({ host: serviceIp, port: 5432, user: 'app', password, database: 'postgres', ssl: { ca: ca.pem, servername: serviceHost } });
  await c.connect();
  return c;
}

beforeAll(async () => {
  stack = await startE2eStack({ prefix: 'e2e-tls', operatorReplicas: 1 });
  ({ cluster, runner, appNamespace: appNs } = stack);
  serviceHost = `${NAME}.${appNs}.svc`;
  audience = `dbproxy:${appNs}/${NAME}`;

  // PostgreSQL with TLS; its certificate names 127.0.0.1, which is how the DatabaseProxy targets it.
  ca = makeCa();
  db = startPostgres({
    port: await freePort(),
    users: [{ name: 'app', password: DB_PASSWORD, auth: 'scram-sha-256' }],
    maxConnections: 30,
    settings: postgresTlsSettings(ca, { ips: ['127.0.0.1'] }),
  });

  const proxyCert = makeLeaf(ca, 'proxy', { dns: [serviceHost, `${serviceHost}.cluster.local`] });
  const objects = [
    tlsSecret(proxyCert),
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-ca', namespace: appNs }, stringData: { 'ca.crt': ca.pem } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${NAME}-app`, namespace: appNs }, stringData: { password: CLIENT_PASSWORD } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-passwords', namespace: appNs }, stringData: { app: DB_PASSWORD } },
    // The proxy's own ServiceAccount, allowed to create TokenReviews (the user's part of the setup).
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `${NAME}-proxy`, namespace: appNs } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: bindingName() },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' },
      subjects: [{ kind: 'ServiceAccount', name: `${NAME}-proxy`, namespace: appNs }],
    },
    // The application's identity.
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'orders-api', namespace: appNs } },
    {
      apiVersion: 'dbproxy.io/v1alpha1',
      kind: 'DatabaseProxy',
      metadata: { name: NAME, namespace: appNs },
      spec: {
        replicas: 1,
        target: { endpoints: [`127.0.0.1:${db.port}`], database: 'postgres' },
        users: [{ name: 'app', passwordSecretRef: { name: `${NAME}-app` } }],
        backendAuth: { password: { secretName: 'db-passwords' } },
        tls: { secretName: `${NAME}-tls`, requireTLS: true, backend: { mode: 'verify-full', caSecretRef: { name: 'db-ca' } } },
        serviceAccountName: `${NAME}-proxy`,
        clientAuth: { iamAuth: 'OPTIONAL', serviceAccounts: { audience, mappings: [{ namespace: appNs, serviceAccount: 'orders-api', user: 'app' }] } },
      },
    },
  ];
  await kubectlOk(cluster, ['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));
  await kubectlOk(cluster, ['wait', `dbp/${NAME}`, '-n', appNs, '--for=condition=Ready', '--timeout=180s']);
  serviceIp = runner.serviceIp(appNs, NAME)!;
  expect(serviceIp).toBeDefined();
});

afterAll(async () => {
  if (stack) await cluster.kubectl(['delete', 'clusterrolebinding', bindingName(), '--ignore-not-found']);
  await stack?.stop();
  db?.destroy();
});

test('psql with sslmode=verify-full logs in with the client-facing password; the proxy reached PostgreSQL over TLS with the database password', async () => {
  const r = await psqlService('SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()', { password: CLIENT_PASSWORD, sslmode: 'verify-full' });
  expect(r.stderr).toBe('');
  // current_user app, and the backend connection PostgreSQL sees (the proxy's) uses TLS.
  expect(r.stdout.trim()).toBe('app|t');
});

test('requireTLS refuses plaintext; the database password is no client password', async () => {
  const plain = await psqlService('SELECT 1', { password: CLIENT_PASSWORD, sslmode: 'disable' });
  expect(plain.code).not.toBe(0);
  expect(plain.stderr).toMatch(/TLS|SSL/);
  const wrong = await psqlService('SELECT 1', { password: DB_PASSWORD, sslmode: 'verify-full' });
  expect(wrong.code).not.toBe(0);
  expect(wrong.stderr).toMatch(/password authentication failed for user "app"/);
});

test('a ServiceAccount token for the proxy audience logs in as the mapped user; one for another audience does not', async () => {
  const token = (await kubectlOk(cluster, ['create', 'token', 'orders-api', '-n', appNs, '--audience', audience])).trim();
  const c = await nodePgClient(token);
  try {
    expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
  } finally {
    await c.end();
  }
  const other = (await kubectlOk(cluster, ['create', 'token', 'orders-api', '-n', appNs, '--audience', 'somewhere-else'])).trim();
  await expect(nodePgClient(other)).rejects.toMatchObject({ code: '28P01' });
});

test('a renewed certificate in the Secret is served without restarting the pod', async () => {
  const podsBefore = await getJson<{ items: Array<{ metadata: { uid: string } }> }>(cluster, ['pods', '-n', appNs, '-l', `app.kubernetes.io/instance=${NAME}`]);
  const renewed = makeLeaf(ca, 'proxy-renewed', { dns: [serviceHost] });
  await kubectlOk(cluster, ['apply', '-f', '-'], stringify(tlsSecret(renewed)));
  const want = serialOf(renewed.cert);
  await waitFor('the proxy to present the renewed certificate', async () => {
    const out = await run('openssl', ['s_client', '-connect', `${serviceIp}:5432`, '-starttls', 'postgres', '-servername', serviceHost], {}, '');
    const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out.stdout)?.[0];
    return pem !== undefined && serialOf(pem) === want;
  }, 60_000, 500);
  const podsAfter = await getJson<{ items: Array<{ metadata: { uid: string } }> }>(cluster, ['pods', '-n', appNs, '-l', `app.kubernetes.io/instance=${NAME}`]);
  expect(podsAfter!.items.map((p) => p.metadata.uid)).toEqual(podsBefore!.items.map((p) => p.metadata.uid));
  const r = await psqlService('SELECT 1', { password: CLIENT_PASSWORD, sslmode: 'verify-full' });
  expect(r.stdout.trim()).toBe('1');
});
