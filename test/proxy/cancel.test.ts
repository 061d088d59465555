// Cancel requests: the proxy's own BackendKeyData; a cancel reaches the backend the client
// currently borrows, and does nothing when it borrows none or the key is wrong.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import pg from 'pg';
import type { PgCluster } from '../../hack/postgres.js';
import { replicaOfCancelPid } from '../../proxy/cancel/cancelRegistry.js';
import { client, connected, eventually, pgBin, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';
import { RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const app = USERS[0]!;

beforeAll(async () => {
  cluster = await startCluster();
  proxy = await startProxy(cluster);
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

/**
 * Resolves once the server runs the query: a cancel that arrives before the query does is
 * ignored by PostgreSQL, so "the session holds a backend" is not enough.
 */
async function running(sql: string): Promise<void> {
  await eventually(() => cluster.psql(`SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '${sql}'`) === '1', `${sql} to run`);
}

function sendCancel(pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: proxy.port }, () => s.end(serialize.cancel(pid, secret)));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

test('a CancelRequest with the proxy-issued key cancels the running query', async () => {
  const c = await RawClient.login(proxy.port, app.name, app.password);
  expect(c.pid).toBeGreaterThan(0);
  c.send(serialize.query('SELECT pg_sleep(30)'));
  const started = Date.now();
  await running('SELECT pg_sleep(30)');
  await sendCancel(c.pid, c.secret);
  const msgs = await c.untilReady();
  expect(msgs.find((m) => m.name === 'error')?.code).toBe('57014');
  expect(Date.now() - started).toBeLessThan(10_000);
  c.send(serialize.query('SELECT 1'));
  expect((await c.untilReady()).some((m) => m.name === 'dataRow')).toBe(true);
  c.close();
});

test('a cancel with the wrong secret, or for a client holding no backend, does nothing', async () => {
  const c = await RawClient.login(proxy.port, app.name, app.password);
  await sendCancel(c.pid, c.secret); // idle: nothing to cancel
  c.send(serialize.query('SELECT pg_sleep(1.5)'));
  await running('SELECT pg_sleep(1.5)');
  // pg-protocol writes the secret as a signed int32, as it reads it.
  await sendCancel(c.pid, (c.secret + 1) | 0);
  const msgs = await c.untilReady();
  expect(msgs.find((m) => m.name === 'error')).toBeUndefined();
  expect(msgs.some((m) => m.name === 'commandComplete')).toBe(true);
  c.close();
});

test("psql's Ctrl-C cancels through the proxy", async () => {
  const p = spawn(pgBin('psql'), ['-X', '-h', '127.0.0.1', '-p', String(proxy.port), '-U', 'app', '-d', 'postgres', '-c', 'SELECT pg_sleep(30)'], {
    env: { ...process.env, PGPASSWORD: app.password },
  });
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  await running('SELECT pg_sleep(30)');
  p.kill('SIGINT');
  const code = await new Promise<number | null>((r) => p.on('close', r));
  expect(stderr).toMatch(/canceling statement due to user request/);
  expect(code).not.toBe(0);
});

describe('a cancel that lands on another replica', () => {
  test.each([
    ['different replica ids', 1],
    ['the same replica id', 0],
  ])('is forwarded to the replica running the query (%s)', async (_name, otherReplicaId) => {
    const { freePort } = await import('../support/harness.js');
    const [adminA, adminB] = [await freePort(), await freePort()];
    const a = await startProxy(cluster, { adminListen: `127.0.0.1:${adminA}`, replicaId: 0, peers: { static: [`127.0.0.1:${adminB}`] } });
    const b = await startProxy(cluster, { adminListen: `127.0.0.1:${adminB}`, replicaId: otherReplicaId, peers: { static: [`127.0.0.1:${adminA}`] } });
    try {
      const c = await RawClient.login(a.port, app.name, app.password);
      c.send(serialize.query('SELECT pg_sleep(30)'));
      await running('SELECT pg_sleep(30)');
      // The Service sent the cancel's TCP connection to replica b.
      await new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: b.port }, () => s.end(serialize.cancel(c.pid, c.secret)));
        s.on('close', () => resolve());
        s.on('error', () => resolve());
      });
      const msgs = await c.untilReady();
      expect(msgs.find((m) => m.name === 'error')?.code).toBe('57014');
      const { eventually } = await import('../support/harness.js');
      await eventually(() => b.logs.some((l) => l.includes('forwarded to peers') && l.includes('"peers":1')), 'replica b to log the forward');
      c.close();
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('a forged cancel gets the same answer as a real one, and forwards no further', async () => {
    const forged = await postCancel(proxy.adminPort, '127.0.0.1', { pid: 12345, secret: 678 });
    expect(forged).toEqual({ status: 202, body: 'cancel request received\n' });
    const bad = await fetch(`http://127.0.0.1:${proxy.adminPort}/cancel`, { method: 'POST', body: 'nope' });
    expect(bad.status).toBe(400);
  });
});

/** A CancelRequest on the client port from a chosen loopback address. */
function cancelFrom(port: number, localAddress: string, pid: number, secret: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => s.end(serialize.cancel(pid, secret)));
    s.on('close', () => resolve());
    s.on('error', () => resolve());
  });
}

/** POST /cancel on a replica's admin port, as a peer would, from a chosen loopback address. */
function postCancel(adminPort: number, localAddress: string, key: { pid: number; secret: number }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: adminPort, localAddress, method: 'POST', path: '/cancel', headers: { 'content-type': 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(key));
  });
}

