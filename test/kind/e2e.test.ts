// End to end on a real kind cluster: the image built from the repository's Dockerfile, running
// as real containers (containerd + runc) with the security context enforced, kube-proxy in front
// of the Services, CoreDNS, kubelet's probes and Secret volumes. hack/kind/cluster.sh creates the
// cluster (Docker where there is one, else podman with the node image hack/kind/install.sh builds
// without any registry) and removes it and its network afterwards, also when the run is killed.
//
// What a user does and sees: the operator installed with helm from charts/dbproxy into a
// namespace that enforces restricted Pod Security; PostgreSQL 15 as a primary and a streaming
// standby in pods; a DatabaseProxy with 2 replicas in front of them; an application pod (the
// Dockerfile's build stage running test/kind/support/clientDriver.ts with node-postgres) whose
// clients reach the proxy as `orders.shop.svc:5432`. The steps share the cluster and run in order.
import { jest } from '@jest/globals';
import { join } from 'node:path';
import { repoRoot } from '../../hack/repoRoot.js';
import { paths } from '../../operator/desired/common.js';
import { parseConfigYaml } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { argoHealth } from '../support/argoHealth.js';
import { makeCa, makeLeaf, serialOf, type TestCa } from '../support/certs.js';
import { waitFor } from '../operator/support/cluster.js';
import { IMAGE, restrictedNamespace, startKindCluster, type KindCluster } from './support/kindCluster.js';
import { CLIENT_POD, CLIENT_PORT, DB_NAME, DB_SECRET, DB_USER, clientPod, primaryManifests, standbyManifests } from './support/manifests.js';

jest.setTimeout(10 * 60_000);

const OPERATOR_NS = 'dbproxy-system';
const NS = 'shop';
const NAME = 'orders';
const SERVICE = `${NAME}.${NS}.svc`;
const MAX_CONNECTIONS = 60;
const MAX_CONNECTIONS_PERCENT = 50;
const BUDGET = Math.floor((MAX_CONNECTIONS * MAX_CONNECTIONS_PERCENT) / 100);
const DB_PASSWORD = 'kind-e2e-database-password';

type Condition = { type: string; status: string; reason: string; message: string };
type DatabaseProxyObject = {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    conditions?: Condition[];
    counts?: { clientConnections?: number; borrowed?: number; pinned?: number };
    writer?: string;
    replicas?: number;
    readyReplicas?: number;
    lastFailoverTime?: string;
    poolBudget?: number;
  };
};
type Pod = {
  metadata: { name: string; uid: string; labels?: Record<string, string>; deletionTimestamp?: string };
  status: { phase?: string; podIP?: string; conditions?: Array<{ type: string; status: string }> };
};
type LoadCounters = { commits: number; drained: number; connectErrors: string[]; other: string[]; maxBackends: number; samples: number };
type QueryResult = { rows?: Array<Record<string, unknown>>; error?: { code?: string; message: string } };

let kind: KindCluster;
/** Issues PostgreSQL's certificate (backend TLS) and the proxy's (client-facing TLS). */
let ca: TestCa;

const dbp = (name = NAME) => kind.getJson<DatabaseProxyObject>(['dbp', name, '-n', NS]);
const condition = (o: DatabaseProxyObject, type: string) => o.status?.conditions?.find((c) => c.type === type);
const pods = async (ns: string, selector?: string) => (await kind.getJson<{ items: Pod[] }>(['pods', '-n', ns, ...(selector ? ['-l', selector] : [])])).items;
const proxyPods = (name = NAME) => pods(NS, `app.kubernetes.io/instance=${name}`);
const isReady = (p: Pod) => p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;
const driver = <T>(path: string, body?: unknown) => kind.podHttp<T>(NS, CLIENT_POD, CLIENT_PORT, path, body);
const query = async (group: string, from: number, to: number, sql: string) => (await driver<{ results: QueryResult[] }>('/query', { group, from, to, sql })).results;

/** psql on the local socket of a PostgreSQL pod (trust there, as the image sets it up). */
async function psql(role: 'primary' | 'standby', sql: string): Promise<string> {
  return (await kind.kubectlOk(['exec', '-n', NS, `deploy/pg-${role}`, '-c', 'postgres', '--', 'psql', '-X', '-q', '-A', '-t', '-h', '/var/run/postgresql', '-U', DB_USER, '-d', DB_NAME, '-c', sql])).trim();
}

