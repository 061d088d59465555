// The local pod runner's pure parts (hack/podRunner): what a pod's volumes contain, which pods a
// Service forwards to, the status a pod reports, and which pods it refuses; plus the two pieces
// that touch real sockets: the Service forwarder (round robin over ready endpoints) and the
// preload that turns wildcard listens into listens on the pod IP.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import type { V1Container, V1Pod, V1Service, V1ServicePort, V1Volume } from '@kubernetes/client-node';
import { repoRoot } from '../../hack/repoRoot.js';
import { fieldValue, materializeVolume, VolumeError, type VolumeFile, type VolumeSources } from '../../hack/podRunner/volumes.js';
import { serviceEndpoints, ServiceForwarder } from '../../hack/podRunner/serviceForwarder.js';

const ROOT = repoRoot();
const PRELOAD = join(ROOT, 'dist', 'hack', 'podRunner', 'bindToPodIp.js');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

// Loopback addresses of our own (Linux routes all of 127/8 to lo), per process so parallel runs do not meet.
const NET = `127.77.${(process.pid % 250) + 1}`;

// podProcess.ts resolves dist/hack/podRunner/bindToPodIp.js when it loads, so import it only once that is known to exist.
const podProcess = async (): Promise<typeof import('../../hack/podRunner/podProcess.js')> => {
  if (!existsSync(PRELOAD)) throw new Error(`${PRELOAD} is missing: run \`npm run build\` before these tests`);
  return import('../../hack/podRunner/podProcess.js');
};

// --- volumes ---

const pod = (over: Partial<V1Pod> = {}): V1Pod => ({
  metadata: { name: 'orders-0', namespace: 'demo', uid: 'u-1', labels: { app: 'orders', x: 'ex' }, annotations: { note: 'n' } },
  spec: { containers: [{ name: 'main', image: 'dbproxy:dev' }], serviceAccountName: 'orders' },
  ...over,
});

interface FakeSources extends VolumeSources {
  tokenCalls: { pod: V1Pod; opts: { audience?: string; expirationSeconds: number } }[];
  lookups: string[];
}

function sources(
  configMaps: Record<string, { data?: Record<string, string>; binaryData?: Record<string, string> }> = {},
  secrets: Record<string, { data?: Record<string, string> }> = {},
): FakeSources {
  const s: FakeSources = {
    tokenCalls: [],
    lookups: [],
    configMap: async (ns, name) => {
      s.lookups.push(`cm ${ns}/${name}`);
      return configMaps[`${ns}/${name}`];
    },
    secret: async (ns, name) => {
      s.lookups.push(`secret ${ns}/${name}`);
      return secrets[`${ns}/${name}`];
    },
    serviceAccountToken: async (p, opts) => {
      s.tokenCalls.push({ pod: p, opts });
      return `token-for-${p.metadata?.name}-${opts.audience ?? 'default'}`;
    },
  };
  return s;
}

/** Files as {path: [content, mode]}, for comparisons that do not depend on order. */
const byPath = (files: VolumeFile[]): Record<string, [string, string]> =>
  Object.fromEntries(files.map((f) => [f.path, [f.content.toString('utf8'), f.mode.toString(8)]]));

const materialize = (volume: V1Volume, src: VolumeSources, p: V1Pod = pod()) => materializeVolume(p, volume, src, `${NET}.9`, 'node-a');

