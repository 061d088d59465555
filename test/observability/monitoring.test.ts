// The chart's monitoring pieces against real tools: every PromQL expression of the Grafana
// dashboard and of the alert rules parses (promtool, built from the Go module proxy) and names
// only metrics a running proxy (or the operator) really exports; the alert rules pass
// `promtool check rules` and their unit tests (`promtool test rules`, one or more per alert); the
// chart ships the dashboard, the rules and a PodMonitor that labels series with the DatabaseProxy.
import { jest } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { withDefaults } from '../../operator/api/v1alpha1.js';
import { OperatorMetrics } from '../../operator/controller/metrics.js';
import { buildDeployment } from '../../operator/desired/deployment.js';
import type { PgCluster } from '../../hack/postgres.js';
import { repoRoot } from '../../hack/repoRoot.js';
import { type RunningProxy, connected, startCluster, startProxy } from '../support/harness.js';
import { renderChart } from '../operator/support/chart.js';

jest.setTimeout(900_000);

const CHART = (): string => join(repoRoot(), 'charts', 'dbproxy');
const RULES = (): string => join(CHART(), 'rules', 'dbproxy.rules.yaml');
const DASHBOARD = (): string => join(CHART(), 'dashboards', 'dbproxy.json');

let promtool: string;
let cluster: PgCluster;
let proxy: RunningProxy;

beforeAll(async () => {
  // Instant when cached (.ci/run builds it first); a cold build takes minutes.
  promtool = execFileSync('bash', [join(repoRoot(), 'hack/promtool/install.sh'), '--quiet'], { encoding: 'utf8', timeout: 1_200_000 }).trim().split('\n').pop()!;
  cluster = await startCluster();
  proxy = await startProxy(cluster, { statsUsers: ['legacy'] });
  // Traffic, so that labelled series exist too (not only their # TYPE lines).
  const c = await connected(proxy.port);
  await c.query('SELECT 1');
  await c.query('CREATE TEMP TABLE t (x int)');
  await c.end();
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

function runPromtool(args: string[]): { code: number; out: string } {
  const r = spawnSync(promtool, args, { encoding: 'utf8' });
  return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
}

interface Panel {
  type: string;
  title: string;
  targets?: Array<{ expr: string }>;
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: Array<{ name: string; query?: { query: string } | string }> };
  annotations: { list: Array<{ expr?: string }> };
}

const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD(), 'utf8')) as Dashboard;

/** Every PromQL expression in the dashboard, with where it is. */
function dashboardExpressions(d: Dashboard): Array<{ where: string; expr: string }> {
  const out: Array<{ where: string; expr: string }> = [];
  const walk = (panels: Panel[]): void => {
    for (const p of panels) {
      for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const a of d.annotations.list) if (a.expr) out.push({ where: 'annotation', expr: a.expr });
  for (const v of d.templating.list) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    // label_values(<selector>, <label>) is Grafana's, not PromQL: its selector is.
    const m = q ? /^label_values\((.*), *[a-zA-Z_]+\)$/.exec(q) : null;
    if (m) out.push({ where: `variable $${v.name}`, expr: m[1]! });
  }
  return out;
}

/** Grafana's variables replaced by what Grafana would put there. */
const substitute = (expr: string): string => expr.replaceAll('$__rate_interval', '5m').replaceAll('$__interval', '1m').replaceAll('$namespace', '.*').replaceAll('$proxy', '.*');

/** Metric names an expression uses: every metric of dbproxy and its operator starts with dbproxy_. */
const metricNames = (expr: string): string[] => [...new Set([...expr.matchAll(/\bdbproxy_[a-zA-Z0-9_]+/g)].map((m) => m[0]))];

/** Names a Prometheus exposition defines, histograms' _bucket/_sum/_count included. */
function exported(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]!);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1]! + s);
  }
  return names;
}

async function allExported(): Promise<Set<string>> {
  const proxyText = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  const operatorText = await new OperatorMetrics({ defaultMetrics: true }).registry.metrics();
  return new Set([...exported(proxyText), ...exported(operatorText)]);
}

interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; expr: string; for?: string }> }>;
}
const rules = (): RuleFile => parseYaml(readFileSync(RULES(), 'utf8')) as RuleFile;

describe('the Grafana dashboard', () => {
  test('has the rows the README describes, and every panel queries something', () => {
    const d = dashboard();
    expect(d.panels.filter((p) => p.type === 'row').map((p) => p.title)).toEqual(['Clients', 'Pool', 'Pinning', 'Traffic', 'Targets and failover', 'Readers']);
    for (const p of d.panels.filter((x) => x.type !== 'row')) expect([p.title, (p.targets ?? []).length > 0]).toEqual([p.title, true]);
  });

  test('every PromQL expression parses (promtool check rules, as recording rules)', () => {
    const exprs = dashboardExpressions(dashboard());
    expect(exprs.length).toBeGreaterThan(30);
    const file = join(mkdtempSync(join(tmpdir(), 'dbproxy-dash-')), 'dashboard.rules.yaml');
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: substitute(e.expr) })) }] }));
    const r = runPromtool(['check', 'rules', file]);
    expect([r.code, r.out]).toEqual([0, expect.stringContaining(`SUCCESS: ${exprs.length} rules found`)]);
  });

  test('a broken expression would be caught: promtool refuses one', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'dbproxy-dash-')), 'broken.rules.yaml');
    writeFileSync(file, stringify({ groups: [{ name: 'x', rules: [{ record: 'x:y', expr: 'sum by (pod) (rate(dbproxy_transactions_total[5m])' }] }] }));
    expect(runPromtool(['check', 'rules', file]).code).not.toBe(0);
  });

  test('every metric it names is exported by a running proxy', async () => {
    const have = await allExported();
    const missing = dashboardExpressions(dashboard()).flatMap((e) => metricNames(e.expr).filter((n) => !have.has(n)).map((n) => `${n} (${e.where})`));
    expect(missing).toEqual([]);
    // And the check itself sees the names: the dashboard uses a good share of what is exported.
    expect(new Set(dashboardExpressions(dashboard()).flatMap((e) => metricNames(e.expr))).size).toBeGreaterThan(25);
  });
});

