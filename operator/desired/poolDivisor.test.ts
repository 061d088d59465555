import type { RollingUpdate } from '../runtime/types.js';
import {
  PRESTOP_SLEEP_SECONDS,
  podTimings,
  budgetFits,
  perPodCap,
  poolBudget,
  poolDivisor,
  replicasToApply,
  rolloutAllowance,
  rolloutStrategy,
  type DivisorInput,
} from './poolDivisor.js';

// A small model of the Deployment controller's rolling update (reconcileNewReplicaSet /
// reconcileOldReplicaSets / cleanupUnhealthyReplicas), one-second ticks. Terminating pods are not
// counted by the controller but still exist (and hold connections) until they exit.
interface SimPod {
  gen: 'old' | 'new';
  readyAt: number;
  deletedAt?: number;
}

interface SimOptions {
  replicas: number;
  /** Old pods at the start (differs from replicas when a rollout and a scale happen together). */
  oldPods?: number;
  strategy: RollingUpdate;
  startupSeconds: number;
  /** How long a terminating pod takes to exit (at most the grace period). */
  drainSeconds: number;
  minReadySeconds: number;
}

/** The most pods that existed at once during a rolling update from old to new pods. */
function simulateRollout(o: SimOptions): number {
  let pods: SimPod[] = Array.from({ length: o.oldPods ?? o.replicas }, () => ({ gen: 'old' as const, readyAt: -1000 }));
  const available = (p: SimPod, t: number) => p.deletedAt === undefined && p.readyAt + o.minReadySeconds <= t;
  let most = pods.length;
  for (let t = 0; t < 10_000; t++) {
    pods = pods.filter((p) => p.deletedAt === undefined || p.deletedAt + o.drainSeconds > t);
    const live = () => pods.filter((p) => p.deletedAt === undefined);
    // scale up the new ReplicaSet within replicas + maxSurge
    const newLive = live().filter((p) => p.gen === 'new').length;
    const room = o.replicas + o.strategy.maxSurge - live().length;
    for (let i = 0; i < Math.min(room, o.replicas - newLive); i++) pods.push({ gen: 'new', readyAt: t + o.startupSeconds });
    // scale down old pods, keeping replicas - maxUnavailable available
    const minAvailable = o.replicas - o.strategy.maxUnavailable;
    const newUnavailable = live().filter((p) => p.gen === 'new' && !available(p, t)).length;
    let budget = live().length - minAvailable - newUnavailable;
    for (const p of live().filter((x) => x.gen === 'old' && !available(x, t))) {
      if (budget <= 0) break;
      p.deletedAt = t;
      budget--;
    }
    let scaleDown = live().filter((p) => available(p, t)).length - minAvailable;
    for (const p of live().filter((x) => x.gen === 'old')) {
      if (scaleDown <= 0) break;
      p.deletedAt = t;
      scaleDown--;
    }
    most = Math.max(most, pods.length);
    const done = pods.every((p) => p.gen === 'new' && available(p, t)) && pods.length === o.replicas;
    if (done) return most;
  }
  throw new Error('rollout did not finish');
}

const budgetHolds = (budget: number, divisor: number, pods: number) => pods * perPodCap(budget, divisor) <= budget;

describe('rollout strategy and timings', () => {
  test.each([0, 1_500, 20_000, 300_000])('shutdownGracePeriod %i ms: the grace period covers preStop and the drain, minReadySeconds covers the grace period', (graceMs) => {
    const t = podTimings(graceMs);
    expect(t.terminationGracePeriodSeconds).toBeGreaterThan(PRESTOP_SLEEP_SECONDS + graceMs / 1000);
    expect(t.minReadySeconds).toBeGreaterThanOrEqual(t.terminationGracePeriodSeconds);
  });

  test.each([
    [1, { maxSurge: 1, maxUnavailable: 0 }, 2],
    [2, { maxSurge: 0, maxUnavailable: 1 }, 1],
    [10, { maxSurge: 0, maxUnavailable: 1 }, 1],
  ])('%i replicas: %j, allowance %i', (replicas, strategy, allowance) => {
    expect(rolloutStrategy(replicas)).toEqual(strategy);
    expect(rolloutAllowance(strategy)).toBe(allowance);
  });
});

