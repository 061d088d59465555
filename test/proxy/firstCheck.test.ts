// A proxy pod starting (issue 19): until its first health check has found the writer it is not
// ready, and its /stats says it is still checking. The operator's status reads that as a pod
// starting, never as a pod that cannot reach the writer; a first check that fails is a failure.
//
// The writer is a real PostgreSQL behind a gate that holds connections until the test lets them
// through, so "the first check is on its way" lasts exactly as long as the test needs it to. The
// old primary is a loopback port nothing listens on, which fails at once, as after a failover.
import net from 'node:net';
import { pino } from 'pino';
import type { PgCluster } from '../../hack/postgres.js';
import { exampleProxy } from '../../operator/api/fixtures.js';
import { exampleStats, observedDeployment } from '../../operator/status/fixtures.js';
import { computeStatus, type PodStats } from '../../operator/status/status.js';
import { parseConfig } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { ProxyServer } from '../../proxy/proxyServer.js';
import { eventually, startCluster, writePasswordFiles } from '../support/harness.js';

/** Listens on a loopback port below the ephemeral range (so no outgoing connection can hold it). */
async function listenLow(server: net.Server): Promise<number> {
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    const ok = await new Promise<boolean>((resolve) => {
      const onError = (): void => resolve(false);
      server.once('error', onError);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', onError);
        resolve(true);
      });
    });
    if (ok) return port;
  }
}

