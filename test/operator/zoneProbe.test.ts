// The zone probe behind the default topology spread, against the real API server and with the
// operator's own (chart RBAC) credentials: a node with the label turns it on, within the probe's
// reuse time and not before. A label of this test's own stands in for topology.kubernetes.io/zone,
// so operators of other test files on the shared control plane do not see a zone appear.
import { pino } from 'pino';
import { FakeClock } from '../../proxy/runtime/clock.js';
import { ZoneProbe } from '../../operator/controller/zoneProbe.js';
import { KubeClient } from '../../operator/runtime/client.js';
import { kubectlOk, sharedCluster, sharedClusterInfo, type TestCluster } from './support/cluster.js';

let cluster: TestCluster;
const suffix = Math.random().toString(36).slice(2, 8);
const label = `zone-probe.test.dbproxy.io/zone-${suffix}`;
const node = `zone-probe-${suffix}`;

beforeAll(() => {
  cluster = sharedCluster();
});

afterAll(async () => {
  await cluster?.kubectl(['delete', 'node', node, '--ignore-not-found', '--wait=false']);
});

test('no node with the label: no zones; a node gets it: zones, once the remembered answer is old', async () => {
  const clock = new FakeClock(1_000_000);
  const client = KubeClient.create({ kubeconfig: sharedClusterInfo().operatorKubeconfigPath });
  const probe = new ZoneProbe(client, clock, pino({ level: 'silent' }), 60_000, label);
  expect(await probe.zoned()).toBe(false);

  await kubectlOk(cluster, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: node, labels: { [label]: 'eu-west-1a' } } }));
  clock.advance(59_000);
  expect(await probe.zoned()).toBe(false); // remembered: one list per minute, not per reconcile
  clock.advance(2_000);
  expect(await probe.zoned()).toBe(true);
});

test('an API error keeps the last answer instead of guessing', async () => {
  const clock = new FakeClock(0);
  const good = KubeClient.create({ kubeconfig: sharedClusterInfo().operatorKubeconfigPath });
  let failing = false;
  const client = { listPage: (...args: Parameters<KubeClient['listPage']>) => (failing ? Promise.reject(new Error('connection refused')) : good.listPage(...args)) } as unknown as KubeClient;
  const probe = new ZoneProbe(client, clock, pino({ level: 'silent' }), 1000, label);
  expect(await new ZoneProbe(client, clock, pino({ level: 'silent' }), 1000, `${label}-none`).zoned()).toBe(false);
  failing = true;
  expect(await new ZoneProbe(client, clock, pino({ level: 'silent' }), 1000, label).zoned()).toBeUndefined();
  failing = false;
  const answer = await probe.zoned();
  failing = true;
  clock.advance(5000);
  expect(await probe.zoned()).toBe(answer);
});