/** The writer as the proxy reports it: the endpoint it was given, resolved to the Service's address. */
async function endpointOf(role: 'primary' | 'standby'): Promise<string> {
  const svc = await kind.getJson<{ spec: { clusterIP: string } }>(['service', `pg-${role}`, '-n', NS]);
  return `${svc.spec.clusterIP}:5432`;
}

function databaseProxy(name: string, spec: Record<string, unknown>): unknown {
  return { apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', metadata: { name, namespace: NS }, spec };
}

/** Waits for condition Ready; when it does not come, the error says what the status and the pods say. */
async function waitReady(name: string): Promise<void> {
  const r = await kind.kubectl(['wait', `dbp/${name}`, '-n', NS, '--for=condition=Ready', '--timeout=300s']);
  if (r.code === 0) return;
  const describe = await kind.kubectl(['describe', 'dbp', name, '-n', NS]);
  const podList = await kind.kubectl(['get', 'pods', '-n', NS, '-o', 'wide']);
  const logs = await kind.kubectl(['logs', '-n', NS, '-l', `app.kubernetes.io/instance=${name}`, '--tail=40', '--prefix']);
  throw new Error(`DatabaseProxy ${name} did not become Ready: ${r.stderr}\n${describe.stdout}\n${podList.stdout}\n${logs.stdout}${logs.stderr}`);
}

const endpoints = [`pg-primary.${NS}.svc.cluster.local:5432`, `pg-standby.${NS}.svc.cluster.local:5432`];

/** A kubernetes.io/tls Secret as cert-manager writes it: the certificate, its key and the issuing CA. */
function tlsSecret(name: string, leaf: { cert: string; key: string }): unknown {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NS }, type: 'kubernetes.io/tls', stringData: { 'tls.crt': leaf.cert, 'tls.key': leaf.key, 'ca.crt': ca.pem } };
}

beforeAll(async () => {
  ca = makeCa('kind e2e CA');
  kind = await startKindCluster({ clientImage: true });
  await kind.apply([restrictedNamespace(OPERATOR_NS), restrictedNamespace(NS)]);
  // PostgreSQL serves TLS with a certificate for both Services' names (verify-full checks them: the last test).
  const dbNames = ['primary', 'standby'].flatMap((r) => [`pg-${r}.${NS}.svc.cluster.local`, `pg-${r}.${NS}.svc`]);
  await kind.apply([tlsSecret('pg-tls', makeLeaf(ca, 'postgres', { dns: dbNames }))]);
  await kind.helm([
    'install', 'dbproxy', join(repoRoot(), 'charts', 'dbproxy'), '--namespace', OPERATOR_NS,
    '--set', `image.repository=${IMAGE.repository}`, '--set', `image.tag=${IMAGE.tag}`, '--set', 'image.pullPolicy=Never',
    '--set', 'replicaCount=1', '--set', 'operator.statusInterval=1s', '--wait', '--timeout', '5m',
  ]);
  await kind.apply(primaryManifests(NS, { password: DB_PASSWORD, maxConnections: MAX_CONNECTIONS, tls: { secretName: 'pg-tls' } }));
  await kind.kubectlOk(['rollout', 'status', 'deployment/pg-primary', '-n', NS, '--timeout=300s']);
  await kind.apply([...standbyManifests(NS, { maxConnections: MAX_CONNECTIONS, tls: { secretName: 'pg-tls' } }), clientPod(NS)]);
  await kind.kubectlOk(['rollout', 'status', 'deployment/pg-standby', '-n', NS, '--timeout=300s']);
  await waitFor('the standby streams from the primary', async () => (await psql('primary', "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")) === '1', 60_000, 500);
  await kind.apply([
    databaseProxy(NAME, {
      replicas: 2,
      target: { endpoints, database: DB_NAME },
      users: [{ name: DB_USER, passwordSecretRef: { name: DB_SECRET } }],
      pool: { maxConnectionsPercent: MAX_CONNECTIONS_PERCENT },
    }),
  ]);
  await kind.kubectlOk(['wait', `pod/${CLIENT_POD}`, '-n', NS, '--for=condition=Ready', '--timeout=180s']);
  await waitReady(NAME);
}, 30 * 60_000);

afterAll(async () => {
  await kind?.stop();
}, 300_000);

