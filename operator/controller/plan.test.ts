import { exampleProxy } from '../api/fixtures.js';
import type { DatabaseProxy, DatabaseProxySpecInput } from '../api/v1alpha1.js';
import { CONFIG_HASH_ANNOTATION, buildConfigMap, childNames, desiredChildren, ownerReference, ZONE_LABEL } from '../desired/index.js';
import type { DeploymentStatus } from '../runtime/types.js';
import type { KubeObject } from '../runtime/resources.js';
import { exampleStats } from '../status/fixtures.js';
import { divisorInConfigMap, type ConfigMapObject, type DeploymentObject, type Observed, type PodObject, type PolledPod } from './observed.js';
import { plan, type Plan } from './plan.js';

// One reconcile's decision, from literals: what the observed world looks like, what the plan
// applies and deletes (in order), which events it earns, the divisor the ConfigMap carries and the
// replicas the Deployment gets. Names below are those of the DatabaseProxy "orders" in "shop".

const IMAGE = 'dbproxy:test';
const proxy = (spec: Partial<DatabaseProxySpecInput> = {}, generation = 1): DatabaseProxy => exampleProxy(spec, { generation });

/** The config hash the Deployment carries when it was applied for `p` (the divisor is a live field: not in the hash). */
const hashFor = (p: DatabaseProxy): string => desiredChildren(p, { defaultImage: IMAGE, poolDivisor: 1 }).configHash;

interface DeploymentSeen {
  specReplicas: number;
  status: DeploymentStatus;
  generation?: number;
  /** The spec it was last applied for (its config hash); default: the proxy under test. */
  appliedFor?: DatabaseProxy;
  zoneSpread?: boolean;
  foreign?: boolean;
}

function deployment(p: DatabaseProxy, d: DeploymentSeen): DeploymentObject {
  const generation = d.generation ?? 1;
  return {
    metadata: { name: childNames(p).deployment, namespace: 'shop', generation, ...(d.foreign ? {} : { ownerReferences: [ownerReference(p)] }) },
    spec: {
      replicas: d.specReplicas,
      template: {
        metadata: { annotations: { [CONFIG_HASH_ANNOTATION]: hashFor(d.appliedFor ?? p) } },
        spec: { topologySpreadConstraints: d.zoneSpread ? [{ topologyKey: ZONE_LABEL }] : [] },
      },
    },
    status: { observedGeneration: generation, ...d.status },
  };
}

/** A Deployment that has reached `n` replicas. */
const settled = (n: number, generation = 1): DeploymentStatus => ({
  observedGeneration: generation,
  replicas: n,
  updatedReplicas: n,
  readyReplicas: n,
  availableReplicas: n,
  terminatingReplicas: 0,
});

/** The ConfigMap as rendered with `divisor` (owned unless `foreign`). */
function configMap(p: DatabaseProxy, divisor: number, foreign = false): ConfigMapObject {
  const cm = buildConfigMap(p, { poolDivisor: divisor }).configMap;
  return foreign ? { ...cm, metadata: { ...cm.metadata, ownerReferences: [] } } : cm;
}

interface PodSeen {
  /** pool.replicas its /stats reports; undefined: /stats did not answer. */
  divisor?: number;
  ready?: boolean;
  terminating?: boolean;
  crashLooping?: boolean;
}

function pod(name: string, s: PodSeen): PodObject {
  return {
    metadata: { name, namespace: 'shop', ...(s.terminating ? { deletionTimestamp: '2025-01-01T00:00:00Z' } : {}) },
    status: {
      phase: 'Running',
      podIP: '10.0.0.1',
      conditions: [{ type: 'Ready', status: s.ready === false ? 'False' : 'True' }],
      ...(s.crashLooping ? { containerStatuses: [{ restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } } }] } : {}),
    },
  };
}

interface World {
  configMap?: ConfigMapObject;
  deployment?: DeploymentObject;
  serviceAccount?: KubeObject;
  readerService?: KubeObject;
  pods?: Record<string, PodSeen>;
  zoned?: boolean;
}

/** What observe() would hand plan(): running pods not terminating are polled, as the reconciler does. */
function observed(p: DatabaseProxy, w: World = {}): Observed {
  const pods = Object.entries(w.pods ?? {}).map(([name, s]) => ({ object: pod(name, s), seen: s }));
  const polled: PolledPod[] = pods
    .filter(({ seen }) => !seen.terminating)
    .map(({ object, seen }) => (seen.divisor !== undefined ? { pod: object, stats: exampleStats({ pool: { ...exampleStats().pool, replicas: seen.divisor } }) } : { pod: object }));
  return {
    proxy: p,
    object: p,
    pods: pods.map((x) => x.object),
    polled,
    zoned: 'zoned' in w ? w.zoned : false,
    ...(w.configMap ? { configMap: w.configMap } : {}),
    ...(w.deployment ? { deployment: w.deployment } : {}),
    ...(w.serviceAccount ? { serviceAccount: w.serviceAccount } : {}),
    ...(w.readerService ? { readerService: w.readerService } : {}),
  };
}