describe('materializeVolume', () => {
  const cms = { 'demo/app': { data: { 'a.conf': 'A', 'b.conf': 'B' }, binaryData: { 'c.bin': b64('\u0000\u0001bin') } } };

  test('configMap: every key (data and binaryData) with the default mode 0644, looked up in the pod namespace', async () => {
    const src = sources(cms);
    const v = await materialize({ name: 'cfg', configMap: { name: 'app' } }, src);
    expect(v.name).toBe('cfg');
    expect(v.kind).toBe('files');
    expect(byPath(v.files)).toEqual({ 'a.conf': ['A', '644'], 'b.conf': ['B', '644'], 'c.bin': ['\u0000\u0001bin', '644'] });
    expect(src.lookups).toEqual(['cm demo/app']);
  });

  test('configMap: items pick keys to paths, an item mode beats defaultMode', async () => {
    const v = await materialize(
      {
        name: 'cfg',
        configMap: {
          name: 'app',
          defaultMode: 0o440,
          items: [
            { key: 'a.conf', path: 'etc/first.conf', mode: 0o600 },
            { key: 'b.conf', path: 'second.conf' },
          ],
        },
      },
      sources(cms),
    );
    expect(byPath(v.files)).toEqual({ 'etc/first.conf': ['A', '600'], 'second.conf': ['B', '440'] });
  });

  test('configMap: an item naming a missing key is a VolumeError; optional skips it', async () => {
    const volume = (optional: boolean): V1Volume => ({ name: 'cfg', configMap: { name: 'app', optional, items: [{ key: 'nope', path: 'p' }, { key: 'a.conf', path: 'a' }] } });
    await expect(materialize(volume(false), sources(cms))).rejects.toThrow(VolumeError);
    await expect(materialize(volume(false), sources(cms))).rejects.toThrow(/nope/);
    expect(byPath((await materialize(volume(true), sources(cms))).files)).toEqual({ a: ['A', '644'] });
  });

  test('configMap: missing is a VolumeError, optional and missing is an empty volume', async () => {
    await expect(materialize({ name: 'cfg', configMap: { name: 'absent' } }, sources(cms))).rejects.toThrow(VolumeError);
    await expect(materialize({ name: 'cfg', configMap: { name: 'absent' } }, sources(cms))).rejects.toThrow(/absent/);
    const v = await materialize({ name: 'cfg', configMap: { name: 'absent', optional: true } }, sources(cms));
    expect(v).toEqual({ name: 'cfg', kind: 'files', files: [] });
  });

  test('secret: values are base64-decoded and defaultMode applies', async () => {
    const src = sources({}, { 'demo/creds': { data: { password: b64('s3cret\n'), user: b64('app') } } });
    const v = await materialize({ name: 'creds', secret: { secretName: 'creds', defaultMode: 0o400 } }, src);
    expect(v.kind).toBe('files');
    expect(byPath(v.files)).toEqual({ password: ['s3cret\n', '400'], user: ['app', '400'] });
    expect(src.lookups).toEqual(['secret demo/creds']);
  });

  test('secret: missing is a VolumeError naming it', async () => {
    await expect(materialize({ name: 'creds', secret: { secretName: 'gone' } }, sources())).rejects.toThrow(/secret "gone" not found/);
  });

  test('projected: secret, configMap, downwardAPI fieldRefs and a ServiceAccount token in one volume', async () => {
    const src = sources(cms, { 'demo/creds': { data: { password: b64('pw') } } });
    const p = pod();
    const v = await materialize(
      {
        name: 'all',
        projected: {
          defaultMode: 0o640,
          sources: [
            { secret: { name: 'creds', items: [{ key: 'password', path: 'db/password' }] } },
            { configMap: { name: 'app', items: [{ key: 'a.conf', path: 'a.conf', mode: 0o444 }] } },
            {
              downwardAPI: {
                items: [
                  { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
                  { path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } },
                  { path: 'label-x', fieldRef: { fieldPath: "metadata.labels['x']" } },
                ],
              },
            },
            { serviceAccountToken: { path: 'token', audience: 'vault', expirationSeconds: 7200 } },
          ],
        },
      },
      src,
      p,
    );
    expect(v.kind).toBe('files');
    expect(byPath(v.files)).toEqual({
      'db/password': ['pw', '640'],
      'a.conf': ['A', '444'],
      name: ['orders-0', '640'],
      namespace: ['demo', '640'],
      'label-x': ['ex', '640'],
      token: ['token-for-orders-0-vault', '640'],
    });
    expect(src.tokenCalls).toHaveLength(1);
    expect(src.tokenCalls[0]!.pod).toBe(p);
    expect(src.tokenCalls[0]!.opts).toEqual({ audience: 'vault', expirationSeconds: 7200 });
  });

  test('projected: a missing non-optional source is a VolumeError', async () => {
    await expect(materialize({ name: 'all', projected: { sources: [{ secret: { name: 'gone' } }] } }, sources())).rejects.toThrow(VolumeError);
  });

  test('emptyDir is an empty scratch directory', async () => {
    expect(await materialize({ name: 'scratch', emptyDir: {} }, sources())).toEqual({ name: 'scratch', kind: 'emptyDir', files: [] });
  });

  test('an unsupported volume type is a VolumeError naming the type', async () => {
    const attempt = materialize({ name: 'host', hostPath: { path: '/var/lib/x' } }, sources());
    await expect(attempt).rejects.toThrow(VolumeError);
    await expect(materialize({ name: 'host', hostPath: { path: '/var/lib/x' } }, sources())).rejects.toThrow(/hostPath/);
  });
});