test('restricted Pod Security: every pod is admitted, a root pod is refused; the proxy runs as uid 65532 without capabilities on a read-only root filesystem', async () => {
  for (const ns of [OPERATOR_NS, NS]) {
    const o = await kind.getJson<{ metadata: { labels: Record<string, string> } }>(['namespace', ns]);
    expect(o.metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  }
  const running = [...(await pods(OPERATOR_NS)), ...(await pods(NS))].map((p) => `${p.metadata.name}: ${p.status.phase}`);
  expect(running.filter((p) => !p.endsWith(': Running'))).toEqual([]);
  expect(running.length).toBeGreaterThanOrEqual(6); // operator, 2 proxies, primary, standby, clients

  // Admission is really enforcing: the same namespace refuses a pod that runs as root.
  const root = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'root', namespace: NS }, spec: { containers: [{ name: 'c', image: 'postgres:15', securityContext: { runAsUser: 0 } }] } };
  const refused = await kind.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(root) });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/violates PodSecurity "restricted:latest"/);

  // Inside a proxy container (distroless: no shell, but its node): what the kernel enforces.
  const [pod] = await proxyPods();
  const probe = [
    "const fs = require('fs');",
    "const st = Object.fromEntries(fs.readFileSync('/proc/self/status', 'utf8').split('\\n').map((l) => l.split(':\\t')));",
    "let rootWrite = 'written'; try { fs.writeFileSync('/probe', 'x'); } catch (e) { rootWrite = e.code; }",
    "const secret = fs.readdirSync('/var/run/secrets/dbproxy/users').filter((f) => !f.startsWith('.'));",
    "console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), capEff: st.CapEff, noNewPrivs: st.NoNewPrivs, seccomp: st.Seccomp, rootWrite, secret }));",
  ].join(' ');
  const seen = JSON.parse(await kind.kubectlOk(['exec', '-n', NS, pod!.metadata.name, '-c', 'proxy', '--', '/nodejs/bin/node', '-e', probe]));
  expect(seen).toEqual({ uid: 65532, gid: 65532, capEff: '0000000000000000', noNewPrivs: '1', seccomp: '2', rootWrite: 'EROFS', secret: [DB_USER] });
});

test('200 clients through the Service by DNS name from a pod: kubectl get dbp shows the counts the pods report in /stats; a temp-table client is pinned', async () => {
  expect(await driver('/open', { group: 'idle', count: 200, host: SERVICE })).toEqual({ open: 200 });
  const ones = await query('idle', 0, 50, 'SELECT 1 AS one');
  expect(ones.map((r) => r.rows?.[0]?.one)).toEqual(Array(50).fill(1));

  // Five clients inside transactions hold a backend each; one keeps a temporary table, which pins
  // its backend to its session.
  expect((await query('idle', 0, 5, 'BEGIN; SELECT txid_current()')).filter((r) => r.error)).toEqual([]);
  expect(await query('idle', 5, 6, 'CREATE TEMPORARY TABLE cart (item int)')).toEqual([{ rows: [] }]);

  const expected = { clientConnections: 200, borrowed: 6, pinned: 1 };
  const seen = await waitFor('status counts 200 clients, 6 borrowed, 1 pinned', async () => {
    const o = await dbp();
    const c = o.status?.counts;
    return c?.clientConnections === 200 && c.borrowed === 6 && c.pinned === 1 ? o : undefined;
  }, 60_000, 500);

  // The counts are the sums of what the ready pods report in /stats (read through the API server).
  const ready = (await proxyPods()).filter(isReady);
  expect(ready).toHaveLength(2);
  const stats = await Promise.all(ready.map((p) => kind.podHttp<ProxyStats>(NS, p.metadata.name, 9090, '/stats')));
  const sum = (f: (s: ProxyStats) => number): number => stats.reduce((a, s) => a + f(s), 0);
  expect({ clientConnections: sum((s) => s.clientConnections), borrowed: sum((s) => s.borrowed), pinned: sum((s) => s.pinned) }).toEqual(expected);
  // kube-proxy spread the 200 connections over both pods.
  expect(stats.every((s) => s.clientConnections > 0)).toBe(true);

  // What a user types.
  const [header, row] = (await kind.kubectlOk(['get', 'dbp', NAME, '-n', NS])).trim().split('\n');
  const columns = header!.split(/\s+/);
  const values = row!.split(/\s+/);
  const col = (name: string): string => values[columns.indexOf(name)]!;
  expect({ ready: col('READY'), writer: col('WRITER'), clients: col('CLIENTS'), borrowed: col('BORROWED'), pinned: col('PINNED') }).toEqual({
    ready: 'True',
    writer: await endpointOf('primary'),
    clients: '200',
    borrowed: '6',
    pinned: '1',
  });
  expect(condition(seen, 'Ready')!.message).toContain('200 clients, 6 borrowed, 1 pinned');
  expect(await argoHealth(seen)).toMatchObject({ status: 'Healthy' });

  expect((await query('idle', 0, 5, 'COMMIT')).filter((r) => r.error)).toEqual([]);
});

