// The pool budget rule, pure.
//
// The budget B = floor(target max_connections x maxConnectionsPercent / 100) is shared by every
// proxy pod. Each pod opens at most floor(B / divisor) backend connections, where the divisor
// (`pool.replicas` in the proxy config) is the same number for all pods. The sum over all pods is
// within B as long as the divisor is at least the number of pods that can exist at once. So:
//
//   divisor = N + 2 x maxSurge + maxUnavailable
//
//   N         the larger of the desired replicas and the Deployment's current spec.replicas
//             (and never less than the pods that exist right now, terminating ones included).
//   maxSurge  pods a rolling update may add above spec.replicas.
//   maxSurge + maxUnavailable
//             old pods that may still be terminating (draining transactions) during a rolling
//             update. This bound holds because the Deployment's minReadySeconds is at least the
//             pods' terminationGracePeriodSeconds: the controller deletes the next batch of old
//             pods only after new pods have been available for minReadySeconds, by which time the
//             previous batch has exited.
//
// The allowance is kept in steady state too, because a rollout can start at any moment (the user
// edits the spec) and the pods that exist then must already run with the smaller caps.
//
// Shrink per-pod caps before adding pods; count surge pods:
//   - scale up: the divisor for the new size is written first; replicas are raised only once
//     every running pod reports (in /stats pool.replicas) a divisor at least that large
//     (`replicasToApply`).
//   - scale down: replicas drop first; the divisor is lowered only once the Deployment has
//     settled and no extra pod (terminating included) exists (`poolDivisor` keeps the previous
//     divisor until then).
//   - rolling update: the allowance above covers surge and terminating pods.
//
// Not covered: evictions while the PDB allows them can, for a grace period, leave more pods
// terminating than the allowance (a replacement becomes Ready, the next eviction is allowed). The
// proxy keeps that small by closing idle backends at SIGTERM. And if B < divisor each pod still
// opens one connection (`budgetFits` reports it; status says PoolBudgetTooSmall).
import type { DeploymentStatus, RollingUpdate } from '../runtime/types.js';

/** preStop sleep: endpoints controllers take the pod out of the Service before it stops accepting. */
export const PRESTOP_SLEEP_SECONDS = 5;
/** Slack after the proxy's shutdownGracePeriod for closing sockets and exiting. */
export const EXIT_SLACK_SECONDS = 5;

export interface PodTimings {
  /** preStop + the proxy's shutdownGracePeriod + slack: the kubelet never kills a drain the proxy is still allowed. */
  terminationGracePeriodSeconds: number;
  /** At least the grace period, so a rollout never has more than maxSurge + maxUnavailable pods terminating. */
  minReadySeconds: number;
}

/** The pods' grace period and the Deployment's minReadySeconds for a shutdownGracePeriod (in ms, as the proxy parses it). */
export function podTimings(shutdownGraceMs: number): PodTimings {
  const terminationGracePeriodSeconds = PRESTOP_SLEEP_SECONDS + Math.ceil(Math.max(0, shutdownGraceMs) / 1000) + EXIT_SLACK_SECONDS;
  return { terminationGracePeriodSeconds, minReadySeconds: terminationGracePeriodSeconds };
}

/**
 * The Deployment's rolling-update strategy. With two or more replicas, replace one pod at a time
 * without surge (the PodDisruptionBudget also allows one down): the allowance is one pod. A single
 * replica surges instead, so a rollout never leaves zero pods: the allowance is two pods.
 */
export function rolloutStrategy(replicas: number): RollingUpdate {
  return replicas <= 1 ? { maxSurge: 1, maxUnavailable: 0 } : { maxSurge: 0, maxUnavailable: 1 };
}

/** Pods that may exist at once above the largest pod set: surge pods plus terminating ones. */
export function rolloutAllowance(strategy: RollingUpdate): number {
  return 2 * strategy.maxSurge + strategy.maxUnavailable;
}

export interface DeploymentFacts {
  /** metadata.generation of the Deployment. */
  generation?: number;
  /** spec.replicas of the Deployment as it is now (before this reconcile applies anything). */
  specReplicas?: number;
  status?: DeploymentStatus;
}

export interface DivisorInput {
  /** spec.replicas of the DatabaseProxy. */
  desiredReplicas: number;
  /**
   * Rolling-update strategies in force while this divisor is: by default the rule's strategy for
   * the desired replicas and for the Deployment's current replicas (they differ around 1 replica).
   */
  strategies?: RollingUpdate[];
  /** The Deployment as observed; undefined when it does not exist yet. */
  deployment?: DeploymentFacts;
  /** Every pod of this proxy, terminating ones included (from a pod list); undefined if unknown. */
  observedPods?: number;
  /** The divisor in the ConfigMap now, if any. */
  previousDivisor?: number;
}

