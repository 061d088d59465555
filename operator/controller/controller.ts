// The controller: informers for DatabaseProxy objects and their children, a work queue keyed by
// DatabaseProxy, and workers that run the reconciler. Children are mapped to their DatabaseProxy
// through the controller owner reference; pods through the instance label (their owner is a
// ReplicaSet). Runs while this process leads; stop() ends it.
import type { Logger } from 'pino';
import { GROUP, KIND } from '../api/v1alpha1.js';
import { APP_NAME, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY } from '../desired/index.js';
import type { KubeClient } from '../runtime/client.js';
import { Informer } from '../runtime/informer.js';
import { objectKey, type KubeObject, type Resource } from '../runtime/resources.js';
import { resources } from './resources.js';
import type { Clock } from '../../proxy/runtime/clock.js';
import type { EventRecorder } from '../runtime/events.js';
import type { OperatorMetrics } from './metrics.js';
import type { DatabaseProxyObject } from './observed.js';
import { Reconciler, type Caches } from './reconciler.js';
import type { StatsFetcher } from './statsReader.js';
import { WorkQueue } from '../runtime/workQueue.js';

export interface ControllerOptions {
  client: KubeClient;
  log: Logger;
  clock: Clock;
  metrics: OperatorMetrics;
  events: EventRecorder;
  /** Watch only this namespace; default all. */
  namespace?: string;
  defaultImage: string;
  statusIntervalMs?: number;
  statsTimeoutMs?: number;
  statsPort?: number;
  fetchStats: StatsFetcher;
  /** Concurrent reconciles (different DatabaseProxies). Default 2. */
  workers?: number;
  /** Per-object retry backoff after errors. Default 250 ms doubling up to 60 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Informer list/watch retry backoff. */
  watchBackoffBaseMs?: number;
  watchBackoffMaxMs?: number;
}

function ownerKey(o: KubeObject): string | undefined {
  const ref = (o.metadata.ownerReferences ?? []).find((r) => r.controller && r.kind === KIND && r.apiVersion.startsWith(`${GROUP}/`));
  return ref && o.metadata.namespace ? `${o.metadata.namespace}/${ref.name}` : undefined;
}

/** A DatabaseProxy update worth reconciling: not just our own status write. */
function specOrMetaChanged(obj: DatabaseProxyObject, old?: DatabaseProxyObject): boolean {
  if (!old) return true;
  const m = (x: DatabaseProxyObject) =>
    JSON.stringify([x.metadata.generation, x.metadata.labels, x.metadata.annotations, x.metadata.deletionTimestamp, x.metadata.uid]);
  return m(obj) !== m(old);
}

export class Controller {
  readonly queue: WorkQueue;
  readonly caches: Caches;
  readonly reconciler: Reconciler;
  private readonly informers: Array<Informer<KubeObject>>;
  private workers: Array<Promise<void>> = [];
  private started = false;
  private synced = false;

