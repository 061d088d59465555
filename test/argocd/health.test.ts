// docs/argocd/health.lua in a real Lua interpreter (gopher-lua in Argo CD's sandbox, hack/lua),
// on DatabaseProxy objects whose status comes from the operator's own computeStatus, so a change
// to the conditions the operator writes shows up here as a wrong Argo CD verdict.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { exampleProxy } from '../../operator/api/fixtures.js';
import { validate } from '../../operator/api/schema.js';
import { statusSchema, type DatabaseProxy, type DatabaseProxyStatus } from '../../operator/api/v1alpha1.js';
import { computeStatus, type PodStats, type StatusInput } from '../../operator/status/status.js';
import { exampleStats, firstCheckPendingStats, observedDeployment, readersStats } from '../../operator/status/fixtures.js';
import { argoHealth, HEALTH_SCRIPT, runHealthScript } from '../support/argoHealth.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const HEALTH_KEY = 'resource.customizations.health.dbproxy.io_DatabaseProxy';

// --- objects as the API server returns them, status from the operator's pure status function ---

const stats = (over: Partial<ProxyStats> = {}): ProxyStats =>
  exampleStats({
    clientConnections: 3,
    databaseConnections: 2,
    borrowed: 1,
    idle: 1,
    pool: { budget: 90, maxDatabaseConnections: 29, targetMaxConnections: 100, maxConnectionsPercent: 90, maxIdleConnectionsPercent: 45, replicas: 3 },
    writer: 'postgres.demo.svc:5432',
    targets: [{ endpoint: 'postgres.demo.svc:5432', state: 'AVAILABLE', role: 'writer', maxConnections: 100 }],
    ...over,
  });
const pod = (name: string, over: Partial<ProxyStats> = {}, ready = true): PodStats => ({ pod: name, ready, stats: stats(over) });
const noWriter = (reason: string): Partial<ProxyStats> => ({
  writer: null,
  targets: [{ endpoint: 'postgres.demo.svc:5432', state: 'UNAVAILABLE', reason, role: 'unknown', maxConnections: null }],
});

