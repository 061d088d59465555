// The reconciler: one reconcile of one DatabaseProxy, as four named steps around the pure
// builders (operator/desired) and the status computation (operator/status):
//
//   observe      read the DatabaseProxy and its children from the caches, the pods (terminating
//                ones included), /stats of every running pod (short timeout), whether nodes have zones
//   plan         pure (plan.ts): the pool divisor, the replicas to apply now, the children to apply
//                and delete in order, the events, the status inputs
//   apply        server-side apply (one field manager, force), ConfigMap before Deployment; skip an
//                apply when nothing changed since our last one
//   writeStatus  compute the status; write it when it changed, at once for urgent changes, otherwise
//                at most every statusInterval (requeue for the held-back write, so the last change is
//                never lost)
//
// Secrets are never read: the Deployment mounts them, so the operator needs no access to them.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { withDefaults, type DatabaseProxy, type DatabaseProxyInput, type DatabaseProxyStatus } from '../api/v1alpha1.js';
import { ADMIN_PORT, LABEL_INSTANCE, LABEL_NAME, APP_NAME, childNames } from '../desired/index.js';
import type { KubeClient } from '../runtime/client.js';
import type { Informer } from '../runtime/informer.js';
import { objectKey, splitKey, type KubeObject, type Resource } from '../runtime/resources.js';
import { resources } from './resources.js';
import { computeStatus } from '../status/status.js';
import { isUrgentChange, shouldWrite, statusChanged, writeDelayMs } from '../status/writePolicy.js';
import type { Clock } from '../../proxy/runtime/clock.js';
import type { EventRecorder } from '../runtime/events.js';
import type { OperatorMetrics } from './metrics.js';
import { observedDeployment, type ConfigMapObject, type DatabaseProxyObject, type DeploymentObject, type Observed, type PodObject, type PolledPod } from './observed.js';
import { plan, type ChildObject, type Plan, type PlannedEvent } from './plan.js';
import type { StatsFetcher } from './statsReader.js';
import { ZoneProbe } from './zoneProbe.js';

export interface Caches {
  proxies: Informer<DatabaseProxyObject>;
  deployments: Informer<DeploymentObject>;
  configMaps: Informer<ConfigMapObject>;
  services: Informer<KubeObject>;
  serviceAccounts: Informer<KubeObject>;
  podDisruptionBudgets: Informer<KubeObject>;
  pods: Informer<PodObject>;
}

export interface ReconcilerOptions {
  client: KubeClient;
  caches: Caches;
  events: EventRecorder;
  metrics: OperatorMetrics;
  log: Logger;
  clock: Clock;
  /** Proxy image when spec.image is unset. */
  defaultImage: string;
  /** Status: poll /stats and write changes at most this often. Default 10 s. */
  statusIntervalMs?: number;
  /** Timeout of one /stats read. Default 2 s. */
  statsTimeoutMs?: number;
  /** Port of the proxies' admin HTTP server. Default 9090. */
  statsPort?: number;
  fetchStats: StatsFetcher;
  /** Whether nodes have zones; default: a ZoneProbe on `client`. */
  zones?: { zoned(): Promise<boolean | undefined> };
}

export interface ReconcileResult {
  /** Reconcile again after this long (status polling, a held-back status write, a held-back scale-up). */
  requeueAfterMs?: number;
}

/** Without pods there is nothing to poll; still look again now and then. */
const IDLE_RESYNC_MS = 5 * 60_000;

function hashOf(obj: unknown): string {
  return createHash('sha256').update(JSON.stringify(obj)).digest('hex');
}

export class Reconciler {
  private readonly statusIntervalMs: number;
  /** The last status this process wrote, per DatabaseProxy (the cache may lag behind it). */
  private readonly written = new Map<string, { uid: string; status: DatabaseProxyStatus; at: number }>();
  /** What this process last applied per child, and the resourceVersion the API answered with. */
  private readonly applied = new Map<string, { hash: string; resourceVersion: string | undefined }>();

  private readonly zones: { zoned(): Promise<boolean | undefined> };

