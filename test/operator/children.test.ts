// The operator against the real control plane, under the chart's RBAC: a DatabaseProxy applied
// with kubectl gets its children (owned, so deletion is garbage collection), spec changes roll
// out, annotations others add survive, the scale subresource works, and every API request the
// operator made was one the chart's ClusterRole grants — and every grant was used.
import { jest } from '@jest/globals';
import { parseConfigYaml } from '../../proxy/contract/config.js';
import { CLUSTER_RULES, LEADER_ELECTION_RULES, flattenRules } from '../../operator/controller/permissions.js';
import {
  createNamespace,
  databaseProxyManifest,
  deleteNamespace,
  getJson,
  kubectlOk,
  sharedCluster,
  waitFor,
  waitForGarbageCollector,
  type TestCluster,
} from './support/cluster.js';
import { metricValue, operatorHttp, startTestOperator, type TestOperator } from './support/operator.js';

jest.setTimeout(120_000);

let cluster: TestCluster;
let ns: string;
let op: TestOperator;

const HASH = 'dbproxy.io/config-hash';
const ROLE = 'arn:aws:iam::123456789012:role/orders-proxy';

function proxyYaml(name: string, spec: Record<string, unknown> = {}): string {
  return databaseProxyManifest(ns, name, {
    target: { host: 'orders.cluster-abc.eu-west-1.rds.amazonaws.com' },
    users: [{ name: 'app', passwordSecretRef: { name: 'orders-app' } }],
    ...spec,
  });
}

const get = (args: string[]) => getJson(cluster, [...args, '-n', ns]);

beforeAll(async () => {
  cluster = sharedCluster();
  ns = await createNamespace(cluster, 'op-children');
  op = await startTestOperator(cluster, { namespace: ns });
  await waitFor('the operator to lead', () => op.isLeader() && op.controller()?.hasSynced());
});

afterAll(async () => {
  if (process.env.DBPROXY_TEST_LOGS !== '1' && expect.getState().numPassingAsserts === 0) process.stderr.write(op?.logs.slice(-50).join('') ?? '');
  await op?.stop();
  if (cluster && ns) await deleteNamespace(cluster, ns);
});