const deployment = observedDeployment;
const rolledOut = (r = 2) =>
  deployment({ replicas: r, updatedReplicas: r, readyReplicas: r, availableReplicas: r, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, r);

const GENERATION = 4;
const T0 = new Date('2025-01-01T10:00:00Z');

/** A DatabaseProxy at GENERATION with the status computeStatus gives for `over`. */
function observed(over: Partial<StatusInput>): { obj: DatabaseProxy & { status: DatabaseProxyStatus }; status: DatabaseProxyStatus } {
  const proxy = over.proxy ?? exampleProxy({}, { generation: GENERATION });
  const status = computeStatus({ proxy, stats: [], now: T0, poolDivisor: 3, ...over });
  return { obj: { ...proxy, status }, status };
}
const readyOf = (s: DatabaseProxyStatus) => s.conditions!.find((c) => c.type === 'Ready')!;

beforeAll(() => {
  // Builds luahealth on a fresh machine (seconds), outside any one test's timeout.
  return argoHealth(exampleProxy());
}, 300_000);

describe('health.lua on statuses the operator computes', () => {
  test.each<[string, Partial<StatusInput>, string, string]>([
    // [scenario, computeStatus input, Ready reason the operator writes, Argo CD health]
    ['healthy', { deployment: rolledOut(), stats: [pod('a'), pod('b')] }, 'ProxyReady', 'Healthy'],
    ['no Deployment yet', {}, 'DeploymentNotFound', 'Progressing'],
    ['pods starting', { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }) }, 'NoReplicasReady', 'Progressing'],
    ['pods ready, no /stats read yet', { deployment: rolledOut() }, 'NoStats', 'Progressing'],
    [
      'rolling out a new config',
      { deployment: deployment({ replicas: 2, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 1, terminatingReplicas: 1 }, 2, 2), stats: [pod('a'), pod('b')] },
      'RollingOut',
      'Progressing',
    ],
    ['scaling up', { deployment: rolledOut(), stats: [pod('a'), pod('b')], proxy: exampleProxy({ replicas: 3 }, { generation: GENERATION }) }, 'ScalingUp', 'Progressing'],
    [
      'scaled up, the new pod ready but inside minReadySeconds',
      {
        deployment: deployment({ replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 2, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, 3),
        stats: [pod('a'), pod('b'), pod('c')],
        proxy: exampleProxy({ replicas: 3 }, { generation: GENERATION }),
      },
      'WaitingForPods',
      'Progressing',
    ],
    [
      // Issue 19: a new pod's first check of the writer still on its way is a pod starting.
      'scaled up, the new pod not ready: its first check of the writer has not finished',
      {
        deployment: deployment({ replicas: 3, updatedReplicas: 3, readyReplicas: 2, availableReplicas: 2, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, 3),
        stats: [pod('a'), pod('b'), pod('c', firstCheckPendingStats('postgres.demo.svc:5432', 'old-primary.demo.svc:5432'), false)],
        proxy: exampleProxy({ replicas: 3 }, { generation: GENERATION }),
      },
      'WaitingForPods',
      'Progressing',
    ],
    [
      'new pods, none has finished its first check of the targets',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }), stats: [pod('a', firstCheckPendingStats(), false), pod('b', firstCheckPendingStats(), false)] },
      'NoReplicasReady',
      'Progressing',
    ],
    [
      'scaling down',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2, terminatingReplicas: 1 }), stats: [pod('a'), pod('b')] },
      'ScalingDown',
      'Progressing',
    ],
    [
      'scale-up held until pods shrink their pools',
      { deployment: rolledOut(), stats: [pod('a'), pod('b')], scaleWaiting: '2 pod(s) still use a smaller divisor than 5', proxy: exampleProxy({ replicas: 4 }, { generation: GENERATION }) },
      'WaitingForPoolShrink',
      'Progressing',
    ],
    ['spec the proxy cannot honour', { deployment: rolledOut(), stats: [pod('a'), pod('b')], problems: ['spec.tls: the proxy cannot do this yet'] }, 'UnsupportedSpec', 'Degraded'],
    [
      'rollout past its progress deadline',
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
      'ProgressDeadlineExceeded',
      'Degraded',
    ],
    [
      'database refuses the login',
      { deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 0, availableReplicas: 0 }), stats: [pod('a', noWriter('AUTH_FAILURE'), false), pod('b', noWriter('AUTH_FAILURE'), false)] },
      'TargetUnreachable',
      'Degraded',
    ],
    [
      'database unreachable from every pod',
      { deployment: rolledOut(), stats: [pod('a', noWriter('UNREACHABLE')), pod('b', noWriter('UNREACHABLE'))] },
      'TargetUnreachable',
      'Degraded',
    ],
    ['writer reachable from some pods only', { deployment: rolledOut(), stats: [pod('a'), pod('b', noWriter('UNREACHABLE'))] }, 'TargetUnreachableFromSomePods', 'Degraded'],
    [
      'a pod failed after the rollout',
      {
        deployment: deployment({ replicas: 2, updatedReplicas: 2, readyReplicas: 1, availableReplicas: 1, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }),
        stats: [pod('a')],
        failingPods: ['orders-b: CrashLoopBackOff, restarted 3 times'],
      },
      'ReplicasUnavailable',
      'Degraded',
    ],
    [
      'pool budget smaller than the pods',
      { deployment: rolledOut(), stats: [pod('a', { pool: { ...stats().pool, targetMaxConnections: 3 } }), pod('b', { pool: { ...stats().pool, targetMaxConnections: 3 } })] },
      'PoolBudgetTooSmall',
      'Degraded',
    ],
    ['/stats unreadable from one ready pod', { deployment: rolledOut(), stats: [pod('a')], statsErrors: 1 }, 'StatsUnavailable', 'Degraded'],
    ['/stats unreadable from every ready pod (Degraded=False)', { deployment: rolledOut(), stats: [], statsErrors: 2 }, 'StatsUnavailable', 'Degraded'],
  ])('%s', async (_name, over, readyReason, health) => {
    const { obj, status } = observed(over);
    expect(validate(status, statusSchema.json)).toEqual([]);
    const ready = readyOf(status);
    expect(ready.reason).toBe(readyReason);
    // Through JSON, as Argo CD receives it from the API server.
    const got = await argoHealth(JSON.parse(JSON.stringify(obj)));
    expect(got).toEqual({ status: health, message: ready.message });
  });

  test('every Degraded reason the operator can write is a failure reason in health.lua', () => {
    // The reasons are string literals in computeStatus's problem list; a new one must be mapped
    // deliberately (Ready carries the first problem's reason, so the script sees it there too).
    const source = readFileSync(join(ROOT, 'operator', 'status', 'status.ts'), 'utf8');
    const operatorReasons = new Set([...source.matchAll(/problems\.push\(\['([A-Za-z]+)'/g)].map((m) => m[1]!));
    expect(operatorReasons.size).toBeGreaterThanOrEqual(7);
    const lua = readFileSync(HEALTH_SCRIPT(), 'utf8');
    const block = /local failed = \{([\s\S]*?)\n\}/.exec(lua)![1]!;
    const scriptReasons = new Set([...block.matchAll(/^\s+([A-Za-z]+) = true,/gm)].map((m) => m[1]!));
    expect([...scriptReasons].sort()).toEqual([...operatorReasons].sort());
  });

  test('the read-only endpoint without a standby: Degraded with its reason only when the user asked for it and reads have nowhere to go', async () => {
    const lagging = readersStats([{ endpoint: 'postgres-replica.demo.svc:5432', reason: 'REPLICATION_LAG', lagMs: 41_000 }]);
    const withReaders = (fallbackToWriter: boolean) => exampleProxy({ readers: { enabled: true, fallbackToWriter } }, { generation: GENERATION });
    const { obj, status } = observed({ proxy: withReaders(false), deployment: rolledOut(), stats: [pod('a', lagging), pod('b', lagging)] });
    expect(readyOf(status).status).toBe('True');
    expect(await argoHealth(JSON.parse(JSON.stringify(obj)))).toEqual({
      status: 'Degraded',
      message: 'read-only endpoint: no standby in rotation on 2/2 ready pods (postgres-replica.demo.svc:5432 REPLICATION_LAG (lag 41s)): read-only clients there wait up to pool.borrowTimeout, then get SQLSTATE 53300',
    });
    // The writer serves those reads: nothing is broken.
    const fallback = observed({ proxy: withReaders(true), deployment: rolledOut(), stats: [pod('a', lagging), pod('b', lagging)] });
    expect(await argoHealth(JSON.parse(JSON.stringify(fallback.obj)))).toEqual({ status: 'Healthy', message: readyOf(fallback.status).message });
    // Without spec.readers the same /stats say nothing about health.
    const plain = observed({ deployment: rolledOut(), stats: [pod('a', lagging), pod('b', lagging)] });
    expect((await argoHealth(JSON.parse(JSON.stringify(plain.obj)))).status).toBe('Healthy');
  });

  test('Healthy carries the Ready message: replicas, writer and the pinned/borrowed counts', async () => {
    const { obj } = observed({ deployment: rolledOut(), stats: [pod('a', { pinned: 2 }), pod('b')] });
    expect(await argoHealth(obj)).toEqual({
      status: 'Healthy',
      message: '2/2 replicas ready; writer postgres.demo.svc:5432; 6 clients, 2 borrowed, 2 pinned, 0 waiting',
    });
  });

  test('a status computed for an older generation is Progressing, whatever it says', async () => {
    const { obj } = observed({ deployment: rolledOut(), stats: [pod('a'), pod('b')] });
    const newer = { ...obj, metadata: { ...obj.metadata, generation: GENERATION + 1 } };
    expect(await argoHealth(newer)).toEqual({ status: 'Progressing', message: `Waiting for the dbproxy operator to observe generation ${GENERATION + 1}` });
    const { obj: failing } = observed({ deployment: rolledOut(), stats: [pod('a'), pod('b')], problems: ['spec.tls: the proxy cannot do this yet'] });
    expect((await argoHealth({ ...failing, metadata: { ...failing.metadata, generation: GENERATION + 1 } })).status).toBe('Progressing');
  });

  test('a new object without status, or with a status but no observedGeneration, is Progressing', async () => {
    const fresh = exampleProxy({}, { generation: 1 });
    expect(await argoHealth(fresh)).toEqual({ status: 'Progressing', message: 'Waiting for the dbproxy operator to report status' });
    const { obj } = observed({ deployment: rolledOut(), stats: [pod('a'), pod('b')] });
    const { observedGeneration: _g, ...withoutGeneration } = obj.status;
    expect((await argoHealth({ ...obj, status: withoutGeneration })).status).toBe('Progressing');
  });
});

