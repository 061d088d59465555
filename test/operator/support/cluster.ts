// The test control plane as operator tests see it. Jest's global setup (test/support/globalSetup.ts)
// starts one control plane per run, installs the CRD and the chart's RBAC, writes an RBAC-limited
// kubeconfig for the operator, and passes everything to the test workers in a JSON file named by
// $DBPROXY_TEST_CONTROLPLANE. Tests that must disturb the API server (restarts) start their own.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kubectlDeadlineMs, type ControlPlane } from '../../../hack/controlplane/controlPlane.js';
import { API_VERSION, KIND } from '../../../operator/api/v1alpha1.js';
import { renderChart, repoRoot, operatorServiceAccount, type RenderedObject } from './chart.js';

export const CONTROLPLANE_ENV = 'DBPROXY_TEST_CONTROLPLANE';
/** The namespace the chart is "installed" into (its RBAC, the operator identity, the leases). */
export const OPERATOR_NAMESPACE = 'dbproxy-system';

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What global setup hands to the test files. */
export interface SharedControlPlaneInfo {
  kubeconfigPath: string;
  operatorKubeconfigPath: string;
  operatorUser: string;
  apiUrl: string;
  binDir: string;
  dir: string;
  /** Written once the garbage collector handles DatabaseProxy owners (startGarbageCollectorProbe). */
  gcReadyFile: string;
}

export interface TestCluster {
  /** Admin kubeconfig. */
  kubeconfigPath: string;
  /** RBAC-limited kubeconfig: the chart's operator ServiceAccount identity. */
  operatorKubeconfigPath: string;
  operatorUser: string;
  kubectl(args: string[], opts?: { input?: string; kubeconfig?: string; timeoutMs?: number }): Promise<KubectlResult>;
}