describe('poolDivisor', () => {
  const settledDeployment = (r: number) => ({
    generation: 3,
    specReplicas: r,
    status: { observedGeneration: 3, replicas: r, updatedReplicas: r, readyReplicas: r, availableReplicas: r },
  });

  test.each<[string, DivisorInput, { divisor: number; reason: string }]>([
    ['new proxy, 2 replicas', { desiredReplicas: 2 }, { divisor: 3, reason: 'Steady' }],
    ['new proxy, 1 replica (surges)', { desiredReplicas: 1 }, { divisor: 3, reason: 'Steady' }],
    ['steady 2', { desiredReplicas: 2, deployment: settledDeployment(2), observedPods: 2, previousDivisor: 3 }, { divisor: 3, reason: 'Steady' }],
    ['scale up 2 -> 4: shrink caps first', { desiredReplicas: 4, deployment: settledDeployment(2), observedPods: 2, previousDivisor: 3 }, { divisor: 5, reason: 'ShrinkPerPodCaps' }],
    [
      'scale down 4 -> 2, pods still terminating: keep the divisor',
      { desiredReplicas: 2, deployment: { ...settledDeployment(2), status: { ...settledDeployment(2).status, terminatingReplicas: 2 } }, observedPods: 4, previousDivisor: 5 },
      { divisor: 5, reason: 'WaitForDeploymentToSettle' },
    ],
    [
      'scale down 4 -> 2, Deployment spec not yet applied',
      { desiredReplicas: 2, deployment: settledDeployment(4), observedPods: 4, previousDivisor: 5 },
      { divisor: 5, reason: 'Steady' },
    ],
    ['scale down 4 -> 2, settled: grow caps', { desiredReplicas: 2, deployment: settledDeployment(2), observedPods: 2, previousDivisor: 5 }, { divisor: 3, reason: 'GrowPerPodCaps' }],
    ['scale down without a pod list: never lower', { desiredReplicas: 2, deployment: settledDeployment(2), previousDivisor: 5 }, { divisor: 5, reason: 'WaitForDeploymentToSettle' }],
    [
      'rolling update in progress (old pods terminating): no change',
      {
        desiredReplicas: 3,
        deployment: { generation: 4, specReplicas: 3, status: { observedGeneration: 4, replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, terminatingReplicas: 1 } },
        observedPods: 4,
        previousDivisor: 4,
      },
      { divisor: 4, reason: 'Steady' },
    ],
    [
      'pods stuck terminating beyond the allowance raise the divisor',
      { desiredReplicas: 2, deployment: settledDeployment(2), observedPods: 5, previousDivisor: 3 },
      { divisor: 5, reason: 'ShrinkPerPodCaps' },
    ],
    ['1 -> 2 replicas: the strategy changes, the larger allowance counts', { desiredReplicas: 2, deployment: settledDeployment(1), observedPods: 1, previousDivisor: 3 }, { divisor: 4, reason: 'ShrinkPerPodCaps' }],
  ])('%s', (_name, input, expected) => {
    expect(poolDivisor(input)).toMatchObject(expected);
  });

  // Rolling updates through the controller model: the divisor computed before the rollout covers
  // every pod that exists during it, surge and terminating pods included.
  const rollouts: Array<[number, number, number]> = [];
  const { terminationGracePeriodSeconds, minReadySeconds } = podTimings(20_000);
  for (const replicas of [1, 2, 3, 5, 10]) for (const startup of [1, 5, 45]) for (const drain of [0, 10, terminationGracePeriodSeconds]) rollouts.push([replicas, startup, drain]);
  test.each(rollouts)('rolling update: %i replicas, %is startup, %is drain', (replicas, startupSeconds, drainSeconds) => {
    const strategy = rolloutStrategy(replicas);
    const { divisor } = poolDivisor({ desiredReplicas: replicas, deployment: settledDeployment(replicas), observedPods: replicas, previousDivisor: undefined });
    const most = simulateRollout({ replicas, strategy, startupSeconds, drainSeconds, minReadySeconds });
    expect(most).toBeLessThanOrEqual(divisor);
    for (const maxConnections of [100, 500, 5000]) {
      const budget = poolBudget(maxConnections, 90);
      expect(budgetHolds(budget, divisor, most)).toBe(true);
    }
  });

  test('without minReadySeconds the terminating bound does not hold (why the Deployment sets it)', () => {
    const replicas = 5;
    const { divisor } = poolDivisor({ desiredReplicas: replicas });
    const most = simulateRollout({ replicas, strategy: rolloutStrategy(replicas), startupSeconds: 1, drainSeconds: 30, minReadySeconds: 0 });
    expect(most).toBeGreaterThan(divisor);
  });

  test('scale up: old pods keep the new divisor while new pods are added, within budget', () => {
    const budget = poolBudget(1000, 90); // 900
    const { divisor } = poolDivisor({ desiredReplicas: 6, deployment: settledDeployment(3), observedPods: 3, previousDivisor: 4 });
    // Once every pod has reloaded, the Deployment grows to 6 and may then roll: 6 + 1 pods at most.
    expect(budgetHolds(budget, divisor, 6 + rolloutAllowance(rolloutStrategy(6)))).toBe(true);
    // Had the new pods been added before the old ones shrank, 3 old (900/4) + 4 new (900/7) > 900.
    expect(3 * perPodCap(budget, 4) + 4 * perPodCap(budget, divisor)).toBeGreaterThan(budget);
  });

  test('scale down: terminating pods with the old divisor plus remaining pods stay within budget', () => {
    const budget = poolBudget(200, 90); // 180
    const { divisor } = poolDivisor({ desiredReplicas: 2, deployment: { ...settledDeployment(2), status: { ...settledDeployment(2).status, terminatingReplicas: 3 } }, observedPods: 5, previousDivisor: 6 });
    expect(divisor).toBe(6);
    expect(budgetHolds(budget, divisor, 5)).toBe(true);
  });
});