describe('fieldValue', () => {
  test('status.podIP is the pod IP; other supported fields', () => {
    const p = pod();
    expect(fieldValue(p, 'status.podIP', '127.77.1.5', 'node-a')).toBe('127.77.1.5');
    expect(fieldValue(p, 'spec.nodeName', '127.77.1.5', 'node-a')).toBe('node-a');
    expect(fieldValue(p, 'metadata.uid', '127.77.1.5', 'node-a')).toBe('u-1');
    expect(fieldValue(p, "metadata.annotations['note']", '127.77.1.5', 'node-a')).toBe('n');
    expect(fieldValue(p, "metadata.labels['missing']", '127.77.1.5', 'node-a')).toBe('');
  });

  test('an unsupported fieldPath is a VolumeError naming it', () => {
    expect(() => fieldValue(pod(), 'status.phase', '127.77.1.5', 'node-a')).toThrow(VolumeError);
    expect(() => fieldValue(pod(), 'status.phase', '127.77.1.5', 'node-a')).toThrow(/status\.phase/);
  });
});

// --- Service endpoints ---

interface PodOpts {
  name: string;
  ip?: string;
  labels?: Record<string, string>;
  ready?: boolean;
  terminating?: boolean;
  ports?: { name: string; containerPort: number }[];
}

const servicePod = (o: PodOpts): V1Pod => ({
  metadata: {
    name: o.name,
    namespace: 'demo',
    labels: o.labels ?? { app: 'orders' },
    ...(o.terminating ? { deletionTimestamp: new Date() } : {}),
  },
  spec: {
    containers: [
      { name: 'sidecar', image: 'x', ports: [{ name: 'metrics', containerPort: 9090 }] },
      { name: 'main', image: 'dbproxy', ports: o.ports ?? [{ name: 'pg', containerPort: 5432 }] },
    ],
  },
  status: {
    ...(o.ip ? { podIP: o.ip } : {}),
    conditions: [{ type: 'Ready', status: (o.ready ?? true) ? 'True' : 'False' }],
  },
});

const service = (port: V1ServicePort, over: Partial<NonNullable<V1Service['spec']>> = {}): V1Service => ({
  metadata: { name: 'orders', namespace: 'demo' },
  spec: { selector: { app: 'orders' }, ports: [port], ...over },
});

