import type { ProxyStats } from '../../proxy/contract/stats.js';
import { exampleProxy } from '../api/fixtures.js';
import { statusSchema, type Condition, type DatabaseProxyStatus } from '../api/v1alpha1.js';
import { validate } from '../api/schema.js';
import { examplePod, exampleStats, firstCheckPendingStats, noWriterStats, observedDeployment, readersStats } from './fixtures.js';
import {
  camelCase,
  computeStatus,
  podTrouble,
  formatTime,
  writerCheckPending,
  type PodStats,
  type StatusInput,
} from './status.js';
import { isUrgentChange, shouldWrite, statusChanged, writeDelayMs } from './writePolicy.js';

const T0 = new Date('2025-01-01T10:00:00.000Z');
const T1 = new Date('2025-01-01T10:00:30.000Z');

const stats = exampleStats;
const pod = examplePod;
const deployment = observedDeployment;
const healthy = (r = 2) =>
  deployment({ replicas: r, updatedReplicas: r, readyReplicas: r, availableReplicas: r, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, r);
const unreachable = (reason = 'AUTH_FAILURE'): Partial<ProxyStats> => noWriterStats(reason);
const pending = firstCheckPendingStats;
const scaledUpTo3 = () =>
  deployment({ replicas: 3, updatedReplicas: 3, readyReplicas: 2, availableReplicas: 2, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, 3);

const proxy = exampleProxy({}, { generation: 4 });
const input = (over: Partial<StatusInput>): StatusInput => ({ proxy, stats: [], now: T0, poolDivisor: 3, ...over });
const cond = (s: DatabaseProxyStatus, type: string): Condition => s.conditions!.find((c) => c.type === type)!;
type Expect = Record<string, [Condition['status'], string]>;
const summary = (s: DatabaseProxyStatus): Expect => Object.fromEntries(s.conditions!.map((c) => [c.type, [c.status, c.reason]]));

describe('computeStatus conditions', () => {
  test.each<[string, Partial<StatusInput>, Expect]>([
    [
      'no Deployment yet',
      {},
      {
        Ready: ['False', 'DeploymentNotFound'],
        Available: ['False', 'DeploymentNotFound'],
        Progressing: ['True', 'Creating'],
        Degraded: ['False', 'AsExpected'],
        TargetReachable: ['Unknown', 'NoStats'],
      },
    ],
    [
      'pods starting',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }) },
      {
        Ready: ['False', 'NoReplicasReady'],
        Available: ['False', 'NoReplicasReady'],
        Progressing: ['True', 'WaitingForPods'],
        Degraded: ['False', 'AsExpected'],
        TargetReachable: ['Unknown', 'NoStats'],
      },
    ],
    [
      'healthy',
      { deployment: healthy(), stats: [pod('a'), pod('b')] },
      {
        Ready: ['True', 'ProxyReady'],
        Available: ['True', 'ReplicasReady'],
        Progressing: ['False', 'RolloutComplete'],
        Degraded: ['False', 'AsExpected'],
        TargetReachable: ['True', 'WriterAvailable'],
      },
    ],
    [
      'rolling update',
      { deployment: deployment({ replicas: 2, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 1, terminatingReplicas: 1 }, 2, 2), stats: [pod('a'), pod('b')] },
      {
        Ready: ['False', 'RollingOut'],
        Available: ['True', 'ReplicasReady'],
        Progressing: ['True', 'RollingOut'],
        Degraded: ['False', 'AsExpected'],
        TargetReachable: ['True', 'WriterAvailable'],
      },
    ],
    [
      'Deployment controller has not seen the new template yet',
      { deployment: { generation: 3, specReplicas: 2, status: { observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 } }, stats: [pod('a'), pod('b')] },
      { Ready: ['False', 'RollingOut'], Available: ['True', 'ReplicasReady'], Progressing: ['True', 'RollingOut'], Degraded: ['False', 'AsExpected'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      'scale-up held back until pods shrink their pools',
      { deployment: healthy(), stats: [pod('a'), pod('b')], scaleWaiting: '2 pod(s) still use a smaller divisor than 5', proxy: exampleProxy({ replicas: 4 }, { generation: 5 }) },
      {
        Ready: ['False', 'WaitingForPoolShrink'],
        Available: ['True', 'ReplicasReady'],
        Progressing: ['True', 'WaitingForPoolShrink'],
        Degraded: ['False', 'AsExpected'],
        TargetReachable: ['True', 'WriterAvailable'],
      },
    ],
    [
      'scaling down',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, terminatingReplicas: 2 }), stats: [pod('a'), pod('b')] },
      { Ready: ['False', 'ScalingDown'], Available: ['True', 'ReplicasReady'], Progressing: ['True', 'ScalingDown'], Degraded: ['False', 'AsExpected'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      'database unreachable: pods not ready, their /stats still read',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }), stats: [pod('a', unreachable(), false), pod('b', unreachable(), false)] },
      {
        Ready: ['False', 'TargetUnreachable'],
        Available: ['False', 'NoReplicasReady'],
        Progressing: ['True', 'WaitingForPods'],
        Degraded: ['True', 'TargetUnreachable'],
        TargetReachable: ['False', 'AuthFailure'],
      },
    ],
    [
      'writer reachable from some pods only',
      { deployment: healthy(), stats: [pod('a'), pod('b', unreachable('UNREACHABLE'))] },
      {
        Ready: ['False', 'TargetUnreachableFromSomePods'],
        Available: ['True', 'ReplicasReady'],
        Progressing: ['False', 'RolloutComplete'],
        Degraded: ['True', 'TargetUnreachableFromSomePods'],
        TargetReachable: ['True', 'WriterReachableFromSomePods'],
      },
    ],
    [
      'a pod failed after the rollout',
      {
        deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }),
        stats: [pod('a')],
        failingPods: ['orders-b: CrashLoopBackOff, restarted 3 times'],
      },
      { Ready: ['False', 'ReplicasUnavailable'], Available: ['True', 'ReplicasReady'], Progressing: ['False', 'RolloutComplete'], Degraded: ['True', 'ReplicasUnavailable'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      // The Deployment keeps Progressing=NewReplicaSetAvailable through a scale; the new pod is Ready
      // but inside minReadySeconds, so not yet available. That is progress, not a problem.
      'scaled up after the rollout: the new pod is ready, not yet available',
      {
        proxy: exampleProxy({ replicas: 3 }, { generation: 4 }),
        deployment: deployment({ replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 2, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, 3),
        stats: [pod('a'), pod('b'), pod('c')],
      },
      { Ready: ['False', 'WaitingForPods'], Available: ['True', 'ReplicasReady'], Progressing: ['True', 'WaitingForPods'], Degraded: ['False', 'AsExpected'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      'a pod replaced after the rollout, its successor starting',
      {
        deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }),
        stats: [pod('a')],
      },
      { Ready: ['False', 'WaitingForPods'], Available: ['True', 'ReplicasReady'], Progressing: ['True', 'WaitingForPods'], Degraded: ['False', 'AsExpected'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      // Issue 19: the third pod's first check of the writer is still on its way (UNKNOWN) while a
      // dead target already failed. It is starting, not failing.
      'scale-up: the new pod has not finished its first check of the writer',
      { proxy: exampleProxy({ replicas: 3 }, { generation: 4 }), deployment: scaledUpTo3(), stats: [pod('a'), pod('b'), pod('c', pending(), false)] },
      { Ready: ['False', 'WaitingForPods'], Available: ['True', 'ReplicasReady'], Progressing: ['True', 'WaitingForPods'], Degraded: ['False', 'AsExpected'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      'new pods, none has finished its first check of the targets',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }), stats: [pod('a', pending(), false), pod('b', pending(), false)] },
      { Ready: ['False', 'NoReplicasReady'], Available: ['False', 'NoReplicasReady'], Progressing: ['True', 'WaitingForPods'], Degraded: ['False', 'AsExpected'], TargetReachable: ['Unknown', 'WriterCheckPending'] },
    ],
    [
      'one new pod found no writer, the other is still checking',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }), stats: [pod('a', unreachable('AUTH_FAILURE'), false), pod('b', pending(), false)] },
      { Ready: ['False', 'TargetUnreachable'], Available: ['False', 'NoReplicasReady'], Progressing: ['True', 'WaitingForPods'], Degraded: ['True', 'TargetUnreachable'], TargetReachable: ['False', 'AuthFailure'] },
    ],
    [
      'writer reachable from some pods, another lost it, a new one still checking',
      { proxy: exampleProxy({ replicas: 3 }, { generation: 4 }), deployment: scaledUpTo3(), stats: [pod('a'), pod('b', unreachable('UNREACHABLE')), pod('c', pending(), false)] },
      {
        Ready: ['False', 'TargetUnreachableFromSomePods'],
        Available: ['True', 'ReplicasReady'],
        Progressing: ['True', 'WaitingForPods'],
        Degraded: ['True', 'TargetUnreachableFromSomePods'],
        TargetReachable: ['True', 'WriterReachableFromSomePods'],
      },
    ],
    [
      'progress deadline exceeded',
      {
        deployment: deployment({
          replicas: 3,
          updatedReplicas: 1,
          readyReplicas: 2,
          availableReplicas: 2,
          conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "orders-7d9" has timed out progressing.' }],
        }),
        stats: [pod('a'), pod('b')],
      },
      {
        Ready: ['False', 'ProgressDeadlineExceeded'],
        Available: ['True', 'ReplicasReady'],
        Progressing: ['False', 'ProgressDeadlineExceeded'],
        Degraded: ['True', 'ProgressDeadlineExceeded'],
        TargetReachable: ['True', 'WriterAvailable'],
      },
    ],
    [
      'spec the proxy cannot honour',
      { deployment: healthy(), stats: [pod('a'), pod('b')], problems: ['spec.tls.secretName/requireTLS: the proxy cannot terminate client TLS yet'] },
      { Ready: ['False', 'UnsupportedSpec'], Available: ['True', 'ReplicasReady'], Progressing: ['False', 'RolloutComplete'], Degraded: ['True', 'UnsupportedSpec'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
    [
      '/stats unreadable',
      { deployment: healthy(), stats: [], statsErrors: 2 },
      { Ready: ['False', 'StatsUnavailable'], Available: ['True', 'ReplicasReady'], Progressing: ['False', 'RolloutComplete'], Degraded: ['False', 'AsExpected'], TargetReachable: ['Unknown', 'StatsUnavailable'] },
    ],
    [
      '/stats unreadable from one pod',
      { deployment: healthy(), stats: [pod('a')], statsErrors: 1 },
      { Ready: ['False', 'StatsUnavailable'], Available: ['True', 'ReplicasReady'], Progressing: ['False', 'RolloutComplete'], Degraded: ['True', 'StatsUnavailable'], TargetReachable: ['True', 'WriterAvailable'] },
    ],
  ])('%s', (_name, over, expected) => {
    const s = computeStatus(input(over));
    expect(summary(s)).toEqual(expected);
    expect(validate(s, statusSchema.json)).toEqual([]);
    for (const c of s.conditions!) expect(c.observedGeneration).toBe(over.proxy?.metadata.generation ?? 4);
  });

  test('pods that stay unavailable longer than the progress deadline, without failing, are Degraded', () => {
    const short = deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] });
    const first = computeStatus(input({ deployment: { ...short, progressDeadlineSeconds: 30 }, stats: [pod('a')], now: T0 }));
    expect(cond(first, 'Progressing')).toMatchObject({ status: 'True', reason: 'WaitingForPods', message: '1/2 replicas available, 1 ready, 2 running' });
    // 29 s later: still starting. 31 s: past the deadline.
    const later = (s: number) => computeStatus(input({ deployment: { ...short, progressDeadlineSeconds: 30 }, stats: [pod('a')], now: new Date(T0.getTime() + s * 1000), previous: first }));
    expect(cond(later(29), 'Degraded').status).toBe('False');
    expect(cond(later(31), 'Degraded')).toMatchObject({ status: 'True', reason: 'ReplicasUnavailable', message: "1/2 replicas available: for more than 30s (the Deployment's progress deadline)" });
    expect(cond(later(31), 'Progressing')).toMatchObject({ status: 'False', reason: 'RolloutComplete' });
  });

  test('pool budget smaller than the divisor is Degraded', () => {
    const s = computeStatus(input({ deployment: healthy(), stats: [pod('a', { pool: { ...stats().pool, targetMaxConnections: 3 } })], poolDivisor: 3 }));
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'PoolBudgetTooSmall' });
    expect(cond(s, 'Degraded').message).toBe('pool budget 2 (max_connections 3 x 90%) is smaller than the 3 pods it is divided over');
    expect(s.poolBudget).toBe(2);
  });
  test('every ready pod paused (admin PAUSE) is Ready=False Paused, not Degraded; one paused pod changes nothing', () => {
    const all = computeStatus(input({ deployment: healthy(), stats: [pod('a', { paused: true }), pod('b', { paused: true })] }));
    expect(cond(all, 'Ready')).toMatchObject({ status: 'False', reason: 'Paused' });
    expect(cond(all, 'Ready').message).toMatch(/^2 pods paused \(admin console PAUSE; RESUME continues\); 2\/2 replicas ready/);
    expect(cond(all, 'Degraded')).toMatchObject({ status: 'False' });
    const one = computeStatus(input({ deployment: healthy(), stats: [pod('a', { paused: true }), pod('b')] }));
    expect(cond(one, 'Ready')).toMatchObject({ status: 'True', reason: 'ProxyReady' });
  });

  const byConfig = { paused: true, pause: { config: true, admin: false } };
  const pausedProxy = exampleProxy({ paused: true }, { generation: 5 });
  test.each<[string, Partial<StatusInput>, [string, RegExp]]>([
    ['spec.paused, every ready pod paused by its config: Paused', { proxy: pausedProxy, stats: [pod('a', byConfig), pod('b', byConfig)] }, ['Paused', /^2 pods paused \(spec\.paused\): new transactions wait until spec\.paused is false; 2\/2 replicas ready/]],
    ['spec.paused, one pod has not read its new config yet: Pausing', { proxy: pausedProxy, stats: [pod('a', byConfig), pod('b')] }, ['Pausing', /^1\/2 ready pods paused; the others pick up spec\.paused from their config file within about a minute/]],
    ['spec.paused, no pod has stats yet: Pausing', { proxy: pausedProxy, stats: [] }, ['Pausing', /^0\/0 ready pods paused/]],
    ['spec.paused false again, a pod still on the old config: Resuming', { stats: [pod('a', byConfig), pod('b')] }, ['Resuming', /^1 pod still paused by the previous config/]],
    ['an older proxy without the pause detail, spec.paused: its paused flag counts', { proxy: pausedProxy, stats: [pod('a', { paused: true }), pod('b', { paused: true })] }, ['Paused', /^2 pods paused \(spec\.paused\)/]],
  ])('%s', (_what, over, [reason, message]) => {
    const s = computeStatus(input({ deployment: healthy(), ...over }));
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason });
    expect(cond(s, 'Ready').message).toMatch(message);
    expect(summary(s)).toMatchObject({ Available: ['True', 'ReplicasReady'], Degraded: ['False', 'AsExpected'] });
  });

  test('a failure while paused is still a failure: Degraded wins over Paused', () => {
    const s = computeStatus(input({ proxy: exampleProxy({ paused: true }), deployment: healthy(), stats: [pod('a', { ...byConfig, ...unreachable() }), pod('b', { ...byConfig, ...unreachable() })] }));
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'TargetUnreachable' });
  });
});