const child = (p: DatabaseProxy, name: string, ours: boolean): KubeObject => ({
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, ...(ours ? { ownerReferences: [ownerReference(p)] } : {}) },
});

interface Expected {
  /** "apply Kind name" / "delete Kind name", in order. */
  steps: string[];
  /** Event reasons in the order they are recorded (before the steps, then after each). */
  events: string[];
  /** pool.replicas in the ConfigMap applied (or the divisor decided, when nothing is applied). */
  divisor: number;
  /** spec.replicas of the Deployment applied; undefined when none is. */
  replicas: number | undefined;
  waiting: boolean;
  pollSoon: boolean;
}

const APPLY_ALL = ['apply ServiceAccount orders', 'apply ConfigMap orders-config', 'apply Deployment orders', 'apply Service orders', 'apply Service orders-peers', 'apply PodDisruptionBudget orders'];

function summary(pl: Plan): Expected {
  const applied = (kind: string) => pl.actions.flatMap((a) => (a.kind === 'apply' && a.resource.kind === kind ? [a.object] : []))[0];
  const cm = applied('ConfigMap') as ConfigMapObject | undefined;
  const dep = applied('Deployment') as DeploymentObject | undefined;
  return {
    steps: pl.actions.map((a) => (a.kind === 'apply' ? `apply ${a.resource.kind} ${a.object.metadata.name}` : `delete ${a.resource.kind} ${a.name}`)),
    events: [...pl.events, ...pl.actions.flatMap((a) => a.after)].map((e) => e.reason),
    divisor: cm ? divisorInConfigMap(cm)! : pl.divisor.divisor,
    replicas: dep?.spec?.replicas,
    waiting: pl.gate.waiting,
    pollSoon: pl.pollSoon,
  };
}

const two = proxy();
const four = proxy({ replicas: 4 }, 2);
const three = proxy({ replicas: 3 }, 2);
// A second user changes the rendered config (and so the config hash): a rolling update.
const moreUsers = (replicas: number, generation: number) =>
  proxy({ replicas, users: [{ name: 'app', passwordSecretRef: { name: 'orders-app' } }, { name: 'report', passwordSecretRef: { name: 'orders-report' } }] }, generation);

