// The reconciler: thin I/O around the pure builders (operator/desired) and the status computation
// (operator/status). One reconcile of one DatabaseProxy:
//
//   read from the caches: the DatabaseProxy, its ConfigMap (the divisor in force), Deployment,
//     ServiceAccount and pods (terminating ones included)
//   read /stats from every running pod (short timeout)
//   decide the pool divisor and the replicas to apply now (shrink caps before adding pods)
//   server-side apply the children, ConfigMap before Deployment (one field manager, force);
//     skip an apply when nothing changed since our last one
//   compute the status; write it when it changed, at once for urgent changes, otherwise at most
//     every statusInterval (requeue for the held-back write, so the last change is never lost)
//
// Secrets are never read: the Deployment mounts them, so the operator needs no access to them.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { withDefaults, type DatabaseProxy, type DatabaseProxyInput, type DatabaseProxyStatus } from '../api/v1alpha1.js';
import {
  ADMIN_PORT,
  CONFIG_HASH_ANNOTATION,
  LABEL_INSTANCE,
  LABEL_NAME,
  APP_NAME,
  childNames,
  desiredChildren,
  divisorInConfigMap,
  poolDivisor,
  replicasToApply,
  ZONE_LABEL,
} from '../desired/index.js';
import type { DeploymentStatus } from '../runtime/types.js';
import type { KubeClient } from '../runtime/client.js';
import type { Informer } from '../runtime/informer.js';
import { objectKey, splitKey, type KubeObject, type Resource } from '../runtime/resources.js';
import { resources } from './resources.js';
import { computeStatus, isUrgentChange, podIsReady, podTrouble, shouldWrite, statusChanged, writeDelayMs, type ObservedPod, type PodStats } from '../status/status.js';
import type { Clock } from '../../proxy/runtime/clock.js';
import type { EventRecorder } from '../runtime/events.js';
import type { OperatorMetrics } from './metrics.js';
import type { StatsFetcher } from './statsReader.js';
import { ZoneProbe } from './zoneProbe.js';

export interface DatabaseProxyObject extends KubeObject {
  spec: DatabaseProxyInput['spec'];
  status?: DatabaseProxyStatus;
}

export interface DeploymentObject extends KubeObject {
  spec?: {
    replicas?: number;
    progressDeadlineSeconds?: number;
    template?: { metadata?: { annotations?: Record<string, string> }; spec?: { topologySpreadConstraints?: Array<{ topologyKey?: string }> } };
  };
  status?: DeploymentStatus;
}

export interface ConfigMapObject extends KubeObject {
  data?: Record<string, string>;
}

export interface PodObject extends KubeObject {
  status?: ObservedPod['status'] & { podIP?: string };
}

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

const isOwnedBy = (o: KubeObject | undefined, uid: string | undefined): boolean =>
  !!o && !!uid && (o.metadata.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true);