describe('cancel keys', () => {
  test('pids are not sequential and name the replica; secrets use all 32 bits', async () => {
    const keys: Array<{ pid: number; secret: number }> = [];
    for (let i = 0; i < 32; i++) {
      const c = await RawClient.login(proxy.port, app.name, app.password);
      keys.push({ pid: c.pid >>> 0, secret: c.secret >>> 0 });
      c.close();
    }
    for (const k of keys) expect(replicaOfCancelPid(k.pid)).toBe(0);
    expect(new Set(keys.map((k) => k.pid)).size).toBe(keys.length);
    // One session's key says nothing about the next one's.
    const steps = keys.slice(1).map((k, i) => k.pid - keys[i]!.pid);
    expect(steps.filter((d) => Math.abs(d) <= 2)).toEqual([]);
    // 32 random bits, like PostgreSQL's: one in 2^32 runs sees no secret at or above 2^31.
    expect(keys.some((k) => k.secret >= 2 ** 31)).toBe(true);
  });

  test('a secret with its top bit set cancels through node-postgres (which reads and writes it as a signed int32)', async () => {
    type KeyedClient = pg.Client & { secretKey: number };
    let victim: KeyedClient | undefined;
    for (let i = 0; i < 40 && !victim; i++) {
      const c = (await connected(proxy.port)) as KeyedClient;
      if (c.secretKey < 0) victim = c;
      else await c.end();
    }
    if (!victim) throw new Error('no session with a secret at or above 2^31 in 40 logins');
    const q = victim.query(new pg.Query('SELECT pg_sleep(30)'));
    const failed = new Promise<{ code?: string }>((resolve) => q.on('error', (e: Error) => resolve(e as { code?: string })));
    await running('SELECT pg_sleep(30)');
    // pg's own cancel: a fresh connection sending CancelRequest(processID, secretKey).
    (client(proxy.port) as unknown as { cancel(c: pg.Client, q: pg.Query): void }).cancel(victim, q);
    expect((await failed).code).toBe('57014');
    expect((await victim.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await victim.end();
  });
});

describe('cancel requests are rate-limited per source address', () => {
  let limited: RunningProxy;

  beforeAll(async () => {
    // Five at once per address, and (practically) no refill during the test.
    limited = await startProxy(cluster, { cancelRateLimit: { burst: 5, perSecond: 0.001, peerBurst: 5, peerPerSecond: 0.001 } });
  });

  afterAll(async () => {
    await limited?.stop();
  });

  const rateLimited = async (via: string): Promise<number> =>
    (await limited.server.metrics.cancelRequests.get()).values.find((v) => v.labels.via === via && v.labels.result === 'rate_limited')?.value ?? 0;

  test('on the client port: guesses beyond the burst are dropped, even the right key; other addresses are unaffected', async () => {
    const c = await RawClient.login(limited.port, app.name, app.password);
    c.send(serialize.query('SELECT pg_sleep(1)'));
    await running('SELECT pg_sleep(1)');
    for (let i = 1; i <= 5; i++) await cancelFrom(limited.port, '127.0.0.2', c.pid, (c.secret + i) | 0);
    const before = await rateLimited('client');
    await cancelFrom(limited.port, '127.0.0.2', c.pid, c.secret);
    await eventually(async () => (await rateLimited('client')) === before + 1, 'the sixth cancel from 127.0.0.2 to be dropped');
    // The query ran to its end: the right key came one guess too late.
    const done = await c.untilReady();
    expect(done.find((m) => m.name === 'error')).toBeUndefined();
    expect(done.some((m) => m.name === 'commandComplete')).toBe(true);
    // Another address still cancels.
    c.send(serialize.query('SELECT pg_sleep(30)'));
    await running('SELECT pg_sleep(30)');
    await cancelFrom(limited.port, '127.0.0.3', c.pid, c.secret);
    expect((await c.untilReady()).find((m) => m.name === 'error')?.code).toBe('57014');
    c.close();
  });

  test('POST /cancel: the same answer whether a session matched or not, 429 beyond the burst from one address', async () => {
    const c = await RawClient.login(limited.port, app.name, app.password);
    c.send(serialize.query('SELECT pg_sleep(30)'));
    await running('SELECT pg_sleep(30)');
    const wrongSecret = await postCancel(limited.adminPort, '127.0.0.4', { pid: c.pid, secret: (c.secret + 1) >>> 0 });
    const noSuchPid = await postCancel(limited.adminPort, '127.0.0.4', { pid: 12345, secret: 678 });
    const right = await postCancel(limited.adminPort, '127.0.0.4', { pid: c.pid, secret: c.secret >>> 0 });
    expect(wrongSecret).toEqual({ status: 202, body: 'cancel request received\n' });
    expect(noSuchPid).toEqual(wrongSecret);
    expect(right).toEqual(wrongSecret);
    expect((await c.untilReady()).find((m) => m.name === 'error')?.code).toBe('57014');
    for (let i = 0; i < 2; i++) expect((await postCancel(limited.adminPort, '127.0.0.4', { pid: 1, secret: i })).status).toBe(202);
    const before = await rateLimited('peer');
    expect(await postCancel(limited.adminPort, '127.0.0.4', { pid: 1, secret: 99 })).toEqual({ status: 429, body: 'too many cancel requests\n' });
    expect(await rateLimited('peer')).toBe(before + 1);
    expect((await postCancel(limited.adminPort, '127.0.0.5', { pid: 1, secret: 99 })).status).toBe(202);
    c.close();
  });
});