describe('a pod whose first check of the targets is pending', () => {
  const target = (endpoint: string, state: 'AVAILABLE' | 'UNAVAILABLE' | 'UNKNOWN', reason?: string) => ({ endpoint, state, ...(reason ? { reason } : {}), role: 'unknown' as const, maxConnections: null });
  test.each<[string, Partial<ProxyStats>, boolean]>([
    ['has a writer', {}, false],
    ['first round under way: a dead target failed, the writer not yet answered', pending(), true],
    ['first round under way: the target name is still being resolved', { writer: null, targets: [] }, true],
    ['checked every target, no writer', unreachable('UNREACHABLE'), false],
    ['lost the writer; a new address of the name not yet checked', { ...unreachable('UNREACHABLE'), targets: [target('db-1:5432', 'UNAVAILABLE', 'UNREACHABLE'), target('db-2:5432', 'UNKNOWN')] }, false],
    ['no writer and every target observed, even without a verdict', { writer: null, targets: [target('db-1:5432', 'UNAVAILABLE', 'READ_ONLY')] }, false],
  ])('writerCheckPending: %s = %p', (_name, over, expected) => {
    expect(writerCheckPending(stats(over))).toBe(expected);
  });

  test('a scale-up: the writer is reachable from every pod that has looked; the new pod is named as still checking, not as failing', () => {
    const s = computeStatus(input({ proxy: exampleProxy({ replicas: 3 }, { generation: 4 }), deployment: scaledUpTo3(), stats: [pod('a'), pod('b'), pod('c', pending('db-1:5432', 'db-0:5432'), false)] }));
    expect(cond(s, 'TargetReachable').message).toBe('writer db-1:5432 reachable from 2/3 pods; 1 pod has not finished its first check of the targets');
    expect(cond(s, 'Ready').message).toBe('2/3 replicas available, 2 ready, 3 running; 2/3 replicas ready; writer db-1:5432; 0 clients, 0 borrowed, 0 pinned, 0 waiting');
    expect(s.writer).toBe('db-1:5432');
    expect(s.targetMaxConnections).toBe(100);
  });

  test('new pods that have not finished their first check: TargetReachable Unknown, nothing Degraded', () => {
    const s = computeStatus(input({ deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }), stats: [pod('a', pending(), false), pod('b', pending(), false)] }));
    expect(cond(s, 'TargetReachable').message).toBe('no pod has finished its first check of the targets yet (2 pods checking)');
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'False', message: 'no problems found' });
    expect(s.writer).toBeUndefined();
  });

  test('failure details name only what a finished check saw: never an UNKNOWN target, never a pod still checking', () => {
    const lostWithNewAddress = { ...unreachable('UNREACHABLE'), targets: [target('db-1:5432', 'UNAVAILABLE', 'UNREACHABLE'), target('db-2:5432', 'UNKNOWN')] };
    const s = computeStatus(input({ deployment: healthy(3), stats: [pod('a'), pod('b', lostWithNewAddress), pod('c', pending('db-1:5432', 'db-9:5432'), false)] }));
    expect(cond(s, 'TargetReachable').message).toBe('writer db-1:5432 reachable from 1/3 pods: db-1:5432 UNAVAILABLE (UNREACHABLE); 1 pod has not finished its first check of the targets');
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'TargetUnreachableFromSomePods' });
    const none = computeStatus(input({ deployment: healthy(), stats: [pod('a', unreachable('AUTH_FAILURE')), pod('b', pending('db-1:5432', 'db-9:5432'), false)] }));
    expect(cond(none, 'TargetReachable')).toMatchObject({ status: 'False', reason: 'AuthFailure', message: 'no pod has a writer: db-1:5432 UNAVAILABLE (AUTH_FAILURE); 1 pod has not finished its first check of the targets' });
  });

  test('a pod finishing its first check is not a failover, and the Degraded condition never moves', () => {
    const before = computeStatus(input({ deployment: healthy(), stats: [pod('a'), pod('b')], now: T0 }));
    const scaling = computeStatus(input({ proxy: exampleProxy({ replicas: 3 }, { generation: 5 }), deployment: scaledUpTo3(), stats: [pod('a'), pod('b'), pod('c', pending(), false)], previous: before, now: T1 }));
    const done = computeStatus(input({ proxy: exampleProxy({ replicas: 3 }, { generation: 5 }), deployment: healthy(3), stats: [pod('a'), pod('b'), pod('c')], previous: scaling, now: new Date('2025-01-01T10:01:00Z') }));
    expect([before, scaling, done].map((x) => cond(x, 'Degraded').status)).toEqual(['False', 'False', 'False']);
    expect(cond(done, 'Degraded').lastTransitionTime).toBe('2025-01-01T10:00:00Z');
    expect(cond(done, 'Ready')).toMatchObject({ status: 'True', reason: 'ProxyReady' });
    expect(done.lastFailoverTime).toBeUndefined();
  });
});