test('failover: the primary pod stops, the standby is promoted; the status names the new writer and idle clients carry on there', async () => {
  expect((await dbp()).status?.writer).toBe(await endpointOf('primary'));
  const standbyIp = (await pods(NS, 'app.kubernetes.io/component=standby'))[0]!.status.podIP;

  await kind.kubectlOk(['scale', 'deployment/pg-primary', '-n', NS, '--replicas=0']);
  await kind.kubectlOk(['wait', 'pod', '-n', NS, '-l', 'app.kubernetes.io/component=primary', '--for=delete', '--timeout=60s']);
  expect(await psql('standby', 'SELECT pg_promote()')).toBe('t');

  const standby = await endpointOf('standby');
  const after = await waitFor('writer = the promoted standby, TargetReachable and Ready', async () => {
    const o = await dbp();
    return o.status?.writer === standby && condition(o, 'TargetReachable')?.status === 'True' && condition(o, 'Ready')?.status === 'True' ? o : undefined;
  }, 90_000, 500);
  expect(after.status?.lastFailoverTime).toBeDefined();
  expect(condition(after, 'TargetReachable')!.message).toContain(standby);

  // Idle clients were not in a transaction: they carry on, on the promoted standby.
  const moved = await query('idle', 10, 40, 'SELECT pg_is_in_recovery() AS standby, host(inet_server_addr()) AS addr');
  expect(moved).toEqual(Array(30).fill({ rows: [{ standby: false, addr: standbyIp }] }));
  // The pinned session lived on a backend on the old primary: it is gone, with an error.
  const [pinned] = await query('idle', 5, 6, 'SELECT count(*) FROM cart');
  expect(pinned!.error).toBeDefined();
  expect(await argoHealth(after)).toMatchObject({ status: 'Healthy' });
  expect(await driver('/close', { group: 'idle' })).toEqual({ closed: 200 });
});

/** Runs `during` while 40 clients run short transactions through the Service; returns the counters. */
async function underLoad(during: (commits: () => Promise<number>) => Promise<void>): Promise<LoadCounters> {
  await driver('/load/start', { host: SERVICE, clients: 40, samplerHost: `pg-standby.${NS}.svc` });
  const commits = async () => (await driver<LoadCounters>('/load')).commits;
  let failure: unknown;
  try {
    await waitFor('the workload commits', async () => (await commits()) > 100, 60_000, 500);
    await during(commits);
  } catch (e) {
    failure = e;
  }
  const final = await driver<LoadCounters>('/load/stop', {});
  if (process.env.DBPROXY_TEST_LOGS === '1') process.stderr.write(`[kind e2e] load: ${JSON.stringify(final)}\n`);
  if (failure) throw failure;
  return final;
}

/** Waits until the DatabaseProxy has exactly `replicas` ready pods and no others, Ready=True, for its current generation. */
async function settled(replicas: number, degradedSeen: string[]): Promise<void> {
  await waitFor(`${replicas} ready replicas, no others, Ready=True`, async () => {
    const o = await dbp();
    const degraded = condition(o, 'Degraded');
    if (degraded?.status === 'True') degradedSeen.push(`${degraded.reason}: ${degraded.message}`);
    const all = await proxyPods();
    return (
      o.status?.readyReplicas === replicas &&
      o.status.replicas === replicas &&
      all.length === replicas &&
      all.every(isReady) &&
      condition(o, 'Ready')?.status === 'True' &&
      o.status.observedGeneration === o.metadata.generation
    );
  }, 300_000, 1000);
}

test('kubectl scale dbp 2 -> 3 -> 1 under load: no errors beyond connections closed by draining pods, and PostgreSQL never sees more backends than the budget', async () => {
  const degradedSeen: string[] = [];
  const counters = await underLoad(async (commits) => {
    for (const replicas of [3, 1]) {
      const before = await commits();
      await kind.kubectlOk(['scale', 'dbp', NAME, '-n', NS, `--replicas=${replicas}`]);
      await settled(replicas, degradedSeen);
      await waitFor('transactions keep committing', async () => (await commits()) > before + 50, 60_000, 500);
    }
  });
  expect(counters.other).toEqual([]);
  expect(counters.connectErrors).toEqual([]);
  expect(degradedSeen).toEqual([]);
  expect(counters.samples).toBeGreaterThan(10);
  expect(counters.maxBackends).toBeGreaterThan(0);
  expect(counters.maxBackends).toBeLessThanOrEqual(BUDGET);
  const final = await dbp();
  expect(final.status?.poolBudget).toBe(BUDGET);
  expect(await proxyPods()).toHaveLength(1);
  expect(await argoHealth(final)).toMatchObject({ status: 'Healthy' });
});