  constructor(private readonly o: ControllerOptions) {
    this.queue = new WorkQueue({ clock: o.clock, baseDelayMs: o.backoffBaseMs ?? 250, maxDelayMs: o.backoffMaxMs ?? 60_000 });
    const make = <T extends KubeObject>(resource: Resource, labelSelector?: string): Informer<T> =>
      new Informer<T>({
        client: o.client,
        resource,
        log: o.log,
        clock: o.clock,
        ...(o.namespace ? { namespace: o.namespace } : {}),
        ...(labelSelector ? { labelSelector } : {}),
        ...(o.watchBackoffBaseMs !== undefined ? { backoffBaseMs: o.watchBackoffBaseMs } : {}),
        ...(o.watchBackoffMaxMs !== undefined ? { backoffMaxMs: o.watchBackoffMaxMs } : {}),
        onRelist: (reason) => o.metrics.relists.inc({ resource: resource.plural, reason }),
        onRewatch: (reason) => o.metrics.watchRestarts.inc({ resource: resource.plural, reason }),
      });
    const managed = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    this.caches = {
      proxies: make(resources.databaseProxies),
      deployments: make(resources.deployments, managed),
      configMaps: make(resources.configMaps, managed),
      services: make(resources.services, managed),
      serviceAccounts: make(resources.serviceAccounts, managed),
      podDisruptionBudgets: make(resources.podDisruptionBudgets, managed),
      pods: make(resources.pods, `${LABEL_NAME}=${APP_NAME},${LABEL_COMPONENT}=proxy,${LABEL_INSTANCE}`),
    };
    this.informers = Object.values(this.caches) as Array<Informer<KubeObject>>;
    this.reconciler = new Reconciler({
      client: o.client,
      caches: this.caches,
      events: o.events,
      metrics: o.metrics,
      log: o.log,
      clock: o.clock,
      defaultImage: o.defaultImage,
      fetchStats: o.fetchStats,
      ...(o.statusIntervalMs !== undefined ? { statusIntervalMs: o.statusIntervalMs } : {}),
      ...(o.statsTimeoutMs !== undefined ? { statsTimeoutMs: o.statsTimeoutMs } : {}),
      ...(o.statsPort !== undefined ? { statsPort: o.statsPort } : {}),
    });

    this.caches.proxies.onChange((type, obj, old) => {
      if (type === 'update' && !specOrMetaChanged(obj, old)) return;
      this.enqueue(objectKey(obj));
    });
    for (const inf of [this.caches.deployments, this.caches.configMaps, this.caches.services, this.caches.serviceAccounts, this.caches.podDisruptionBudgets]) {
      (inf as Informer<KubeObject>).onChange((_type, obj, old) => {
        const k = ownerKey(obj) ?? (old ? ownerKey(old) : undefined);
        if (k) this.enqueue(k);
      });
    }
    this.caches.pods.onChange((_type, pod) => {
      const instance = pod.metadata.labels?.[LABEL_INSTANCE];
      if (instance && pod.metadata.namespace) this.enqueue(`${pod.metadata.namespace}/${instance}`);
    });
  }

  private enqueue(key: string): void {
    this.queue.add(key);
    this.o.metrics.queueDepth.set(this.queue.len());
  }

  /** Starts the informers, waits for their first lists, queues every DatabaseProxy, starts the workers. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const inf of this.informers) inf.start();
    await Promise.all(this.informers.map((i) => i.waitForSync()));
    if (this.queue.isShuttingDown) return;
    this.synced = true;
    this.o.log.info({ namespace: this.o.namespace ?? '(all)', proxies: this.caches.proxies.list().length }, 'caches synced; reconciling');
    for (const p of this.caches.proxies.list()) this.enqueue(objectKey(p));
    for (let i = 0; i < (this.o.workers ?? 2); i++) this.workers.push(this.work());
  }

  hasSynced(): boolean {
    return this.synced;
  }

  private async work(): Promise<void> {
    const { metrics, log, clock } = this.o;
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      metrics.queueDepth.set(this.queue.len());
      const t0 = clock.now();
      try {
        const r = await this.reconciler.reconcile(key);
        metrics.reconcileTotal.inc({ result: 'success' });
        metrics.reconcileDuration.observe({ result: 'success' }, (clock.now() - t0) / 1000);
        this.queue.forget(key);
        if (r.requeueAfterMs !== undefined) this.queue.addAfter(key, r.requeueAfterMs);
      } catch (e) {
        const err = e as Error & { reason?: string };
        metrics.reconcileTotal.inc({ result: 'error' });
        metrics.reconcileErrors.inc({ reason: err.reason ?? (err.name === 'ApiError' ? 'ApiError' : 'Error') });
        metrics.reconcileDuration.observe({ result: 'error' }, (clock.now() - t0) / 1000);
        const delay = this.queue.nextBackoffMs(key);
        log.warn({ proxy: key, err: err.message, retryInMs: delay }, 'reconcile failed');
        if (!this.queue.isShuttingDown) this.reconciler.reportError(key, err);
        this.queue.addRateLimited(key);
      } finally {
        this.queue.done(key);
      }
    }
  }

  async stop(): Promise<void> {
    this.queue.shutdown();
    await Promise.all(this.workers);
    await Promise.all(this.informers.map((i) => i.stop()));
    this.workers = [];
  }
}