  constructor(private readonly o: ReconcilerOptions) {
    this.statusIntervalMs = o.statusIntervalMs ?? 10_000;
    this.zones = o.zones ?? new ZoneProbe(o.client, o.clock, o.log);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const { namespace, name } = splitKey(key);
    const object = this.o.caches.proxies.get(namespace, name);
    if (!object) {
      // Deleted: the garbage collector removes the children (owner references).
      this.forget(key);
      return {};
    }
    if (object.metadata.deletionTimestamp) return {};
    const observed = await this.observe(key, object);
    const planned = plan(observed, { defaultImage: this.o.defaultImage });
    const deployment = await this.apply(observed, planned);
    return this.writeStatus(key, observed, planned, deployment);
  }

  /** Everything plan() decides from: the caches, each running pod's /stats, the zone probe. */
  private async observe(key: string, object: DatabaseProxyObject): Promise<Observed> {
    const { caches } = this.o;
    const { namespace, name } = splitKey(key);
    const proxy: DatabaseProxy = withDefaults({ ...object, metadata: { ...object.metadata, namespace, uid: object.metadata.uid! } } as DatabaseProxyInput);
    const names = childNames(proxy);
    // Before the /stats round trip, so the Deployment and the pod list the divisor compares are
    // from the same moment.
    const configMap = caches.configMaps.get(namespace, names.configMap);
    const deployment = caches.deployments.get(namespace, names.deployment);
    const pods = caches.pods.list(
      (p) => p.metadata.namespace === namespace && p.metadata.labels?.[LABEL_INSTANCE] === name && p.metadata.labels?.[LABEL_NAME] === APP_NAME,
    );
    const running = pods.filter((p) => p.status?.phase === 'Running' && p.status.podIP && !p.metadata.deletionTimestamp);
    const polled = await Promise.all(running.map((p) => this.poll(namespace, p)));
    const observed: Observed = { proxy, object, pods, polled, zoned: await this.zones.zoned() };
    const serviceAccount = caches.serviceAccounts.get(namespace, names.serviceAccount);
    const readerService = caches.services.get(namespace, names.readerService);
    if (configMap) observed.configMap = configMap;
    if (deployment) observed.deployment = deployment;
    if (serviceAccount) observed.serviceAccount = serviceAccount;
    if (readerService) observed.readerService = readerService;
    return observed;
  }

  /** One pod's /stats; a failed read is a fact for the plan (the pod is starting, or unreachable), not an error. */
  private async poll(namespace: string, pod: PodObject): Promise<PolledPod> {
    try {
      return { pod, stats: await this.o.fetchStats(pod.status!.podIP!, this.o.statsPort ?? ADMIN_PORT, this.o.statsTimeoutMs ?? 2_000) };
    } catch (e) {
      this.o.metrics.statsFetchErrors.inc();
      this.o.log.debug({ pod: `${namespace}/${pod.metadata.name}`, err: (e as Error).message }, 'could not read /stats');
      return { pod };
    }
  }

  /** Carries out the plan's steps in order; returns the Deployment as the API answered (or, applying none, as observed) for the status. */
  private async apply(observed: Observed, planned: Plan): Promise<DeploymentObject | undefined> {
    const { caches } = this.o;
    for (const e of planned.events) this.event(observed.object, e);
    let deployment = planned.deployment;
    const created: string[] = [];
    for (const a of planned.actions) {
      if (a.kind === 'delete') {
        await this.o.client.delete(a.resource, a.namespace, a.name, { uid: a.uid });
        this.applied.delete(`${a.resource.plural}/${a.namespace}/${a.name}`);
      } else if (a.resource === resources.deployments) {
        deployment = await this.applyChild(a.resource, a.object, caches.deployments, created);
      } else {
        await this.applyChild(a.resource, a.object, this.cacheOf(a.resource), created);
      }
      for (const e of a.after) this.event(observed.object, e);
    }
    if (created.length > 0) this.event(observed.object, { type: 'Normal', reason: 'Created', note: `created ${created.join(', ')}` });
    return deployment;
  }

