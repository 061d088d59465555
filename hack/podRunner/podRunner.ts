// The local pod runner: a small stand-in for a kubelet (and for the scheduler, kube-proxy and
// cluster DNS) on the test control plane, where there is no kubelet and no container runtime.
// Test infrastructure, used by `make demo` and the end-to-end test.
//
// It registers a Node and keeps it alive (status heartbeat + Lease), binds the unscheduled pods of
// the namespaces it serves to that Node, and runs each bound pod as a local process (podProcess.ts):
// volumes materialized as files and bind-mounted at the pod's mount paths in a private mount
// namespace, env from the pod spec (downward API, Secret and ConfigMap keys), a loopback address of
// its own as the pod IP, probes, status (Running, Ready, podIP), and preStop + SIGTERM + grace
// period + SIGKILL when the pod is deleted. ConfigMap and Secret changes are written into running
// pods' volumes. Every ClusterIP Service gets a loopback address that forwards to its ready
// endpoints (serviceForwarder.ts), and each pod's /etc/hosts resolves
// <service>.<namespace>.svc[.cluster.local] to it (headless Services: to their ready pods).
//
// Container images map to local commands (opts.images), e.g. the dbproxy image to
// `node dist/proxy/cli/dbproxy.js`. Needs root (mount namespaces) and Linux.
//
//   const runner = await PodRunner.start({ client, apiServer, namespaces: ['demo'], images });
//   runner.serviceIp('demo', 'orders');  // where the Service's ports listen, e.g. 127.41.7.2
//   await runner.stop();
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { V1ConfigMap, V1Pod, V1Secret, V1Service } from '@kubernetes/client-node';
import { pino } from 'pino';
import { isConflict, isNotFound, type KubeClient } from '../../operator/runtime/client.js';
import { Informer } from '../../operator/runtime/informer.js';
import { kubeResources as resources, resourcePath, type KubeObject, type Resource } from '../../operator/runtime/resources.js';
import { PodProcess, type ImageCommand, type PodSources } from './podProcess.js';
import { ServiceForwarder, serviceEndpoints } from './serviceForwarder.js';

export type { ImageCommand } from './podProcess.js';

export interface PodRunnerOptions {
  /** A client with cluster-admin rights (the runner reads Secrets and writes pod status, like a kubelet). */
  client: KubeClient;
  /** Where in-cluster clients in the pods reach the API server. */
  apiServer: { host: string; port: number };
  /** Namespaces whose pods this runner schedules and runs (other tests' pods are left alone). */
  namespaces: string[];
  images: ImageCommand[];
  /**
   * Default "dbproxy-local-A-B" after the runner's subnet: runners sharing a control plane (the
   * end-to-end test files run in parallel) must not share a Node, since each deletes its own when
   * it stops and the control plane then garbage-collects every pod bound to it.
   */
  nodeName?: string;
  /** Working directory (pod volumes, logs). Default: a new temp dir, removed by stop(). */
  dir?: string;
  /** First two octets after 127 for pod and Service addresses. Default: random. */
  subnet?: [number, number];
  clusterDomain?: string;
  log?: (message: string) => void;
}

const secrets: Resource = { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true };
const nodes: Resource = { group: '', version: 'v1', plural: 'nodes', kind: 'Node', namespaced: false };
const leases: Resource = resources.leases;

type K<T> = T & KubeObject;

interface NamespaceWatch {
  pods: Informer<K<V1Pod>>;
  configMaps: Informer<K<V1ConfigMap>>;
  secrets: Informer<K<V1Secret>>;
  services: Informer<K<V1Service>>;
}

const MERGE_PATCH = 'application/merge-patch+json';
const nowIso = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

