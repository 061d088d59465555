// One pod, played by the local pod runner the way a kubelet would: its volumes written as files,
// its container started as a local process (in its own mount namespace, so the files appear at
// the pod's mount paths), its probes run, its status reported, and on deletion the preStop hook,
// SIGTERM, the grace period and SIGKILL. Test infrastructure: one container per pod, no init
// containers, no resource limits, no security context enforcement (processes run as the runner's
// user).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { V1Container, V1EnvVar, V1Pod, V1Probe } from '@kubernetes/client-node';
import { fieldValue, materializeVolume, VolumeError, type MaterializedVolume, type VolumeSources } from './volumes.js';

/** How a container image becomes a local command: images starting with `prefix` run `entrypoint` + args. */
export interface ImageCommand {
  prefix: string;
  entrypoint: string[];
}

export interface PodProcessOptions {
  pod: V1Pod;
  podIp: string;
  nodeName: string;
  /** Directory for this pod's volumes, hosts file and logs. */
  dir: string;
  images: ImageCommand[];
  sources: VolumeSources & {
    /** For env valueFrom secretKeyRef / configMapKeyRef. */
    secretKey(namespace: string, name: string, key: string): Promise<string | undefined>;
    configMapKey(namespace: string, name: string, key: string): Promise<string | undefined>;
  };
  /** Where in-cluster clients find the API server (KUBERNETES_SERVICE_HOST/PORT). */
  apiServer: { host: string; port: number };
  /** The pod's /etc/hosts (cluster DNS names of Services), kept current by the runner. */
  hosts: () => string;
  /** Paths that must stay visible inside the pod (the runner's code and data): a mount over them is skipped. */
  keepVisible: string[];
  /** Writes the pod's status (merge patch of .status). */
  reportStatus: (status: Record<string, unknown>) => Promise<void>;
  log: (message: string) => void;
  /** First restart delay; doubles up to 10 s. Default 1 s (a kubelet starts at 10 s). */
  restartBackoffMs?: number;
}

/** The lookups a pod needs: volume contents, and Secret/ConfigMap keys for env valueFrom. */
export type PodSources = PodProcessOptions['sources'];

type ContainerState =
  | { state: 'waiting'; reason: string; message?: string }
  | { state: 'running'; startedAt: string }
  | { state: 'terminated'; exitCode: number; reason: string; startedAt?: string; finishedAt: string };

/** bindToPodIp.js as built (under tests this module runs from its .ts source, so look in dist/ too). */
function preloadPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const sibling = join(here, 'bindToPodIp.js');
  if (existsSync(sibling)) return sibling;
  const built = resolve(here, '..', '..', 'dist', 'hack', 'podRunner', 'bindToPodIp.js');
  if (existsSync(built)) return built;
  throw new Error(`${built} is missing: run npm run build`);
}
const PRELOAD = preloadPath();
const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const sq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const isWithin = (path: string, dir: string): boolean => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);

/** The pod status a kubelet would report for this state. Pure. */
export function podStatus(s: {
  podIp: string;
  startTime: string;
  container: V1Container;
  containerState: ContainerState;
  ready: boolean;
  started: boolean;
  restartCount: number;
  /** How the container last ended, once it has been restarted (kubelet's lastState). */
  lastTerminated?: Extract<ContainerState, { state: 'terminated' }>;
  transitions: Record<string, string>;
}): Record<string, unknown> {
  const cond = (type: string, status: boolean) => ({ type, status: status ? 'True' : 'False', lastTransitionTime: s.transitions[`${type}=${status}`] ?? s.startTime });
  const { state: kind, ...details } = s.containerState;
  return {
    phase: 'Running',
    hostIP: '127.0.0.1',
    hostIPs: [{ ip: '127.0.0.1' }],
    podIP: s.podIp,
    podIPs: [{ ip: s.podIp }],
    startTime: s.startTime,
    conditions: [cond('PodScheduled', true), cond('Initialized', true), cond('ContainersReady', s.ready), cond('Ready', s.ready)],
    containerStatuses: [
      {
        name: s.container.name,
        image: s.container.image ?? '',
        imageID: '',
        ready: s.ready,
        started: s.started,
        restartCount: s.restartCount,
        state: { [kind]: details },
        ...(s.lastTerminated ? { lastState: { terminated: (({ state: _t, ...rest }) => rest)(s.lastTerminated) } } : {}),
      },
    ],
  };
}