describe('computeStatus fields', () => {
  test('counts summed over ready pods; messages state the borrowed and pinned counts', () => {
    const s = computeStatus(
      input({
        deployment: healthy(),
        stats: [
          pod('a', { clientConnections: 20, databaseConnections: 5, borrowed: 3, pinned: 1, waiting: 0, borrowTimeouts: 2 }),
          pod('b', { clientConnections: 17, databaseConnections: 4, borrowed: 1, pinned: 0, waiting: 1, borrowTimeouts: 0 }),
          pod('c', { clientConnections: 99, borrowed: 9 }, false), // not ready: not counted
        ],
      }),
    );
    expect(s.counts).toEqual({ clientConnections: 37, databaseConnections: 9, borrowed: 4, pinned: 1, waiting: 1, borrowTimeouts: 2 });
    expect(cond(s, 'Ready').message).toBe('2/2 replicas ready; writer db-1:5432; 37 clients, 4 borrowed, 1 pinned, 1 waiting');
    expect(cond(s, 'Available').message).toBe('2/2 replicas ready; 37 clients, 4 borrowed, 1 pinned, 1 waiting');
  });

  test('writer, pool numbers, endpoint, replicas, selector, observedGeneration', () => {
    const s = computeStatus(input({ deployment: healthy(), stats: [pod('a'), pod('b')], poolDivisor: 3 }));
    expect(s).toMatchObject({
      observedGeneration: 4,
      writer: 'db-1:5432',
      targetMaxConnections: 100,
      poolBudget: 90,
      poolDivisor: 3,
      endpoint: 'orders.shop.svc:5432',
      replicas: 2,
      readyReplicas: 2,
      selector: 'app.kubernetes.io/name=dbproxy,app.kubernetes.io/instance=orders',
    });
    expect(s.lastFailoverTime).toBeUndefined();
  });

  test('the writer most pods report wins; the last known writer stays while none is reported', () => {
    const s = computeStatus(input({ deployment: healthy(3), stats: [pod('a', { writer: 'db-2:5432' }), pod('b', { writer: 'db-2:5432' }), pod('c')] }));
    expect(s.writer).toBe('db-2:5432');
    const down = computeStatus(input({ deployment: healthy(), stats: [pod('a', unreachable())], previous: s }));
    expect(down.writer).toBe('db-2:5432');
    expect(cond(down, 'TargetReachable').message).toBe('no pod has a writer: db-1:5432 UNAVAILABLE (AUTH_FAILURE)');
  });

  test('lastTransitionTime moves only when a condition changes status', () => {
    const first = computeStatus(input({ deployment: healthy(), stats: [pod('a'), pod('b')], now: T0 }));
    const again = computeStatus(input({ deployment: healthy(), stats: [pod('a', { clientConnections: 5 }), pod('b')], previous: first, now: T1 }));
    expect(cond(again, 'Ready').lastTransitionTime).toBe('2025-01-01T10:00:00Z');
    expect(cond(again, 'Ready').message).not.toBe(cond(first, 'Ready').message);
    const broken = computeStatus(input({ deployment: healthy(), stats: [pod('a', unreachable()), pod('b', unreachable())], previous: again, now: T1 }));
    expect(cond(broken, 'Ready').lastTransitionTime).toBe('2025-01-01T10:00:30Z');
    expect(cond(broken, 'Available').lastTransitionTime).toBe('2025-01-01T10:00:00Z');
    // a reason change without a status change keeps the time
    const otherReason = computeStatus(input({ deployment: healthy(), stats: [pod('a', unreachable('UNREACHABLE')), pod('b', unreachable('UNREACHABLE'))], previous: broken, now: new Date('2025-01-01T10:01:00Z') }));
    expect(cond(otherReason, 'TargetReachable')).toMatchObject({ reason: 'Unreachable', lastTransitionTime: '2025-01-01T10:00:30Z' });
  });

  test('failover inferred from a writer change: time, and duration since the writer was lost', () => {
    const before = computeStatus(input({ deployment: healthy(), stats: [pod('a'), pod('b')], now: T0 }));
    const lost = computeStatus(input({ deployment: healthy(), stats: [pod('a', unreachable('UNREACHABLE')), pod('b', unreachable('UNREACHABLE'))], previous: before, now: new Date('2025-01-01T10:00:10Z') }));
    expect(lost.lastFailoverTime).toBeUndefined();
    const after = computeStatus(input({ deployment: healthy(), stats: [pod('a', { writer: 'db-2:5432' }), pod('b', { writer: 'db-2:5432' })], previous: lost, now: new Date('2025-01-01T10:00:22.500Z') }));
    expect(after.writer).toBe('db-2:5432');
    expect(after.lastFailoverTime).toBe('2025-01-01T10:00:22Z');
    expect(after.lastFailoverDuration).toBe('12.5s');
    // kept afterwards
    const later = computeStatus(input({ deployment: healthy(), stats: [pod('a', { writer: 'db-2:5432' })], previous: after, now: new Date('2025-01-01T11:00:00Z') }));
    expect(later.lastFailoverTime).toBe('2025-01-01T10:00:22Z');
  });

  test('failover reported by the proxies wins', () => {
    const p: PodStats = { pod: 'a', stats: { ...stats(), lastFailover: { at: '2025-01-01T09:59:01.250Z', durationMs: 4321 } } };
    const s = computeStatus(input({ deployment: healthy(), stats: [p] }));
    expect(s.lastFailoverTime).toBe('2025-01-01T09:59:01Z');
    expect(s.lastFailoverDuration).toBe('4.3s');
  });
});