describe('serviceEndpoints', () => {
  const pgPort: V1ServicePort = { name: 'pg', port: 5432, targetPort: 'pg' as unknown as V1ServicePort['targetPort'] };

  test('only pods the whole selector matches', () => {
    const svc = service(pgPort, { selector: { app: 'orders', tier: 'db' } });
    const pods = [
      servicePod({ name: 'a', ip: '127.77.0.2', labels: { app: 'orders', tier: 'db', extra: 'y' } }),
      servicePod({ name: 'b', ip: '127.77.0.3', labels: { app: 'orders' } }),
      servicePod({ name: 'c', ip: '127.77.0.4', labels: { app: 'other', tier: 'db' } }),
    ];
    expect(serviceEndpoints(svc, pods, pgPort)).toEqual([{ ip: '127.77.0.2', port: 5432 }]);
  });

  test('only ready, non-terminating pods with an IP', () => {
    const pods = [
      servicePod({ name: 'ready', ip: '127.77.0.2' }),
      servicePod({ name: 'unready', ip: '127.77.0.3', ready: false }),
      servicePod({ name: 'terminating', ip: '127.77.0.4', terminating: true }),
      servicePod({ name: 'no-ip' }),
      { ...servicePod({ name: 'no-status', ip: '127.77.0.6' }), status: { podIP: '127.77.0.6' } },
    ];
    expect(serviceEndpoints(service(pgPort), pods, pgPort)).toEqual([{ ip: '127.77.0.2', port: 5432 }]);
  });

  test('publishNotReadyAddresses: unready and terminating pods too, but still none without an IP', () => {
    const pods = [
      servicePod({ name: 'unready', ip: '127.77.0.3', ready: false }),
      servicePod({ name: 'terminating', ip: '127.77.0.4', terminating: true }),
      servicePod({ name: 'ready', ip: '127.77.0.2' }),
      servicePod({ name: 'no-ip', ready: false }),
    ];
    expect(serviceEndpoints(service(pgPort, { publishNotReadyAddresses: true }), pods, pgPort)).toEqual([
      { ip: '127.77.0.2', port: 5432 },
      { ip: '127.77.0.3', port: 5432 },
      { ip: '127.77.0.4', port: 5432 },
    ]);
  });

  test('a named targetPort resolves per pod against any of its containers; a pod without that port is skipped', () => {
    const pods = [
      servicePod({ name: 'a', ip: '127.77.0.2', ports: [{ name: 'pg', containerPort: 6000 }] }),
      servicePod({ name: 'b', ip: '127.77.0.3', ports: [{ name: 'pg', containerPort: 6001 }] }),
      servicePod({ name: 'c', ip: '127.77.0.4', ports: [{ name: 'other', containerPort: 6002 }] }),
    ];
    expect(serviceEndpoints(service(pgPort), pods, pgPort)).toEqual([
      { ip: '127.77.0.2', port: 6000 },
      { ip: '127.77.0.3', port: 6001 },
    ]);
    const metrics: V1ServicePort = { name: 'metrics', port: 80, targetPort: 'metrics' as unknown as V1ServicePort['targetPort'] };
    expect(serviceEndpoints(service(metrics), pods, metrics)).toEqual([
      { ip: '127.77.0.2', port: 9090 },
      { ip: '127.77.0.3', port: 9090 },
      { ip: '127.77.0.4', port: 9090 },
    ]);
  });

  test('a numeric targetPort is used as is; no targetPort means the Service port', () => {
    const pods = [servicePod({ name: 'a', ip: '127.77.0.2' })];
    const numeric: V1ServicePort = { port: 80, targetPort: 8080 as unknown as V1ServicePort['targetPort'] };
    expect(serviceEndpoints(service(numeric), pods, numeric)).toEqual([{ ip: '127.77.0.2', port: 8080 }]);
    const same: V1ServicePort = { port: 7000 };
    expect(serviceEndpoints(service(same), pods, same)).toEqual([{ ip: '127.77.0.2', port: 7000 }]);
  });

  test('a Service without a selector has no endpoints from pods', () => {
    const pods = [servicePod({ name: 'a', ip: '127.77.0.2' })];
    expect(serviceEndpoints(service(pgPort, { selector: undefined }), pods, pgPort)).toEqual([]);
    expect(serviceEndpoints(service(pgPort, { selector: {} }), pods, pgPort)).toEqual([]);
  });
});

// --- ServiceForwarder on real sockets ---

