// Runs the operator in-process for a test: under the chart's RBAC (the RBAC-limited kubeconfig),
// scoped to the test's namespace (so parallel test files never reconcile each other's objects),
// with short intervals, logs kept in memory (printed with DBPROXY_TEST_LOGS=1), and every API
// request recorded as an RBAC (verb, resource) pair.
import { pino } from 'pino';
import { startOperator, type OperatorOptions, type RunningOperator } from '../../../operator/controller/operator.js';
import { KubeClient, type RequestRecord } from '../../../operator/runtime/client.js';
import { OPERATOR_NAMESPACE, type TestCluster } from './cluster.js';

export const TEST_IMAGE = 'registry.example/dbproxy:test';

export interface TestOperator extends RunningOperator {
  logs: string[];
  requests: RequestRecord[];
}

export async function startTestOperator(
  cluster: Pick<TestCluster, 'operatorKubeconfigPath'>,
  opts: Partial<OperatorOptions> & { namespace: string; leaseName?: string; kubeconfig?: string },
): Promise<TestOperator> {
  const logs: string[] = [];
  const requests: RequestRecord[] = [];
  const echo = process.env.DBPROXY_TEST_LOGS === '1';
  const identity = opts.identity ?? `op-${Math.random().toString(16).slice(2, 8)}`;
  const log = pino(
    { level: 'debug', base: { op: identity } },
    {
      write: (line: string) => {
        logs.push(line);
        if (logs.length > 5000) logs.splice(0, 1000);
        if (echo) process.stderr.write(line);
      },
    },
  );
  const client = KubeClient.create({ kubeconfig: opts.kubeconfig ?? cluster.operatorKubeconfigPath, onRequest: (r) => requests.push(r) });
  const { leaseName, ...rest } = opts;
  const op = await startOperator({
    client,
    identity,
    log,
    defaultImage: TEST_IMAGE,
    statusIntervalMs: 300,
    statsTimeoutMs: 1_000,
    backoffBaseMs: 100,
    backoffMaxMs: 2_000,
    watchBackoffBaseMs: 100,
    watchBackoffMaxMs: 1_000,
    leaderElection: { namespace: OPERATOR_NAMESPACE, name: leaseName ?? `dbproxy-operator-${opts.namespace}`, leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 250 },
    http: { host: '127.0.0.1', port: 0 },
    ...rest,
  });
  return Object.assign(op, { logs, requests });
}

/** Fetches one of the operator's HTTP endpoints. */
export async function operatorHttp(op: RunningOperator, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${op.httpPort}${path}`);
  return { status: r.status, body: await r.text() };
}

/** The value of a counter or gauge (summed over label sets) from the operator's registry. */
export async function metricValue(op: RunningOperator, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await op.metrics.registry.getSingleMetric(name)?.get();
  if (!m) return 0;
  return m.values
    .filter((v) => Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x))
    .filter((v) => !('metricName' in v) || v.metricName === name || v.metricName === undefined)
    .reduce((a, v) => a + v.value, 0);
}