describe('health.lua on hand-written statuses (older or newer operators)', () => {
  const base = exampleProxy({}, { generation: 2 });
  const cond = (type: string, status: string, reason: string, message?: string) => ({ type, status, reason, lastTransitionTime: '2025-01-01T10:00:00Z', ...(message ? { message } : {}) });
  const withStatus = (status: Record<string, unknown>) => ({ ...base, status });

  test.each<[string, Record<string, unknown>, { status: string; message?: string }]>([
    ['observed, no conditions yet', { observedGeneration: 2 }, { status: 'Progressing', message: 'Waiting for the Ready condition' }],
    ['Ready Unknown', { observedGeneration: 2, conditions: [cond('Ready', 'Unknown', 'Reconciling', 'starting')] }, { status: 'Progressing', message: 'starting' }],
    ['Degraded=True with a reason this script does not know', { observedGeneration: 2, conditions: [cond('Degraded', 'True', 'SomethingNew', 'new failure')] }, { status: 'Degraded', message: 'new failure' }],
    ['Ready=False with a reason this script does not know, not degraded', { observedGeneration: 2, conditions: [cond('Ready', 'False', 'SomethingNew', 'waiting')] }, { status: 'Progressing', message: 'waiting' }],
    ['Ready=False, a failure reason, no Degraded condition', { observedGeneration: 2, conditions: [cond('Ready', 'False', 'TargetUnreachable', 'no pod has a writer')] }, { status: 'Degraded', message: 'no pod has a writer' }],
    ['Ready=True without a message', { observedGeneration: 2, conditions: [cond('Ready', 'True', 'ProxyReady')] }, { status: 'Healthy', message: 'Ready' }],
    ['observedGeneration ahead of generation (never expected) counts as observed', { observedGeneration: 3, conditions: [cond('Ready', 'True', 'ProxyReady', 'ok')] }, { status: 'Healthy', message: 'ok' }],
  ])('%s', async (_name, status, expected) => {
    expect(await argoHealth(withStatus(status))).toEqual(expected);
  });

  test('no metadata.generation: judged on the conditions alone', async () => {
    const { generation: _g, ...metadata } = base.metadata;
    expect(await argoHealth({ ...base, metadata, status: { observedGeneration: 1, conditions: [cond('Ready', 'True', 'ProxyReady', 'ok')] } })).toEqual({ status: 'Healthy', message: 'ok' });
  });

  test('Suspended when every proxy pod is paused from the admin console; one paused pod is still Healthy', async () => {
    const all = observed({ deployment: rolledOut(), stats: [pod('a', { paused: true }), pod('b', { paused: true })] });
    expect(readyOf(all.status).reason).toBe('Paused');
    expect(await argoHealth(all.obj)).toEqual({ status: 'Suspended', message: readyOf(all.status).message });
    const one = observed({ deployment: rolledOut(), stats: [pod('a', { paused: true }), pod('b')] });
    expect((await argoHealth(one.obj)).status).toBe('Healthy');
  });

  test('spec.paused: Suspended once every pod has paused, Progressing while pods are still pausing or resuming', async () => {
    const byConfig = { paused: true, pause: { config: true, admin: false } };
    const paused = observed({ proxy: exampleProxy({ paused: true }, { generation: GENERATION }), deployment: rolledOut(), stats: [pod('a', byConfig), pod('b', byConfig)] });
    expect(readyOf(paused.status).reason).toBe('Paused');
    expect(await argoHealth(paused.obj)).toEqual({ status: 'Suspended', message: readyOf(paused.status).message });
    const pausing = observed({ proxy: exampleProxy({ paused: true }, { generation: GENERATION }), deployment: rolledOut(), stats: [pod('a', byConfig), pod('b')] });
    expect(readyOf(pausing.status).reason).toBe('Pausing');
    expect((await argoHealth(pausing.obj)).status).toBe('Progressing');
    const resuming = observed({ deployment: rolledOut(), stats: [pod('a', byConfig), pod('b')] });
    expect(readyOf(resuming.status).reason).toBe('Resuming');
    expect((await argoHealth(resuming.obj)).status).toBe('Progressing');
  });
});