describe('writing the status', () => {
  const base = computeStatus(input({ deployment: healthy(), stats: [pod('a'), pod('b')], now: T0 }));

  test.each<[string, DatabaseProxyStatus | undefined, DatabaseProxyStatus, boolean, boolean]>([
    ['first status', undefined, base, true, true],
    ['same', base, structuredClone(base), false, false],
    ['only timestamps differ', base, { ...base, conditions: base.conditions!.map((c) => ({ ...c, lastTransitionTime: '2030-01-01T00:00:00Z' })) }, false, false],
    ['conditions reordered', base, { ...base, conditions: [...base.conditions!].reverse() }, false, false],
    ['counts changed', base, { ...base, counts: { ...base.counts, clientConnections: 1 } }, true, false],
    ['condition message changed', base, { ...base, conditions: base.conditions!.map((c) => (c.type === 'Ready' ? { ...c, message: 'x' } : c)) }, true, false],
    ['condition status changed', base, { ...base, conditions: base.conditions!.map((c) => (c.type === 'Ready' ? { ...c, status: 'False' as const, reason: 'X' } : c)) }, true, true],
    ['new observedGeneration', base, { ...base, observedGeneration: 5 }, true, true],
    ['new writer', base, { ...base, writer: 'db-2:5432' }, true, true],
  ])('%s', (_name, prev, next, changed, urgent) => {
    expect(statusChanged(prev, next)).toBe(changed);
    expect(isUrgentChange(prev, next)).toBe(urgent);
  });

  test.each<[number | undefined, number, number, boolean, boolean, number]>([
    [undefined, 0, 10_000, true, true, 0],
    [undefined, 0, 10_000, false, false, 0],
    [0, 5_000, 10_000, true, false, 5_000],
    [0, 10_000, 10_000, true, true, 0],
    [0, 10_000, 10_000, false, false, 0],
    [0, 1, 0, true, true, 0],
  ])('shouldWrite(last=%p, now=%p, interval=%p, changed=%p) = %p', (last, now, interval, changed, write, delay) => {
    expect(shouldWrite(last, now, interval, changed)).toBe(write);
    expect(writeDelayMs(last, now, interval)).toBe(delay);
  });

  test('shouldWrite takes Dates and defaults to 10 s', () => {
    expect(shouldWrite(T0, new Date(T0.getTime() + 9_999), undefined, true)).toBe(false);
    expect(shouldWrite(T0, T1, undefined, true)).toBe(true);
  });
});

