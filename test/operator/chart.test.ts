// charts/dbproxy with a real helm (built from Go modules by hack/helm/install.sh): lint passes,
// templates render, the RBAC is exactly operator/controller/permissions.ts (least privilege, no
// Secrets), the CRD is the generated one and is kept on uninstall, values.schema.json refuses bad
// values, and the operator Deployment's arguments are ones `dbproxy operator` accepts.
import { jest } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseOperatorFlags } from '../../operator/cli.js';
import { CLUSTER_RULES, LEADER_ELECTION_RULES, flattenRules, type PolicyRule } from '../../operator/controller/permissions.js';
import { buildCrd } from '../../operator/crd/generate.js';
import { withDefaults } from '../../operator/api/v1alpha1.js';
import { buildDeployment } from '../../operator/desired/deployment.js';
import { CHART_DIR, helm, renderChart, type RenderedObject } from './support/chart.js';

jest.setTimeout(120_000);

const byKind = (objs: RenderedObject[], kind: string) => objs.filter((o) => o.kind === kind);

describe('helm', () => {
  test('helm lint --strict passes', () => {
    const r = helm(['lint', '--strict', CHART_DIR()]);
    expect(r.stderr + r.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(r.code).toBe(0);
  });

  test('helm template renders the CRD, RBAC, ServiceAccount, operator Deployment and metrics Service', () => {
    const objs = renderChart({ namespace: 'dbproxy-system' });
    expect(objs.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        'ClusterRole/dbproxy-operator',
        'ClusterRoleBinding/dbproxy-operator',
        'CustomResourceDefinition/databaseproxies.dbproxy.io',
        'Deployment/dbproxy-operator',
        'Role/dbproxy-operator-leader-election',
        'RoleBinding/dbproxy-operator-leader-election',
        'Service/dbproxy-operator-metrics',
        'ServiceAccount/dbproxy-operator',
      ].sort(),
    );
    for (const o of objs) if (o.kind !== 'CustomResourceDefinition' && !o.kind.startsWith('Cluster')) expect(o.metadata.namespace).toBe('dbproxy-system');
  });
});

describe('RBAC: least privilege', () => {
  const objs = renderChart({ namespace: 'dbproxy-system' });
  const rules = (kind: string) => byKind(objs, kind)[0]!.rules as PolicyRule[];

  test('the ClusterRole grants exactly what the operator uses', () => {
    expect(flattenRules(rules('ClusterRole'))).toEqual(flattenRules(CLUSTER_RULES));
  });

  test('the leader-election Role grants exactly leases get/create/update, in the release namespace', () => {
    expect(flattenRules(rules('Role'))).toEqual(flattenRules(LEADER_ELECTION_RULES));
    expect(flattenRules(LEADER_ELECTION_RULES)).toEqual(['coordination.k8s.io/leases:create', 'coordination.k8s.io/leases:get', 'coordination.k8s.io/leases:update']);
  });

  test('no access to Secrets, no wildcards, no escalation verbs', () => {
    const all = [...rules('ClusterRole'), ...rules('Role')];
    const flat = flattenRules(all);
    expect(flat.filter((r) => /secrets/.test(r))).toEqual([]);
    expect(flat.filter((r) => r.includes('*'))).toEqual([]);
    expect(flat.filter((r) => /:(escalate|bind|impersonate|deletecollection)$/.test(r))).toEqual([]);
    // The spec of a DatabaseProxy is never written (GitOps), only its status.
    expect(flat.filter((r) => r.startsWith('dbproxy.io/databaseproxies:'))).toEqual(['dbproxy.io/databaseproxies:list', 'dbproxy.io/databaseproxies:watch']);
  });

  test('the bindings name the operator ServiceAccount', () => {
    for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
      expect(byKind(objs, kind)[0]!.subjects).toEqual([{ kind: 'ServiceAccount', name: 'dbproxy-operator', namespace: 'dbproxy-system' }]);
    }
    expect((byKind(objs, 'Deployment')[0] as any).spec.template.spec.serviceAccountName).toBe('dbproxy-operator');
  });
});

describe('the CRD', () => {
  test('is the generated one, kept on uninstall, and skipped with crds.install=false', () => {
    const crd = byKind(renderChart({ namespace: 'x' }), 'CustomResourceDefinition')[0]!;
    expect(crd.metadata.annotations).toEqual({ 'helm.sh/resource-policy': 'keep' });
    expect(crd.spec).toEqual(buildCrd().spec);
    const onDisk = parseYaml(readFileSync(join(CHART_DIR(), '..', '..', 'crds', 'dbproxy.io_databaseproxies.yaml'), 'utf8'));
    expect(crd.spec).toEqual(onDisk.spec);
    expect(byKind(renderChart({ namespace: 'x', set: { 'crds.install': 'false' } }), 'CustomResourceDefinition')).toEqual([]);
  });
});