test('a rolling update of the proxy (a config change) under load through kube-proxy: no client errors beyond in-flight ones, every pod replaced', async () => {
  const degradedSeen: string[] = [];
  await kind.kubectlOk(['scale', 'dbp', NAME, '-n', NS, '--replicas=2']);
  await settled(2, degradedSeen);
  const oldPods = (await proxyPods()).map((p) => p.metadata.uid);

  const counters = await underLoad(async (commits) => {
    const before = await commits();
    await kind.kubectlOk(['patch', 'dbp', NAME, '-n', NS, '--type=merge', '-p', JSON.stringify({ spec: { pool: { borrowTimeout: '60s' } } })]);
    await waitFor('every proxy pod replaced', async () => {
      const now = await proxyPods();
      return now.length === 2 && now.every((p) => isReady(p) && !oldPods.includes(p.metadata.uid));
    }, 300_000, 1000);
    await settled(2, degradedSeen);
    await waitFor('transactions keep committing', async () => (await commits()) > before + 50, 60_000, 500);
  });
  expect(counters.other).toEqual([]);
  expect(counters.connectErrors).toEqual([]);
  expect(degradedSeen).toEqual([]);
  expect(counters.maxBackends).toBeLessThanOrEqual(BUDGET);
  // The new pods run the new configuration (read from inside one, parsed by the proxy's own parser).
  const [pod] = await proxyPods();
  const file = await kind.kubectlOk(['exec', '-n', NS, pod!.metadata.name, '-c', 'proxy', '--', '/nodejs/bin/node', '-e', `process.stdout.write(require('fs').readFileSync(${JSON.stringify(paths.configFile)}, 'utf8'))`]);
  expect(parseConfigYaml(file).pool.borrowTimeout).toBe(60_000);
});

