// Fleet pause end to end: `kubectl patch dbp --patch '{"spec":{"paused":true}}'` pauses every
// proxy pod through the rendered config (the ConfigMap volume, reloaded in place: no pod is
// replaced), clients waiting for a new transaction on every pod, the one in a transaction
// finishing it; status Ready=False Paused (Argo CD: Suspended); `paused: false` lets the waiting
// clients run. On the pod runner, with the operator installed from the chart.
import { jest } from '@jest/globals';
import pg from 'pg';
import { type DatabasePair, sampleManifests, startDatabasePair } from '../../hack/demo/localStack.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { argoHealth } from '../support/argoHealth.js';
import { freePort } from '../support/harness.js';
import { getJson, kubectlOk, waitFor, type TestCluster } from '../operator/support/cluster.js';
import { startE2eStack, type E2eStack } from '../support/e2eStack.js';

jest.setTimeout(600_000);

const NAME = 'orders';
let stack: E2eStack | undefined;
let cluster: TestCluster;
let appNs: string;
let db: DatabasePair | undefined;
let serviceIp: string;
const clients: pg.Client[] = [];

type Obj = Record<string, any>;
const dbp = async (): Promise<Obj> => (await getJson<Obj>(cluster, ['dbp', NAME, '-n', appNs]))!;
const ready = (o: Obj): { status: string; reason: string; message: string } | undefined => o.status?.conditions?.find((c: { type: string }) => c.type === 'Ready');

async function pods(): Promise<Array<{ name: string; uid: string; ip: string }>> {
  const list = await getJson<Obj>(cluster, ['pods', '-n', appNs, '-l', `app.kubernetes.io/instance=${NAME}`]);
  return list!.items.filter((p: Obj) => p.status.podIP && !p.metadata.deletionTimestamp).map((p: Obj) => ({ name: p.metadata.name, uid: p.metadata.uid, ip: p.status.podIP }));
}

async function podStats(): Promise<ProxyStats[]> {
  return Promise.all((await pods()).map(async (p) => (await (await fetch(`http://${p.ip}:9090/stats`)).json()) as ProxyStats));
}

beforeAll(async () => {
  db = startDatabasePair({ primaryPort: await freePort(), standbyPort: await freePort(), maxConnections: 60 });
  stack = await startE2eStack({ prefix: 'pause' });
  ({ cluster, appNamespace: appNs } = stack);
  await kubectlOk(cluster, ['apply', '-f', '-'], sampleManifests({ namespace: appNs, name: NAME, db, replicas: 2, maxConnectionsPercent: 50 }));
  await kubectlOk(cluster, ['wait', `dbp/${NAME}`, '-n', appNs, '--for=condition=Ready', '--timeout=180s']);
  serviceIp = stack.runner.serviceIp(appNs, NAME)!;
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await stack?.stop();
  db?.stop();
});

test('spec.paused holds new transactions on every pod without replacing any; paused: false lets them run', async () => {
  // Enough clients that both pods have some (the Service balances each new connection).
  for (let i = 0; i < 12; i++) {
    const c = new pg.Client({ host: serviceIp, port: 5432, user: db!.user.name, password: db!.user.password, database: 'postgres' });
    await c.connect();
    expect((await c.query('SELECT 1 AS one')).rows[0].one).toBe(1);
    clients.push(c);
  }
  await waitFor('clients on both pods', async () => {
    const s = await podStats();
    return s.length === 2 && s.every((p) => p.clientConnections > 0);
  });
  const inTransaction = clients[0]!;
  await inTransaction.query('BEGIN');
  await inTransaction.query('SELECT txid_current()');
  const before = await pods();
  const deploymentBefore = await getJson<Obj>(cluster, ['deployment', NAME, '-n', appNs]);

  await kubectlOk(cluster, ['patch', 'dbp', NAME, '-n', appNs, '--type=merge', '--patch', '{"spec":{"paused":true}}']);
  const paused = await waitFor('Ready=False Paused', async () => {
    const o = await dbp();
    return ready(o)?.reason === 'Paused' && o.status.observedGeneration === o.metadata.generation ? o : undefined;
  }, 120_000, 250);
  expect(ready(paused)).toMatchObject({ status: 'False', message: expect.stringMatching(/^2 pods paused \(spec\.paused\): new transactions wait until spec\.paused is false/) });
  expect(await argoHealth(paused)).toMatchObject({ status: 'Suspended' });
  for (const s of await podStats()) expect(s).toMatchObject({ paused: true, pause: { config: true, admin: false } });

  // Every other client starts a transaction: each waits, on whichever pod it is.
  const results: Array<number | undefined> = new Array(clients.length).fill(undefined);
  const waiting = clients.slice(1).map((c, i) =>
    c.query('SELECT $1::int AS n', [i + 1]).then((r) => {
      results[i + 1] = r.rows[0].n as number;
    }),
  );
  await waitFor('every new transaction to wait, on both pods', async () => {
    const s = await podStats();
    return s.reduce((a, p) => a + p.waiting, 0) === clients.length - 1 && s.every((p) => p.waiting > 0);
  }, 30_000, 100);
  // The transaction in flight goes on and commits; nobody else got through meanwhile.
  expect((await inTransaction.query("SELECT 'still mine' AS s")).rows[0].s).toBe('still mine');
  await inTransaction.query('COMMIT');
  expect(results.filter((r) => r !== undefined)).toEqual([]);
  await waitFor('kubectl get dbp to count the waiting clients', async () => (await dbp()).status?.counts?.waiting === clients.length - 1, 30_000, 250);

  // Pausing went through the config file: the pods are the same ones, the Deployment did not roll.
  expect((await pods()).map((p) => p.uid).sort()).toEqual(before.map((p) => p.uid).sort());
  const deploymentAfter = await getJson<Obj>(cluster, ['deployment', NAME, '-n', appNs]);
  expect(deploymentAfter!.metadata.generation).toBe(deploymentBefore!.metadata.generation);

  await kubectlOk(cluster, ['patch', 'dbp', NAME, '-n', appNs, '--type=merge', '--patch', '{"spec":{"paused":false}}']);
  await Promise.all(waiting);
  expect(results.slice(1)).toEqual(clients.slice(1).map((_c, i) => i + 1));
  const resumed = await waitFor('Ready=True again', async () => {
    const o = await dbp();
    return ready(o)?.status === 'True' && o.status.observedGeneration === o.metadata.generation ? o : undefined;
  }, 120_000, 250);
  expect(await argoHealth(resumed)).toMatchObject({ status: 'Healthy' });
  for (const s of await podStats()) expect(s).toMatchObject({ paused: false, waiting: 0 });
  expect((await pods()).map((p) => p.uid).sort()).toEqual(before.map((p) => p.uid).sort());
});