describe('the operator Deployment', () => {
  test('runs `dbproxy operator` with flags it accepts, leader election on, restricted security', () => {
    const dep = byKind(renderChart({ namespace: 'ops', set: { 'operator.statusInterval': '15s', 'operator.watchNamespace': 'apps' } }), 'Deployment')[0] as any;
    expect(dep.spec.replicas).toBe(2);
    const c = dep.spec.template.spec.containers[0];
    expect(c.args[0]).toBe('operator');
    const flags = parseOperatorFlags(c.args.slice(1));
    expect(flags).toMatchObject({
      defaultImage: 'ghcr.io/dbproxy/dbproxy:0.1.0',
      leaderElect: true,
      leaderElectionId: 'dbproxy-operator',
      leaderElectionNamespace: 'ops',
      statusIntervalMs: 15_000,
      namespace: 'apps',
      httpListen: { host: '0.0.0.0', port: 8080 },
    });
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(dep.spec.template.spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
  });

  test('leader election off: no Role, --no-leader-elect', () => {
    const objs = renderChart({ namespace: 'ops', set: { 'operator.leaderElection.enabled': 'false', replicaCount: '1' } });
    expect(byKind(objs, 'Role')).toEqual([]);
    const args = (byKind(objs, 'Deployment')[0] as any).spec.template.spec.containers[0].args as string[];
    expect(parseOperatorFlags(args.slice(1)).leaderElect).toBe(false);
  });

  test('defaultProxyImage overrides the proxy image', () => {
    const args = (byKind(renderChart({ namespace: 'ops', set: { 'operator.defaultProxyImage': 'example.com/dbproxy:9' } }), 'Deployment')[0] as any).spec.template.spec.containers[0].args as string[];
    expect(parseOperatorFlags(args.slice(1)).defaultImage).toBe('example.com/dbproxy:9');
  });
});

describe('proxy PodMonitor', () => {
  test('off by default', () => {
    expect(byKind(renderChart({ namespace: 'ops' }), 'PodMonitor')).toEqual([]);
  });

  test('selects the pods the operator builds and scrapes their admin port', () => {
    const [pm] = byKind(renderChart({ namespace: 'ops', set: { 'metrics.proxyPodMonitor.enabled': 'true' } }), 'PodMonitor') as any[];
    expect(pm.spec.namespaceSelector).toEqual({ any: true });
    const dbp = withDefaults({
      apiVersion: 'dbproxy.io/v1alpha1',
      kind: 'DatabaseProxy',
      metadata: { name: 'orders', namespace: 'shop', uid: 'u' },
      spec: { target: { host: 'db' }, users: [{ name: 'app', passwordSecretRef: { name: 's' } }] },
    });
    const template = buildDeployment(dbp, { defaultImage: 'x', configHash: 'h' }).spec.template;
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels as Record<string, string>)) expect(template.metadata.labels[k]).toBe(v);
    const port = pm.spec.podMetricsEndpoints[0].port as string;
    expect(template.spec.containers[0]!.ports!.map((p) => p.name)).toContain(port);
    // The operator's own pods (metrics through the ServiceMonitor) are not selected.
    const operatorPod = (byKind(renderChart({ namespace: 'ops' }), 'Deployment')[0] as any).spec.template.metadata.labels as Record<string, string>;
    expect(Object.entries(pm.spec.selector.matchLabels).every(([k, v]) => operatorPod[k] === v)).toBe(false);
  });

  test('limited to the watched namespace when the operator watches one', () => {
    const [pm] = byKind(renderChart({ namespace: 'ops', set: { 'metrics.proxyPodMonitor.enabled': 'true', 'operator.watchNamespace': 'shop' } }), 'PodMonitor') as any[];
    expect(pm.spec.namespaceSelector).toEqual({ matchNames: ['shop'] });
  });
});

describe('values.schema.json', () => {
  test.each([
    ['replicaCount=0', /replicaCount/],
    ['operator.statusInterval=often', /statusInterval/],
    ['operator.logLevel=loud', /logLevel/],
    ['unknownKey=1', /unknownKey|additional properties/i],
  ])('refuses %s', (set, message) => {
    const [k, v] = set.split('=') as [string, string];
    const r = helm(['template', 'dbproxy', CHART_DIR(), '--set', `${k}=${v}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });
});