describe('the Lua sandbox is Argo CD’s', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dbproxy-lua-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const script = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  test('no string library unless useOpenLibs (so health.lua must not need it)', async () => {
    const p = script('libs.lua', 'return {status = "Healthy", message = type(string) .. " " .. type(table) .. " " .. type(ipairs) .. " " .. type(io)}');
    expect(await runHealthScript(p, {})).toEqual({ status: 'Healthy', message: 'nil table function nil' });
  });

  test('integers arrive as Lua numbers, nulls as nil', async () => {
    const p = script('numbers.lua', 'return {status = "Healthy", message = (obj.metadata.generation + 1) .. " " .. type(obj.status.writer) .. " " .. #obj.status.conditions}');
    expect(await runHealthScript(p, { metadata: { generation: 41 }, status: { writer: null, conditions: [{}, {}] } })).toEqual({ status: 'Healthy', message: '42 nil 2' });
  });

  test('an unknown status becomes Unknown, a script error is an error', async () => {
    expect(await runHealthScript(script('bad.lua', 'return {status = "Fine"}'), {})).toEqual({ status: 'Unknown', message: 'Lua returned an invalid health status' });
    await expect(runHealthScript(script('err.lua', 'return obj.missing.field'), {})).rejects.toThrow(/luahealth .* exited with 1/);
    await expect(runHealthScript(script('str.lua', 'return "Healthy"'), {})).rejects.toThrow(/expect table output/);
  });
});

