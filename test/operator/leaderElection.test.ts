// Two operator processes, one Lease: exactly one leads and reconciles; when the leader dies
// without a word the other takes over once the lease has expired; when a leader stops properly it
// releases the Lease and the next one takes over at once.
import { jest } from '@jest/globals';
import { createNamespace, deleteNamespace, getJson, applyDatabaseProxy, kubectlOk, OPERATOR_NAMESPACE, sharedCluster, waitFor, type TestCluster } from './support/cluster.js';
import { metricValue, operatorHttp, startTestOperator, type TestOperator } from './support/operator.js';

jest.setTimeout(120_000);

const LEASE_MS = 6_000;
let cluster: TestCluster;
let ns: string;
let leaseName: string;
const operators: TestOperator[] = [];

async function start(identity: string): Promise<TestOperator> {
  const op = await startTestOperator(cluster, {
    namespace: ns,
    identity,
    leaderElection: { namespace: OPERATOR_NAMESPACE, name: leaseName, leaseDurationMs: LEASE_MS, renewDeadlineMs: 4_000, retryPeriodMs: 250 },
  });
  operators.push(op);
  return op;
}

const lease = () => getJson(cluster, ['lease', leaseName, '-n', OPERATOR_NAMESPACE]);
const configHash = async () => (await getJson(cluster, ['deployment', 'orders', '-n', ns]))?.spec.template.metadata.annotations['dbproxy.io/config-hash'] as string | undefined;

beforeAll(async () => {
  cluster = sharedCluster();
  ns = await createNamespace(cluster, 'op-leader');
  leaseName = `dbproxy-operator-${ns}`;
});

afterAll(async () => {
  await Promise.all(operators.map((o) => o.stop()));
  if (cluster && ns) {
    await deleteNamespace(cluster, ns);
    await cluster.kubectl(['delete', 'lease', leaseName, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
  }
});

test('two operators elect one leader; only the leader reconciles; the standby takes over when the leader dies or steps down', async () => {
  const a = await start('operator-a');
  const b = await start('operator-b');
  const first = await waitFor('one leader', () => {
    const leaders = [a, b].filter((o) => o.isLeader());
    return leaders.length === 1 ? leaders[0] : undefined;
  });
  const standby = first === a ? b : a;
  expect((await lease())!.spec.holderIdentity).toBe(first.identity);

  await applyDatabaseProxy(cluster, ns, 'orders', { target: { host: 'db.example.internal' }, users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }] });
  const hash1 = await waitFor('the Deployment', configHash);
  await waitFor('a finished reconcile', async () => (await metricValue(first, 'dbproxy_operator_reconcile_total')) > 0);
  // The standby watches nothing and reconciles nothing, and is still ready (it serves as a spare).
  expect(standby.isLeader()).toBe(false);
  expect(await metricValue(standby, 'dbproxy_operator_reconcile_total')).toBe(0);
  expect(standby.requests.filter((r) => r.resource !== 'leases')).toEqual([]);
  expect(await operatorHttp(standby, '/readyz')).toEqual({ status: 200, body: 'standby (not the leader)\n' });
  expect(await metricValue(standby, 'dbproxy_operator_leader')).toBe(0);
  expect(await metricValue(first, 'dbproxy_operator_leader')).toBe(1);

  // The leader dies without releasing the Lease: the standby waits out the lease duration.
  const crashedAt = Date.now();
  await first.stop({ releaseLease: false });
  await waitFor('the standby to lead', () => standby.isLeader(), 30_000, 50);
  const takeoverMs = Date.now() - crashedAt;
  expect(takeoverMs).toBeGreaterThanOrEqual(LEASE_MS - 1_000);
  const afterCrash = await lease();
  expect(afterCrash!.spec.holderIdentity).toBe(standby.identity);
  expect(afterCrash!.spec.leaseTransitions).toBeGreaterThanOrEqual(1);

  // The new leader reconciles.
  await kubectlOk(cluster, ['patch', 'dbp', 'orders', '-n', ns, '--type=merge', '-p', '{"spec":{"pool":{"borrowTimeout":"30s"}}}']);
  const hash2 = await waitFor('a new config hash from the new leader', async () => {
    const h = await configHash();
    return h && h !== hash1 ? h : undefined;
  });

  // A third operator joins; the leader stops properly and hands over at once (no lease wait).
  const c = await start('operator-c');
  await waitFor('c to read the Lease', () => c.requests.filter((r) => r.resource === 'leases' && r.verb === 'get').length >= 2);
  expect(c.isLeader()).toBe(false);
  const steppedDownAt = Date.now();
  await standby.stop();
  await waitFor('c to lead', () => c.isLeader(), 30_000, 50);
  expect(Date.now() - steppedDownAt).toBeLessThan(LEASE_MS - 1_000);
  expect((await lease())!.spec.holderIdentity).toBe(c.identity);
  await kubectlOk(cluster, ['patch', 'dbp', 'orders', '-n', ns, '--type=merge', '-p', '{"spec":{"pool":{"borrowTimeout":"40s"}}}']);
  await waitFor('a new config hash from c', async () => {
    const h = await configHash();
    return h && h !== hash2 ? h : undefined;
  });
});
