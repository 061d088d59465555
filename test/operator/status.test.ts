// Status from real proxies: there is no kubelet here, so the test plays it. For each pod the
// Deployment controller creates, it starts a real proxy (ProxyServer, in-process) with the config
// the operator rendered into the ConfigMap, in front of a real PostgreSQL, listening on the pod's
// own loopback address (127.a.b.21, 127.a.b.22: Linux routes all of 127/8 to lo) with the admin
// port 9090, as in a pod; then it marks the pod Running and Ready with that podIP through the API.
// The operator reads each pod's /stats at podIP:9090 and the conditions move Progressing -> Ready;
// the counts in the status are the sums of the pods' /stats, and the Ready message says how many
// connections are borrowed and pinned.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { jest } from '@jest/globals';
import pg from 'pg';
import { pino } from 'pino';
import { parse as parseYaml } from 'yaml';
import type { PgCluster } from '../../hack/postgres.js';
import { parseConfig } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { ProxyServer } from '../../proxy/proxyServer.js';
import { makeCa, makeLeaf } from '../support/certs.js';
import { USERS, startCluster, writePasswordFiles } from '../support/harness.js';
import { startLocalSts, type LocalSts } from '../support/localSts.js';
import { createNamespace, deleteNamespace, getJson, applyDatabaseProxy, kubectlOk, sharedCluster, waitFor, type TestCluster } from './support/cluster.js';
import { startTestOperator, type TestOperator } from './support/operator.js';

jest.setTimeout(120_000);

// Two loopback addresses no other test (or concurrent run on this machine) is likely to bind.
const octet = () => 2 + Math.floor(Math.random() * 250);
const subnet = `127.${octet()}.${octet()}`;
const POD_IPS = [`${subnet}.21`, `${subnet}.22`];

let cluster: TestCluster;
let ns: string;
let op: TestOperator | undefined;
let db: PgCluster | undefined;
const proxies: Array<{ server: ProxyServer; ip: string; port: number; pod: string }> = [];
const clients: pg.Client[] = [];

beforeAll(async () => {
  cluster = sharedCluster();
  ns = await createNamespace(cluster, 'op-status');
  db = await startCluster({ maxConnections: 40 });
  op = await startTestOperator(cluster, { namespace: ns, statusIntervalMs: 300 });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await Promise.all(proxies.map((p) => p.server.shutdown(1000).catch(() => {})));
  await op?.stop();
  db?.stop();
  if (cluster && ns) await deleteNamespace(cluster, ns);
});

const dbp = () => getJson(cluster, ['dbp', 'orders', '-n', ns]);
const condition = (obj: any, type: string) => obj?.status?.conditions?.find((c: { type: string }) => c.type === type);

async function readStats(ip: string): Promise<ProxyStats> {
  const r = await fetch(`http://${ip}:9090/stats`);
  return (await r.json()) as ProxyStats;
}