describe('helpers', () => {
  test.each([
    ['AUTH_FAILURE', 'AuthFailure'],
    ['CONNECTION_FAILED', 'ConnectionFailed'],
    ['connection refused', 'ConnectionRefused'],
    ['503', 'Reason503'],
  ])('camelCase(%s) = %s', (a, b) => expect(camelCase(a)).toBe(b));

  test('formatTime drops milliseconds', () => {
    expect(formatTime(new Date('2025-01-01T10:00:00.999Z'))).toBe('2025-01-01T10:00:00Z');
  });
});

describe('podTrouble: failing or starting', () => {
  const p = (status: Parameters<typeof podTrouble>[0]['status']) => podTrouble({ metadata: { name: 'orders-x' }, ...(status ? { status } : {}) });
  const notReady = [{ type: 'Ready', status: 'False' }];
  test.each<[string, Parameters<typeof podTrouble>[0]['status'], string | undefined]>([
    ['no status yet', undefined, undefined],
    ['being created', { phase: 'Pending', conditions: notReady, containerStatuses: [{ restartCount: 0, state: { waiting: { reason: 'ContainerCreating' } } }] }, undefined],
    ['running, readiness not yet passed', { phase: 'Running', conditions: notReady, containerStatuses: [{ restartCount: 0, state: {} }] }, undefined],
    ['ready, even after restarts', { phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }], containerStatuses: [{ restartCount: 4 }] }, undefined],
    [
      'crash looping',
      { phase: 'Running', conditions: notReady, containerStatuses: [{ restartCount: 3, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { reason: 'Error', exitCode: 2 } } }] },
      'orders-x: CrashLoopBackOff, restarted 3 times (last exit: Error, code 2)',
    ],
    ['restarted, running again but not ready', { phase: 'Running', conditions: notReady, containerStatuses: [{ restartCount: 1, state: {}, lastState: { terminated: { reason: 'OOMKilled', exitCode: 137 } } }] }, 'orders-x: restarted 1 time (last exit: OOMKilled, code 137)'],
    ['image cannot be pulled', { phase: 'Pending', conditions: notReady, containerStatuses: [{ restartCount: 0, state: { waiting: { reason: 'ImagePullBackOff' } } }] }, 'orders-x: ImagePullBackOff'],
    ['failed', { phase: 'Failed', conditions: notReady }, 'orders-x: pod failed'],
  ])('%s', (_name, status, expected) => {
    expect(p(status)).toBe(expected);
  });
});

