// End to end, every part together, as a user runs it: a PostgreSQL primary with a streaming
// standby; the shared test control plane (real kube-apiserver and kube-controller-manager) with the
// local pod runner standing in for kubelets; the operator installed with `helm upgrade --install`
// of charts/dbproxy (its pods run under the chart's RBAC and in-cluster config); a DatabaseProxy
// and its Secret applied with kubectl; clients connecting through the Service.
//
// The test is one story in four steps that share state, so they run in order.
import { jest } from '@jest/globals';
import pg from 'pg';
import { type DatabasePair, sampleManifests, startDatabasePair } from '../../hack/demo/localStack.js';
import type { PodRunner } from '../../hack/podRunner/podRunner.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { argoHealth } from '../support/argoHealth.js';
import { freePort } from '../support/harness.js';
import { getJson, kubectlOk, waitFor, type TestCluster } from '../operator/support/cluster.js';
import { startE2eStack, type E2eStack } from '../support/e2eStack.js';

jest.setTimeout(600_000);

const NAME = 'orders';
const MAX_CONNECTIONS = 60;
const MAX_CONNECTIONS_PERCENT = 50;
const BUDGET = Math.floor((MAX_CONNECTIONS * MAX_CONNECTIONS_PERCENT) / 100);

let stack: E2eStack | undefined;
let cluster: TestCluster;
let appNs: string;
let db: DatabasePair | undefined;
let runner: PodRunner;
let serviceIp: string;
const clients: pg.Client[] = [];

type DatabaseProxyObject = {
  metadata: { generation: number };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string; reason: string; message: string }>;
    counts?: { clientConnections?: number; databaseConnections?: number; borrowed?: number; pinned?: number; waiting?: number };
    writer?: string;
    replicas?: number;
    readyReplicas?: number;
    lastFailoverTime?: string;
    poolBudget?: number;
  };
};

const dbp = async (): Promise<DatabaseProxyObject> => (await getJson<DatabaseProxyObject>(cluster, ['dbp', NAME, '-n', appNs]))!;
const condition = (o: DatabaseProxyObject, type: string) => o.status?.conditions?.find((c) => c.type === type);

async function connect(): Promise<pg.Client> {
  const c = new pg.Client({ host: serviceIp, port: 5432, user: db!.user.name, password: db!.user.password, database: 'postgres' });
  c.on('error', () => {}); // a dropped idle client is asserted where it matters, not thrown at random
  await c.connect();
  return c;
}

