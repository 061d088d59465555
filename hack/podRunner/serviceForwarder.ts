// A tiny kube-proxy for the local pod runner (test infrastructure): each ClusterIP Service gets a
// loopback address of its own, where every Service port listens; a connection is forwarded to the
// next ready endpoint (round robin), as kube-proxy does for a ClusterIP. Pods that are not ready
// (starting, or terminating) get no new connections.
//
// Endpoints come from the pods themselves, not from EndpointSlices: the API server refuses
// loopback addresses in EndpointSlices, and loopback addresses are all pods have here.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { V1Pod, V1Service, V1ServicePort } from '@kubernetes/client-node';

export interface Endpoint {
  ip: string;
  port: number;
}

export interface ServiceForwarderOptions {
  /** The loopback address this Service listens on. */
  ip: string;
  service: V1Service;
  /** The namespace's pods, current at the time of the call. */
  pods: () => V1Pod[];
  log: (message: string) => void;
}

const isReady = (pod: V1Pod): boolean => pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

/**
 * The endpoints of one Service port, as the EndpointSlice controller would list them: pods the
 * selector matches that have an IP, ready and not terminating (or all of them with
 * publishNotReadyAddresses), with the target port resolved by name against the container ports. Pure.
 */
export function serviceEndpoints(service: V1Service, pods: V1Pod[], port: V1ServicePort): Endpoint[] {
  const selector = service.spec?.selector;
  if (!selector || Object.keys(selector).length === 0) return [];
  const out: Endpoint[] = [];
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {};
    if (!Object.entries(selector).every(([k, v]) => labels[k] === v)) continue;
    const ip = pod.status?.podIP;
    if (!ip) continue;
    if (!service.spec?.publishNotReadyAddresses && (pod.metadata?.deletionTimestamp || !isReady(pod))) continue;
    const target = port.targetPort ?? port.port;
    let number: number | undefined;
    if (typeof target === 'number' || /^\d+$/.test(String(target))) number = Number(target);
    else for (const c of pod.spec?.containers ?? []) number ??= c.ports?.find((p) => p.name === target)?.containerPort;
    if (number !== undefined) out.push({ ip, port: number });
  }
  return out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
}

export class ServiceForwarder {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private next = 0;

  private constructor(private readonly opts: ServiceForwarderOptions) {}

  /** Listens on every port of the Service at opts.ip. */
  static async start(opts: ServiceForwarderOptions): Promise<ServiceForwarder> {
    const f = new ServiceForwarder(opts);
    try {
      for (const p of opts.service.spec?.ports ?? []) {
        if ((p.protocol ?? 'TCP') !== 'TCP') continue;
        await f.listen(p);
      }
    } catch (e) {
      await f.close();
      throw e;
    }
    return f;
  }

  /** The ports this forwarder listens on, e.g. [5432]. */
  get ports(): number[] {
    return (this.opts.service.spec?.ports ?? []).map((p) => p.port);
  }

  private listen(port: V1ServicePort): Promise<void> {
    const server = createServer((client) => this.forward(client, port));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port.port, this.opts.ip, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private forward(client: Socket, port: V1ServicePort): void {
    const endpoints = serviceEndpoints(this.opts.service, this.opts.pods(), port);
    if (endpoints.length === 0) {
      // kube-proxy rejects connections to a Service without ready endpoints.
      client.destroy();
      return;
    }
    const target = endpoints[this.next++ % endpoints.length]!;
    const upstream = connect({ host: target.ip, port: target.port });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('close', () => this.sockets.delete(s));
    }
    client.pipe(upstream);
    upstream.pipe(client);
    // Either side failing or closing ends both, so no half-open pair is left behind.
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