describe('IAMReady', () => {
  const ROLE = 'arn:aws:iam::123456789012:role/orders-proxy';
  const irsa = exampleProxy({ iam: { roleArn: ROLE }, backendAuth: { iam: { region: 'eu-west-1' } }, tls: { backend: {} } }, { generation: 2 });
  const verified = { awsIdentity: { state: 'VERIFIED' as const, arn: 'arn:aws:sts::123456789012:assumed-role/orders-proxy/a', roleArn: ROLE, account: '123456789012', expectedRoleArn: ROLE, lastVerifiedAt: '2025-01-01T09:59:00.000Z' } };
  const failed = (reason: string, message: string, extra = {}) => ({ awsIdentity: { state: 'FAILED' as const, expectedRoleArn: ROLE, reason, message, ...extra } });

  test('not there when the pods use no AWS credentials', () => {
    const s = computeStatus(input({ deployment: healthy(), stats: [pod('a'), pod('b')] }));
    expect(s.conditions!.map((c) => c.type)).not.toContain('IAMReady');
  });

  test.each<[string, Partial<StatusInput>, [Condition['status'], string, RegExp], string]>([
    ['every pod verified', { stats: [pod('a', verified), pod('b', verified)] }, ['True', 'IdentityVerified', /^the pods run as arn:aws:iam::123456789012:role\/orders-proxy \(STS: arn:aws:sts::123456789012:assumed-role\/orders-proxy\/a\)$/], 'ProxyReady'],
    [
      'no web identity token on every pod: the reason, named first in Degraded and Ready',
      { stats: [pod('a', { ...failed('NoWebIdentityToken', 'the web identity token file /var/run/secrets/eks.amazonaws.com/serviceaccount/token cannot be read'), ...unreachable('AUTH_FAILURE') }), pod('b', { ...failed('NoWebIdentityToken', 'the web identity token file /var/run/secrets/eks.amazonaws.com/serviceaccount/token cannot be read'), ...unreachable('AUTH_FAILURE') })] },
      ['False', 'NoWebIdentityToken', /^all 2 pods: the web identity token file \/var\/run\/secrets\/eks\.amazonaws\.com\/serviceaccount\/token cannot be read$/],
      'AwsIdentityFailed',
    ],
    [
      'the wrong role on one pod',
      { stats: [pod('a', verified), pod('b', failed('WrongRole', 'the pods run as arn:aws:sts::123456789012:assumed-role/eks-node/i-1, not as ' + ROLE))] },
      ['False', 'WrongRole', /^1\/2 pods: the pods run as arn:aws:sts::123456789012:assumed-role\/eks-node\/i-1/],
      'AwsIdentityFailed',
    ],
    [
      'STS unreachable after the identity was verified: IAMReady False, but not Degraded',
      { stats: [pod('a', failed('StsUnreachable', 'STS could not be reached: timed out', { lastVerifiedAt: '2025-01-01T09:00:00.000Z' })), pod('b', verified)] },
      ['False', 'StsUnreachable', /^1\/2 pods: STS could not be reached/],
      'ProxyReady',
    ],
    ['the first check not answered yet', { stats: [pod('a', { awsIdentity: { state: 'PENDING' } }), pod('b', verified)] }, ['Unknown', 'IdentityCheckPending', /^1\/2 pods have checked/], 'ProxyReady'],
    ['an older proxy that does not report it', { stats: [pod('a'), pod('b')] }, ['Unknown', 'IdentityNotReported', /older proxy image/], 'ProxyReady'],
  ])('%s', (_what, over, [status, reason, message], readyReason) => {
    const s = computeStatus(input({ proxy: irsa, deployment: healthy(), ...over }));
    expect(cond(s, 'IAMReady')).toMatchObject({ status, reason, observedGeneration: 2 });
    expect(cond(s, 'IAMReady').message).toMatch(message);
    expect(cond(s, 'Ready').reason).toBe(readyReason);
    if (readyReason === 'AwsIdentityFailed') {
      expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'AwsIdentityFailed' });
      expect(cond(s, 'Ready').message).toContain(`AWS identity: ${cond(s, 'IAMReady').message}`);
    }
    expect(validate(s, statusSchema.json)).toEqual([]);
  });
});