const listenOn = (server: Server, ip: string, port = 0): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });

const closeServer = (server: Server): Promise<void> => new Promise((r) => server.close(() => r()));

/** A server that answers every connection with its name, then closes it. */
async function namedServer(name: string, ip: string): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end(name));
  return { server, port: await listenOn(server, ip) };
}

/** Connects and collects what arrives until the connection ends; errors (a reset) count as an end. */
function readAll(ip: string, port: number): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: ip, port });
    s.on('data', (c: Buffer) => chunks.push(c));
    let error: string | undefined;
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => resolve({ data: Buffer.concat(chunks).toString('utf8'), ...(error ? { error } : {}) }));
  });
}

/** A port number free on ip right now. */
async function freePort(ip: string): Promise<number> {
  const s = createServer();
  const port = await listenOn(s, ip);
  await closeServer(s);
  return port;
}

describe('ServiceForwarder', () => {
  const serviceIp = `${NET}.1`;
  const ipA = `${NET}.2`;
  const ipB = `${NET}.3`;
  const cleanup: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  test('round robin over the ready endpoints; a connection with no ready endpoint is closed', async () => {
    const a = await namedServer('server-a', ipA);
    cleanup.push(() => closeServer(a.server));
    const b = await namedServer('server-b', ipB);
    cleanup.push(() => closeServer(b.server));
    const ready = { a: true, b: true };
    // Different container ports per pod: the named targetPort resolves against each pod's own.
    const pods = (): V1Pod[] => [
      servicePod({ name: 'b', ip: ipB, ready: ready.b, ports: [{ name: 'pg', containerPort: b.port }] }),
      servicePod({ name: 'a', ip: ipA, ready: ready.a, ports: [{ name: 'pg', containerPort: a.port }] }),
    ];
    const port = await freePort(serviceIp);
    const svc = service({ name: 'pg', port, targetPort: 'pg' as unknown as V1ServicePort['targetPort'] });
    const logs: string[] = [];
    const fwd = await ServiceForwarder.start({ ip: serviceIp, service: svc, pods, log: (m) => logs.push(m) });
    cleanup.push(() => fwd.close());
    expect(fwd.ports).toEqual([port]);

    const answers: string[] = [];
    for (let i = 0; i < 4; i += 1) answers.push((await readAll(serviceIp, port)).data);
    expect(answers).toEqual(['server-a', 'server-b', 'server-a', 'server-b']);

    // Only b ready: every connection goes to b.
    ready.a = false;
    expect([(await readAll(serviceIp, port)).data, (await readAll(serviceIp, port)).data]).toEqual(['server-b', 'server-b']);

    // None ready: the connection is accepted, then closed with nothing sent.
    ready.b = false;
    const none = await readAll(serviceIp, port);
    expect(none.data).toBe('');
  });

  test('start fails when a Service port is taken, and leaves nothing listening', async () => {
    const taken = createServer();
    const port = await listenOn(taken, serviceIp);
    cleanup.push(() => closeServer(taken));
    const free = await freePort(serviceIp);
    const svc: V1Service = { metadata: { name: 'x', namespace: 'demo' }, spec: { selector: { app: 'x' }, ports: [{ name: 'one', port: free }, { name: 'two', port }] } };
    await expect(ServiceForwarder.start({ ip: serviceIp, service: svc, pods: () => [], log: () => {} })).rejects.toThrow(/EADDRINUSE/);
    // The first port's listener was closed again.
    const again = createServer();
    await listenOn(again, serviceIp, free);
    await closeServer(again);
  });
});

// --- pod status and the pods the runner refuses ---

