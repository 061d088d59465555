// The Helm chart as the tests use it: rendered by a real helm (built from Go modules by
// hack/helm/install.sh and cached), then applied with kubectl. The operator in the tests runs
// under the chart's RBAC, bound to an identity from the control plane's userKubeconfig.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../../../hack/repoRoot.js';

export { repoRoot };

export const CHART_DIR = (): string => join(repoRoot(), 'charts', 'dbproxy');

/** Builds helm if needed (instant when cached); returns its path. */
export function helmBinary(): string {
  const r = spawnSync('bash', [join(repoRoot(), 'hack', 'helm', 'install.sh'), '--quiet'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`hack/helm/install.sh failed (exit ${r.status})`);
  const path = r.stdout.trim().split('\n').pop()!;
  if (!existsSync(path)) throw new Error(`hack/helm/install.sh printed ${path}, which does not exist`);
  return path;
}

export interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: unknown;
}

export function helm(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(helmBinary(), args, { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: '/tmp/dbproxy-helm/cache', HELM_CONFIG_HOME: '/tmp/dbproxy-helm/config', HELM_DATA_HOME: '/tmp/dbproxy-helm/data' } });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** `helm template <release> charts/dbproxy --namespace <ns> [--set k=v ...]`, parsed. */
export function renderChart(opts: { release?: string; namespace: string; set?: Record<string, string> }): RenderedObject[] {
  const args = ['template', opts.release ?? 'dbproxy', CHART_DIR(), '--namespace', opts.namespace];
  for (const [k, v] of Object.entries(opts.set ?? {})) args.push('--set', `${k}=${v}`);
  const r = helm(args);
  if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as RenderedObject | null)
    .filter((o): o is RenderedObject => !!o && typeof o === 'object' && 'kind' in o);
}

/** The operator's identity as the chart names it: its ServiceAccount in the release namespace. */
export function operatorServiceAccount(objects: RenderedObject[]): { name: string; namespace: string } {
  const sa = objects.find((o) => o.kind === 'ServiceAccount');
  if (!sa?.metadata.namespace) throw new Error('the chart renders no namespaced ServiceAccount');
  return { name: sa.metadata.name, namespace: sa.metadata.namespace };
}
