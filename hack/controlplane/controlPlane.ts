// A real Kubernetes control plane on loopback for tests and local development: etcd,
// kube-apiserver and kube-controller-manager, started the way envtest starts them (client
// certificate auth, RBAC on, service-account signing keys), plus the controllers Kubernetes would
// run without a kubelet (garbage collection, Deployment -> ReplicaSet -> Pod, ServiceAccount and
// its token controller, namespace deletion, EndpointSlices, ...).
//
// Binaries: built from Go modules by hack/controlplane/install.sh (versions in versions.env) and
// cached under ${DBPROXY_CACHE:-${XDG_CACHE_HOME:-~/.cache}/dbproxy}/controlplane/k8s-<version>/bin.
// startControlPlane() runs install.sh first (instant when the cache is current; a cold build
// takes a long time and prints its progress on stderr). Set DBPROXY_KUBE_BIN_DIR (or pass
// opts.binDir) to use a directory that already holds etcd, kube-apiserver,
// kube-controller-manager and kubectl instead.
//
// Use from code (jest global setup, scripts):
//
//   import { startControlPlane } from '../hack/controlplane/controlPlane.js';
//   const cp = await startControlPlane({});
//   await cp.kubectl(['apply', '-f', '-'], { input: yamlText });   // { code, stdout, stderr }
//   process.env.KUBECONFIG = cp.kubeconfigPath;                     // admin (system:masters)
//   const opKubeconfig = await cp.userKubeconfig({ user: 'system:serviceaccount:dbproxy:dbproxy-operator',
//                                                   groups: ['system:serviceaccounts'] }); // RBAC-limited
//   await cp.restartApiServer();                                    // same flags, same port
//   await cp.stop();                                                // kills everything, removes the temp dir
//
// Everything lives in one directory (opts.dir, or a fresh temp dir that stop() removes): certs/,
// etcd/, the kubeconfig files, one log file per process (etcd.log, kube-apiserver.log,
// kube-controller-manager.log) and controlplane.json (addresses and paths, for other processes).
// The admin kubeconfig embeds its certificates, so it can be copied anywhere.
//
// Child processes die with this process: stop() terminates them, an exit hook kills them if the
// process exits without stop(), and on Linux they are started under `setpriv --pdeathsig SIGKILL`
// so even a SIGKILLed parent leaves nothing behind.
//
// Command line (local development), after `npm run build`:
//
//   node dist/hack/controlplane/controlPlane.js start [--dir DIR] [--port PORT]
//
// prints the kubeconfig path and stays in the foreground until Ctrl-C.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';

export interface ControlPlaneOptions {
  /** Working directory for certs, etcd data, kubeconfigs and logs. Default: a new temp dir, removed by stop(). */
  dir?: string;
  /** kube-apiserver's secure port on 127.0.0.1. Default: a free port. */
  apiPort?: number;
  /** Directory holding etcd, kube-apiserver, kube-controller-manager and kubectl. Default: $DBPROXY_KUBE_BIN_DIR, else install.sh. */
  binDir?: string;
  /** kube-controller-manager --controllers. Default: ['*'] (every default controller). */
  controllers?: string[];
  /** Extra kube-apiserver flags, e.g. ['--feature-gates=...']. */
  extraApiServerArgs?: string[];
  /** Extra kube-controller-manager flags. */
  extraControllerManagerArgs?: string[];
  /** How long to wait for each component to become ready. Default 120 s. */
  startTimeoutMs?: number;
  /** Keep the working directory after stop() even when it is a temp dir (for post-mortems). */
  keepDir?: boolean;
  /** Progress messages. Default: silent. The CLI logs to stderr. */
  log?: (message: string) => void;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface KubectlOptions {
  /** Written to kubectl's stdin (e.g. for `apply -f -`). */
  input?: string;
  /** Kubeconfig to use instead of the admin one (e.g. from userKubeconfig()). */
  kubeconfig?: string;
  /** Kill kubectl after this long. Default 60 s. */
  timeoutMs?: number;
}

export interface ControlPlane {
  /** Admin kubeconfig (user `admin` in group system:masters), certificates embedded. */
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  apiUrl: string;
  /** The cluster CA (PEM file); it signs the serving and client certificates. */
  caPath: string;
  /** Where the binaries are. */
  binDir: string;
  /** The working directory. */
  dir: string;
  /** Admin client certificate and key (PEM files), for raw HTTPS clients. */
  adminCertPath: string;
  adminKeyPath: string;
  /** Runs kubectl against this cluster; never throws for a non-zero exit. */
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /**
   * Writes a kubeconfig for an arbitrary identity, authenticated by a client certificate signed by
   * the cluster CA. RBAC then applies as for that user, e.g. user
   * `system:serviceaccount:<ns>:<name>` with group `system:serviceaccounts` is treated like that
   * ServiceAccount. Returns the file path.
   */
  userKubeconfig(opts: { user: string; groups?: string[]; path?: string }): Promise<string>;
  /**
   * Stops kube-apiserver and starts it again with the same flags and port; resolves when /readyz is
   * ok. Graceful (SIGTERM, ~2 s drain) by default; `{ kill: true }` SIGKILLs it, like a crash.
   * etcd keeps running, so all objects survive; clients' watches break and must re-establish.
   */
  restartApiServer(opts?: { kill?: boolean }): Promise<void>;
  /** Stops every process (controller-manager, apiserver, etcd) and removes a temp working dir. Idempotent. */
  stop(): Promise<void>;
}

const SERVICE_CIDR = '10.0.0.0/16';
const KUBERNETES_SERVICE_IP = '10.0.0.1';
const SA_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const CLUSTER_NAME = 'dbproxy-test';

// ---------------------------------------------------------------------------------------------
// Processes

const live = new Set<ManagedProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.killNow();
  });
}