const rows: Array<[string, () => Observed, Expected]> = [
  [
    // 2 replicas, one pod at a time without surge: 2 + 0 + 1.
    'first rollout: every child, the divisor for 2 replicas and the allowance of a rollout',
    () => observed(two),
    { steps: APPLY_ALL, events: [], divisor: 3, replicas: 2, waiting: false, pollSoon: false },
  ],
  [
    'steady: the same children again (the apply step skips unchanged ones), no events',
    () => observed(two, { configMap: configMap(two, 3), deployment: deployment(two, { specReplicas: 2, status: settled(2) }), pods: { a: { divisor: 3 }, b: { divisor: 3 } } }),
    { steps: APPLY_ALL, events: [], divisor: 3, replicas: 2, waiting: false, pollSoon: true },
  ],
  [
    // Pods still divide by 3: adding pods now would exceed the budget. The ConfigMap goes first.
    'scale-up 2 -> 4: the larger divisor is written, the replicas are held until the pods use it',
    () => observed(four, { configMap: configMap(four, 3), deployment: deployment(four, { specReplicas: 2, status: settled(2) }), pods: { a: { divisor: 3 }, b: { divisor: 3 } } }),
    { steps: APPLY_ALL, events: ['PoolDivisorChanged', 'WaitingForPoolShrink'], divisor: 5, replicas: 2, waiting: true, pollSoon: true },
  ],
  [
    'scale-up 2 -> 4: once every pod reports the larger divisor, the replicas follow',
    () => observed(four, { configMap: configMap(four, 5), deployment: deployment(four, { specReplicas: 2, status: settled(2) }), pods: { a: { divisor: 5 }, b: { divisor: 5 } } }),
    { steps: APPLY_ALL, events: ['ScalingUp'], divisor: 5, replicas: 4, waiting: false, pollSoon: true },
  ],
  [
    // A pod that has not answered /stats may still run with the old, larger cap.
    'scale-up 2 -> 3 with a pod that has not reported /stats: held',
    () => observed(three, { configMap: configMap(three, 4), deployment: deployment(three, { specReplicas: 2, status: settled(2) }), pods: { a: { divisor: 4 }, b: { ready: false } } }),
    { steps: APPLY_ALL, events: ['WaitingForPoolShrink'], divisor: 4, replicas: 2, waiting: true, pollSoon: true },
  ],
  [
    // The Deployment is at 2 but two old pods still drain: 4 pods exist, the divisor stays 5 (caps
    // do not grow while they hold connections).
    'scale-down 4 -> 2 with old pods still terminating: the divisor keeps the smaller caps',
    () =>
      observed(two, {
        configMap: configMap(two, 5),
        deployment: deployment(two, { specReplicas: 2, generation: 2, status: { ...settled(2, 2), terminatingReplicas: 2 } }),
        pods: { a: { divisor: 5 }, b: { divisor: 5 }, c: { divisor: 5, terminating: true }, d: { divisor: 5, terminating: true } },
      }),
    { steps: APPLY_ALL, events: [], divisor: 5, replicas: 2, waiting: false, pollSoon: true },
  ],
  [
    'scale-down 4 -> 2, settled: the caps grow back',
    () => observed(two, { configMap: configMap(two, 5), deployment: deployment(two, { specReplicas: 2, generation: 2, status: settled(2, 2) }), pods: { a: { divisor: 5 }, b: { divisor: 5 } } }),
    { steps: APPLY_ALL, events: ['PoolDivisorChanged'], divisor: 3, replicas: 2, waiting: false, pollSoon: true },
  ],
  [
    // Mid-rollout (one pod replaced, one old pod draining) the user changes the config again and
    // asks for 3 replicas: the divisor covers 3 + 1 at once, the new template rolls, the replicas
    // wait for the running pods to shrink their caps.
    'spec change mid-rollout with a scale-up: new divisor, new template, replicas held',
    () =>
      observed(moreUsers(3, 3), {
        configMap: configMap(two, 3),
        deployment: deployment(moreUsers(3, 3), {
          specReplicas: 2,
          generation: 2,
          appliedFor: two,
          status: { observedGeneration: 2, replicas: 2, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2, terminatingReplicas: 1 },
        }),
        pods: { a: { divisor: 3 }, b: { divisor: 3 }, c: { divisor: 3, terminating: true } },
      }),
    { steps: APPLY_ALL, events: ['PoolDivisorChanged', 'RollingOut', 'WaitingForPoolShrink'], divisor: 4, replicas: 2, waiting: true, pollSoon: true },
  ],
  [
    // paused is read live from the config file: the ConfigMap changes, the pods do not roll.
    'paused: the ConfigMap says so, the Deployment keeps its config hash and replicas',
    () => observed(proxy({ paused: true }), { configMap: configMap(two, 3), deployment: deployment(proxy({ paused: true }), { specReplicas: 2, status: settled(2), appliedFor: two }), pods: { a: { divisor: 3 }, b: { divisor: 3 } } }),
    { steps: APPLY_ALL, events: [], divisor: 3, replicas: 2, waiting: false, pollSoon: true },
  ],
  [
    'readers on: the <name>-ro Service after the others',
    () => observed(proxy({ readers: { enabled: true } })),
    { steps: [...APPLY_ALL.slice(0, 5), 'apply Service orders-ro', APPLY_ALL[5]!], events: [], divisor: 3, replicas: 2, waiting: false, pollSoon: false },
  ],
  [
    'readers off: the <name>-ro Service this DatabaseProxy made is deleted',
    () => observed(two, { readerService: child(two, 'orders-ro', true) }),
    { steps: [...APPLY_ALL.slice(0, 5), 'delete Service orders-ro', APPLY_ALL[5]!], events: ['ReaderServiceDeleted'], divisor: 3, replicas: 2, waiting: false, pollSoon: false },
  ],
  [
    "readers off: a <name>-ro Service someone else made is theirs",
    () => observed(two, { readerService: child(two, 'orders-ro', false) }),
    { steps: APPLY_ALL, events: [], divisor: 3, replicas: 2, waiting: false, pollSoon: false },
  ],
  [
    "the user's own ServiceAccount: the one this DatabaseProxy made earlier goes first",
    () => observed(proxy({ serviceAccountName: 'orders-proxy' }), { serviceAccount: child(two, 'orders', true) }),
    { steps: ['delete ServiceAccount orders', ...APPLY_ALL.slice(1)], events: ['ServiceAccountDeleted'], divisor: 3, replicas: 2, waiting: false, pollSoon: false },
  ],
  [
    'a Deployment and ConfigMap of that name someone else made: neither is read as ours',
    () =>
      observed(two, {
        configMap: configMap(two, 9, true),
        deployment: deployment(two, { specReplicas: 5, status: settled(5), foreign: true }),
      }),
    { steps: APPLY_ALL, events: [], divisor: 3, replicas: 2, waiting: false, pollSoon: false },
  ],
  [
    // The proxy would refuse the config: nothing is applied, the warning says why.
    'unsupported spec: no step, one warning',
    () => observed(proxy({ backendAuth: { iam: { region: 'eu-west-1' } } }), { deployment: deployment(two, { specReplicas: 2, status: settled(2) }) }),
    { steps: [], events: ['UnsupportedSpec'], divisor: 3, replicas: undefined, waiting: false, pollSoon: false },
  ],
];