describe('the alert rules', () => {
  test('pass promtool check rules', () => {
    const r = runPromtool(['check', 'rules', RULES()]);
    expect([r.code, r.out]).toEqual([0, expect.stringContaining('SUCCESS: 7 rules found')]);
  });

  test('pass their unit tests (promtool test rules)', () => {
    const r = runPromtool(['test', 'rules', join(repoRoot(), 'test', 'observability', 'alerts.test.yaml')]);
    expect([r.code, r.out]).toEqual([0, expect.stringContaining('SUCCESS')]);
  });

  test('every alert has a unit test where it fires and one where it stays quiet', () => {
    const tests = parseYaml(readFileSync(join(repoRoot(), 'test', 'observability', 'alerts.test.yaml'), 'utf8')) as {
      tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test);
    const alerts = rules().groups.flatMap((g) => g.rules.map((r) => r.alert)).filter((a): a is string => a !== undefined);
    expect(alerts.sort()).toEqual(['DbproxyBorrowTimeouts', 'DbproxyFailover', 'DbproxyNoWriter', 'DbproxyOperatorReconcileErrors', 'DbproxyPinnedShareHigh', 'DbproxyPoolSaturated', 'DbproxyTargetUnavailable']);
    for (const a of alerts) {
      expect([a, cases.some((c) => c.alertname === a && c.exp_alerts.length > 0)]).toEqual([a, true]);
      expect([a, cases.some((c) => c.alertname === a && c.exp_alerts.length === 0)]).toEqual([a, true]);
    }
  });

  test('name only metrics the proxy or the operator export', async () => {
    const have = await allExported();
    const missing = rules().groups.flatMap((g) => g.rules.flatMap((r) => metricNames(r.expr).filter((n) => !have.has(n)).map((n) => `${n} (${r.alert})`)));
    expect(missing).toEqual([]);
  });
});

describe('the chart', () => {
  test('ships neither dashboard nor rules by default', () => {
    const kinds = renderChart({ namespace: 'ops' }).map((o) => `${o.kind}/${o.metadata.name}`);
    expect(kinds.filter((k) => k.startsWith('PrometheusRule') || k.endsWith('-dashboard'))).toEqual([]);
  });

  test('monitoring.grafanaDashboard.enabled: a ConfigMap for the Grafana sidecar holding the dashboard as it is in the repo', () => {
    const objs = renderChart({ namespace: 'ops', set: { 'monitoring.grafanaDashboard.enabled': 'true', 'monitoring.grafanaDashboard.annotations.grafana_folder': 'Databases' } });
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'dbproxy-dashboard') as unknown as {
      metadata: { namespace: string; labels: Record<string, string>; annotations: Record<string, string> };
      data: Record<string, string>;
    };
    expect(cm.metadata.namespace).toBe('ops');
    expect(cm.metadata.labels.grafana_dashboard).toBe('1');
    expect(cm.metadata.annotations).toEqual({ grafana_folder: 'Databases' });
    expect(JSON.parse(cm.data['dbproxy.json']!)).toEqual(dashboard());
  });

  test('monitoring.prometheusRule.enabled: a PrometheusRule with exactly the tested rules', () => {
    const objs = renderChart({ namespace: 'ops', set: { 'monitoring.prometheusRule.enabled': 'true', 'monitoring.prometheusRule.labels.release': 'kube-prometheus' } });
    const pr = objs.find((o) => o.kind === 'PrometheusRule') as unknown as { apiVersion: string; metadata: { labels: Record<string, string> }; spec: RuleFile };
    expect(pr.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(pr.metadata.labels.release).toBe('kube-prometheus');
    expect(pr.spec.groups).toEqual(rules().groups);
  });

  test('the proxy PodMonitor labels every series with the DatabaseProxy (app.kubernetes.io/instance), which the operator puts on the pods', () => {
    const pm = renderChart({ namespace: 'ops', set: { 'metrics.proxyPodMonitor.enabled': 'true' } }).find((o) => o.kind === 'PodMonitor') as unknown as {
      spec: { podTargetLabels: string[]; selector: { matchLabels: Record<string, string> } };
    };
    expect(pm.spec.podTargetLabels).toEqual(['app.kubernetes.io/instance']);
    const dbp = withDefaults({
      apiVersion: 'dbproxy.io/v1alpha1',
      kind: 'DatabaseProxy',
      metadata: { name: 'orders', namespace: 'shop', uid: 'u' },
      spec: { target: { host: 'db' }, users: [{ name: 'app', passwordSecretRef: { name: 's' } }] },
    });
    const labels = buildDeployment(dbp, { defaultImage: 'x', configHash: 'h' }).spec.template.metadata.labels;
    expect(labels['app.kubernetes.io/instance']).toBe('orders');
    // The dashboard and the rules group by the label Prometheus makes of it.
    expect(readFileSync(DASHBOARD(), 'utf8')).toContain('app_kubernetes_io_instance');
    expect(readFileSync(RULES(), 'utf8')).toContain('app_kubernetes_io_instance');
  });

  test('values.schema.json refuses an unknown monitoring key', () => {
    expect(() => renderChart({ namespace: 'ops', set: { 'monitoring.grafanaDashboard.enable': 'true' } })).toThrow(/enable|additional properties/i);
  });
});
