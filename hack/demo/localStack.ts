// The local stack of `make demo`: a PostgreSQL primary with a streaming standby, the pod runner on
// a control plane, the operator installed from charts/dbproxy with helm, and a sample
// DatabaseProxy with its password Secret, one function per step. (The end-to-end tests run the
// same story on kind: test/kind.)
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { KubeClient } from '../../operator/runtime/client.js';
import { type PgCluster, startPostgres, startStandby } from '../postgres.js';
import { PodRunner, type ImageCommand } from '../podRunner/podRunner.js';
import { repoRoot } from '../repoRoot.js';
import { kubectlDeadlineMs } from '../controlplane/controlPlane.js';

export { repoRoot };

/** The image name the chart is installed with locally; the pod runner runs it as `node dist/proxy/cli/dbproxy.js`. */
export const LOCAL_IMAGE = { repository: 'dbproxy.local/dbproxy', tag: 'dev' } as const;

export function localImages(): ImageCommand[] {
  const cli = join(repoRoot(), 'dist', 'proxy', 'cli', 'dbproxy.js');
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
  return [{ prefix: `${LOCAL_IMAGE.repository}:`, entrypoint: [process.execPath, cli] }];
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCommand(cmd: string, args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Builds helm if needed (hack/helm/install.sh, cached) and returns its path. */
export async function helmBinary(): Promise<string> {
  const r = await runCommand('bash', [join(repoRoot(), 'hack', 'helm', 'install.sh'), '--quiet'], { timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`hack/helm/install.sh failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').pop()!;
}

export interface DatabasePair {
  primary: PgCluster;
  standby: PgCluster & { promote(): void };
  user: { name: string; password: string };
  stop(): void;
}

/** A primary and a streaming standby on loopback, with one application user. */
export function startDatabasePair(opts: { primaryPort: number; standbyPort: number; maxConnections?: number; user?: { name: string; password: string } }): DatabasePair {
  const user = opts.user ?? { name: 'app', password: 'app-demo-password' };
  const primary = startPostgres({ port: opts.primaryPort, users: [user], maxConnections: opts.maxConnections ?? 100, settings: { wal_level: 'replica', max_wal_senders: 5 } });
  let standby: DatabasePair['standby'];
  try {
    standby = startStandby(primary, { port: opts.standbyPort, settings: { max_connections: opts.maxConnections ?? 100 } });
  } catch (e) {
    primary.destroy();
    throw e;
  }
  return {
    primary,
    standby,
    user,
    stop: () => {
      standby.destroy();
      primary.destroy();
    },
  };
}

export interface ClusterAccess {
  kubeconfigPath: string;
  apiUrl: string;
  binDir: string;
}

export function kubectl(c: ClusterAccess, args: string[], input?: string): Promise<CommandResult> {
  return runCommand(join(c.binDir, 'kubectl'), args, { env: { KUBECONFIG: c.kubeconfigPath }, ...(input !== undefined ? { input } : {}), timeoutMs: Math.max(120_000, kubectlDeadlineMs(args)) });
}

export async function kubectlOk(c: ClusterAccess, args: string[], input?: string): Promise<string> {
  const r = await kubectl(c, args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The pod runner for these namespaces, with the dbproxy image mapped to this checkout's build. */
export async function startPodRunner(c: ClusterAccess, namespaces: string[], log?: (m: string) => void): Promise<PodRunner> {
  const api = new URL(c.apiUrl);
  return PodRunner.start({
    client: KubeClient.create({ kubeconfig: c.kubeconfigPath }),
    apiServer: { host: api.hostname, port: Number(api.port || 443) },
    namespaces,
    images: localImages(),
    ...(log ? { log } : {}),
  });
}

export interface OperatorInstall {
  release: string;
  namespace: string;
  /** Install the CRD with the chart (false when it is already installed, e.g. by the test setup). */
  installCrds: boolean;
  /** Reconcile only this namespace (the shared test control plane has other tests' objects). */
  watchNamespace?: string;
  statusInterval?: string;
  replicas?: number;
}

/** `helm upgrade --install` of charts/dbproxy with the local image; waits until the operator is ready. */
export async function installOperator(c: ClusterAccess, o: OperatorInstall): Promise<CommandResult> {
  const set: Record<string, string> = {
    'image.repository': LOCAL_IMAGE.repository,
    'image.tag': LOCAL_IMAGE.tag,
    'crds.install': String(o.installCrds),
    'operator.statusInterval': o.statusInterval ?? '2s',
    replicaCount: String(o.replicas ?? 2),
    'operator.leaderElection.leaseDuration': '6s',
    'operator.leaderElection.renewDeadline': '4s',
    'operator.leaderElection.retryPeriod': '1s',
    ...(o.watchNamespace ? { 'operator.watchNamespace': o.watchNamespace } : {}),
  };
  const args = ['upgrade', '--install', o.release, join(repoRoot(), 'charts', 'dbproxy'), '--namespace', o.namespace, '--create-namespace', '--wait', '--timeout', '3m'];
  for (const [k, v] of Object.entries(set)) args.push('--set', `${k}=${v}`);
  const helmHome = join(repoRoot(), '.tmp', 'helm');
  const r = await runCommand(await helmBinary(), args, {
    env: { KUBECONFIG: c.kubeconfigPath, HELM_CACHE_HOME: join(helmHome, 'cache'), HELM_CONFIG_HOME: join(helmHome, 'config'), HELM_DATA_HOME: join(helmHome, 'data') },
    timeoutMs: 240_000,
  });
  if (r.code !== 0) throw new Error(`helm install failed:\n${r.stderr}${r.stdout}`);
  return r;
}

/** The sample: a Secret with the user's password and a DatabaseProxy in front of both instances. */
export function sampleManifests(o: {
  namespace: string;
  name: string;
  db: DatabasePair;
  replicas?: number;
  maxConnectionsPercent?: number;
  /** spec.readers: the read-only endpoint <name>-ro over the standby. Default: none. */
  readers?: { enabled: boolean; maxReplicationLag?: string; fallbackToWriter?: boolean };
}): string {
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `${o.name}-${o.db.user.name}`, namespace: o.namespace },
    type: 'Opaque',
    stringData: { password: o.db.user.password },
  };
  const proxy = {
    apiVersion: 'dbproxy.io/v1alpha1',
    kind: 'DatabaseProxy',
    metadata: { name: o.name, namespace: o.namespace },
    spec: {
      replicas: o.replicas ?? 2,
      target: { endpoints: [`127.0.0.1:${o.db.primary.port}`, `127.0.0.1:${o.db.standby.port}`], database: 'postgres' },
      users: [{ name: o.db.user.name, passwordSecretRef: { name: secret.metadata.name } }],
      pool: { maxConnectionsPercent: o.maxConnectionsPercent ?? 50 },
      ...(o.readers ? { readers: o.readers } : {}),
    },
  };
  return `${stringify(secret)}---\n${stringify(proxy)}`;
}