export class PodProcess {
  private readonly pod: V1Pod;
  private readonly container: V1Container;
  private child: ChildProcess | undefined;
  private logStream: WriteStream | undefined;
  private containerState: ContainerState = { state: 'waiting', reason: 'ContainerCreating' };
  private ready = false;
  private started = false;
  private restartCount = 0;
  private lastTerminated: Extract<ContainerState, { state: 'terminated' }> | undefined;
  private readonly startTime = now();
  private readonly transitions: Record<string, string> = {};
  private timers: NodeJS.Timeout[] = [];
  private stopping = false;
  private lastReported = '';
  private exited: Promise<void> = Promise.resolve();
  private volumesDir: string;

  constructor(private readonly opts: PodProcessOptions) {
    this.pod = opts.pod;
    const containers = opts.pod.spec?.containers ?? [];
    this.container = containers[0]!;
    this.volumesDir = join(opts.dir, 'volumes');
  }

  get name(): string {
    return `${this.pod.metadata?.namespace}/${this.pod.metadata?.name}`;
  }

  get ip(): string {
    return this.opts.podIp;
  }

  get isReady(): boolean {
    return this.ready;
  }

  get logFile(): string {
    return join(this.opts.dir, `${this.container.name}.log`);
  }

  /** Why this pod cannot run here, if it cannot. */
  static unsupported(pod: V1Pod): string | undefined {
    const spec = pod.spec;
    if (!spec || spec.containers.length !== 1) return 'the local pod runner runs pods with exactly one container';
    if (spec.initContainers?.length) return 'the local pod runner does not run init containers';
    if (spec.containers[0]!.envFrom?.length) return 'the local pod runner does not support envFrom';
    return undefined;
  }