export class PodRunner {
  readonly nodeName: string;
  readonly dir: string;
  private readonly ownsDir: boolean;
  private readonly log: (m: string) => void;
  private readonly watches = new Map<string, NamespaceWatch>();
  /** Running pods by uid. */
  private readonly pods = new Map<string, PodProcess>();
  private readonly podIps = new Map<string, string>();
  private readonly binding = new Set<string>();
  private readonly finishing = new Set<string>();
  private readonly serviceIps = new Map<string, string>();
  private readonly forwarders = new Map<string, { forwarder: ServiceForwarder; key: string }>();
  private readonly tokens = new Map<string, { token: string; refreshAt: number }>();
  private nextPodHost = 10;
  private nextServiceHost = 2;
  private readonly subnet: [number, number];
  private heartbeat: NodeJS.Timeout | undefined;
  private resync: NodeJS.Timeout | undefined;
  private stopped = false;

  private constructor(private readonly opts: PodRunnerOptions) {
    this.ownsDir = !opts.dir;
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'dbproxy-pods-'));
    this.log = opts.log ?? (() => {});
    const octet = (): number => 2 + Math.floor(Math.random() * 240);
    this.subnet = opts.subnet ?? [octet(), octet()];
    this.nodeName = opts.nodeName ?? `dbproxy-local-${this.subnet.join('-')}`;
  }

  static async start(opts: PodRunnerOptions): Promise<PodRunner> {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) {
      throw new Error('the local pod runner needs Linux and root: it bind-mounts pod volumes at their mount paths in private mount namespaces');
    }
    const r = new PodRunner(opts);
    await r.registerNode();
    for (const ns of opts.namespaces) await r.watchNamespace(ns);
    r.heartbeat = setInterval(() => void r.beat(), 10_000);
    // Tokens expire and a missed event should not leave a stale file: rewrite volumes now and then.
    r.resync = setInterval(() => r.syncAllVolumes(), 30_000);
    return r;
  }

  /** The loopback address where a Service's ports listen (its stand-in ClusterIP). */
  serviceIp(namespace: string, name: string): string | undefined {
    return this.serviceIps.get(`${namespace}/${name}`);
  }

  /** Pods running here: name, pod IP, ready. */
  running(): Array<{ name: string; ip: string; ready: boolean }> {
    return [...this.pods.values()].map((p) => ({ name: p.name, ip: p.ip, ready: p.isReady }));
  }

  /** A pod's container log ("namespace/name"), for failure messages. */
  logs(name: string): string {
    return [...this.pods.values()].find((p) => p.name === name)?.logs() ?? '';
  }

  // --- the Node ---------------------------------------------------------------------------------

  private nodeStatus(): Record<string, unknown> {
    const t = nowIso();
    const cond = (type: string, status: string, reason: string) => ({ type, status, reason, message: reason, lastHeartbeatTime: t, lastTransitionTime: t });
    return {
      conditions: [
        cond('Ready', 'True', 'KubeletReady'),
        cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID'),
      ],
      addresses: [
        { type: 'InternalIP', address: '127.0.0.1' },
        { type: 'Hostname', address: this.nodeName },
      ],
      capacity: { cpu: '2', memory: '16Gi', pods: '110' },
      allocatable: { cpu: '2', memory: '16Gi', pods: '110' },
      nodeInfo: {
        machineID: '',
        systemUUID: '',
        bootID: '',
        kernelVersion: '',
        osImage: 'dbproxy local pod runner',
        containerRuntimeVersion: 'local://processes',
        kubeletVersion: 'v0.0.0-local',
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: process.arch === 'x64' ? 'amd64' : process.arch,
      },
    };
  }

  private async registerNode(): Promise<void> {
    const c = this.opts.client;
    try {
      await c.create(nodes, undefined, {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: this.nodeName, labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux', 'dbproxy.io/pod-runner': 'true' } },
      });
    } catch (e) {
      if (!isConflict(e)) throw e;
    }
    await this.beat();
  }

  /** What a kubelet does every few seconds: node status and the node Lease. */
  private async beat(): Promise<void> {
    const c = this.opts.client;
    try {
      await c.request('PATCH', resourcePath(nodes, { name: this.nodeName, subresource: 'status' }), { status: this.nodeStatus() }, MERGE_PATCH);
      const lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: this.nodeName, namespace: 'kube-node-lease' }, spec: { holderIdentity: this.nodeName, leaseDurationSeconds: 40, renewTime: new Date().toISOString().replace('Z', '000Z') } };
      try {
        await c.request('PATCH', resourcePath(leases, { namespace: 'kube-node-lease', name: this.nodeName }), { spec: lease.spec }, MERGE_PATCH);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        await c.create(leases, 'kube-node-lease', lease);
      }
    } catch (e) {
      if (!this.stopped) this.log(`node heartbeat failed: ${(e as Error).message}`);
    }
  }

  // --- watching -----------------------------------------------------------------------------------

  private async watchNamespace(namespace: string): Promise<void> {
    const client = this.opts.client;
    const log = pino({ level: 'silent' });
    const informer = <T extends KubeObject>(resource: Resource) => new Informer<T>({ client, resource, namespace, log, backoffBaseMs: 100, backoffMaxMs: 2000 });
    const w: NamespaceWatch = {
      pods: informer(resources.pods),
      configMaps: informer(resources.configMaps),
      secrets: informer(secrets),
      services: informer(resources.services),
    };
    this.watches.set(namespace, w);
    const volumesChanged = () => this.syncVolumes(namespace);
    w.configMaps.onChange(volumesChanged);
    w.secrets.onChange(volumesChanged);
    w.services.onChange((type, svc) => void this.serviceChanged(namespace, type === 'delete' ? undefined : svc, svc.metadata.name));
    w.pods.onChange((type, pod) => {
      void this.podChanged(type, pod);
      this.writeHosts(); // headless Services resolve to pods: keep every pod's /etc/hosts current
    });
    for (const i of [w.configMaps, w.secrets, w.services]) i.start();
    await Promise.all([w.configMaps, w.secrets, w.services].map((i) => i.waitForSync()));
    // Pods last: their volumes and hosts need the other caches.
    w.pods.start();
    await w.pods.waitForSync();
  }

  private sources(namespace: string): PodSources {
    const w = this.watches.get(namespace)!;
    return {
      configMap: async (ns, name) => w.configMaps.get(ns, name),
      secret: async (ns, name) => w.secrets.get(ns, name),
      serviceAccountToken: (pod, o) => this.token(pod, o),
      secretKey: async (ns, name, key) => {
        const v = w.secrets.get(ns, name)?.data?.[key];
        return v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
      },
      configMapKey: async (ns, name, key) => w.configMaps.get(ns, name)?.data?.[key],
    };
  }

  /** A bound ServiceAccount token for the pod (TokenRequest), renewed at 80% of its life. */
  private async token(pod: V1Pod, o: { audience?: string; expirationSeconds: number }): Promise<string> {
    const key = `${pod.metadata?.uid}|${o.audience ?? ''}|${o.expirationSeconds}`;
    const cached = this.tokens.get(key);
    if (cached && Date.now() < cached.refreshAt) return cached.token;
    const ns = pod.metadata!.namespace!;
    const sa = pod.spec?.serviceAccountName ?? 'default';
    const res = await this.opts.client.request<{ status: { token: string } }>('POST', `${resourcePath(resources.serviceAccounts, { namespace: ns, name: sa })}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { ...(o.audience ? { audiences: [o.audience] } : {}), expirationSeconds: o.expirationSeconds, boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.metadata!.name, uid: pod.metadata!.uid } },
    });
    this.tokens.set(key, { token: res.status.token, refreshAt: Date.now() + o.expirationSeconds * 800 });
    return res.status.token;
  }

  // --- pods ---------------------------------------------------------------------------------------

  private async podChanged(type: 'add' | 'update' | 'delete', pod: K<V1Pod>): Promise<void> {
    if (this.stopped) return;
    const uid = pod.metadata.uid!;
    const running = this.pods.get(uid);
    if (type === 'delete') {
      // Gone without a graceful deletion we acted on (force delete, namespace teardown): kill.
      if (running) {
        this.pods.delete(uid);
        await running.kill9();
        await running.removeFiles();
      }
      return;
    }
    if (pod.metadata.deletionTimestamp) {
      if (pod.spec?.nodeName === this.nodeName) await this.finish(pod, running);
      return;
    }
    if (!pod.spec?.nodeName) {
      await this.bind(pod);
      return;
    }
    if (pod.spec.nodeName !== this.nodeName || running || pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return;
    const why = PodProcess.unsupported(pod);
    if (why) {
      await this.patchPodStatus(pod, { phase: 'Failed', reason: 'UnsupportedByLocalPodRunner', message: why }).catch(() => {});
      return;
    }
    const ns = pod.metadata.namespace!;
    const ip = this.allocatePodIp(uid);
    const p = new PodProcess({
      pod,
      podIp: ip,
      nodeName: this.nodeName,
      dir: join(this.dir, ns, pod.metadata.name),
      images: this.opts.images,
      sources: this.sources(ns),
      apiServer: this.opts.apiServer,
      hosts: () => this.hostsFile(ns, pod.metadata.name, ip),
      keepVisible: [resolve('.'), this.dir, process.execPath],
      reportStatus: (status) => this.patchPodStatus(pod, status),
      log: this.log,
    });
    this.pods.set(uid, p);
    this.log(`${p.name}: starting on ${ip}`);
    await p.start().catch((e: Error) => this.log(`${p.name}: start failed: ${e.message}`));
  }

  /** What the scheduler does: this runner is the only node, so every pod goes here. */
  private async bind(pod: K<V1Pod>): Promise<void> {
    const uid = pod.metadata.uid!;
    if (this.binding.has(uid) || pod.spec?.schedulerName && pod.spec.schedulerName !== 'default-scheduler') return;
    this.binding.add(uid);
    try {
      await this.opts.client.request('POST', resourcePath(resources.pods, { namespace: pod.metadata.namespace, name: pod.metadata.name, subresource: 'binding' }), {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name: pod.metadata.name, uid },
        target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName },
      });
    } catch (e) {
      this.binding.delete(uid);
      if (!isNotFound(e)) this.log(`binding ${pod.metadata.namespace}/${pod.metadata.name} failed: ${(e as Error).message}`);
    }
  }

  /** A deleted pod: graceful stop, then remove the object (the kubelet's final delete). */
  private async finish(pod: K<V1Pod>, running: PodProcess | undefined): Promise<void> {
    const uid = pod.metadata.uid!;
    if (this.finishing.has(uid)) return;
    this.finishing.add(uid);
    const grace = (pod.metadata as { deletionGracePeriodSeconds?: number }).deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    if (running) {
      this.log(`${running.name}: stopping (grace ${grace}s)`);
      await running.stop(grace);
      this.pods.delete(uid);
      await running.removeFiles();
    }
    try {
      await this.opts.client.request('DELETE', resourcePath(resources.pods, { namespace: pod.metadata.namespace, name: pod.metadata.name }), {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        gracePeriodSeconds: 0,
        preconditions: { uid },
      });
    } catch (e) {
      if (!isNotFound(e) && !isConflict(e)) this.log(`deleting ${pod.metadata.name} failed: ${(e as Error).message}`);
    }
    this.podIps.delete(uid);
    this.finishing.delete(uid);
  }

  private async patchPodStatus(pod: K<V1Pod>, status: Record<string, unknown>): Promise<void> {
    await this.opts.client.request('PATCH', resourcePath(resources.pods, { namespace: pod.metadata.namespace, name: pod.metadata.name, subresource: 'status' }), { status }, MERGE_PATCH);
  }

  private allocatePodIp(uid: string): string {
    const inUse = new Set(this.podIps.values());
    for (let i = 0; i < 240; i++) {
      const host = this.nextPodHost;
      this.nextPodHost = host >= 250 ? 10 : host + 1;
      const ip = `127.${this.subnet[0]}.${this.subnet[1]}.${host}`;
      if (!inUse.has(ip)) {
        this.podIps.set(uid, ip);
        return ip;
      }
    }
    throw new Error('the local pod runner has no pod addresses left');
  }

  private syncVolumes(namespace: string): void {
    for (const p of this.pods.values()) {
      if (!p.name.startsWith(`${namespace}/`)) continue;
      p.syncVolumes().catch((e: Error) => this.log(`${p.name}: volume update failed: ${e.message}`));
    }
  }

  private syncAllVolumes(): void {
    for (const ns of this.watches.keys()) this.syncVolumes(ns);
  }

  // --- Services: addresses, forwarding, names -----------------------------------------------------

  private podsOf(namespace: string): V1Pod[] {
    return this.watches.get(namespace)?.pods.list() ?? [];
  }

  private async serviceChanged(namespace: string, svc: K<V1Service> | undefined, name: string): Promise<void> {
    const id = `${namespace}/${name}`;
    const headless = svc?.spec?.clusterIP === 'None';
    const key = svc && !headless && svc.spec?.selector ? JSON.stringify(svc.spec.ports ?? []) : undefined;
    const current = this.forwarders.get(id);
    if (current && current.key === key) return this.writeHosts();
    if (current) {
      this.forwarders.delete(id);
      await current.forwarder.close();
    }
    if (key && svc && !this.stopped) {
      let ip = this.serviceIps.get(id);
      if (!ip) {
        ip = `127.${this.subnet[0]}.${(this.subnet[1] + 1) % 256}.${this.nextServiceHost++}`;
        this.serviceIps.set(id, ip);
      }
      try {
        const forwarder = await ServiceForwarder.start({ ip, service: svc, pods: () => this.podsOf(namespace), log: this.log });
        this.forwarders.set(id, { forwarder, key });
      } catch (e) {
        this.log(`service ${id}: cannot listen on ${ip}: ${(e as Error).message}`);
      }
    } else if (!svc) this.serviceIps.delete(id);
    this.writeHosts();
  }

  /** /etc/hosts for one pod: itself, and the cluster DNS names of the Services this runner serves. */
  private hostsFile(podNamespace: string, podName: string, podIp: string): string {
    const domain = this.opts.clusterDomain ?? 'cluster.local';
    const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', `${podIp}\t${podName}`];
    for (const [ns, w] of this.watches) {
      for (const svc of w.services.list()) {
        const name = svc.metadata.name;
        const names = [`${name}.${ns}.svc.${domain}`, `${name}.${ns}.svc`, `${name}.${ns}`, ...(ns === podNamespace ? [name] : [])].join(' ');
        if (svc.spec?.clusterIP === 'None') {
          const port = svc.spec.ports?.[0] ?? { port: 0 };
          const ips = new Set(serviceEndpoints(svc, this.podsOf(ns), port).map((e) => e.ip));
          for (const ip of [...ips].sort()) lines.push(`${ip}\t${names}`);
        } else {
          const ip = this.serviceIps.get(`${ns}/${name}`);
          if (ip) lines.push(`${ip}\t${names}`);
        }
      }
    }
    return `${lines.join('\n')}\n`;
  }

  private writeHosts(): void {
    for (const p of this.pods.values()) {
      try {
        p.writeHosts();
      } catch (e) {
        this.log(`${p.name}: hosts update failed: ${(e as Error).message}`);
      }
    }
  }

  /** Stops every pod (SIGKILL: the control plane may already be gone), the forwarders and the watches. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearInterval(this.resync);
    await Promise.all([...this.watches.values()].flatMap((w) => [w.pods, w.configMaps, w.secrets, w.services].map((i) => i.stop())));
    await Promise.all([...this.pods.values()].map((p) => p.kill9()));
    this.pods.clear();
    await Promise.all([...this.forwarders.values()].map((f) => f.forwarder.close()));
    this.forwarders.clear();
    // Like a decommissioned kubelet: the Node goes too (best effort; the control plane may be gone).
    await this.opts.client.delete(nodes, undefined, this.nodeName).catch(() => {});
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }
}
