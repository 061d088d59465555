// Watches that survive what API servers do: a restart in the middle of a watch (graceful, and a
// crash), after which spec changes are still reconciled; and 410 Gone for a resourceVersion that
// is too old, after which the informer lists again. This file restarts its API server, so it runs
// its own control plane rather than disturb the shared one.
import { jest } from '@jest/globals';
import { pino } from 'pino';
import { KubeClient } from '../../operator/runtime/client.js';
import { Informer } from '../../operator/runtime/informer.js';
import { type KubeObject } from '../../operator/runtime/resources.js';
import { resources } from '../../operator/controller/resources.js';
import { OPERATOR_NAMESPACE, createNamespace, getJson, applyDatabaseProxy, kubectlOk, startDedicatedCluster, waitFor, type TestCluster } from './support/cluster.js';
import { metricValue, startTestOperator, type TestOperator } from './support/operator.js';

jest.setTimeout(180_000);

let cluster: (TestCluster & { cp: { restartApiServer(o?: { kill?: boolean }): Promise<void>; stop(): Promise<void> } }) | undefined;
let ns: string;
let op: TestOperator | undefined;

beforeAll(async () => {
  cluster = await startDedicatedCluster();
  ns = await createNamespace(cluster, 'op-restart');
  // A lease long enough that the leader keeps leading through the restarts: this is about watches.
  op = await startTestOperator(cluster, {
    namespace: ns,
    leaderElection: { namespace: OPERATOR_NAMESPACE, name: 'dbproxy-operator', leaseDurationMs: 40_000, renewDeadlineMs: 30_000, retryPeriodMs: 500 },
  });
  await waitFor('the operator to lead with synced caches', () => op!.isLeader() && op!.controller()?.hasSynced());
});

afterAll(async () => {
  await op?.stop();
  await cluster?.cp.stop();
});

const configHash = async () => (await getJson(cluster!, ['deployment', 'orders', '-n', ns]))?.spec.template.metadata.annotations['dbproxy.io/config-hash'] as string | undefined;

async function changeSpecAndWaitForRollout(borrowTimeout: string, previous: string | undefined): Promise<string> {
  await kubectlOk(cluster!, ['patch', 'dbp', 'orders', '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { pool: { borrowTimeout } } })]);
  return waitFor(`a new config hash after borrowTimeout=${borrowTimeout}`, async () => {
    const h = await configHash();
    return h && h !== previous ? h : undefined;
  }, 60_000);
}

test('an API server restart in the middle of a watch is survived: spec changes are still reconciled', async () => {
  await applyDatabaseProxy(cluster!, ns, 'orders', { target: { host: 'db.example.internal' }, users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }] });
  let hash = await waitFor('the Deployment', configHash, 30_000);
  const restartsBefore = await metricValue(op!, 'dbproxy_operator_watch_restarts_total');

  // Graceful restart: the watches are closed by the server.
  await cluster!.cp.restartApiServer();
  hash = await changeSpecAndWaitForRollout('31s', hash);

  // Crash: the connections are reset.
  await cluster!.cp.restartApiServer({ kill: true });
  hash = await changeSpecAndWaitForRollout('32s', hash);

  expect(await metricValue(op!, 'dbproxy_operator_watch_restarts_total')).toBeGreaterThan(restartsBefore);
  expect(op!.isLeader()).toBe(true);
  // A child deleted after the restarts is noticed (the child informers came back too).
  await kubectlOk(cluster!, ['delete', 'configmap', 'orders-config', '-n', ns]);
  await waitFor('the ConfigMap to be recreated', async () => (await getJson(cluster!, ['configmap', 'orders-config', '-n', ns])) !== undefined, 30_000);
});

test('410 Gone: an informer whose resourceVersion is too old lists again', async () => {
  const client = KubeClient.create({ kubeconfig: cluster!.operatorKubeconfigPath });
  const relists: string[] = [];
  const informer = new Informer<KubeObject>({
    client,
    resource: resources.databaseProxies,
    namespace: ns,
    log: pino({ level: 'silent' }),
    initialResourceVersion: '1', // long compacted away from the watch cache
    onRelist: (reason) => relists.push(reason),
  });
  const seen: string[] = [];
  informer.onChange((type, o) => seen.push(`${type} ${o.metadata.name}`));
  informer.start();
  try {
    await waitFor('the informer to sync after 410', () => informer.hasSynced(), 30_000);
    expect(relists).toEqual(['gone']);
    expect(informer.list().map((o) => o.metadata.name)).toEqual(['orders']);
    // One add from the relist; later updates (the operator writing status) are fine, deletes are not.
    expect(seen[0]).toBe('add orders');
    expect(seen.filter((e) => !e.startsWith('update '))).toEqual(['add orders']);
  } finally {
    await informer.stop();
    client.close();
  }
});