  /** Writes the volumes and starts the container. Missing ConfigMaps/Secrets leave it waiting with the reason, and retry. */
  async start(): Promise<void> {
    mkdirSync(this.volumesDir, { recursive: true });
    await this.report();
    for (;;) {
      if (this.stopping) return;
      try {
        await this.syncVolumes();
        await this.launch();
        return;
      } catch (e) {
        if (!(e instanceof VolumeError)) throw e;
        this.containerState = { state: 'waiting', reason: 'ContainerCreating', message: e.message };
        await this.report();
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Rewrites volume files whose content changed (ConfigMap/Secret updates reach the running pod). */
  async syncVolumes(): Promise<void> {
    const volumes: MaterializedVolume[] = [];
    for (const v of this.pod.spec?.volumes ?? []) volumes.push(await materializeVolume(this.pod, v, this.opts.sources, this.opts.podIp, this.opts.nodeName));
    for (const v of volumes) {
      const dir = join(this.volumesDir, v.name);
      mkdirSync(dir, { recursive: true, mode: 0o777 });
      for (const f of v.files) {
        const path = join(dir, f.path);
        if (!isWithin(path, dir)) throw new VolumeError(`volume ${v.name}: path ${f.path} leaves the volume`);
        if (existsSync(path) && readFileSync(path).equals(f.content)) continue;
        mkdirSync(dirname(path), { recursive: true });
        // Write-then-rename: a reader sees the old file or the new one, never half of it.
        const tmp = `${path}.${process.pid}.tmp`;
        writeFileSync(tmp, f.content, { mode: f.mode });
        renameSync(tmp, path);
      }
    }
    this.writeHosts();
  }

  /** Rewrites /etc/hosts in place (it is bind-mounted as a file, so it must keep its inode). */
  writeHosts(): void {
    const path = join(this.opts.dir, 'hosts');
    const content = this.opts.hosts();
    if (existsSync(path) && readFileSync(path, 'utf8') === content) return;
    writeFileSync(path, content);
  }

  private async env(): Promise<Record<string, string>> {
    const ns = this.pod.metadata?.namespace ?? 'default';
    const out: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: join(this.opts.dir, 'home'),
      HOSTNAME: this.pod.metadata?.name ?? '',
      KUBERNETES_SERVICE_HOST: this.opts.apiServer.host,
      KUBERNETES_SERVICE_PORT: String(this.opts.apiServer.port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(this.opts.apiServer.port),
    };
    mkdirSync(out.HOME!, { recursive: true });
    const resolveVar = async (e: V1EnvVar): Promise<string | undefined> => {
      if (e.value !== undefined) return e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string) => out[name] ?? m);
      const from = e.valueFrom;
      if (!from) return '';
      if (from.fieldRef) return fieldValue(this.pod, from.fieldRef.fieldPath, this.opts.podIp, this.opts.nodeName);
      if (from.secretKeyRef) {
        const v = await this.opts.sources.secretKey(ns, from.secretKeyRef.name!, from.secretKeyRef.key);
        if (v === undefined && !from.secretKeyRef.optional) throw new VolumeError(`env ${e.name}: secret "${from.secretKeyRef.name}" has no key ${from.secretKeyRef.key}`);
        return v;
      }
      if (from.configMapKeyRef) {
        const v = await this.opts.sources.configMapKey(ns, from.configMapKeyRef.name!, from.configMapKeyRef.key);
        if (v === undefined && !from.configMapKeyRef.optional) throw new VolumeError(`env ${e.name}: configmap "${from.configMapKeyRef.name}" has no key ${from.configMapKeyRef.key}`);
        return v;
      }
      throw new VolumeError(`env ${e.name}: resourceFieldRef is not supported by the local pod runner`);
    };
    for (const e of this.container.env ?? []) {
      const v = await resolveVar(e);
      if (v !== undefined) out[e.name] = v;
    }
    // Wildcard listens become listens on the pod IP (see bindToPodIp.ts).
    out.PODRUNNER_POD_IP = this.opts.podIp;
    out.NODE_OPTIONS = `${out.NODE_OPTIONS ? `${out.NODE_OPTIONS} ` : ''}--import=${PRELOAD}`;
    return out;
  }

  private argv(): string[] {
    const image = this.container.image ?? '';
    const mapped = this.opts.images.find((i) => image.startsWith(i.prefix));
    if (!mapped) throw new VolumeError(`image ${image} has no local command (the runner knows ${this.opts.images.map((i) => i.prefix).join(', ')})`);
    return [...(this.container.command ?? mapped.entrypoint), ...(this.container.args ?? [])];
  }

  /** A shell script run inside the new mount namespace: bind every volume to its mount path, then exec the container. */
  private mountScript(): string {
    const lines = ['set -e'];
    const bind = (src: string, dst: string, readOnly: boolean): void => {
      if (this.opts.keepVisible.some((p) => isWithin(p, dst))) {
        this.opts.log(`${this.name}: not mounting over ${dst}: it would hide the runner's own files`);
        return;
      }
      if (!existsSync(dst)) mkdirSync(dst, { recursive: true }); // a mount point must exist (an empty directory is left on the host)
      lines.push(`mount --bind ${sq(src)} ${sq(dst)}`);
      if (readOnly) lines.push(`mount -o remount,bind,ro ${sq(dst)}`);
    };
    for (const m of this.container.volumeMounts ?? []) {
      if (m.subPath) throw new VolumeError(`volumeMount ${m.mountPath}: subPath is not supported by the local pod runner`);
      bind(join(this.volumesDir, m.name), m.mountPath, m.readOnly ?? false);
    }
    bind(join(this.opts.dir, 'hosts'), '/etc/hosts', true);
    lines.push('exec "$@"');
    return lines.join('\n');
  }

  private async launch(): Promise<void> {
    const env = await this.env();
    const argv = this.argv();
    const script = this.mountScript();
    this.logStream ??= createWriteStream(this.logFile, { flags: 'a' });
    // setpriv --pdeathsig: the container dies with the runner, even when the runner is SIGKILLed.
    const child = spawn('setpriv', ['--pdeathsig', 'SIGKILL', 'unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'container', ...argv], {
      env,
      cwd: env.HOME,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout!.pipe(this.logStream, { end: false });
    child.stderr!.pipe(this.logStream, { end: false });
    const startedAt = now();
    this.containerState = { state: 'running', startedAt };
    this.setStarted(!this.container.startupProbe);
    this.setReady(!this.container.readinessProbe && !this.container.startupProbe);
    this.exited = new Promise((done) => {
      child.on('exit', (code, signal) => {
        this.child = undefined;
        this.clearTimers();
        const ended: Extract<ContainerState, { state: 'terminated' }> = {
          state: 'terminated',
          exitCode: code ?? 128 + (signal === 'SIGKILL' ? 9 : 15),
          reason: code === 0 ? 'Completed' : 'Error',
          startedAt,
          finishedAt: now(),
        };
        this.containerState = ended;
        this.setStarted(false);
        this.setReady(false);
        done();
        if (this.stopping) return;
        this.opts.log(`${this.name}: container exited (${code ?? signal}); restarting`);
        // As a kubelet with restartPolicy Always: waiting in CrashLoopBackOff until the restart,
        // with how it ended as lastState, and the restart counted.
        const delay = Math.min(10_000, (this.opts.restartBackoffMs ?? 1000) * 2 ** this.restartCount);
        this.lastTerminated = ended;
        this.restartCount += 1;
        this.containerState = { state: 'waiting', reason: 'CrashLoopBackOff', message: `back-off ${Math.round(delay / 1000)}s restarting failed container=${this.container.name}` };
        void this.report();
        this.timers.push(setTimeout(() => void this.restart(), delay));
      });
    });
    this.startProbes();
    await this.report();
  }

  private async restart(): Promise<void> {
    if (this.stopping) return;
    try {
      await this.syncVolumes();
      await this.launch();
    } catch (e) {
      this.opts.log(`${this.name}: restart failed: ${(e as Error).message}`);
      this.timers.push(setTimeout(() => void this.restart(), 2000));
    }
  }

  private setReady(ready: boolean): void {
    if (this.ready !== ready) this.transitions[`Ready=${ready}`] = this.transitions[`ContainersReady=${ready}`] = now();
    this.ready = ready;
  }

  private setStarted(started: boolean): void {
    this.started = started;
  }

  private clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers = [];
  }

  /** Runs one probe: true when it passes. httpGet and tcpSocket, as a kubelet does them. */
  private probeOnce(probe: V1Probe): Promise<boolean> {
    const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
    const portOf = (port: number | string | undefined): number => {
      if (typeof port === 'number') return port;
      const named = this.container.ports?.find((p) => p.name === port);
      return named?.containerPort ?? Number(port);
    };
    if (probe.httpGet) {
      const g = probe.httpGet;
      return new Promise((done) => {
        const req = request({ host: g.host ?? this.opts.podIp, port: portOf(g.port as number | string), path: g.path ?? '/', timeout: timeoutMs }, (res) => {
          res.resume();
          done((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
        });
        req.on('timeout', () => req.destroy());
        req.on('error', () => done(false));
        req.end();
      });
    }
    if (probe.tcpSocket) {
      const t = probe.tcpSocket;
      return new Promise((done) => {
        const s = connect({ host: t.host ?? this.opts.podIp, port: portOf(t.port as number | string), timeout: timeoutMs });
        s.on('connect', () => {
          s.destroy();
          done(true);
        });
        s.on('timeout', () => s.destroy());
        s.on('error', () => done(false));
        s.on('close', () => done(false));
      });
    }
    return Promise.resolve(false); // exec and grpc probes: not supported here, so they fail visibly
  }

  /** Calls onResult with the probe's thresholded verdict every period, until the container exits. */
  private loopProbe(probe: V1Probe, onResult: (passed: boolean) => void, onlyWhen: () => boolean = () => true): void {
    let successes = 0;
    let failures = 0;
    const period = (probe.periodSeconds ?? 10) * 1000;
    const tick = async (): Promise<void> => {
      if (!this.child) return;
      if (onlyWhen()) {
        const ok = await this.probeOnce(probe);
        if (!this.child) return;
        if (ok) {
          successes += 1;
          failures = 0;
          if (successes >= (probe.successThreshold ?? 1)) onResult(true);
        } else {
          failures += 1;
          successes = 0;
          if (failures >= (probe.failureThreshold ?? 3)) onResult(false);
        }
      }
      this.timers.push(setTimeout(() => void tick(), period));
    };
    // The first check comes quickly (a kubelet's first probe is at initialDelaySeconds, then each period).
    this.timers.push(setTimeout(() => void tick(), Math.max(200, (probe.initialDelaySeconds ?? 0) * 1000)));
  }

  private startProbes(): void {
    const c = this.container;
    if (c.startupProbe) {
      this.loopProbe(
        c.startupProbe,
        (ok) => {
          if (ok && !this.started) {
            this.setStarted(true);
            if (!c.readinessProbe) this.setReady(true);
            void this.report();
          } else if (!ok && !this.started) this.kill('startup probe failed');
        },
        () => !this.started,
      );
    }
    if (c.readinessProbe) {
      this.loopProbe(
        c.readinessProbe,
        (ok) => {
          if (ok === this.ready) return;
          this.setReady(ok);
          void this.report();
        },
        () => this.started,
      );
    }
    if (c.livenessProbe) {
      this.loopProbe(c.livenessProbe, (ok) => !ok && this.kill('liveness probe failed'), () => this.started);
    }
  }

  /** A failed probe: the kubelet kills the container (SIGTERM, then SIGKILL after the grace period) and restarts it. */
  private kill(why: string): void {
    const child = this.child;
    if (!child) return;
    this.opts.log(`${this.name}: ${why}; killing the container`);
    child.kill('SIGTERM');
    const grace = (this.pod.spec?.terminationGracePeriodSeconds ?? 30) * 1000;
    setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), grace).unref();
  }

  /** Writes the status if it changed. Errors (e.g. the pod is gone) are logged, not thrown. */
  async report(): Promise<void> {
    const status = podStatus({
      podIp: this.opts.podIp,
      startTime: this.startTime,
      container: this.container,
      containerState: this.containerState,
      ready: this.ready,
      started: this.started,
      restartCount: this.restartCount,
      ...(this.lastTerminated ? { lastTerminated: this.lastTerminated } : {}),
      transitions: this.transitions,
    });
    const text = JSON.stringify(status);
    if (text === this.lastReported || this.stopping) return;
    this.lastReported = text;
    try {
      await this.opts.reportStatus(status);
    } catch (e) {
      this.lastReported = '';
      this.opts.log(`${this.name}: status update failed: ${(e as Error).message}`);
    }
  }

  /**
   * Graceful stop, as for a deleted pod: the preStop hook, then SIGTERM, then SIGKILL when the
   * grace period (counted from the start of the stop, preStop included) runs out.
   */
  async stop(gracePeriodSeconds: number): Promise<void> {
    if (this.stopping) return this.exited;
    this.stopping = true; // no restarts and no status writes from here on
    this.clearTimers();
    const deadline = Date.now() + gracePeriodSeconds * 1000;
    const preStop = this.container.lifecycle?.preStop;
    const child = this.child;
    if (child && preStop?.sleep) await new Promise((r) => setTimeout(r, Math.min(preStop.sleep!.seconds * 1000, Math.max(0, deadline - Date.now()))));
    else if (child && preStop?.httpGet) await this.probeOnce({ httpGet: preStop.httpGet, timeoutSeconds: Math.max(1, Math.floor((deadline - Date.now()) / 1000)) });
    const running = this.child;
    if (running) {
      running.kill('SIGTERM');
      const killer = setTimeout(() => running.kill('SIGKILL'), Math.max(0, deadline - Date.now()));
      await this.exited;
      clearTimeout(killer);
    }
    this.logStream?.end();
  }

  /** Stops at once (SIGKILL), e.g. when the pod was force-deleted or the runner stops. */
  async kill9(): Promise<void> {
    this.stopping = true;
    this.clearTimers();
    this.child?.kill('SIGKILL');
    await this.exited;
    this.logStream?.end();
  }

  async removeFiles(): Promise<void> {
    await rm(this.opts.dir, { recursive: true, force: true });
  }

  /** The container's log, for test failure messages. */
  logs(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}