describe('the secured setup: TLS on both sides, database passwords of their own, ServiceAccount tokens', () => {
  const TLS_NAME = 'secure';
  const host = `${TLS_NAME}.${NS}.svc`;
  const CLIENT_PASSWORD = 'client-facing-password';
  const audience = `dbproxy:${NS}/${TLS_NAME}`;
  const binding = `${NS}-${TLS_NAME}-token-review`;
  const ssl = () => ({ ca: ca.pem, servername: host });
  const norm = (serial: string) => serial.replace(/^0+/, '').toUpperCase();
  const peerSerial = async () => norm((await driver<{ serial: string }>('/tls/peer', { host, servername: host, ca: ca.pem })).serial);
  const token = async (aud: string) => (await kind.kubectlOk(['create', 'token', 'orders-api', '-n', NS, '--audience', aud])).trim();

  beforeAll(async () => {
    await kind.apply([
      tlsSecret(`${TLS_NAME}-tls`, makeLeaf(ca, 'proxy', { dns: [host, `${host}.cluster.local`] })),
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-ca', namespace: NS }, stringData: { 'ca.crt': ca.pem } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: `${TLS_NAME}-app`, namespace: NS }, stringData: { password: CLIENT_PASSWORD } },
      { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db-passwords', namespace: NS }, stringData: { [DB_USER]: DB_PASSWORD } },
      // The proxy's own ServiceAccount, allowed to create TokenReviews (the user's part of the setup).
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: `${TLS_NAME}-proxy`, namespace: NS } },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: binding },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:auth-delegator' },
        subjects: [{ kind: 'ServiceAccount', name: `${TLS_NAME}-proxy`, namespace: NS }],
      },
      // The application's identity.
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'orders-api', namespace: NS } },
      databaseProxy(TLS_NAME, {
        replicas: 1,
        target: { endpoints, database: DB_NAME },
        users: [{ name: DB_USER, passwordSecretRef: { name: `${TLS_NAME}-app` } }],
        backendAuth: { password: { secretName: 'db-passwords' } },
        pool: { maxConnectionsPercent: 20 },
        // verify-ca: the chain is checked against db-ca (verify-full: the last test).
        tls: { secretName: `${TLS_NAME}-tls`, requireTLS: true, backend: { mode: 'verify-ca', caSecretRef: { name: 'db-ca' } } },
        serviceAccountName: `${TLS_NAME}-proxy`,
        clientAuth: { iamAuth: 'OPTIONAL', serviceAccounts: { audience, mappings: [{ namespace: NS, serviceAccount: 'orders-api', user: DB_USER }] } },
      }),
    ]);
    await waitReady(TLS_NAME);
  });

  test('verify-full clients log in with the client-facing password; the proxy reaches PostgreSQL over TLS (verify-ca) with the database password; plaintext and the database password are refused', async () => {
    const sql = 'SELECT current_user AS u, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';
    // ssl is PostgreSQL's view of the proxy's backend connection.
    expect(await driver('/try', { host, ssl: ssl(), password: CLIENT_PASSWORD, sql })).toEqual({ rows: [{ u: DB_USER, ssl: true }] });
    const plain = await driver<QueryResult>('/try', { host, password: CLIENT_PASSWORD, sql: 'SELECT 1' });
    expect(plain.error?.message).toMatch(/TLS|SSL/);
    const wrong = await driver<QueryResult>('/try', { host, ssl: ssl(), password: DB_PASSWORD, sql: 'SELECT 1' });
    expect(wrong.error?.code).toBe('28P01');
    expect(wrong.error?.message).toMatch(/password authentication failed for user "app"/);
  });

  test('a ServiceAccount token for the proxy audience logs in as the mapped user (TokenReview); one for another audience does not', async () => {
    expect(await driver('/try', { host, ssl: ssl(), password: await token(audience), sql: 'SELECT current_user AS u' })).toEqual({ rows: [{ u: DB_USER }] });
    const other = await driver<QueryResult>('/try', { host, ssl: ssl(), password: await token('somewhere-else'), sql: 'SELECT 1' });
    expect(other.error?.code).toBe('28P01');
  });

  test('a renewed certificate in the Secret is served without restarting the pod; connected clients stay', async () => {
    const podsBefore = (await proxyPods(TLS_NAME)).map((p) => p.metadata.uid);
    await driver('/open', { group: 'tls', count: 1, host, ssl: ssl(), password: CLIENT_PASSWORD });
    const renewed = makeLeaf(ca, 'proxy-renewed', { dns: [host, `${host}.cluster.local`] });
    expect(await peerSerial()).not.toBe(norm(serialOf(renewed.cert)));
    await kind.apply([tlsSecret(`${TLS_NAME}-tls`, renewed)]);
    // The kubelet refreshes Secret volumes within about a minute; the proxy re-reads the files.
    await waitFor('the proxy to present the renewed certificate', async () => (await peerSerial()) === norm(serialOf(renewed.cert)), 180_000, 2000);
    expect((await proxyPods(TLS_NAME)).map((p) => p.metadata.uid)).toEqual(podsBefore);
    expect(await query('tls', 0, 1, 'SELECT 1 AS one')).toEqual([{ rows: [{ one: 1 }] }]);
    expect(await driver('/try', { host, ssl: ssl(), password: CLIENT_PASSWORD, sql: 'SELECT 2 AS two' })).toEqual({ rows: [{ two: 2 }] });
    await driver('/close', { group: 'tls' });
  });

  // The targets are Service names; the database's certificate names them, not their ClusterIPs
  // (as cert-manager's here, or RDS's for its endpoints). verify-full must check the name.
  test('verify-full with host-name targets: the certificate is checked against the name, the proxy becomes Ready and reaches PostgreSQL over TLS', async () => {
    await kind.apply([
      databaseProxy('strict', {
        replicas: 1,
        target: { endpoints, database: DB_NAME },
        users: [{ name: DB_USER, passwordSecretRef: { name: DB_SECRET } }],
        pool: { maxConnectionsPercent: 10 },
        tls: { backend: { mode: 'verify-full', caSecretRef: { name: 'db-ca' } } },
      }),
    ]);
    try {
      await waitReady('strict');
      const o = await dbp('strict');
      expect(condition(o, 'TargetReachable')?.status).toBe('True');
      expect(condition(o, 'TargetReachable')?.message).not.toMatch(/CONNECTION_FAILED/);
      const sql = 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()';
      expect(await driver('/try', { host: `strict.${NS}.svc`, password: DB_PASSWORD, sql })).toEqual({ rows: [{ ssl: true }] });
    } finally {
      await kind.kubectlOk(['delete', 'dbp', 'strict', '-n', NS, '--wait=false']);
    }
  });
});