/** What a kubelet would report for a started, ready pod. Ready "since" long ago, so minReadySeconds is already over. */
function readyPodStatus(ip: string): Record<string, unknown> {
  const since = new Date(Date.now() - 5 * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const cond = (type: string) => ({ type, status: 'True', lastTransitionTime: since });
  return {
    phase: 'Running',
    podIP: ip,
    podIPs: [{ ip }],
    hostIP: '127.0.0.1',
    startTime: since,
    conditions: [cond('PodScheduled'), cond('Initialized'), cond('ContainersReady'), cond('Ready')],
    containerStatuses: [{ name: 'proxy', ready: true, started: true, restartCount: 0, image: 'registry.example/dbproxy:test', imageID: '', state: { running: { startedAt: since } } }],
  };
}

test('conditions move Progressing -> Ready as pods become ready and report /stats; counts are the sums of /stats', async () => {
  await kubectlOk(cluster, ['create', 'secret', 'generic', 'app-password', '-n', ns, `--from-literal=password=${USERS[0]!.password}`]);
  await applyDatabaseProxy(cluster, ns, 'orders', { replicas: 2, target: { host: '127.0.0.1', port: db!.port }, users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }] });

  // Pods exist but nothing runs them: Progressing, not Ready.
  const pods = await waitFor('2 pods', async () => {
    const list = await getJson(cluster, ['pods', '-n', ns, '-l', 'app.kubernetes.io/instance=orders']);
    return list?.items.length === 2 ? (list.items as Array<{ metadata: { name: string } }>) : undefined;
  });
  const early = await waitFor('a first status', async () => {
    const d = await dbp();
    return condition(d, 'Progressing') ? d : undefined;
  });
  expect(condition(early, 'Progressing')).toMatchObject({ status: 'True' });
  expect(condition(early, 'Ready')).toMatchObject({ status: 'False', reason: 'NoReplicasReady' });

  // Be the kubelet: run each pod's proxy with the ConfigMap's config, on the pod's own address.
  const cm = await getJson(cluster, ['configmap', 'orders-config', '-n', ns]);
  const rendered = parseYaml(cm!.data['config.yaml']) as Record<string, unknown>;
  const files = writePasswordFiles(USERS.filter((u) => u.name === 'app'));
  for (const [i, pod] of pods.entries()) {
    const ip = POD_IPS[i]!;
    const config = parseConfig({
      ...rendered,
      listen: `${ip}:0`, // the Service port does not matter here; clients connect to the pod directly
      adminListen: `${ip}:9090`, // where the operator reads /stats, as in the pod
      users: files.users, // the mounted Secret, materialized
      healthCheck: { ...(rendered.healthCheck as object), interval: '200ms' },
      replicaId: i,
    });
    expect(config.pool.divisor).toBe(3); // the divisor the operator chose for 2 replicas
    const server = await ProxyServer.create({ config, log: pino({ level: 'silent' }) });
    const { port } = await server.start();
    await server.whenReady();
    proxies.push({ server, ip, port, pod: pod.metadata.name });
    await kubectlOk(cluster, ['patch', 'pod', pod.metadata.name, '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: readyPodStatus(ip) })]);
  }

  const ready = await waitFor(
    'Ready=True',
    async () => {
      const d = await dbp();
      return condition(d, 'Ready')?.status === 'True' ? d : undefined;
    },
    30_000,
  );
  expect(condition(ready, 'Ready')).toMatchObject({ reason: 'ProxyReady' });
  expect(condition(ready, 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutComplete' });
  expect(condition(ready, 'Available')).toMatchObject({ status: 'True', reason: 'ReplicasReady' });
  expect(condition(ready, 'TargetReachable')).toMatchObject({ status: 'True', reason: 'WriterAvailable' });
  expect(condition(ready, 'Degraded')).toMatchObject({ status: 'False' });
  // Progressing moved to False after the first status: its lastTransitionTime moved with it.
  expect(Date.parse(condition(ready, 'Progressing').lastTransitionTime)).toBeGreaterThanOrEqual(Date.parse(condition(early, 'Progressing').lastTransitionTime));
  expect(ready.status).toMatchObject({
    writer: `127.0.0.1:${db!.port}`,
    targetMaxConnections: 40,
    poolBudget: 36,
    poolDivisor: 3,
    readyReplicas: 2,
    replicas: 2,
    endpoint: `orders.${ns}.svc:5432`,
    observedGeneration: ready.metadata.generation,
  });

  // Load: an idle client and one in a transaction on the first pod, a pinned session (temporary
  // table) on the second.
  const connect = async (port: number, ip: string): Promise<pg.Client> => {
    const c = new pg.Client({ host: ip, port, user: 'app', password: USERS[0]!.password, database: 'postgres' });
    c.on('error', () => {}); // the proxies stop before the clients at the end
    await c.connect();
    clients.push(c);
    return c;
  };
  await connect(proxies[0]!.port, proxies[0]!.ip);
  const inTx = await connect(proxies[0]!.port, proxies[0]!.ip);
  await inTx.query('BEGIN');
  await inTx.query('SELECT 1');
  const pinned = await connect(proxies[1]!.port, proxies[1]!.ip);
  await pinned.query('CREATE TEMPORARY TABLE scratch (x int)');

  const stats = await Promise.all(proxies.map((p) => readStats(p.ip)));
  const sum = (f: (s: ProxyStats) => number) => stats.reduce((a, s) => a + f(s), 0);
  const expected = {
    clientConnections: sum((s) => s.clientConnections),
    databaseConnections: sum((s) => s.databaseConnections),
    borrowed: sum((s) => s.borrowed),
    pinned: sum((s) => s.pinned),
    waiting: sum((s) => s.waiting),
    borrowTimeouts: sum((s) => s.borrowTimeouts),
  };
  expect(expected).toMatchObject({ clientConnections: 3, borrowed: 2, pinned: 1, waiting: 0 });

  const loaded = await waitFor(
    'the counts in the status',
    async () => {
      const d = await dbp();
      if (isDeepStrictEqual(d?.status?.counts, expected)) return d;
      throw new Error(`status counts ${JSON.stringify(d?.status?.counts)}, /stats sums ${JSON.stringify(expected)}`);
    },
    30_000,
  );
  const message = condition(loaded, 'Ready').message as string;
  expect(message).toContain(`${expected.borrowed} borrowed`);
  expect(message).toContain(`${expected.pinned} pinned`);
  expect(message).toContain('3 clients');
  expect(message).toContain(`writer 127.0.0.1:${db!.port}`);

  // kubectl get dbp shows them in the printer columns, kubectl describe in the conditions.
  const row = (await kubectlOk(cluster, ['get', 'dbp', 'orders', '-n', ns, '--no-headers'])).trim().split(/\s+/);
  expect(row.slice(0, 6)).toEqual(['orders', 'True', `127.0.0.1:${db!.port}`, '3', '2', '1']);
  const describe = await kubectlOk(cluster, ['describe', 'dbp', 'orders', '-n', ns]);
  expect(describe).toContain('2 borrowed, 1 pinned');

  // The load goes away, and so do the counts.
  await inTx.query('COMMIT');
  await Promise.all(clients.splice(0).map((c) => c.end()));
  await waitFor('zero clients in the status', async () => (await dbp())?.status?.counts?.clientConnections === 0, 30_000);
});

test('a pod whose /stats cannot be read makes the proxy Degraded, not silently wrong', async () => {
  // Stop the second pod's proxy but leave the pod Ready, as a hung container would.
  const gone = proxies.pop()!;
  await gone.server.shutdown(1000);
  const degraded = await waitFor(
    'Degraded=True',
    async () => {
      const d = await dbp();
      return condition(d, 'Degraded')?.status === 'True' ? d : undefined;
    },
    30_000,
  );
  expect(condition(degraded, 'Degraded')).toMatchObject({ reason: 'StatsUnavailable', message: expect.stringContaining('could not read /stats from 1 pod') });
  expect(condition(degraded, 'Ready')).toMatchObject({ status: 'False' });
});

describe('IAMReady: the pods\' AWS identity, from STS through /stats to the status', () => {
  const ROLE = 'arn:aws:iam::123456789012:role/orders-proxy';
  const NODE_ROLE = 'arn:aws:iam::123456789012:role/eks-node-group';
  const TOKEN = 'eyJ.projected-token.sig';
  const IP = `${subnet}.23`;
  const ENV = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_SESSION_NAME', 'AWS_REGION', 'AWS_ENDPOINT_URL_STS', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_EC2_METADATA_DISABLED'];
  const saved: Record<string, string | undefined> = {};
  let sts: LocalSts;
  let dir: string;
  let running: ProxyServer | undefined;
  const irsa = () => getJson(cluster, ['dbp', 'irsa', '-n', ns]);

  beforeAll(async () => {
    const ca = makeCa();
    sts = await startLocalSts({ tls: makeLeaf(ca, 'sts', { dns: ['localhost'], ips: ['127.0.0.1'] }), webIdentity: [{ roleArn: ROLE, token: TOKEN }, { roleArn: NODE_ROLE, token: TOKEN }] });
    dir = mkdtempSync(join(tmpdir(), 'dbproxy-irsa-'));
    writeFileSync(join(dir, 'token'), TOKEN);
    for (const k of ENV) saved[k] = process.env[k];
  });

  afterAll(async () => {
    await running?.shutdown(1000);
    await sts?.close();
    for (const k of ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  /** The pod's environment as IRSA would set it if the role it names could be assumed; then its proxy, on the pod's address. */
  async function runPod(pod: string, assumedRole: string): Promise<void> {
    for (const k of ENV) delete process.env[k];
    Object.assign(process.env, {
      AWS_ROLE_ARN: assumedRole,
      AWS_WEB_IDENTITY_TOKEN_FILE: join(dir, 'token'),
      AWS_ROLE_SESSION_NAME: pod,
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_STS: sts.httpUrl,
      AWS_CONFIG_FILE: join(dir, 'none'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    const cm = await getJson(cluster, ['configmap', 'irsa-config', '-n', ns]);
    const rendered = parseYaml(cm!.data['config.yaml']) as Record<string, unknown>;
    expect(rendered.awsIdentity).toEqual({ expectedRoleArn: ROLE });
    await running?.shutdown(1000);
    running = await ProxyServer.create({
      config: parseConfig({ ...rendered, listen: `${IP}:0`, adminListen: `${IP}:9090`, users: writePasswordFiles(USERS.filter((u) => u.name === 'app')).users, healthCheck: { ...(rendered.healthCheck as object), interval: '200ms' } }),
      log: pino({ level: 'silent' }),
    });
    await running.start();
    await running.whenReady();
    await kubectlOk(cluster, ['patch', 'pod', pod, '-n', ns, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status: readyPodStatus(IP) })]);
  }

  test('the node\'s role instead of the DatabaseProxy\'s: IAMReady=False WrongRole, Degraded; the right role: IAMReady=True with its ARN', async () => {
    await applyDatabaseProxy(cluster, ns, 'irsa', { replicas: 1, iam: { roleArn: ROLE }, target: { host: '127.0.0.1', port: db!.port }, users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }] });
    const pod = await waitFor('the pod', async () => (await getJson(cluster, ['pods', '-n', ns, '-l', 'app.kubernetes.io/instance=irsa']))?.items[0]?.metadata.name as string | undefined);
    await runPod(pod, NODE_ROLE);
    const wrong = await waitFor('IAMReady=False', async () => {
      const d = await irsa();
      return condition(d, 'IAMReady')?.status === 'False' ? d : undefined;
    }, 30_000);
    expect(condition(wrong, 'IAMReady')).toMatchObject({
      reason: 'WrongRole',
      message: `1 pod: the pods run as arn:aws:sts::123456789012:assumed-role/eks-node-group/${pod}, not as ${ROLE}`,
      observedGeneration: wrong.metadata.generation,
    });
    expect(condition(wrong, 'Degraded')).toMatchObject({ status: 'True', reason: 'AwsIdentityFailed' });
    expect(condition(wrong, 'Ready')).toMatchObject({ status: 'False', reason: 'AwsIdentityFailed' });
    expect(await kubectlOk(cluster, ['get', 'dbp', 'irsa', '-n', ns, '-o', 'jsonpath={.status.conditions[?(@.type=="IAMReady")].reason}'])).toBe('WrongRole');

    await runPod(pod, ROLE); // the annotation fixed, the pod replaced
    const good = await waitFor('IAMReady=True', async () => {
      const d = await irsa();
      return condition(d, 'IAMReady')?.status === 'True' ? d : undefined;
    }, 30_000);
    expect(condition(good, 'IAMReady')).toMatchObject({ reason: 'IdentityVerified', message: `the pods run as ${ROLE} (STS: arn:aws:sts::123456789012:assumed-role/orders-proxy/${pod})` });
    expect(condition(good, 'Degraded')).toMatchObject({ status: 'False' });
    await waitFor('Ready=True', async () => condition(await irsa(), 'Ready')?.status === 'True', 30_000);
  });
});