let setprivAvailable: boolean | undefined;
function canUseSetpriv(): boolean {
  if (setprivAvailable === undefined) {
    // PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only use it from the main thread.
    setprivAvailable =
      process.platform === 'linux' &&
      isMainThread &&
      spawnSync('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  }
  return setprivAvailable;
}

class ManagedProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopping = false;
  exitDescription: string | undefined;

  constructor(
    readonly name: string,
    private readonly bin: string,
    private readonly args: string[],
    readonly logPath: string,
    private readonly log: (m: string) => void,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitDescription === undefined;
  }

  start(): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    const fd = openSync(this.logPath, 'a');
    const [cmd, argv] = canUseSetpriv()
      ? ['setpriv', ['--pdeathsig', 'SIGKILL', '--', this.bin, ...this.args]]
      : [this.bin, this.args];
    let child: ChildProcess;
    try {
      // Own process group: a Ctrl-C in the terminal reaches only this process, which then stops
      // the children in order (controller-manager, apiserver, etcd).
      child = spawn(cmd, argv, { stdio: ['ignore', fd, fd], cwd: dirname(this.logPath), detached: true });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.exitDescription = undefined;
    this.stopping = false;
    live.add(this);
    installExitHook();
    this.exited = new Promise<void>((resolveExit) => {
      const done = (description: string): void => {
        if (this.child !== child) return resolveExit();
        this.exitDescription ??= description;
        live.delete(this);
        if (!this.stopping) this.log(`${this.name} exited unexpectedly (${description}); log: ${this.logPath}`);
        resolveExit();
      };
      child.once('error', (err) => done(`failed to start: ${err.message}`));
      child.once('exit', (code, signal) => done(signal ? `signal ${signal}` : `exit code ${code}`));
    });
  }

  /** SIGTERM, then SIGKILL after graceMs. Resolves once the process is gone. */
  async stop(graceMs = 15_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    this.stopping = true;
    if (graceMs <= 0) {
      child.kill('SIGKILL');
      await this.exited;
      return;
    }
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<void>((r) => {
      timer = setTimeout(() => {
        if (this.running) {
          this.log(`${this.name} did not exit ${graceMs} ms after SIGTERM; sending SIGKILL`);
          child.kill('SIGKILL');
        }
        r();
      }, graceMs);
    });
    await Promise.race([this.exited, killed]);
    await this.exited;
    clearTimeout(timer);
  }

  killNow(): void {
    if (this.running) {
      this.stopping = true;
      this.child?.kill('SIGKILL');
    }
  }

  /** Throws with the end of the log if the process has exited. */
  assertRunning(): void {
    if (this.exitDescription !== undefined) {
      throw new Error(`${this.name} exited during startup (${this.exitDescription}); last log lines from ${this.logPath}:\n${tail(this.logPath)}`);
    }
  }
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<ReturnType<typeof createServer>>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(0, '127.0.0.1', () => res(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/**
 * How long a kubectl call may take before it is killed: 60 s, or for a command with its own
 * `--timeout` (kubectl wait, delete --wait) that timeout and 30 s more, so kubectl can answer
 * with its own message instead of being cut off silently.
 */
export function kubectlDeadlineMs(args: readonly string[], explicitMs?: number): number {
  if (explicitMs !== undefined) return explicitMs;
  const t = args.map((a) => /^--(?:request-)?timeout=(\d+)(ms|s|m|h)?$/.exec(a)).find((m) => m !== null);
  if (!t) return 60_000;
  const ms = Number(t[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[t[2] ?? 's']!;
  return Math.max(60_000, ms + 30_000);
}

function run(cmd: string, args: string[], cwd: string): Promise<KubectlResult> {
  return runWithInput(cmd, args, { cwd });
}

function runWithInput(
  cmd: string,
  args: string[],
  opts: { cwd?: string; input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv },
): Promise<KubectlResult> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          err.push(Buffer.from(`\n(killed after ${opts.timeoutMs} ms)`));
          child.kill('SIGKILL');
        }, opts.timeoutMs)
      : undefined;
    child.once('error', (e) => {
      clearTimeout(timer);
      rej(new Error(`${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      res({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {}); // the child may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

async function runOrThrow(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

interface TlsMaterial {
  ca: string;
  cert?: string;
  key?: string;
}

function get(url: string, tls?: TlsMaterial): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const u = new URL(url);
    const options = { method: 'GET', timeout: 5_000, agent: false as const, ...(tls ?? {}) };
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, options, (resp) => {
      const chunks: Buffer[] = [];
      resp.on('data', (c: Buffer) => chunks.push(c));
      resp.on('end', () => res({ status: resp.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      resp.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls check() until it returns true; fails early when a watched process exits. */
async function waitUntil(
  what: string,
  timeoutMs: number,
  procs: ManagedProcess[],
  check: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    for (const p of procs) p.assertRunning();
    try {
      if (await check()) return;
      last = '';
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) {
      const logs = procs.map((p) => `--- ${p.logPath}\n${tail(p.logPath)}`).join('\n');
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}\n${logs}`);
    }
    await sleep(delay);
  }
}

// ---------------------------------------------------------------------------------------------
// Binaries

function findRepoFile(rel: string): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(d, rel);
    if (existsSync(candidate)) return candidate;
    const up = dirname(d);
    if (up === d) throw new Error(`cannot find ${rel} above ${dirname(fileURLToPath(import.meta.url))}`);
    d = up;
  }
}

const BINARIES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kubectl'];

/** Returns the directory holding the control plane binaries, building them with install.sh if needed. */
export async function ensureBinaries(opts: { binDir?: string } = {}): Promise<string> {
  const given = opts.binDir ?? process.env.DBPROXY_KUBE_BIN_DIR;
  let binDir: string;
  if (given) {
    binDir = resolve(given);
  } else {
    const script = findRepoFile('hack/controlplane/install.sh');
    binDir = await new Promise<string>((res, rej) => {
      // stderr is inherited: silent when the cache is current, build progress otherwise.
      const child = spawn('bash', [script, '--quiet'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const out: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.once('error', rej);
      child.once('close', (code) => {
        const lines = Buffer.concat(out).toString('utf8').trim().split('\n');
        if (code === 0 && lines.length > 0 && lines.at(-1)) res(lines.at(-1) as string);
        else rej(new Error(`${script} failed with exit code ${code}`));
      });
    });
  }
  const missing = BINARIES.filter((b) => !existsSync(join(binDir, b)));
  if (missing.length > 0) throw new Error(`${binDir} lacks ${missing.join(', ')}`);
  return binDir;
}

// ---------------------------------------------------------------------------------------------
// Certificates (openssl CLI) and kubeconfigs

const OPENSSL_CNF = `[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,DNS:localhost,IP:${KUBERNETES_SERVICE_IP},DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function subject(cn: string, orgs: string[] = []): string {
  for (const v of [cn, ...orgs]) {
    if (!v || /[/\\+,=\n]/.test(v)) throw new Error(`unsupported character in certificate subject value ${JSON.stringify(v)}`);
  }
  return orgs.map((o) => `/O=${o}`).join('') + `/CN=${cn}`;
}

class CertAuthority {
  readonly caCert: string;
  readonly caKey: string;
  private readonly cnf: string;

  constructor(private readonly dir: string) {
    this.caCert = join(dir, 'ca.crt');
    this.caKey = join(dir, 'ca.key');
    this.cnf = join(dir, 'openssl.cnf');
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await writeFile(this.cnf, OPENSSL_CNF);
    await runOrThrow('openssl', ['req', '-x509', '-config', this.cnf, '-extensions', 'ca_ext', ...EC_KEY,
      '-keyout', this.caKey, '-out', this.caCert, '-days', '3650', '-subj', subject(`${CLUSTER_NAME}-ca`)], this.dir);
  }

  /** Issues a certificate; returns [certPath, keyPath]. */
  async issue(name: string, kind: 'server' | 'client', cn: string, orgs: string[] = []): Promise<[string, string]> {
    const cert = join(this.dir, `${name}.crt`);
    const key = join(this.dir, `${name}.key`);
    const csr = join(this.dir, `${name}.csr`);
    await runOrThrow('openssl', ['req', '-new', '-config', this.cnf, ...EC_KEY, '-keyout', key, '-out', csr, '-subj', subject(cn, orgs)], this.dir);
    await runOrThrow('openssl', ['x509', '-req', '-in', csr, '-CA', this.caCert, '-CAkey', this.caKey,
      '-set_serial', `0x${randomBytes(16).toString('hex')}`, '-days', '3650', '-sha256',
      '-extfile', this.cnf, '-extensions', `${kind}_ext`, '-out', cert], this.dir);
    await rm(csr, { force: true });
    return [cert, key];
  }
}

async function writeKubeconfig(path: string, server: string, caPath: string, user: string, certPath: string, keyPath: string): Promise<void> {
  const b64 = async (p: string): Promise<string> => (await readFile(p)).toString('base64');
  // JSON is YAML; kubectl and every client library read it.
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: CLUSTER_NAME, cluster: { server, 'certificate-authority-data': await b64(caPath) } }],
    users: [{ name: user, user: { 'client-certificate-data': await b64(certPath), 'client-key-data': await b64(keyPath) } }],
    contexts: [{ name: CLUSTER_NAME, context: { cluster: CLUSTER_NAME, user, namespace: 'default' } }],
    'current-context': CLUSTER_NAME,
    preferences: {},
  };
  await writeFile(path, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
}

// ---------------------------------------------------------------------------------------------
// The control plane

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const log = opts.log ?? ((): void => {});
  const timeout = opts.startTimeoutMs ?? 120_000;
  const binDir = await ensureBinaries({ binDir: opts.binDir });
  const ownDir = opts.dir === undefined;
  const dir = resolve(opts.dir ?? (await mkdtemp(join(tmpdir(), 'dbproxy-controlplane-'))));
  await mkdir(dir, { recursive: true });
  const certDir = join(dir, 'certs');
  const etcdDir = join(dir, 'etcd');
  // A fresh cluster every time: old etcd data would not match the new keys.
  await rm(etcdDir, { recursive: true, force: true });
  await rm(certDir, { recursive: true, force: true });
  await mkdir(etcdDir, { recursive: true, mode: 0o700 });

  const [etcdPort, etcdPeerPort, freeApiPort, kcmPort] = await freePorts(4);
  const apiPort = opts.apiPort ?? (freeApiPort as number);
  const apiUrl = `https://127.0.0.1:${apiPort}`;
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;

  log(`generating certificates in ${certDir}`);
  const ca = new CertAuthority(certDir);
  await ca.init();
  const [serverCert, serverKey] = await ca.issue('serving', 'server', 'kube-apiserver');
  const [adminCert, adminKey] = await ca.issue('admin', 'client', 'admin', ['system:masters']);
  const [kcmCert, kcmKey] = await ca.issue('kube-controller-manager', 'client', 'system:kube-controller-manager');
  const saKeyPath = join(certDir, 'sa.key');
  const saPubPath = join(certDir, 'sa.pub');
  const sa = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  });
  await writeFile(saKeyPath, sa.privateKey, { mode: 0o600 });
  await writeFile(saPubPath, sa.publicKey);

  const kubeconfigPath = join(dir, 'admin.kubeconfig');
  const kcmKubeconfig = join(dir, 'kube-controller-manager.kubeconfig');
  await writeKubeconfig(kubeconfigPath, apiUrl, ca.caCert, 'admin', adminCert, adminKey);
  await writeKubeconfig(kcmKubeconfig, apiUrl, ca.caCert, 'system:kube-controller-manager', kcmCert, kcmKey);

  const etcd = new ManagedProcess('etcd', join(binDir, 'etcd'), [
    '--name=default',
    `--data-dir=${etcdDir}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${etcdPeerUrl}`,
    `--initial-advertise-peer-urls=${etcdPeerUrl}`,
    `--initial-cluster=default=${etcdPeerUrl}`,
    '--initial-cluster-state=new',
    '--unsafe-no-fsync=true', // throwaway data: durability buys nothing, fsync costs seconds
    '--log-level=warn',
  ], join(dir, 'etcd.log'), log);

  const apiServer = new ManagedProcess('kube-apiserver', join(binDir, 'kube-apiserver'), [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--cert-dir=${certDir}`,
    `--tls-cert-file=${serverCert}`,
    `--tls-private-key-file=${serverKey}`,
    `--client-ca-file=${ca.caCert}`,
    '--authorization-mode=Node,RBAC',
    '--anonymous-auth=true', // lets unauthenticated clients reach /healthz, /readyz, /livez, /version (as on real clusters)
    `--service-account-issuer=${SA_ISSUER}`,
    `--service-account-key-file=${saPubPath}`,
    `--service-account-signing-key-file=${saKeyPath}`,
    `--service-cluster-ip-range=${SERVICE_CIDR}`,
    '--allow-privileged=true',
    // Graceful shutdown in ~2 s instead of up to 60 s: drain ordinary requests, answer new ones
    // with 429 + Retry-After, then GOAWAY the long-running watches (clients re-list and re-watch).
    '--shutdown-send-retry-after=true',
    ...(opts.extraApiServerArgs ?? []),
  ], join(dir, 'kube-apiserver.log'), log);

  const controllerManager = new ManagedProcess('kube-controller-manager', join(binDir, 'kube-controller-manager'), [
    `--kubeconfig=${kcmKubeconfig}`,
    `--authentication-kubeconfig=${kcmKubeconfig}`,
    `--authorization-kubeconfig=${kcmKubeconfig}`,
    '--bind-address=127.0.0.1',
    `--secure-port=${kcmPort}`,
    `--tls-cert-file=${serverCert}`,
    `--tls-private-key-file=${serverKey}`,
    `--controllers=${(opts.controllers ?? ['*']).join(',')}`,
    `--service-account-private-key-file=${saKeyPath}`,
    `--root-ca-file=${ca.caCert}`,
    '--use-service-account-credentials=true',
    `--cluster-signing-cert-file=${ca.caCert}`,
    `--cluster-signing-key-file=${ca.caKey}`,
    `--service-cluster-ip-range=${SERVICE_CIDR}`,
    `--cluster-name=${CLUSTER_NAME}`,
    '--leader-elect=false', // one instance; skips the lease wait after restarts
    ...(opts.extraControllerManagerArgs ?? []),
  ], join(dir, 'kube-controller-manager.log'), log);

  const adminTls: TlsMaterial = {
    ca: readFileSync(ca.caCert, 'utf8'),
    cert: readFileSync(adminCert, 'utf8'),
    key: readFileSync(adminKey, 'utf8'),
  };
  const apiGet = (path: string): Promise<{ status: number; body: string }> => get(`${apiUrl}${path}`, adminTls);

  const waitApiReady = async (): Promise<void> => {
    await waitUntil('kube-apiserver /readyz', timeout, [etcd, apiServer], async () => {
      const r = await apiGet('/readyz');
      if (r.status !== 200) throw new Error(`/readyz ${r.status}: ${r.body.trim().split('\n').filter((l) => l.includes('[-]')).join('; ')}`);
      return true;
    });
  };

  const procs = [controllerManager, apiServer, etcd];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const p of procs) await p.stop();
    if (ownDir && !opts.keepDir) await rm(dir, { recursive: true, force: true });
  };

  try {
    const t0 = Date.now();
    log(`starting etcd on ${etcdUrl}`);
    etcd.start();
    await waitUntil('etcd /health', timeout, [etcd], async () => {
      const r = await get(`${etcdUrl}/health`);
      return r.status === 200 && JSON.parse(r.body).health === 'true';
    });
    log(`starting kube-apiserver on ${apiUrl}`);
    apiServer.start();
    await waitApiReady();
    log(`starting kube-controller-manager (controllers ${(opts.controllers ?? ['*']).join(',')})`);
    controllerManager.start();
    await waitUntil('kube-controller-manager /healthz', timeout, [etcd, apiServer, controllerManager], async () => {
      const r = await get(`https://127.0.0.1:${kcmPort}/healthz`, { ca: adminTls.ca });
      if (r.status !== 200) throw new Error(`/healthz ${r.status}: ${r.body.trim()}`);
      return true;
    });
    // The ServiceAccount controller creates `default` in each namespace; pods and `kubectl create
    // token default` need it, so wait for it rather than make every test race it.
    if ((opts.controllers ?? ['*']).some((c) => c === '*' || c === 'serviceaccount')) {
      await waitUntil('the default ServiceAccount', timeout, procs, async () =>
        (await apiGet('/api/v1/namespaces/default/serviceaccounts/default')).status === 200);
    }
    log(`control plane ready in ${Date.now() - t0} ms; kubeconfig ${kubeconfigPath}`);
  } catch (e) {
    stopped = true;
    for (const p of procs) await p.stop(2_000);
    throw new Error(`control plane failed to start (logs kept in ${dir}): ${(e as Error).message}`);
  }

  await writeFile(join(dir, 'controlplane.json'), JSON.stringify({
    kubeconfigPath, apiUrl, caPath: ca.caCert, binDir, dir, adminCertPath: adminCert, adminKeyPath: adminKey,
    etcdUrl, pids: Object.fromEntries(procs.map((p) => [p.name, p.pid])),
  }, null, 2) + '\n');

  let userSeq = 0;
  return {
    kubeconfigPath,
    apiUrl,
    caPath: ca.caCert,
    binDir,
    dir,
    adminCertPath: adminCert,
    adminKeyPath: adminKey,
    kubectl: (args, kopts = {}) =>
      runWithInput(join(binDir, 'kubectl'), ['--kubeconfig', kopts.kubeconfig ?? kubeconfigPath, ...args], {
        input: kopts.input,
        timeoutMs: kubectlDeadlineMs(args, kopts.timeoutMs),
        env: { ...process.env, KUBECONFIG: undefined, KUBECTL_KUBERC: 'false' },
      }),
    userKubeconfig: async ({ user, groups = [], path }) => {
      const name = `user-${++userSeq}`;
      const [cert, key] = await ca.issue(name, 'client', user, groups);
      const out = path ?? join(dir, `${name}.kubeconfig`);
      await writeKubeconfig(out, apiUrl, ca.caCert, user, cert, key);
      return out;
    },
    restartApiServer: async (ropts = {}) => {
      if (stopped) throw new Error('control plane is stopped');
      log(`restarting kube-apiserver${ropts.kill ? ' (SIGKILL)' : ''}`);
      await apiServer.stop(ropts.kill ? 0 : undefined);
      apiServer.start();
      await waitApiReady();
      log('kube-apiserver is back');
    },
    stop,
  };
}

// ---------------------------------------------------------------------------------------------
// CLI

function isMain(): boolean {
  if (!process.argv[1]) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const usage = 'usage: controlPlane.js start [--dir DIR] [--port PORT]';
  if (command !== 'start') {
    console.error(usage);
    process.exit(2);
  }
  const opts: ControlPlaneOptions = { log: (m) => console.error(`[controlplane] ${m}`) };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = rest[i + 1];
    if (flag === '--dir' && value) opts.dir = value;
    else if (flag === '--port' && value) opts.apiPort = Number(value);
    else {
      console.error(usage);
      process.exit(2);
    }
    i++;
  }
  const cp = await startControlPlane(opts);
  console.log(cp.kubeconfigPath);
  console.error(`[controlplane] API ${cp.apiUrl}; try: export KUBECONFIG=${cp.kubeconfigPath}; ${join(cp.binDir, 'kubectl')} get ns`);
  console.error('[controlplane] Ctrl-C stops it');
  await new Promise<void>((resolveSignal) => {
    process.once('SIGINT', () => resolveSignal());
    process.once('SIGTERM', () => resolveSignal());
  });
  console.error('[controlplane] stopping');
  await cp.stop();
}

if (isMain()) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