export function runKubectl(binDir: string, kubeconfig: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(binDir, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], {
      env: { ...process.env, KUBECONFIG: undefined, KUBECTL_KUBERC: 'false' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = kubectlDeadlineMs(args, opts.timeoutMs);
    const timer = setTimeout(() => {
      stderr += `\n(kubectl killed after ${deadline / 1000} s)`;
      child.kill('SIGKILL');
    }, deadline);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** What global setup wrote about the shared control plane; throws when it started none (no operator test selected?). */
export function sharedClusterInfo(): SharedControlPlaneInfo {
  const file = process.env[CONTROLPLANE_ENV];
  if (!file) throw new Error(`${CONTROLPLANE_ENV} is not set: jest's global setup did not start the control plane (run the operator tests through npm test)`);
  return JSON.parse(readFileSync(file, 'utf8')) as SharedControlPlaneInfo;
}

/** The control plane started by global setup; throws when none was (no operator test selected?). */
export function sharedCluster(): TestCluster {
  const info = sharedClusterInfo();
  return {
    kubeconfigPath: info.kubeconfigPath,
    operatorKubeconfigPath: info.operatorKubeconfigPath,
    operatorUser: info.operatorUser,
    kubectl: (args, opts = {}) => runKubectl(info.binDir, opts.kubeconfig ?? info.kubeconfigPath, args, opts),
  };
}

export async function kubectlOk(c: Pick<TestCluster, 'kubectl'>, args: string[], input?: string): Promise<string> {
  const r = await c.kubectl(args, input !== undefined ? { input } : {});
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A DatabaseProxy manifest for kubectl (JSON is YAML). */
export function databaseProxyManifest(namespace: string, name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, spec });
}

/** kubectl apply of a DatabaseProxy; throws with kubectl's message when the API server refuses it. */
export async function applyDatabaseProxy(c: Pick<TestCluster, 'kubectl'>, namespace: string, name: string, spec: Record<string, unknown>): Promise<void> {
  await kubectlOk(c, ['apply', '-f', '-'], databaseProxyManifest(namespace, name, spec));
}

/** Applies objects (JSON is YAML) with kubectl. */
export async function applyObjects(c: Pick<TestCluster, 'kubectl'>, objects: unknown[], extraArgs: string[] = []): Promise<void> {
  const input = objects.map((o) => JSON.stringify(o)).join('\n---\n');
  await kubectlOk(c, ['apply', '-f', '-', ...extraArgs], input);
}

/**
 * Installs what the operator needs from the chart, as `helm install` would minus the operator
 * Deployment (the tests run the operator in-process): the CRD, the operator's ServiceAccount,
 * ClusterRole and ClusterRoleBinding, and the leader-election Role and RoleBinding.
 */
export async function installChartPrerequisites(c: Pick<TestCluster, 'kubectl'>): Promise<{ objects: RenderedObject[]; operatorUser: string }> {
  const objects = renderChart({ namespace: OPERATOR_NAMESPACE });
  const wanted = new Set(['CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding']);
  const install = objects.filter((o) => wanted.has(o.kind));
  await applyObjects(c, [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: OPERATOR_NAMESPACE } }]);
  await applyObjects(c, install, ['--server-side', '--field-manager=helm']);
  await kubectlOk(c, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/databaseproxies.dbproxy.io']);
  const sa = operatorServiceAccount(objects);
  return { objects, operatorUser: `system:serviceaccount:${sa.namespace}:${sa.name}` };
}

/** The operator's identity: a ServiceAccount user, with the groups Kubernetes gives ServiceAccounts. */
export function operatorGroups(): string[] {
  return ['system:serviceaccounts', `system:serviceaccounts:${OPERATOR_NAMESPACE}`];
}

/** Control plane flags for operator tests: enforce owner-reference permissions like hardened clusters do. */
export const CONTROL_PLANE_EXTRA_API_ARGS = ['--enable-admission-plugins=OwnerReferencesPermissionEnforcement'];

/** Starts a dedicated control plane with the chart installed (for tests that restart the API server). */
export async function startDedicatedCluster(): Promise<TestCluster & { cp: ControlPlane }> {
  const { startControlPlane } = await import('../../../hack/controlplane/controlPlane.js');
  const cp = await startControlPlane({ extraApiServerArgs: CONTROL_PLANE_EXTRA_API_ARGS });
  try {
    const { operatorUser } = await installChartPrerequisites(cp);
    const operatorKubeconfigPath = await cp.userKubeconfig({ user: operatorUser, groups: operatorGroups() });
    return { cp, kubeconfigPath: cp.kubeconfigPath, operatorKubeconfigPath, operatorUser, kubectl: (args, opts = {}) => cp.kubectl(args, opts) };
  } catch (e) {
    await cp.stop();
    throw e;
  }
}

/** A fresh namespace for one test file; delete it with deleteNamespace. */
export async function createNamespace(c: Pick<TestCluster, 'kubectl'>, prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await kubectlOk(c, ['create', 'namespace', name]);
  return name;
}

export async function deleteNamespace(c: Pick<TestCluster, 'kubectl'>, name: string): Promise<void> {
  await c.kubectl(['delete', 'namespace', name, '--wait=false', '--ignore-not-found']);
}

export async function getJson<T = Record<string, any>>(c: Pick<TestCluster, 'kubectl'>, args: string[]): Promise<T | undefined> {
  const r = await c.kubectl(['get', ...args, '-o', 'json']);
  if (r.code !== 0) {
    if (/NotFound|not found/.test(r.stderr)) return undefined;
    throw new Error(`kubectl get ${args.join(' ')}: ${r.stderr}`);
  }
  return JSON.parse(r.stdout) as T;
}

/** Polls `check` until it returns a truthy value; on timeout throws with `what` and the last value or error. */
export async function waitFor<T>(what: string, check: () => T, timeoutMs = 30_000, intervalMs = 100): Promise<NonNullable<Exclude<Awaited<T>, false | '' | 0>>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<Exclude<Awaited<T>, false | '' | 0>>;
      last = v;
    } catch (e) {
      last = e instanceof Error ? e.message : e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${typeof last === 'string' ? last : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export { repoRoot };

/**
 * The garbage collector learns about a new resource type (our CRD) only at its next discovery
 * resync (every 30 s). Until it watches DatabaseProxies, a deletion cascades only when a
 * backed-off retry happens to look again, which takes long and varies. This probe (run by global
 * setup while the tests run) deletes a DatabaseProxy that owns a ConfigMap in the foreground: the
 * API server then keeps it (finalizer foregroundDeletion) until the garbage collector, watching
 * DatabaseProxies, has deleted the ConfigMap and removed the finalizer. When it is gone,
 * `markerFile` is written; tests about garbage collection wait for it (waitForGarbageCollector).
 */
export function startGarbageCollectorProbe(c: Pick<TestCluster, 'kubectl'>, markerFile: string): { stop(): Promise<void> } {
  let stopped = false;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const name = 'gc-probe';
  const run = async (): Promise<void> => {
    const dbp = { apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', metadata: { name, namespace: OPERATOR_NAMESPACE }, spec: { target: { host: 'probe.invalid' }, users: [{ name: 'probe', passwordSecretRef: { name: 'probe' } }] } };
    const created = await c.kubectl(['create', '-o', 'json', '-f', '-'], { input: JSON.stringify(dbp) });
    if (created.code !== 0) return;
    const uid = (JSON.parse(created.stdout) as { metadata: { uid: string } }).metadata.uid;
    const cm = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name, namespace: OPERATOR_NAMESPACE, ownerReferences: [{ apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', name, uid, blockOwnerDeletion: true }] },
    };
    await c.kubectl(['create', '-f', '-'], { input: JSON.stringify(cm) });
    await c.kubectl(['delete', 'dbp', name, '-n', OPERATOR_NAMESPACE, '--cascade=foreground', '--wait=false']);
    const deadline = Date.now() + 120_000;
    while (!stopped && Date.now() < deadline) {
      const r = await c.kubectl(['get', 'dbp', name, '-n', OPERATOR_NAMESPACE, '-o', 'name']);
      if (r.code !== 0 && /NotFound|not found/.test(r.stderr)) {
        const { writeFileSync } = await import('node:fs');
        writeFileSync(markerFile, `${new Date().toISOString()}\n`);
        return;
      }
      await sleep(500);
    }
  };
  const done = run().catch(() => {});
  return {
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

/** Waits until the garbage collector handles DatabaseProxy owners (see startGarbageCollectorProbe). */
export async function waitForGarbageCollector(timeoutMs = 90_000): Promise<void> {
  const file = process.env[CONTROLPLANE_ENV];
  if (!file) throw new Error(`${CONTROLPLANE_ENV} is not set`);
  const info = JSON.parse(readFileSync(file, 'utf8')) as SharedControlPlaneInfo;
  const { existsSync } = await import('node:fs');
  await waitFor('the garbage collector to know DatabaseProxy', () => existsSync(info.gcReadyFile), timeoutMs, 250);
}