describe('the read-only endpoint: status.readers and ReadersAvailable', () => {
  const withReaders = (readers: Record<string, unknown> = {}) => exampleProxy({ readers: { enabled: true, ...readers } }, { generation: 2 });
  const s1 = 'db-2:5432';
  const s2 = 'db-3:5432';
  const lagging = (endpoint: string, lagMs = 45_000) => ({ endpoint, reason: 'REPLICATION_LAG', lagMs, lagBytes: 9_000_000 });

  test('without spec.readers.enabled: neither, whatever the pods report', () => {
    for (const p of [exampleProxy({}, { generation: 2 }), exampleProxy({ readers: { enabled: false } }, { generation: 2 })]) {
      const s = computeStatus(input({ proxy: p, deployment: healthy(), stats: [pod('a', readersStats([{ endpoint: s1 }]))] }));
      expect(s.readers).toBeUndefined();
      expect(s.conditions!.map((c) => c.type)).not.toContain('ReadersAvailable');
    }
  });

  test.each<[string, { readers?: Record<string, unknown>; stats: PodStats[] }, [Condition['status'], string, RegExp], Record<string, unknown>]>([
    [
      'no pod has answered yet: the endpoint, nothing counted',
      { stats: [] },
      ['Unknown', 'NoStats', /no ready proxy pod has reported/],
      { endpoint: 'orders-ro.shop.svc:5432', standbys: 0, available: 0, databaseConnections: 0, borrowed: 0, waiting: 0, targets: [] },
    ],
    [
      'two standbys in rotation on both pods: counts summed, the largest lag',
      {
        stats: [
          pod('a', readersStats([{ endpoint: s1, lagMs: 400, connections: 3, borrowed: 1 }, { endpoint: s2, lagMs: 1_600, lagBytes: 1024, connections: 2 }], { waiting: 1 })),
          pod('b', readersStats([{ endpoint: s1, lagMs: 200, connections: 1 }, { endpoint: s2, lagMs: 300, connections: 1, borrowed: 1 }])),
        ],
      },
      ['True', 'StandbysInRotation', /^2\/2 standbys in rotation on every ready pod, largest lag 2s$/],
      {
        endpoint: 'orders-ro.shop.svc:5432',
        standbys: 2,
        available: 2,
        lag: '2s',
        databaseConnections: 7,
        borrowed: 2,
        waiting: 1,
        targets: [
          { endpoint: s1, available: true, lag: '0s', lagBytes: 0 },
          { endpoint: s2, available: true, lag: '2s', lagBytes: 1024 },
        ],
      },
    ],
    [
      'one standby too far behind: out of rotation, named, reads go on over the other',
      { stats: [pod('a', readersStats([{ endpoint: s1 }, lagging(s2)])), pod('b', readersStats([{ endpoint: s1 }, lagging(s2, 41_000)]))] },
      ['True', 'StandbysInRotation', /^1\/2 standbys in rotation on every ready pod, largest lag 0s; out: db-3:5432 REPLICATION_LAG \(lag 45s\)$/],
      { standbys: 2, available: 1, lag: '0s', targets: [{ endpoint: s1, available: true, lag: '0s', lagBytes: 0 }, { endpoint: s2, available: false, reason: 'REPLICATION_LAG', lag: '45s', lagBytes: 9_000_000 }] },
    ],
    [
      'every standby too far behind, no fallback: reads wait, then 53300',
      { stats: [pod('a', readersStats([lagging(s1), lagging(s2)])), pod('b', readersStats([lagging(s1), lagging(s2)]))] },
      ['False', 'NoStandbyInRotation', /^no standby in rotation on 2\/2 ready pods \(db-2:5432 REPLICATION_LAG \(lag 45s\), db-3:5432 REPLICATION_LAG \(lag 45s\)\): read-only clients there wait up to pool.borrowTimeout, then get SQLSTATE 53300$/],
      { standbys: 2, available: 0 },
    ],
    [
      'every standby too far behind, fallbackToWriter: the writer serves, and the message says so',
      { readers: { fallbackToWriter: true }, stats: [pod('a', readersStats([lagging(s1)], { fallbackToWriter: true })), pod('b', readersStats([lagging(s1)], { fallbackToWriter: true }))] },
      ['True', 'FallbackToWriter', /^no standby in rotation on 2\/2 ready pods \(db-2:5432 REPLICATION_LAG \(lag 45s\)\): read-only clients there are served by the writer, in read-only transactions \(fallbackToWriter\)$/],
      { standbys: 1, available: 0 },
    ],
    [
      'no target is a standby',
      { stats: [pod('a', readersStats([])), pod('b', readersStats([]))] },
      ['False', 'NoStandbyInRotation', /^no standby in rotation on 2\/2 ready pods \(no target is a healthy standby\)/],
      { standbys: 0, available: 0, targets: [] },
    ],
    [
      'in rotation on one pod only: not available, and the other pod has none',
      { stats: [pod('a', readersStats([{ endpoint: s1 }])), pod('b', readersStats([lagging(s1)]))] },
      ['False', 'NoStandbyInRotation', /^no standby in rotation on 1\/2 ready pods \(db-2:5432 REPLICATION_LAG \(lag 45s\)\)/],
      { standbys: 1, available: 0, targets: [{ endpoint: s1, available: false, reason: 'REPLICATION_LAG', lag: '45s', lagBytes: 9_000_000 }] },
    ],
    [
      'a not-ready pod does not count',
      { stats: [pod('a', readersStats([{ endpoint: s1, connections: 2 }])), pod('b', readersStats([lagging(s1)]), false)] },
      ['True', 'StandbysInRotation', /^1\/1 standbys in rotation on every ready pod/],
      { standbys: 1, available: 1, databaseConnections: 2 },
    ],
    [
      'pods started before readers were enabled (the rollout replaces them)',
      { stats: [pod('a'), pod('b')] },
      ['Unknown', 'ListenerPending', /^no ready pod serves the read-only endpoint yet; 2 ready pods without the read-only listener yet/],
      { standbys: 0, available: 0 },
    ],
    [
      'half rolled out',
      { stats: [pod('a'), pod('b', readersStats([{ endpoint: s1 }]))] },
      ['True', 'StandbysInRotation', /^1\/1 standbys in rotation on every ready pod, largest lag 0s; 1 ready pod without the read-only listener yet/],
      { standbys: 1, available: 1 },
    ],
    [
      'first check of the targets not finished',
      { stats: [pod('a', { ...firstCheckPendingStats(), ready: true })] },
      ['Unknown', 'ReadersCheckPending', /^no ready pod has finished its first check/],
      { standbys: 0, available: 0 },
    ],
  ])('%s', (_what, over, [status, reason, message], readers) => {
    const s = computeStatus(input({ proxy: withReaders(over.readers), deployment: healthy(), stats: over.stats }));
    expect(cond(s, 'ReadersAvailable')).toMatchObject({ status, reason, observedGeneration: 2 });
    expect(cond(s, 'ReadersAvailable').message).toMatch(message);
    expect(s.readers).toMatchObject(readers);
    expect(validate(s, statusSchema.json)).toEqual([]);
    // Only read-only clients left waiting with nowhere to go degrade the proxy; Ready is about the
    // main endpoint whatever the readers do.
    if (reason === 'NoStandbyInRotation') {
      expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'ReadersUnavailable', message: `read-only endpoint: ${cond(s, 'ReadersAvailable').message}` });
    } else {
      expect(cond(s, 'Degraded')).toMatchObject({ status: 'False', reason: 'AsExpected' });
    }
    const writerOk = over.stats.length > 0 && over.stats.every((p) => !writerCheckPending(p.stats));
    if (writerOk) expect(cond(s, 'Ready')).toMatchObject({ status: 'True', reason: 'ProxyReady' });
  });

  test('another problem keeps naming Ready; the readers problem is listed after it in Degraded', () => {
    const s = computeStatus(input({ proxy: withReaders(), deployment: healthy(), stats: [pod('a', readersStats([lagging(s1)]))], statsErrors: 1 }));
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'StatsUnavailable' });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'StatsUnavailable' });
    expect(cond(s, 'Degraded').message).toMatch(/^could not read \/stats from 1 pod; read-only endpoint: no standby in rotation/);
  });

  test('a standby leaving rotation is an urgent write (the condition moves); a lag change is not', () => {
    const a = computeStatus(input({ proxy: withReaders(), deployment: healthy(), stats: [pod('a', readersStats([{ endpoint: s1, lagMs: 0 }]))] }));
    const b = computeStatus(input({ proxy: withReaders(), deployment: healthy(), stats: [pod('a', readersStats([{ endpoint: s1, lagMs: 2_000 }]))], previous: a, now: T1 }));
    const c = computeStatus(input({ proxy: withReaders(), deployment: healthy(), stats: [pod('a', readersStats([lagging(s1)]))], previous: b, now: T1 }));
    expect(statusChanged(a, b)).toBe(true);
    expect(isUrgentChange(a, b)).toBe(false);
    expect(isUrgentChange(b, c)).toBe(true);
  });
});