describe('docs/argocd.md', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'argocd.md'), 'utf8');
  const lua = readFileSync(HEALTH_SCRIPT(), 'utf8');
  const yamlBlocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

  test('the argocd-cm snippet holds health.lua byte for byte', () => {
    const cms = yamlBlocks
      .flatMap((b) => parseAllDocuments(b).map((d) => d.toJS() as { kind?: string; metadata?: { name?: string }; data?: Record<string, string> }))
      .filter((o) => o?.kind === 'ConfigMap' && o.metadata?.name === 'argocd-cm');
    expect(cms).toHaveLength(1);
    expect(cms[0]!.data![HEALTH_KEY]).toBe(lua);
  });

  test('the argo-cd Helm chart values snippet holds health.lua byte for byte', () => {
    const values = yamlBlocks.map((b) => parse(b) as { configs?: { cm?: Record<string, string> } }).filter((v) => v?.configs?.cm);
    expect(values).toHaveLength(1);
    expect(values[0]!.configs!.cm![HEALTH_KEY]).toBe(lua);
  });

  test('the Application example uses the sync options and ignoreDifferences the text explains', () => {
    const apps = yamlBlocks
      .map((b) => parse(b) as { kind?: string; metadata?: { annotations?: Record<string, string> }; spec?: Record<string, any> })
      .filter((o) => o?.kind === 'Application');
    expect(apps).toHaveLength(1);
    expect(apps[0]!.metadata!.annotations!['argocd.argoproj.io/compare-options']).toBe('ServerSideDiff=true');
    const spec = apps[0]!.spec!;
    expect(spec.syncPolicy.syncOptions).toEqual(expect.arrayContaining(['ServerSideApply=true', 'RespectIgnoreDifferences=true']));
    expect(spec.ignoreDifferences).toEqual([{ group: 'dbproxy.io', kind: 'DatabaseProxy', jsonPointers: ['/spec/replicas'] }]);
  });
});