  /** The cache that holds a child kind: what applyChild compares against to skip an unchanged apply. */
  private cacheOf(r: Resource): Informer<KubeObject> {
    const { caches } = this.o;
    if (r === resources.serviceAccounts) return caches.serviceAccounts;
    if (r === resources.configMaps) return caches.configMaps;
    if (r === resources.services) return caches.services;
    if (r === resources.podDisruptionBudgets) return caches.podDisruptionBudgets;
    throw new Error(`no cache for ${r.kind}`);
  }

  /** Computes the status from the plan and the Deployment as applied; writes it when it changed, within the rate limit. */
  private async writeStatus(key: string, observed: Observed, planned: Plan, deployment: DeploymentObject | undefined): Promise<ReconcileResult> {
    const { namespace, name, uid } = observed.proxy.metadata;
    const now = this.o.clock.now();
    const mem = this.written.get(key);
    const previous = mem && mem.uid === uid ? mem.status : observed.object.status;
    const facts = observedDeployment(deployment);
    const next = computeStatus({ ...planned.status, ...(facts ? { deployment: facts } : {}), ...(previous ? { previous } : {}), now: new Date(now) });
    let requeueAfterMs = planned.pollSoon ? this.statusIntervalMs : IDLE_RESYNC_MS;
    if (statusChanged(previous, next)) {
      const lastWrite = mem && mem.uid === uid ? mem.at : undefined;
      if (isUrgentChange(previous, next) || shouldWrite(lastWrite, now, this.statusIntervalMs)) {
        await this.o.client.apply(resources.databaseProxies, { metadata: { name, namespace, uid }, status: next }, { subresource: 'status' });
        this.o.metrics.statusWrites.inc();
        this.written.set(key, { uid: uid!, status: next, at: now });
        this.o.log.debug({ proxy: key, ready: next.conditions?.find((c) => c.type === 'Ready')?.reason }, 'status written');
      } else {
        requeueAfterMs = Math.min(requeueAfterMs, Math.max(1, writeDelayMs(lastWrite, now, this.statusIntervalMs)));
      }
    }
    return { requeueAfterMs };
  }

  /** Server-side apply of one child, skipped when it is unchanged since this process last applied it. */
  private async applyChild<T extends KubeObject>(r: Resource, desired: ChildObject, cache: Informer<T>, created: string[]): Promise<T> {
    const key = `${r.plural}/${objectKey(desired)}`;
    const hash = hashOf(desired);
    const cached = cache.get(desired.metadata.namespace, desired.metadata.name);
    const last = this.applied.get(key);
    if (cached && last && last.hash === hash && last.resourceVersion === cached.metadata.resourceVersion) return cached;
    const result = await this.o.client.apply<T>(r, desired);
    this.o.metrics.appliedObjects.inc({ kind: r.kind });
    this.applied.set(key, { hash, resourceVersion: result.metadata.resourceVersion });
    if (!cached && !last) created.push(`${r.kind} ${desired.metadata.name}`);
    return result;
  }

  private event(obj: DatabaseProxyObject, e: PlannedEvent): void {
    this.o.events.record(resources.databaseProxies, obj, e.type, e.reason, e.note);
  }

  /** Drops what this process remembers about a DatabaseProxy (deleted, or leadership lost). */
  forget(key: string): void {
    this.written.delete(key);
    const { namespace, name } = splitKey(key);
    const names = childNames({ metadata: { name, namespace } } as DatabaseProxy);
    for (const r of [resources.serviceAccounts, resources.configMaps, resources.deployments, resources.services, resources.podDisruptionBudgets]) {
      for (const n of Object.values(names)) this.applied.delete(`${r.plural}/${namespace}/${n}`);
    }
  }

  /** Records a reconcile failure as a Warning event on the DatabaseProxy (deduplicated). */
  reportError(key: string, err: Error): void {
    const { namespace, name } = splitKey(key);
    const obj = this.o.caches.proxies.get(namespace, name);
    if (obj) this.event(obj, { type: 'Warning', reason: 'ReconcileError', note: err.message.slice(0, 900) });
  }
}