/** A TCP gate in front of `port`: connections wait until release(), then pass through. */
async function gate(port: number): Promise<{ port: number; release(): void; close(): void }> {
  let open = false;
  const held: net.Socket[] = [];
  const sockets = new Set<net.Socket>();
  const through = (s: net.Socket): void => {
    const up = net.connect(port, '127.0.0.1');
    sockets.add(up);
    up.on('error', () => s.destroy());
    s.on('error', () => up.destroy());
    s.pipe(up).pipe(s);
  };
  const server = net.createServer((s) => {
    sockets.add(s);
    if (open) through(s);
    else held.push(s); // not read from: what the proxy sent waits in the socket
  });
  const gatePort = await listenLow(server);
  return {
    port: gatePort,
    release() {
      open = true;
      for (const s of held.splice(0)) through(s);
    },
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

/** A loopback port nothing listens on: connecting is refused at once. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  const port = await listenLow(s);
  await new Promise((r) => s.close(r));
  return port;
}

let db: PgCluster | undefined;
const stops: Array<() => unknown> = [];

beforeAll(async () => {
  db = await startCluster();
});

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  db?.stop();
});

async function startProxy(targets: string[]): Promise<{ server: ProxyServer; http: (path: string) => Promise<{ status: number; body: string }> }> {
  const files = writePasswordFiles();
  const config = parseConfig({
    listen: '127.0.0.1:0',
    adminListen: '127.0.0.1:0',
    targets,
    users: files.users,
    healthCheck: { interval: '200ms' },
    // The held check must outlast the assertions, however slow the machine.
    pool: { connectTimeout: '60s' },
  });
  const server = await ProxyServer.create({ config, log: pino({ level: 'silent' }) });
  const { adminPort } = await server.start();
  stops.push(() => server.shutdown(1000));
  const http = async (path: string) => {
    const r = await fetch(`http://127.0.0.1:${adminPort}${path}`);
    return { status: r.status, body: await r.text() };
  };
  return { server, http };
}

/** The operator's status during a scale-up 2 -> 3 where the third pod reports `third`. */
function statusWithThirdPod(third: ProxyStats, writer: string) {
  const healthy = (name: string): PodStats => ({ pod: name, ready: true, stats: exampleStats({ writer, targets: [{ endpoint: writer, state: 'AVAILABLE', role: 'writer', maxConnections: 40 }] }) });
  return computeStatus({
    proxy: exampleProxy({ replicas: 3 }, { generation: 2 }),
    deployment: observedDeployment({ replicas: 3, updatedReplicas: 3, readyReplicas: 2, availableReplicas: 2, conditions: [{ type: 'Progressing', status: 'True', reason: 'NewReplicaSetAvailable' }] }, 3, 2),
    stats: [healthy('orders-a'), healthy('orders-b'), { pod: 'orders-c', ready: third.ready, stats: third }],
    now: new Date(),
    poolDivisor: 3,
  });
}
const conditions = (s: ReturnType<typeof computeStatus>) => Object.fromEntries(s.conditions!.map((c) => [c.type, `${c.status} ${c.reason}`]));

test('first check of the writer on its way: /readyz 503, /stats "still checking", the status Progressing and not Degraded; ready once the writer answers', async () => {
  const g = await gate(db!.port);
  stops.push(() => g.close());
  const dead = `127.0.0.1:${await deadPort()}`;
  const writer = `127.0.0.1:${g.port}`;
  const { server, http } = await startProxy([dead, writer]);

  // The old primary has already failed; the writer's check waits at the gate.
  const pending = (await eventually(async () => {
    const s = JSON.parse((await http('/stats')).body) as ProxyStats;
    return s.targets.find((t) => t.endpoint === dead)?.state === 'UNAVAILABLE' ? s : undefined;
  }, 'the dead target to fail while the writer is held'))!;
  expect(pending).toMatchObject({ ready: false, writer: null });
  expect(pending.writerProblem).toBeUndefined();
  expect(pending.targets).toEqual([
    { endpoint: dead, state: 'UNAVAILABLE', reason: 'UNREACHABLE', role: 'unknown', maxConnections: null },
    { endpoint: writer, state: 'UNKNOWN', role: 'unknown', maxConnections: null },
  ]);
  expect(await http('/readyz')).toEqual({ status: 503, body: 'not ready: no writable target or pool budget yet\n' });
  expect(server.isReady()).toBe(false);

  // What the operator makes of this pod during a scale-up: starting, not failing.
  expect(conditions(statusWithThirdPod(pending, writer))).toEqual({
    Ready: 'False WaitingForPods',
    Available: 'True ReplicasReady',
    Progressing: 'True WaitingForPods',
    Degraded: 'False AsExpected',
    TargetReachable: 'True WriterAvailable',
  });

  g.release();
  await eventually(async () => (await http('/readyz')).status === 200, '/readyz 200 once the writer answered', 20_000);
  const after = JSON.parse((await http('/stats')).body) as ProxyStats;
  expect(after).toMatchObject({ ready: true, writer, failovers: 0, lastFailover: null });
  expect(after.targets.find((t) => t.endpoint === writer)).toMatchObject({ state: 'AVAILABLE', role: 'writer' });
  expect(conditions(statusWithThirdPod(after, writer))).toMatchObject({ Degraded: 'False AsExpected', TargetReachable: 'True WriterAvailable' });
});

test('a first check that finds no writer is a verdict: not ready, and the status says the pod cannot reach the writer', async () => {
  const dead = `127.0.0.1:${await deadPort()}`;
  const { http } = await startProxy([dead]);
  const failed = (await eventually(async () => {
    const s = JSON.parse((await http('/stats')).body) as ProxyStats;
    return s.writerProblem ? s : undefined;
  }, 'a verdict about the writer'))!;
  expect(failed).toMatchObject({ ready: false, writer: null, writerProblem: expect.stringMatching(/^NO_WRITER/) });
  expect((await http('/readyz')).status).toBe(503);
  const s = statusWithThirdPod(failed, `127.0.0.1:${db!.port}`);
  expect(conditions(s)).toMatchObject({ Degraded: 'True TargetUnreachableFromSomePods', TargetReachable: 'True WriterReachableFromSomePods' });
  expect(s.conditions!.find((c) => c.type === 'TargetReachable')!.message).toBe(`writer 127.0.0.1:${db!.port} reachable from 2/3 pods: ${dead} UNAVAILABLE (UNREACHABLE)`);
});