describe('replicasToApply (shrink per-pod caps before adding pods)', () => {
  test.each([
    ['no Deployment yet', { desiredReplicas: 3, divisor: 4, reportedDivisors: [], podsWithoutStats: 0 }, { replicas: 3, waiting: false }],
    ['steady', { desiredReplicas: 3, currentReplicas: 3, divisor: 4, reportedDivisors: [4, 4, 4], podsWithoutStats: 0 }, { replicas: 3, waiting: false }],
    ['scale down right away', { desiredReplicas: 2, currentReplicas: 4, divisor: 5, reportedDivisors: [5, 5, 5, 5], podsWithoutStats: 0 }, { replicas: 2, waiting: false }],
    ['scale up waits for pods on the old divisor', { desiredReplicas: 4, currentReplicas: 2, divisor: 5, reportedDivisors: [5, 3], podsWithoutStats: 0 }, { replicas: 2, waiting: true }],
    ['scale up waits for pods without stats', { desiredReplicas: 4, currentReplicas: 2, divisor: 5, reportedDivisors: [5], podsWithoutStats: 1 }, { replicas: 2, waiting: true }],
    ['scale up once every pod reports the divisor', { desiredReplicas: 4, currentReplicas: 2, divisor: 5, reportedDivisors: [5, 5], podsWithoutStats: 0 }, { replicas: 4, waiting: false }],
  ])('%s', (_name, input, expected) => {
    expect(replicasToApply(input)).toMatchObject(expected);
  });

  test('the reason says why it waits', () => {
    expect(replicasToApply({ desiredReplicas: 4, currentReplicas: 2, divisor: 5, reportedDivisors: [3, 3], podsWithoutStats: 1 }).reason).toBe(
      'WaitingForPoolShrink: 2 pod(s) still use a smaller divisor than 5, 1 pod(s) have not reported /stats',
    );
  });
});

describe('budget helpers', () => {
  test.each([
    [100, 90, 90],
    [5000, 90, 4500],
    [101, 33, 33],
    [3, 50, 1],
  ])('poolBudget(%i, %i%%) = %i', (max, pct, budget) => expect(poolBudget(max, pct)).toBe(budget));

  test('budgetFits is false when pods would get less than one connection each', () => {
    expect(budgetFits(10, 3)).toBe(true);
    expect(budgetFits(2, 3)).toBe(false);
    expect(perPodCap(10, 3)).toBe(3);
  });
});
