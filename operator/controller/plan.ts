// The decision of one reconcile, pure: from what was observed, the children to apply (in order)
// and to delete, the events each step earns, and the status inputs. Everything that can be wrong
// about a reconcile except the I/O is here, so it is tested from literals (plan.test.ts); the
// reconciler only carries the plan out.
//
// The pool divisor and the replicas gate meet here: the ConfigMap carries the divisor for the pods
// that may exist, the Deployment the replicas allowed now. Shrinking per-pod caps comes before
// adding pods (a scale-up is held until every running pod reports the larger divisor), and caps
// grow only once the Deployment has settled (poolDivisor.ts has the rule).
import type { DatabaseProxy } from '../api/v1alpha1.js';
import {
  CONFIG_HASH_ANNOTATION,
  desiredChildren,
  poolDivisor,
  replicasToApply,
  type DesiredChildren,
  type DivisorDecision,
  type ReplicasGate,
} from '../desired/index.js';
import type { Resource } from '../runtime/resources.js';
import { podIsReady, podTrouble, type PodStats, type StatusInput } from '../status/status.js';
import { divisorInConfigMap, hasZoneSpread, observedDeployment, owned, type DeploymentObject, type Observed, type PolledPod } from './observed.js';
import { resources } from './resources.js';

export interface PlanSettings {
  /** The proxy image when spec.image is unset. */
  defaultImage: string;
}

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  note: string;
}

/** A child as server-side apply takes it (a type alias, not an interface: the builders' interfaces fit it, and it fits the client's body type). */
export type ChildObject = { metadata: { name: string; namespace?: string } };

/** One step; `after` is recorded once the step succeeded (a failed apply announces nothing). */
export type Action =
  | { kind: 'apply'; resource: Resource; object: ChildObject; after: PlannedEvent[] }
  | { kind: 'delete'; resource: Resource; namespace: string; name: string; uid: string; after: PlannedEvent[] };

/** computeStatus's input but for what only the apply and the clock know: the Deployment as applied, the previous status, now. */
export type PlannedStatus = Omit<StatusInput, 'deployment' | 'previous' | 'now'>;

export interface Plan {
  /** Recorded before any step: why nothing is applied. */
  events: PlannedEvent[];
  /** In order: the ConfigMap before the Deployment, so new pods start with the divisor they are counted in. Empty for an unsupported spec. */
  actions: Action[];
  divisor: DivisorDecision;
  gate: ReplicasGate;
  /** The Deployment the status reads when the plan applies none (unsupported spec): ours as observed. */
  deployment?: DeploymentObject;
  status: PlannedStatus;
  /** Pods run or a scale-up waits: poll again at the status interval, not the idle resync. */
  pollSoon: boolean;
}

/** The pods that answered /stats, and how many did not (ready ones among them are errors; the others are starting). */
export function readPolled(polled: readonly PolledPod[]): { stats: PodStats[]; statsErrors: number; podsWithoutStats: number } {
  const stats: PodStats[] = [];
  let statsErrors = 0;
  let podsWithoutStats = 0;
  for (const p of polled) {
    if (p.stats) stats.push({ pod: p.pod.metadata.name, ready: podIsReady(p.pod), stats: p.stats });
    else {
      podsWithoutStats++;
      if (podIsReady(p.pod)) statsErrors++;
    }
  }
  return { stats, statsErrors, podsWithoutStats };
}

export function plan(observed: Observed, settings: PlanSettings): Plan {
  const { proxy } = observed;
  const uid = proxy.metadata.uid;
  const ownDeployment = owned(observed.deployment, uid);
  const previousDivisor = divisorInConfigMap(owned(observed.configMap, uid));
  const polled = readPolled(observed.polled);

  const deploymentFacts = observedDeployment(ownDeployment);
  const divisor = poolDivisor({
    desiredReplicas: proxy.spec.replicas,
    ...(deploymentFacts ? { deployment: deploymentFacts } : {}),
    observedPods: observed.pods.length,
    ...(previousDivisor !== undefined ? { previousDivisor } : {}),
  });
  const gate = replicasToApply({
    desiredReplicas: proxy.spec.replicas,
    ...(ownDeployment?.spec?.replicas !== undefined ? { currentReplicas: ownDeployment.spec.replicas } : {}),
    divisor: divisor.divisor,
    reportedDivisors: polled.stats.map((p) => p.stats.pool.replicas),
    podsWithoutStats: polled.podsWithoutStats,
  });
  // Until the API has answered about zones, keep whatever the Deployment has: no roll for a guess.
  const zoneSpread = observed.zoned ?? hasZoneSpread(ownDeployment);
  const desired = desiredChildren(proxy, { defaultImage: settings.defaultImage, poolDivisor: divisor.divisor, replicas: gate.replicas, zoneSpread });

  const unsupported = desired.unsupported.length > 0;
  return {
    events: unsupported ? [{ type: 'Warning', reason: 'UnsupportedSpec', note: `not rolled out: ${desired.unsupported.join('; ')}` }] : [],
    actions: unsupported ? [] : childActions(observed, desired, { divisor, gate, ownDeployment, previousDivisor }),
    divisor,
    gate,
    ...(ownDeployment ? { deployment: ownDeployment } : {}),
    status: {
      proxy,
      stats: polled.stats,
      statsErrors: polled.statsErrors,
      poolDivisor: divisor.divisor,
      problems: desired.unsupported,
      ...(gate.waiting ? { scaleWaiting: gate.reason } : {}),
      failingPods: observed.pods.filter((p) => !p.metadata.deletionTimestamp).flatMap((p) => podTrouble(p) ?? []),
    },
    pollSoon: observed.polled.length > 0 || gate.waiting,
  };
}