describe('podStatus', () => {
  const container: V1Container = { name: 'main', image: 'dbproxy:dev' };
  const base = {
    podIp: '127.77.1.5',
    startTime: '2025-01-01T00:00:00Z',
    container,
    started: true,
    restartCount: 2,
    transitions: { 'Ready=true': '2025-01-01T00:00:05Z', 'ContainersReady=true': '2025-01-01T00:00:05Z' },
  };
  const conditions = (s: Record<string, unknown>): Record<string, string> =>
    Object.fromEntries((s.conditions as { type: string; status: string }[]).map((c) => [c.type, c.status]));
  const containerStatus = (s: Record<string, unknown>): Record<string, unknown> => {
    const list = s.containerStatuses as Record<string, unknown>[];
    expect(list).toHaveLength(1);
    return list[0]!;
  };

  test('a ready running container: phase Running, Ready and ContainersReady True, pod IPs', async () => {
    const { podStatus } = await podProcess();
    const s = podStatus({ ...base, containerState: { state: 'running', startedAt: '2025-01-01T00:00:01Z' }, ready: true });
    expect(s.phase).toBe('Running');
    expect(s.podIP).toBe('127.77.1.5');
    expect(s.podIPs).toEqual([{ ip: '127.77.1.5' }]);
    expect(s.startTime).toBe('2025-01-01T00:00:00Z');
    expect(conditions(s)).toEqual({ PodScheduled: 'True', Initialized: 'True', ContainersReady: 'True', Ready: 'True' });
    const ready = (s.conditions as { type: string; lastTransitionTime: string }[]).find((c) => c.type === 'Ready')!;
    expect(ready.lastTransitionTime).toBe('2025-01-01T00:00:05Z');
    expect(containerStatus(s)).toMatchObject({ name: 'main', image: 'dbproxy:dev', ready: true, started: true, restartCount: 2 });
    expect(containerStatus(s).state).toEqual({ running: { startedAt: '2025-01-01T00:00:01Z' } });
  });

  test('not ready: Ready and ContainersReady False', async () => {
    const { podStatus } = await podProcess();
    const s = podStatus({ ...base, containerState: { state: 'running', startedAt: '2025-01-01T00:00:01Z' }, ready: false });
    expect(s.phase).toBe('Running');
    expect(conditions(s)).toEqual({ PodScheduled: 'True', Initialized: 'True', ContainersReady: 'False', Ready: 'False' });
    expect(containerStatus(s).ready).toBe(false);
  });

  test('waiting and terminated container states have the API shape', async () => {
    const { podStatus } = await podProcess();
    const waiting = podStatus({ ...base, containerState: { state: 'waiting', reason: 'ContainerCreating', message: 'secret "x" not found' }, ready: false, started: false });
    expect(containerStatus(waiting).state).toEqual({ waiting: { reason: 'ContainerCreating', message: 'secret "x" not found' } });
    expect(containerStatus(waiting).started).toBe(false);
    const terminated = podStatus({
      ...base,
      containerState: { state: 'terminated', exitCode: 137, reason: 'Error', startedAt: '2025-01-01T00:00:01Z', finishedAt: '2025-01-01T00:01:00Z' },
      ready: false,
    });
    expect(containerStatus(terminated).state).toEqual({
      terminated: { exitCode: 137, reason: 'Error', startedAt: '2025-01-01T00:00:01Z', finishedAt: '2025-01-01T00:01:00Z' },
    });
    expect(terminated.phase).toBe('Running'); // restartPolicy Always: the pod keeps running while the container restarts
  });

  test('a container that exited and waits to restart: CrashLoopBackOff, with how it ended as lastState (as a kubelet reports it)', async () => {
    const { podStatus } = await podProcess();
    const s = podStatus({
      ...base,
      containerState: { state: 'waiting', reason: 'CrashLoopBackOff', message: 'back-off 2s restarting failed container=main' },
      lastTerminated: { state: 'terminated', exitCode: 1, reason: 'Error', startedAt: '2025-01-01T00:00:01Z', finishedAt: '2025-01-01T00:00:02Z' },
      ready: false,
      started: false,
    });
    expect(containerStatus(s)).toMatchObject({
      restartCount: 2,
      state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 2s restarting failed container=main' } },
      lastState: { terminated: { exitCode: 1, reason: 'Error', startedAt: '2025-01-01T00:00:01Z', finishedAt: '2025-01-01T00:00:02Z' } },
    });
    expect(containerStatus(podStatus({ ...base, containerState: { state: 'running', startedAt: '2025-01-01T00:00:03Z' }, ready: true })).lastState).toBeUndefined();
  });
});

