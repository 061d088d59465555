// A throwaway kind cluster for a test file: hack/kind/cluster.sh does the work (Docker when a
// daemon answers, else podman with the locally built node image: hack/kind/lib.sh), this wraps it
// for jest. `up` passes this process's pid, so the cluster and its network are removed by a
// watcher even when the test run is killed before afterAll.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { repoRoot } from '../../../hack/repoRoot.js';
import { runKubectl, type KubectlResult } from '../../operator/support/cluster.js';

/** Image names cluster.sh builds from the Dockerfile and loads (its defaults). */
export const IMAGE = { repository: 'dbproxy', tag: 'e2e' } as const;
export const CLIENT_IMAGE = 'dbproxy-e2e-client:e2e';

export interface KindCluster {
  dir: string;
  kubeconfig: string;
  provider: 'docker' | 'podman';
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  kubectlOk(args: string[], input?: string): Promise<string>;
  getJson<T>(args: string[]): Promise<T>;
  /** kubectl apply of these objects (YAML documents). */
  apply(objects: unknown[]): Promise<void>;
  /** GET (no body) or POST (JSON body) to a pod's port through the API server's pod proxy. */
  podHttp<T = any>(namespace: string, pod: string, port: number, path: string, body?: unknown): Promise<T>;
  helm(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** helm, built from Go modules by hack/helm/install.sh when not cached (instant when it is). */
function helmBinary(): string {
  const r = spawnSync('bash', [join(repoRoot(), 'hack', 'helm', 'install.sh'), '--quiet'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`hack/helm/install.sh failed (exit ${r.status})`);
  return r.stdout.trim().split('\n').pop()!;
}

const log = process.env.DBPROXY_TEST_LOGS === '1' ? (m: string) => process.stderr.write(m) : () => {};

function clusterSh(args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(repoRoot(), 'hack', 'kind', 'cluster.sh'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (d: Buffer) => {
      out += d.toString();
      log(d.toString());
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`hack/kind/cluster.sh ${args[0]} failed (${signal ?? `exit ${code}`}; on a cold cache run \`make kind-deps\` first):\n${out.slice(-6000)}`));
    });
  });
}

export async function startKindCluster(o: { clientImage: boolean }): Promise<KindCluster> {
  // cluster.sh up wants a directory it creates itself; down removes it, this removes its parent.
  const parent = mkdtempSync(join(tmpdir(), 'dbproxy-kind-'));
  const dir = join(parent, 'cluster');
  let upStarted = false;
  const stop = async (): Promise<void> => {
    if (upStarted) await clusterSh(['down', '--dir', dir], 300_000);
    rmSync(parent, { recursive: true, force: true });
  };
  try {
    upStarted = true;
    await clusterSh(['up', '--dir', dir, '--owner-pid', String(process.pid)], 20 * 60_000);
    await clusterSh(['images', '--dir', dir, ...(o.clientImage ? [] : ['--no-client'])], 20 * 60_000);
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
  const state = Object.fromEntries(
    readFileSync(join(dir, 'state.env'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  const kubeconfig = join(dir, 'kubeconfig');
  const binDir = dirname(state.KUBECTL!);
  // Waits (`kubectl wait --timeout`, rollout status) bound themselves; this only stops a hung kubectl.
  const kubectl = (args: string[], opts: { input?: string; timeoutMs?: number } = {}) => runKubectl(binDir, kubeconfig, args, { timeoutMs: 600_000, ...opts });
  const kubectlOk = async (args: string[], input?: string): Promise<string> => {
    const r = await kubectl(args, input !== undefined ? { input } : {});
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
    return r.stdout;
  };
  const helmHome = join(dir, 'helm');
  const helm = async (args: string[]): Promise<string> => {
    const bin = helmBinary();
    const r = await new Promise<KubectlResult>((resolve, reject) => {
      const child = spawn(bin, args, {
        env: { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: join(helmHome, 'cache'), HELM_CONFIG_HOME: join(helmHome, 'config'), HELM_DATA_HOME: join(helmHome, 'data') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('error', reject);
      child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    });
    if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed:\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  return {
    dir,
    kubeconfig,
    provider: state.PROVIDER === 'docker' ? 'docker' : 'podman',
    kubectl,
    kubectlOk,
    getJson: async <T>(args: string[]) => JSON.parse(await kubectlOk(['get', ...args, '-o', 'json'])) as T,
    apply: async (objects: unknown[]) => {
      await kubectlOk(['apply', '-f', '-'], objects.map((x) => stringify(x)).join('---\n'));
    },
    podHttp: async <T>(namespace: string, pod: string, port: number, path: string, body?: unknown): Promise<T> => {
      const url = `/api/v1/namespaces/${namespace}/pods/${pod}:${port}/proxy${path}`;
      const r = body === undefined ? await kubectl(['get', '--raw', url]) : await kubectl(['create', '--raw', url, '-f', '-'], { input: JSON.stringify(body), timeoutMs: 300_000 });
      if (r.code !== 0) throw new Error(`${body === undefined ? 'GET' : 'POST'} ${pod}:${port}${path} failed: ${r.stderr || r.stdout}`);
      return JSON.parse(r.stdout) as T;
    },
    helm,
    stop,
  };
}

/** The securityContext fields restricted Pod Security asks of every container. */
export function restrictedContainer(): Record<string, unknown> {
  return { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } };
}

/** A Namespace where Pod Security admission enforces the restricted profile. */
export function restrictedNamespace(name: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      labels: {
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
        'pod-security.kubernetes.io/warn': 'restricted',
      },
    },
  };
}