interface Decided {
  divisor: DivisorDecision;
  gate: ReplicasGate;
  ownDeployment: DeploymentObject | undefined;
  previousDivisor: number | undefined;
}

function childActions(observed: Observed, desired: DesiredChildren, d: Decided): Action[] {
  const apply = (resource: Resource, object: ChildObject, after: PlannedEvent[] = []): Action => ({ kind: 'apply', resource, object, after });
  return [
    ...serviceAccountActions(observed, desired),
    apply(resources.configMaps, desired.configMap, divisorEvents(d)),
    apply(resources.deployments, desired.deployment, deploymentEvents(observed.proxy, desired, d)),
    apply(resources.services, desired.service),
    apply(resources.services, desired.peerService),
    ...readerServiceActions(observed, desired),
    apply(resources.podDisruptionBudgets, desired.podDisruptionBudget),
  ];
}

/** Ours, or none: with spec.serviceAccountName the pods run as the user's, and one this DatabaseProxy made earlier goes. */
function serviceAccountActions(observed: Observed, desired: DesiredChildren): Action[] {
  const { proxy } = observed;
  if (desired.serviceAccount) return [{ kind: 'apply', resource: resources.serviceAccounts, object: desired.serviceAccount, after: [] }];
  const mine = owned(observed.serviceAccount, proxy.metadata.uid);
  if (!mine) return [];
  const name = mine.metadata.name;
  return [
    deleteAction(resources.serviceAccounts, proxy, mine.metadata.uid!, name, {
      type: 'Normal',
      reason: 'ServiceAccountDeleted',
      note: `deleted ServiceAccount ${name}: the pods run as ${proxy.spec.serviceAccountName}`,
    }),
  ];
}

/**
 * The read-only Service with spec.readers.enabled; otherwise one this DatabaseProxy made goes
 * (its controller owner reference): a Service of that name someone else made is theirs.
 */
function readerServiceActions(observed: Observed, desired: DesiredChildren): Action[] {
  const { proxy } = observed;
  if (desired.readerService) return [{ kind: 'apply', resource: resources.services, object: desired.readerService, after: [] }];
  const ro = owned(observed.readerService, proxy.metadata.uid);
  if (!ro) return [];
  const name = ro.metadata.name;
  return [deleteAction(resources.services, proxy, ro.metadata.uid!, name, { type: 'Normal', reason: 'ReaderServiceDeleted', note: `deleted Service ${name}: spec.readers.enabled is not true` })];
}

function deleteAction(resource: Resource, proxy: DatabaseProxy, uid: string, name: string, event: PlannedEvent): Action {
  return { kind: 'delete', resource, namespace: proxy.metadata.namespace!, name, uid, after: [event] };
}

function divisorEvents({ divisor, previousDivisor }: Decided): PlannedEvent[] {
  if (previousDivisor === undefined || previousDivisor === divisor.divisor) return [];
  return [{ type: 'Normal', reason: 'PoolDivisorChanged', note: `each pod now divides the pool budget by ${divisor.divisor} (was ${previousDivisor}): ${divisor.reason}` }];
}

/** What applying the Deployment sets in motion: a roll (the config hash moved), a scale, or a scale-up held back. */
function deploymentEvents(proxy: DatabaseProxy, desired: DesiredChildren, { gate, ownDeployment }: Decided): PlannedEvent[] {
  const events: PlannedEvent[] = [];
  const oldHash = ownDeployment?.spec?.template?.metadata?.annotations?.[CONFIG_HASH_ANNOTATION];
  const oldReplicas = ownDeployment?.spec?.replicas;
  if (oldHash !== undefined && oldHash !== desired.configHash) {
    events.push({ type: 'Normal', reason: 'RollingOut', note: `proxy config changed (hash ${oldHash} -> ${desired.configHash}): rolling out new pods` });
  }
  if (oldReplicas !== undefined && oldReplicas !== gate.replicas) {
    events.push({ type: 'Normal', reason: oldReplicas < gate.replicas ? 'ScalingUp' : 'ScalingDown', note: `scaling the proxy Deployment from ${oldReplicas} to ${gate.replicas} replicas` });
  }
  if (gate.waiting) events.push({ type: 'Normal', reason: 'WaitingForPoolShrink', note: `holding ${gate.replicas} replicas (want ${proxy.spec.replicas}): ${gate.reason}` });
  return events;
}