export interface DivisorDecision {
  /** pool.replicas for the ConfigMap. */
  divisor: number;
  /** The divisor the current observations require. */
  required: number;
  /** Whether the Deployment is settled: no rollout, scale or terminating pod in flight. */
  settled: boolean;
  /** Why the divisor is what it is, for logs and events. */
  reason: string;
}

const n = (v: number | undefined): number => (v !== undefined && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);

/** Whether the Deployment has reached its spec: the only time the divisor may go down. */
export function deploymentSettled(input: Pick<DivisorInput, 'desiredReplicas' | 'deployment' | 'observedPods'>): boolean {
  const d = input.deployment;
  if (!d?.status || input.observedPods === undefined) return false;
  const st = d.status;
  const want = input.desiredReplicas;
  return (
    n(st.observedGeneration) >= n(d.generation) &&
    n(d.specReplicas) === want &&
    n(st.replicas) === want &&
    n(st.updatedReplicas) === want &&
    n(st.availableReplicas) === want &&
    n(st.terminatingReplicas) === 0 &&
    input.observedPods === want
  );
}

/** The divisor each pod must use (see the rule at the top of this file). */
export function poolDivisor(input: DivisorInput): DivisorDecision {
  const st = input.deployment?.status;
  const strategies = input.strategies ?? [rolloutStrategy(input.desiredReplicas), rolloutStrategy(input.deployment?.specReplicas ?? input.desiredReplicas)];
  const allowance = Math.max(0, ...strategies.map(rolloutAllowance));
  // N: the pod set asked for. Pods seen right now (terminating included) are a floor too: they
  // exist, whatever the rule says; in a normal rollout they never exceed N + allowance.
  const required = Math.max(
    Math.max(1, n(input.desiredReplicas), n(input.deployment?.specReplicas)) + allowance,
    n(input.observedPods),
    n(st?.replicas) + n(st?.terminatingReplicas),
  );
  const settled = deploymentSettled(input);
  const prev = input.previousDivisor;
  if (prev === undefined || required >= prev) {
    return { divisor: required, required, settled, reason: prev === undefined || required === prev ? 'Steady' : 'ShrinkPerPodCaps' };
  }
  if (settled) return { divisor: required, required, settled, reason: 'GrowPerPodCaps' };
  return { divisor: prev, required, settled, reason: 'WaitForDeploymentToSettle' };
}

export interface ReplicasGateInput {
  desiredReplicas: number;
  /** spec.replicas of the existing Deployment; undefined when there is none yet. */
  currentReplicas?: number;
  /** The divisor the desired replicas need (poolDivisor(...).divisor). */
  divisor: number;
  /** pool.replicas each running pod reports in /stats. */
  reportedDivisors: number[];
  /** Running pods whose /stats could not be read (not ready yet, unreachable). */
  podsWithoutStats: number;
}

export interface ReplicasGate {
  replicas: number;
  /** True when a scale-up is held back until pods have shrunk their caps. */
  waiting: boolean;
  reason: string;
}

/**
 * The Deployment replicas to apply now. Scaling up waits until every running pod has picked up the
 * larger divisor from the ConfigMap (kubelet refreshes mounted ConfigMaps within about a minute,
 * the proxy reloads them), so new pods never add connections on top of old, larger caps.
 */
export function replicasToApply(input: ReplicasGateInput): ReplicasGate {
  const { desiredReplicas: want, currentReplicas: cur } = input;
  if (cur === undefined) return { replicas: want, waiting: false, reason: 'NewDeployment' };
  if (want <= cur) return { replicas: want, waiting: false, reason: want === cur ? 'Steady' : 'ScaleDown' };
  const behind = input.reportedDivisors.filter((d) => d < input.divisor).length;
  if (behind === 0 && input.podsWithoutStats === 0) return { replicas: want, waiting: false, reason: 'ScaleUp' };
  const why = [
    behind > 0 ? `${behind} pod(s) still use a smaller divisor than ${input.divisor}` : '',
    input.podsWithoutStats > 0 ? `${input.podsWithoutStats} pod(s) have not reported /stats` : '',
  ]
    .filter(Boolean)
    .join(', ');
  return { replicas: cur, waiting: true, reason: `WaitingForPoolShrink: ${why}` };
}

/** floor(max_connections x percent / 100), in integers so 100 x 90 / 100 is exact. */
export function poolBudget(targetMaxConnections: number, maxConnectionsPercent: number): number {
  return Math.floor((targetMaxConnections * maxConnectionsPercent) / 100);
}

/** Connections one pod may open (the proxy's own formula, less nothing). */
export function perPodCap(budget: number, divisor: number): number {
  return Math.floor(budget / Math.max(1, divisor));
}

/** Whether each pod gets at least one connection from the budget (the proxy opens one regardless). */
export function budgetFits(budget: number, divisor: number): boolean {
  return budget >= divisor;
}