/** The proxy pods' /stats, read from each ready pod as the operator does. */
async function podStats(): Promise<ProxyStats[]> {
  const pods = await getJson<{ items: Array<{ status: { podIP?: string; conditions?: Array<{ type: string; status: string }> } }> }>(cluster, [
    'pods',
    '-n',
    appNs,
    '-l',
    `app.kubernetes.io/instance=${NAME}`,
  ]);
  const ready = pods!.items.filter((p) => p.status.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
  return Promise.all(ready.map(async (p) => (await (await fetch(`http://${p.status.podIP}:9090/stats`)).json()) as ProxyStats));
}

/** Backend connections the proxies hold on `server` (health checks excluded), as PostgreSQL sees them. */
function backendConnections(server: DatabasePair['primary']): number {
  return Number(server.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename <> 'postgres' AND application_name <> 'dbproxy health check'"));
}

beforeAll(async () => {
  db = startDatabasePair({ primaryPort: await freePort(), standbyPort: await freePort(), maxConnections: MAX_CONNECTIONS });
  stack = await startE2eStack({ prefix: 'e2e' });
  ({ cluster, runner, appNamespace: appNs } = stack);
  await kubectlOk(cluster, ['apply', '-f', '-'], sampleManifests({ namespace: appNs, name: NAME, db, replicas: 2, maxConnectionsPercent: MAX_CONNECTIONS_PERCENT }));
  await kubectlOk(cluster, ['wait', `dbp/${NAME}`, '-n', appNs, '--for=condition=Ready', '--timeout=180s']);
  serviceIp = runner.serviceIp(appNs, NAME)!;
  expect(serviceIp).toBeDefined();
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await stack?.stop();
  db?.stop();
});

test('200 clients through the Service: kubectl get dbp shows the Borrowed and Pinned counts the pods report; a temp-table client is pinned', async () => {
  for (let i = 0; i < 200; i += 20) clients.push(...(await Promise.all(Array.from({ length: 20 }, () => connect()))));
  for (const c of clients.slice(0, 50)) expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);

  // Five clients inside transactions hold a connection each; one keeps a temporary table, which
  // pins its connection to its session.
  for (const c of clients.slice(0, 5)) await c.query('BEGIN; SELECT txid_current()');
  await clients[5]!.query('CREATE TEMPORARY TABLE cart (item int)');

  const expected = { clientConnections: 200, borrowed: 6, pinned: 1 };
  const seen = await waitFor('status counts 200 clients, 6 borrowed, 1 pinned', async () => {
    const o = await dbp();
    const c = o.status?.counts;
    return c?.clientConnections === 200 && c.borrowed === 6 && c.pinned === 1 ? o : undefined;
  }, 60_000, 250);

  // The counts are the sums of the pods' /stats.
  const stats = await podStats();
  expect(stats).toHaveLength(2);
  const sum = (f: (s: ProxyStats) => number): number => stats.reduce((a, s) => a + f(s), 0);
  expect({ clientConnections: sum((s) => s.clientConnections), borrowed: sum((s) => s.borrowed), pinned: sum((s) => s.pinned) }).toEqual(expected);

  // What a user types.
  const table = await kubectlOk(cluster, ['get', 'dbp', NAME, '-n', appNs]);
  const [header, row] = table.trim().split('\n');
  const columns = header!.split(/\s+/);
  const values = row!.split(/\s+/);
  const col = (name: string): string => values[columns.indexOf(name)]!;
  expect({ ready: col('READY'), clients: col('CLIENTS'), borrowed: col('BORROWED'), pinned: col('PINNED') }).toEqual({ ready: 'True', clients: '200', borrowed: '6', pinned: '1' });
  expect(condition(seen, 'Ready')!.message).toContain('200 clients, 6 borrowed, 1 pinned');
  const describe = await kubectlOk(cluster, ['describe', 'dbp', NAME, '-n', appNs]);
  expect(describe).toMatch(/pinned/);

  // Argo CD's health check on the live object.
  expect(await argoHealth(seen)).toMatchObject({ status: 'Healthy' });

  for (const c of clients.slice(0, 5)) await c.query('COMMIT');
});

test('failover: stop the primary, promote the standby; the status names the new writer and TargetReachable recovers', async () => {
  const before = await dbp();
  expect(before.status?.writer).toBe(`127.0.0.1:${db!.primary.port}`);
  db!.primary.stop('immediate');
  db!.standby.promote();

  const after = await waitFor('writer = the promoted standby and TargetReachable=True', async () => {
    const o = await dbp();
    return o.status?.writer === `127.0.0.1:${db!.standby.port}` && condition(o, 'TargetReachable')?.status === 'True' && condition(o, 'Ready')?.status === 'True' ? o : undefined;
  }, 60_000, 250);
  expect(after.status?.lastFailoverTime).toBeDefined();
  expect(condition(after, 'TargetReachable')!.message).toContain(`127.0.0.1:${db!.standby.port}`);

  // Idle clients were not in a transaction: they carry on, on the new writer.
  for (const c of clients.slice(10, 40)) {
    const r = await c.query('SELECT pg_is_in_recovery() AS standby, inet_server_port() AS port');
    expect(r.rows[0]).toEqual({ standby: false, port: db!.standby.port });
  }
  // The pinned session lived on a connection to the old writer: that one is gone, with an error.
  await expect(clients[5]!.query('SELECT count(*) FROM cart')).rejects.toThrow();
  expect(await argoHealth(after)).toMatchObject({ status: 'Healthy' });
});

test('kubectl scale dbp 2 -> 3 -> 1 under load: only in-flight errors, and PostgreSQL never sees more backend connections than the budget', async () => {
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  const writer = db!.standby; // promoted in the previous step
  const counters = { commits: 0, inFlight: 0, other: [] as string[] };
  let running = true;
  let maxBackends = 0;

  // The workload: 40 clients in a loop of short transactions; a client whose pod goes away
  // reconnects through the Service, as applications do.
  const worker = async (): Promise<void> => {
    let c: pg.Client | undefined;
    while (running) {
      try {
        c ??= await connect();
        await c.query('BEGIN');
        await c.query('SELECT pg_sleep(0.005)');
        await c.query('COMMIT');
        counters.commits += 1;
      } catch (e) {
        const err = e as { code?: string; message: string };
        // Connections a draining pod closes (57P01 admin shutdown, a reset or closed socket) are the
        // in-flight errors a scale-down may cause; anything else is a failure.
        if (err.code === '57P01' || /Connection terminated|ECONNRESET|ECONNREFUSED|not queryable|closed/i.test(err.message)) counters.inFlight += 1;
        else counters.other.push(`${err.code ?? ''} ${err.message}`);
        await c?.end().catch(() => {});
        c = undefined;
      }
    }
    await c?.end().catch(() => {});
  };
  const sampler = (async () => {
    while (running) {
      maxBackends = Math.max(maxBackends, backendConnections(writer));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const workers = Array.from({ length: 40 }, () => worker());

  // Scaling is progress, never a problem: Degraded must stay False throughout.
  const degradedSeen: string[] = [];
  const scaleTo = async (replicas: number): Promise<void> => {
    const commitsBefore = counters.commits;
    await kubectlOk(cluster, ['scale', 'dbp', NAME, '-n', appNs, `--replicas=${replicas}`]);
    await waitFor(`${replicas} ready replicas, no others, Ready=True`, async () => {
      const o = await dbp();
      const degraded = condition(o, 'Degraded');
      if (degraded?.status === 'True') degradedSeen.push(`${degraded.reason}: ${degraded.message}`);
      const pods = await getJson<{ items: unknown[] }>(cluster, ['pods', '-n', appNs, '-l', `app.kubernetes.io/instance=${NAME}`]);
      return o.status?.readyReplicas === replicas && o.status.replicas === replicas && pods!.items.length === replicas && condition(o, 'Ready')?.status === 'True' && o.status.observedGeneration === o.metadata.generation;
    }, 240_000, 500);
    await waitFor('transactions keep committing', () => counters.commits > commitsBefore + 50, 30_000);
  };

  try {
    await waitFor('the workload runs', () => counters.commits > 100, 30_000);
    await scaleTo(3);
    await scaleTo(1);
  } finally {
    running = false;
    await Promise.all(workers);
    await sampler;
  }

  if (process.env.DBPROXY_TEST_LOGS === '1') process.stderr.write(`[e2e] scale under load: ${counters.commits} commits, ${counters.inFlight} in-flight errors, at most ${maxBackends}/${BUDGET} backends\n`);
  expect(counters.other).toEqual([]);
  expect(degradedSeen).toEqual([]);
  expect(maxBackends).toBeGreaterThan(0);
  expect(maxBackends).toBeLessThanOrEqual(BUDGET);
  const final = await dbp();
  expect(final.status?.poolBudget).toBe(BUDGET);
  expect(runner!.running().filter((p) => p.name.startsWith(`${appNs}/`))).toHaveLength(1);
  expect(await argoHealth(final)).toMatchObject({ status: 'Healthy' });
});