/** Whether the Deployment's pods spread over zones now. */
export function hasZoneSpread(dep: DeploymentObject | undefined): boolean {
  return (dep?.spec?.template?.spec?.topologySpreadConstraints ?? []).some((c) => c.topologyKey === ZONE_LABEL);
}

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
    const { caches, log, clock } = this.o;
    const { namespace, name } = splitKey(key);
    const obj = caches.proxies.get(namespace, name);
    if (!obj) {
      // Deleted: the garbage collector removes the children (owner references).
      this.forget(key);
      return {};
    }
    if (obj.metadata.deletionTimestamp) return {};
    const uid = obj.metadata.uid!;
    const proxy: DatabaseProxy = withDefaults({ ...obj, metadata: { ...obj.metadata, namespace, uid } } as DatabaseProxyInput);
    const names = childNames(proxy);

    // --- observe
    const cm = caches.configMaps.get(namespace, names.configMap);
    const dep = caches.deployments.get(namespace, names.deployment);
    const ownDep = isOwnedBy(dep, uid) ? dep : undefined;
    const previousDivisor = isOwnedBy(cm, uid) ? divisorInConfigMap(cm) : undefined;
    const pods = caches.pods.list(
      (p) => p.metadata.namespace === namespace && p.metadata.labels?.[LABEL_INSTANCE] === name && p.metadata.labels?.[LABEL_NAME] === APP_NAME,
    );
    const running = pods.filter((p) => p.status?.phase === 'Running' && p.status.podIP && !p.metadata.deletionTimestamp);
    const results = await Promise.all(
      running.map(async (p) => {
        try {
          const stats = await this.o.fetchStats(p.status!.podIP!, this.o.statsPort ?? ADMIN_PORT, this.o.statsTimeoutMs ?? 2_000);
          return { pod: p, stats };
        } catch (e) {
          this.o.metrics.statsFetchErrors.inc();
          log.debug({ pod: `${namespace}/${p.metadata.name}`, err: (e as Error).message }, 'could not read /stats');
          return { pod: p, stats: undefined };
        }
      }),
    );
    const podStats: PodStats[] = [];
    let statsErrors = 0;
    let podsWithoutStats = 0;
    for (const r of results) {
      if (r.stats) podStats.push({ pod: r.pod.metadata.name, ready: podIsReady(r.pod), stats: r.stats as ProxyStats });
      else {
        podsWithoutStats++;
        if (podIsReady(r.pod)) statsErrors++;
      }
    }

    // --- decide
    const divisor = poolDivisor({
      desiredReplicas: proxy.spec.replicas,
      ...(ownDep
        ? {
            deployment: {
              ...(ownDep.metadata.generation !== undefined ? { generation: ownDep.metadata.generation } : {}),
              ...(ownDep.spec?.replicas !== undefined ? { specReplicas: ownDep.spec.replicas } : {}),
              ...(ownDep.status ? { status: ownDep.status } : {}),
            },
          }
        : {}),
      observedPods: pods.length,
      ...(previousDivisor !== undefined ? { previousDivisor } : {}),
    });
    const gate = replicasToApply({
      desiredReplicas: proxy.spec.replicas,
      ...(ownDep?.spec?.replicas !== undefined ? { currentReplicas: ownDep.spec.replicas } : {}),
      divisor: divisor.divisor,
      reportedDivisors: podStats.map((p) => p.stats.pool.replicas),
      podsWithoutStats,
    });
    // Until the API has answered about zones, keep whatever the Deployment has: no roll for a guess.
    const zoneSpread = (await this.zones.zoned()) ?? hasZoneSpread(ownDep);
    const desired = desiredChildren(proxy, { defaultImage: this.o.defaultImage, poolDivisor: divisor.divisor, replicas: gate.replicas, zoneSpread });

    // --- act
    let deploymentNow: DeploymentObject | undefined = ownDep;
    if (desired.unsupported.length > 0) {
      this.event(obj, 'Warning', 'UnsupportedSpec', `not rolled out: ${desired.unsupported.join('; ')}`);
    } else {
      const created: string[] = [];
      if (desired.serviceAccount) {
        await this.applyChild(resources.serviceAccounts, desired.serviceAccount, caches.serviceAccounts, created);
      } else {
        const mine = caches.serviceAccounts.get(namespace, names.serviceAccount);
        if (mine && isOwnedBy(mine, uid)) {
          await this.o.client.delete(resources.serviceAccounts, namespace, names.serviceAccount, { uid: mine.metadata.uid! });
          this.applied.delete(`serviceaccounts/${namespace}/${names.serviceAccount}`);
          this.event(obj, 'Normal', 'ServiceAccountDeleted', `deleted ServiceAccount ${names.serviceAccount}: the pods run as ${proxy.spec.serviceAccountName}`);
        }
      }
      await this.applyChild(resources.configMaps, desired.configMap, caches.configMaps, created);
      if (previousDivisor !== undefined && previousDivisor !== divisor.divisor) {
        this.event(obj, 'Normal', 'PoolDivisorChanged', `each pod now divides the pool budget by ${divisor.divisor} (was ${previousDivisor}): ${divisor.reason}`);
      }
      const oldHash = ownDep?.spec?.template?.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
      const oldReplicas = ownDep?.spec?.replicas;
      deploymentNow = await this.applyChild(resources.deployments, desired.deployment, caches.deployments, created);
      if (oldHash !== undefined && oldHash !== desired.configHash) {
        this.event(obj, 'Normal', 'RollingOut', `proxy config changed (hash ${oldHash} -> ${desired.configHash}): rolling out new pods`);
      }
      if (oldReplicas !== undefined && oldReplicas !== gate.replicas) {
        this.event(obj, 'Normal', oldReplicas < gate.replicas ? 'ScalingUp' : 'ScalingDown', `scaling the proxy Deployment from ${oldReplicas} to ${gate.replicas} replicas`);
      }
      if (gate.waiting) this.event(obj, 'Normal', 'WaitingForPoolShrink', `holding ${gate.replicas} replicas (want ${proxy.spec.replicas}): ${gate.reason}`);
      await this.applyChild(resources.services, desired.service, caches.services, created);
      await this.applyChild(resources.services, desired.peerService, caches.services, created);
      if (desired.readerService) {
        await this.applyChild(resources.services, desired.readerService, caches.services, created);
      } else {
        // spec.readers turned off: the read-only Service goes, but only one this DatabaseProxy
        // made (its controller owner reference); a Service of that name someone else made is theirs.
        const ro = caches.services.get(namespace, names.readerService);
        if (ro && isOwnedBy(ro, uid)) {
          await this.o.client.delete(resources.services, namespace, names.readerService, { uid: ro.metadata.uid! });
          this.applied.delete(`services/${namespace}/${names.readerService}`);
          this.event(obj, 'Normal', 'ReaderServiceDeleted', `deleted Service ${names.readerService}: spec.readers.enabled is not true`);
        }
      }
      await this.applyChild(resources.podDisruptionBudgets, desired.podDisruptionBudget, caches.podDisruptionBudgets, created);
      if (created.length > 0) this.event(obj, 'Normal', 'Created', `created ${created.join(', ')}`);
    }

    // --- status
    const now = clock.now();
    const mem = this.written.get(key);
    const previous = mem && mem.uid === uid ? mem.status : obj.status;
    const next = computeStatus({
      proxy,
      ...(deploymentNow
        ? {
            deployment: {
              ...(deploymentNow.metadata.generation !== undefined ? { generation: deploymentNow.metadata.generation } : {}),
              ...(deploymentNow.spec?.replicas !== undefined ? { specReplicas: deploymentNow.spec.replicas } : {}),
              ...(deploymentNow.spec?.progressDeadlineSeconds !== undefined ? { progressDeadlineSeconds: deploymentNow.spec.progressDeadlineSeconds } : {}),
              ...(deploymentNow.status ? { status: deploymentNow.status } : {}),
            },
          }
        : {}),
      stats: podStats,
      statsErrors,
      ...(previous ? { previous } : {}),
      now: new Date(now),
      poolDivisor: divisor.divisor,
      problems: desired.unsupported,
      ...(gate.waiting ? { scaleWaiting: gate.reason } : {}),
      failingPods: pods.filter((p) => !p.metadata.deletionTimestamp).flatMap((p) => podTrouble(p) ?? []),
    });
    let requeueAfterMs: number | undefined = running.length > 0 || gate.waiting ? this.statusIntervalMs : IDLE_RESYNC_MS;
    if (statusChanged(previous, next)) {
      const lastWrite = mem && mem.uid === uid ? mem.at : undefined;
      if (isUrgentChange(previous, next) || shouldWrite(lastWrite, now, this.statusIntervalMs)) {
        await this.o.client.apply(resources.databaseProxies, { metadata: { name, namespace, uid }, status: next }, { subresource: 'status' });
        this.o.metrics.statusWrites.inc();
        this.written.set(key, { uid, status: next, at: now });
        log.debug({ proxy: key, ready: next.conditions?.find((c) => c.type === 'Ready')?.reason }, 'status written');
      } else {
        requeueAfterMs = Math.min(requeueAfterMs, Math.max(1, writeDelayMs(lastWrite, now, this.statusIntervalMs)));
      }
    }
    return { requeueAfterMs };
  }

  /** Server-side apply of one child, skipped when it is unchanged since this process last applied it. */
  private async applyChild<T extends KubeObject>(r: Resource, desired: { metadata: { name: string; namespace?: string } }, cache: Informer<T>, created: string[]): Promise<T> {
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

  private event(obj: DatabaseProxyObject, type: 'Normal' | 'Warning', reason: string, note: string): void {
    this.o.events.record(resources.databaseProxies, obj, type, reason, note);
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
    if (obj) this.event(obj, 'Warning', 'ReconcileError', err.message.slice(0, 900));
  }
}