describe('PodProcess.unsupported', () => {
  const c = (name: string): V1Container => ({ name, image: 'dbproxy:dev' });

  test('one container is supported', async () => {
    const { PodProcess } = await podProcess();
    expect(PodProcess.unsupported(pod({ spec: { containers: [c('main')] } }))).toBeUndefined();
  });

  test('two containers, init containers and envFrom are refused with a reason', async () => {
    const { PodProcess } = await podProcess();
    expect(PodProcess.unsupported(pod({ spec: { containers: [c('main'), c('sidecar')] } }))).toMatch(/exactly one container/);
    expect(PodProcess.unsupported(pod({ spec: { containers: [c('main')], initContainers: [c('init')] } }))).toMatch(/init containers/);
    expect(PodProcess.unsupported(pod({ spec: { containers: [{ ...c('main'), envFrom: [{ configMapRef: { name: 'x' } }] }] } }))).toMatch(/envFrom/);
    expect(PodProcess.unsupported(pod({ spec: undefined }))).toBeDefined();
  });
});

// --- bindToPodIp preload, in a real Node process ---

describe('bindToPodIp', () => {
  const podIp = `${NET}.7`;

  /** Runs a script with the preload (as the runner starts containers) and returns the addresses it printed. */
  function addresses(script: string, env: Record<string, string> = { PODRUNNER_POD_IP: podIp }): { address: string; port: number }[] {
    if (!existsSync(PRELOAD)) throw new Error(`${PRELOAD} is missing: run \`npm run build\` before these tests`);
    const r = spawnSync(process.execPath, [`--import=${PRELOAD}`, '-e', script], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
    if (r.status !== 0) throw new Error(`node exited ${r.status ?? r.signal}: ${r.stderr}`);
    return JSON.parse(r.stdout.trim()) as { address: string; port: number }[];
  }

  // Each listen form in turn; prints every server's address, then closes them.
  const program = (listens: string[]): string => `
    const net = require('node:net');
    const forms = [${listens.map((l) => `(s, cb) => s.${l}`).join(', ')}];
    (async () => {
      const out = [];
      for (const listen of forms) {
        const s = net.createServer();
        await new Promise((resolve, reject) => { s.once('error', reject); listen(s, resolve); });
        out.push(s.address());
        await new Promise((r) => s.close(r));
      }
      console.log(JSON.stringify(out));
    })().catch((e) => { console.error(e); process.exit(1); });
  `;

  test('wildcard and host-less listens bind to the pod IP', () => {
    const got = addresses(
      program([
        "listen(0, '0.0.0.0', cb)",
        "listen(0, '::', cb)",
        'listen({ port: 0 }, cb)',
        "listen({ port: 0, host: '0.0.0.0' }, cb)",
        'listen(0, cb)',
        'listen(0, 511, cb)',
        'listen(0)&&s.once("listening", cb)',
      ]),
    );
    expect(got).toHaveLength(7);
    for (const a of got) {
      expect(a.address).toBe(podIp);
      expect(a.port).toBeGreaterThan(0);
    }
  });

  test('a specific host is left alone', () => {
    const got = addresses(program(["listen(0, '127.0.0.1', cb)", "listen({ port: 0, host: '127.0.0.1' }, cb)"]));
    expect(got.map((a) => a.address)).toEqual(['127.0.0.1', '127.0.0.1']);
  });

  test('without PODRUNNER_POD_IP nothing changes', () => {
    const got = addresses(program(["listen(0, '0.0.0.0', cb)"]), {});
    expect(got.map((a) => a.address)).toEqual(['0.0.0.0']);
  });
});