describe('a DatabaseProxy applied with kubectl', () => {
  let uid: string;

  test('gets its children, each owned by it', async () => {
    await kubectlOk(cluster, ['apply', '-f', '-'], proxyYaml('orders', { iam: { roleArn: ROLE }, replicas: 2 }));
    const dbp = await waitFor('the DatabaseProxy', () => get(['dbp', 'orders']));
    uid = dbp.metadata.uid;
    const owner = { apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', name: 'orders', uid, controller: true, blockOwnerDeletion: true };

    const sa = await waitFor('the ServiceAccount', () => get(['serviceaccount', 'orders']));
    expect(sa.metadata.annotations['eks.amazonaws.com/role-arn']).toBe(ROLE);
    expect(sa.metadata.ownerReferences).toEqual([owner]);

    const cm = await waitFor('the ConfigMap', () => get(['configmap', 'orders-config']));
    expect(cm.metadata.ownerReferences).toEqual([owner]);
    const config = parseConfigYaml(cm.data['config.yaml']);
    expect(config.targets).toEqual(['orders.cluster-abc.eu-west-1.rds.amazonaws.com:5432']);
    expect(config.users).toEqual([expect.objectContaining({ name: 'app', passwordFile: '/var/run/secrets/dbproxy/users/app/password' })]);
    expect(config.pool.divisor).toBe(3); // 2 replicas + one pod of rollout allowance

    const dep = await waitFor('the Deployment', () => get(['deployment', 'orders']));
    expect(dep.metadata.ownerReferences).toEqual([owner]);
    expect(dep.spec.replicas).toBe(2);
    expect(dep.spec.template.spec.serviceAccountName).toBe('orders');
    expect(dep.spec.template.spec.containers[0].image).toBe('registry.example/dbproxy:test');
    expect(dep.spec.template.metadata.annotations[HASH]).toMatch(/^[0-9a-f]{16}$/);

    const svc = await waitFor('the Service', () => get(['service', 'orders']));
    expect(svc.metadata.ownerReferences).toEqual([owner]);
    expect(svc.spec.ports).toEqual([expect.objectContaining({ name: 'postgres', port: 5432, targetPort: 5432 })]);

    const peers = await waitFor('the headless peer Service', () => get(['service', 'orders-peers']));
    expect(peers.metadata.ownerReferences).toEqual([owner]);
    expect(peers.spec.clusterIP).toBe('None');
    expect(peers.spec.publishNotReadyAddresses).toBe(true);
    expect(peers.spec.ports).toEqual([expect.objectContaining({ name: 'admin', port: 9090 })]);

    const pdb = await waitFor('the PodDisruptionBudget', () => get(['pdb', 'orders']));
    expect(pdb.metadata.ownerReferences).toEqual([owner]);
    expect(pdb.spec.maxUnavailable).toBe(1);

    // One field manager for everything the operator wrote.
    const managers = new Set<string>();
    for (const kind of ['serviceaccount/orders', 'configmap/orders-config', 'deployment/orders', 'service/orders', 'service/orders-peers', 'pdb/orders']) {
      const o = await get([kind, '--show-managed-fields']);
      for (const f of o!.metadata.managedFields ?? []) if (f.operation === 'Apply') managers.add(f.manager);
    }
    expect([...managers]).toEqual(['dbproxy-operator']);

    // The Deployment controller (real kube-controller-manager) made the pods; no kubelet runs them.
    await waitFor('2 pods', async () => (await get(['pods', '-l', 'app.kubernetes.io/instance=orders']))?.items.length === 2);
  });

  test('status: observedGeneration, endpoint, selector, and Progressing while no pod is ready', async () => {
    const dbp = await waitFor('a status', async () => {
      const d = await get(['dbp', 'orders']);
      return d?.status?.observedGeneration === d?.metadata.generation && d?.status?.conditions ? d : undefined;
    });
    expect(dbp.status.endpoint).toBe(`orders.${ns}.svc:5432`);
    expect(dbp.status.selector).toBe('app.kubernetes.io/name=dbproxy,app.kubernetes.io/instance=orders');
    expect(dbp.status.poolDivisor).toBe(3);
    const cond = (t: string) => dbp.status.conditions.find((c: { type: string }) => c.type === t);
    expect(cond('Ready')).toMatchObject({ status: 'False' });
    expect(cond('Progressing')).toMatchObject({ status: 'True' });
    expect(cond('Available')).toMatchObject({ status: 'False', reason: 'NoReplicasReady' });
    // The operator wrote the status only, never the spec (GitOps: no drift).
    const fields = (await get(['dbp', 'orders', '--show-managed-fields']))!.metadata.managedFields as Array<{ manager: string; subresource?: string }>;
    expect(fields.filter((f) => f.manager === 'dbproxy-operator').map((f) => f.subresource)).toEqual(['status']);
  });

  test('a spec change rolls out: new config, new config-hash on the pod template', async () => {
    const before = (await get(['deployment', 'orders']))!.spec.template.metadata.annotations[HASH];
    await kubectlOk(cluster, ['patch', 'dbp', 'orders', '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { pool: { maxConnectionsPercent: 50 } } })]);
    const dep = await waitFor('a new config hash', async () => {
      const d = await get(['deployment', 'orders']);
      return d && d.spec.template.metadata.annotations[HASH] !== before ? d : undefined;
    });
    expect(dep.spec.template.metadata.annotations[HASH]).toMatch(/^[0-9a-f]{16}$/);
    const cm = await get(['configmap', 'orders-config']);
    expect(parseConfigYaml(cm!.data['config.yaml']).pool.maxConnectionsPercent).toBe(50);
    // The Deployment controller starts the rollout: a second ReplicaSet.
    await waitFor('a new ReplicaSet', async () => (await get(['replicasets', '-l', 'app.kubernetes.io/instance=orders']))!.items.length === 2);
    const events = await waitFor('a RollingOut event', async () => {
      const ev = await get(['events', '--field-selector', 'involvedObject.name=orders,involvedObject.kind=DatabaseProxy']);
      return ev?.items.some((e: { reason: string }) => e.reason === 'RollingOut') ? ev : undefined;
    });
    expect(events.items.map((e: { reason: string }) => e.reason)).toEqual(expect.arrayContaining(['Created', 'RollingOut']));
  });

  test('annotations others add to the ServiceAccount survive reconciles', async () => {
    await kubectlOk(cluster, ['annotate', 'serviceaccount', 'orders', '-n', ns, 'example.com/owner=team-a']);
    // Force reconciles that re-apply the ServiceAccount: change the role, then a label.
    const role2 = 'arn:aws:iam::123456789012:role/orders-proxy-2';
    await kubectlOk(cluster, ['patch', 'dbp', 'orders', '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { iam: { roleArn: role2 } } })]);
    const sa = await waitFor('the new role on the ServiceAccount', async () => {
      const s = await get(['serviceaccount', 'orders']);
      return s?.metadata.annotations['eks.amazonaws.com/role-arn'] === role2 ? s : undefined;
    });
    expect(sa.metadata.annotations['example.com/owner']).toBe('team-a');
  });

  test('a child deleted by someone is recreated', async () => {
    const svcUid = (await get(['service', 'orders']))!.metadata.uid;
    await kubectlOk(cluster, ['delete', 'service', 'orders', '-n', ns]);
    const svc = await waitFor('a new Service', async () => {
      const s = await get(['service', 'orders']);
      return s && s.metadata.uid !== svcUid ? s : undefined;
    });
    expect(svc.metadata.ownerReferences[0].uid).toBe(uid);
  });

  test('kubectl scale dbp goes through the scale subresource to the Deployment', async () => {
    await kubectlOk(cluster, ['scale', 'dbp', 'orders', '-n', ns, '--replicas=3']);
    expect((await get(['dbp', 'orders']))!.spec.replicas).toBe(3);
    await waitFor('3 Deployment replicas', async () => (await get(['deployment', 'orders']))?.spec.replicas === 3);
    const cm = await get(['configmap', 'orders-config']);
    expect(parseConfigYaml(cm!.data['config.yaml']).pool.divisor).toBeGreaterThanOrEqual(4);
    // The scale subresource reads status.replicas and status.selector.
    const scale = JSON.parse(await kubectlOk(cluster, ['get', '--raw', `/apis/dbproxy.io/v1alpha1/namespaces/${ns}/databaseproxies/orders/scale`]));
    expect(scale.spec.replicas).toBe(3);
    await waitFor('status.selector in the scale', async () => {
      const s = JSON.parse(await kubectlOk(cluster, ['get', '--raw', `/apis/dbproxy.io/v1alpha1/namespaces/${ns}/databaseproxies/orders/scale`]));
      return s.status.selector === 'app.kubernetes.io/name=dbproxy,app.kubernetes.io/instance=orders';
    });
  });

  test('serviceAccountName: the pods run as the user\'s ServiceAccount and the operator\'s is deleted', async () => {
    await kubectlOk(cluster, ['create', 'serviceaccount', 'my-own', '-n', ns]);
    await kubectlOk(cluster, ['patch', 'dbp', 'orders', '-n', ns, '--type=json', '-p', JSON.stringify([{ op: 'remove', path: '/spec/iam' }, { op: 'add', path: '/spec/serviceAccountName', value: 'my-own' }])]);
    await waitFor('the Deployment to use my-own', async () => (await get(['deployment', 'orders']))?.spec.template.spec.serviceAccountName === 'my-own');
    await waitFor('the operator\'s ServiceAccount to be deleted', async () => (await get(['serviceaccount', 'orders'])) === undefined);
    expect(await get(['serviceaccount', 'my-own'])).toBeDefined();
  });

  test('deleting the DatabaseProxy garbage-collects every child', async () => {
    // The garbage collector (real kube-controller-manager) learns about the CRD at its next
    // rediscovery, up to 30 s after it was installed: wait for that, then the cascade is prompt.
    await waitForGarbageCollector();
    await kubectlOk(cluster, ['delete', 'dbp', 'orders', '-n', ns, '--wait=true']);
    for (const kind of ['deployment', 'configmap', 'service', 'pdb']) {
      const name = kind === 'configmap' ? 'orders-config' : 'orders';
      await waitFor(`${kind} ${name} to be garbage-collected`, async () => (await get([kind, name])) === undefined, 30_000);
    }
    await waitFor('the pods to be garbage-collected', async () => (await get(['pods', '-l', 'app.kubernetes.io/instance=orders']))?.items.length === 0);
    expect(await get(['serviceaccount', 'my-own'])).toBeDefined(); // not the operator's: untouched
  });
});

describe('the read-only endpoint (spec.readers)', () => {
  test('enabled: a <name>-ro Service to the read-only listener, the listener in the config, status.readers; disabled: the Service goes', async () => {
    await kubectlOk(cluster, ['apply', '-f', '-'], proxyYaml('reports', { readers: { enabled: true, maxReplicationLag: '10s' } }));
    const uid = (await waitFor('the DatabaseProxy', () => get(['dbp', 'reports'])))!.metadata.uid;
    const ro = await waitFor('the read-only Service', () => get(['service', 'reports-ro']));
    expect(ro.metadata.ownerReferences).toEqual([{ apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', name: 'reports', uid, controller: true, blockOwnerDeletion: true }]);
    const main = await waitFor('the main Service', () => get(['service', 'reports']));
    expect(ro.spec.selector).toEqual(main.spec.selector);
    expect(ro.spec.ports).toEqual([expect.objectContaining({ name: 'postgres-ro', port: 5432, targetPort: 5433 })]);
    const config = parseConfigYaml((await get(['configmap', 'reports-config']))!.data['config.yaml']);
    expect(config.readers).toEqual({ listen: '0.0.0.0:5433', maxReplicationLag: 10_000, fallbackToWriter: false });
    const dep = await waitFor('the Deployment', () => get(['deployment', 'reports']));
    expect(dep.spec.template.spec.containers[0].ports).toContainEqual({ name: 'postgres-ro', containerPort: 5433, protocol: 'TCP' });
    // No pod runs here (no kubelet): the endpoint is reported, nothing counted, the condition Unknown.
    const dbp = await waitFor('status.readers', async () => {
      const d = await get(['dbp', 'reports']);
      return d?.status?.readers && d.status.observedGeneration === d.metadata.generation ? d : undefined;
    });
    expect(dbp.status.readers).toEqual({ endpoint: `reports-ro.${ns}.svc:5432`, standbys: 0, available: 0, databaseConnections: 0, borrowed: 0, waiting: 0, targets: [] });
    expect(dbp.status.conditions.find((c: { type: string }) => c.type === 'ReadersAvailable')).toMatchObject({ status: 'Unknown', reason: 'NoStats' });

    await kubectlOk(cluster, ['patch', 'dbp', 'reports', '-n', ns, '--type=merge', '-p', JSON.stringify({ spec: { readers: { enabled: false } } })]);
    await waitFor('the read-only Service to be deleted', async () => (await get(['service', 'reports-ro'])) === undefined);
    const off = await waitFor('the status without readers', async () => {
      const d = await get(['dbp', 'reports']);
      return d?.status?.observedGeneration === d?.metadata.generation && !d?.status?.readers ? d : undefined;
    });
    expect(off.status.conditions.map((c: { type: string }) => c.type)).not.toContain('ReadersAvailable');
    expect(parseConfigYaml((await get(['configmap', 'reports-config']))!.data['config.yaml']).readers).toBeUndefined();
    expect(await get(['service', 'reports'])).toBeDefined();
    const events = await waitFor('a ReaderServiceDeleted event', async () => {
      const ev = await get(['events', '--field-selector', 'involvedObject.name=reports,involvedObject.kind=DatabaseProxy']);
      return ev?.items.some((e: { reason: string }) => e.reason === 'ReaderServiceDeleted') ? ev : undefined;
    });
    expect(events.items.find((e: { reason: string }) => e.reason === 'ReaderServiceDeleted').message).toBe('deleted Service reports-ro: spec.readers.enabled is not true');
  });

  test('a <name>-ro Service someone else made is left alone', async () => {
    await kubectlOk(cluster, ['create', 'service', 'clusterip', 'billing-ro', '-n', ns, '--tcp=5432:5432']);
    await kubectlOk(cluster, ['apply', '-f', '-'], proxyYaml('billing'));
    await waitFor('a status for billing', async () => {
      const d = await get(['dbp', 'billing']);
      return d?.status?.observedGeneration === d?.metadata.generation ? d : undefined;
    });
    const theirs = await get(['service', 'billing-ro']);
    expect(theirs).toBeDefined();
    expect(theirs!.metadata.ownerReferences).toBeUndefined();
  });
});

describe('the operator process', () => {
  test('/healthz, /readyz, /metrics', async () => {
    expect(await operatorHttp(op, '/healthz')).toMatchObject({ status: 200 });
    expect(await operatorHttp(op, '/readyz')).toMatchObject({ status: 200, body: expect.stringContaining('leader') });
    const metrics = await operatorHttp(op, '/metrics');
    expect(metrics.status).toBe(200);
    for (const name of ['dbproxy_operator_reconcile_total', 'dbproxy_operator_reconcile_errors_total', 'dbproxy_operator_reconcile_duration_seconds_bucket', 'dbproxy_operator_leader 1']) {
      expect(metrics.body).toContain(name);
    }
    expect(await metricValue(op, 'dbproxy_operator_reconcile_total', { result: 'success' })).toBeGreaterThan(0);
  });

  test('every request was within the chart\'s RBAC, and every grant was used', () => {
    const used = new Set(op.requests.map((r) => `${r.group}/${r.resource}:${r.verb}`));
    const granted = new Set([...flattenRules(CLUSTER_RULES), ...flattenRules(LEADER_ELECTION_RULES)]);
    expect([...used].filter((u) => !granted.has(u))).toEqual([]);
    // blockOwnerDeletion is checked by admission (OwnerReferencesPermissionEnforcement), not a request.
    expect([...granted].filter((g) => !used.has(g) && g !== 'dbproxy.io/databaseproxies/finalizers:update')).toEqual([]);
    expect(op.requests.some((r) => r.resource === 'secrets')).toBe(false);
  });
});