describe('plan', () => {
  test.each(rows)('%s', (_name, world, expected) => {
    expect(summary(plan(world(), { defaultImage: IMAGE }))).toEqual(expected);
  });

  test('the divisor in the ConfigMap always covers every pod that may exist while the replicas applied are in force', () => {
    for (const [, world] of rows) {
      const o = world();
      const pl = plan(o, { defaultImage: IMAGE });
      const dep = pl.actions.flatMap((a) => (a.kind === 'apply' && a.resource.kind === 'Deployment' ? [a.object as DeploymentObject] : []))[0];
      if (!dep) continue;
      // Pods that exist now, and what the rollout of the applied Deployment may add (one pod at a time).
      expect(pl.divisor.divisor).toBeGreaterThanOrEqual(Math.max(o.pods.length, dep.spec!.replicas! + 1));
    }
  });

  test('the status inputs: divisor, problems, the held-back scale-up, failing pods (terminating ones are not)', () => {
    const pl = plan(
      observed(four, {
        configMap: configMap(four, 3),
        deployment: deployment(four, { specReplicas: 2, status: settled(2) }),
        pods: { a: { divisor: 3 }, b: { ready: false, crashLooping: true }, c: { ready: false, crashLooping: true, terminating: true } },
      }),
      { defaultImage: IMAGE },
    );
    expect(pl.status.poolDivisor).toBe(5);
    expect(pl.status.problems).toEqual([]);
    expect(pl.status.scaleWaiting).toMatch(/^WaitingForPoolShrink: 1 pod\(s\) still use a smaller divisor than 5, 1 pod\(s\) have not reported \/stats$/);
    expect(pl.status.failingPods).toEqual(['b: CrashLoopBackOff, restarted 3 times']);
    // b is Running but not ready: its missing /stats is a starting pod, not a stats error.
    expect(pl.status.stats.map((s) => s.pod)).toEqual(['a']);
    expect(pl.status.statsErrors).toBe(0);
  });

  test('a ready pod whose /stats did not answer is a stats error', () => {
    const pl = plan(observed(two, { deployment: deployment(two, { specReplicas: 2, status: settled(2) }), pods: { a: { divisor: 3 }, b: {} } }), { defaultImage: IMAGE });
    expect(pl.status.statsErrors).toBe(1);
  });

  test('unsupported spec: the problem reaches the status, which reads the Deployment as observed', () => {
    const dep = deployment(two, { specReplicas: 2, status: settled(2) });
    const pl = plan(observed(proxy({ backendAuth: { iam: { region: 'eu-west-1' } } }), { deployment: dep }), { defaultImage: IMAGE });
    expect(pl.status.problems).toEqual([expect.stringMatching(/^the proxy would refuse its config: /)]);
    expect(pl.events[0]).toEqual({ type: 'Warning', reason: 'UnsupportedSpec', note: `not rolled out: ${pl.status.problems![0]}` });
    expect(pl.deployment).toBe(dep);
  });

  test.each([
    [true, undefined, true],
    [false, undefined, false],
    [undefined, true, true],
    [undefined, false, false],
  ])('zones: nodes zoned %s, the Deployment spreads now %s: spread %s (no roll for a guess)', (zoned, spreadNow, spread) => {
    const pl = plan(observed(two, { zoned, deployment: deployment(two, { specReplicas: 2, status: settled(2), zoneSpread: spreadNow! }) }), { defaultImage: IMAGE });
    const dep = pl.actions.flatMap((a) => (a.kind === 'apply' && a.resource.kind === 'Deployment' ? [a.object as DeploymentObject] : []))[0]!;
    expect((dep.spec?.template?.spec?.topologySpreadConstraints ?? []).some((c) => c.topologyKey === ZONE_LABEL)).toBe(spread);
  });
});
