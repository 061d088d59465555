// Cancel requests: the proxy's own BackendKeyData; a cancel reaches the backend the client
// currently borrows, and does nothing when it borrows none or the key is wrong.
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { PgCluster } from '../../hack/postgres.js';
import { pgBin, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';
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
  // The query is running once the session holds a backend.
  while (proxy.server.stats().borrowed === 0) await new Promise((r) => setTimeout(r, 10));
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
  c.send(serialize.query('SELECT pg_sleep(0.3)'));
  while (proxy.server.stats().borrowed === 0) await new Promise((r) => setTimeout(r, 10));
  await sendCancel(c.pid, (c.secret + 1) >>> 0);
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
  while (proxy.server.stats().borrowed === 0) await new Promise((r) => setTimeout(r, 10));
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
      while (a.server.stats().borrowed === 0) await new Promise((r) => setTimeout(r, 10));
      // The Service sent the cancel's TCP connection to replica b.
      await new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: b.port }, () => s.end(serialize.cancel(c.pid, c.secret)));
        s.on('close', () => resolve());
        s.on('error', () => resolve());
      });
      const msgs = await c.untilReady();
      expect(msgs.find((m) => m.name === 'error')?.code).toBe('57014');
      const { eventually } = await import('../support/harness.js');
      await eventually(() => b.logs.some((l) => l.includes('forwarded to peers') && l.includes('"accepted":1')), 'replica b to log the forward');
      c.close();
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('a forged cancel is refused by every peer and forwards no further', async () => {
    const res = await fetch(`http://127.0.0.1:${proxy.adminPort}/cancel`, { method: 'POST', body: JSON.stringify({ pid: 12345, secret: 678 }) });
    expect(res.status).toBe(404);
    const bad = await fetch(`http://127.0.0.1:${proxy.adminPort}/cancel`, { method: 'POST', body: 'nope' });
    expect(bad.status).toBe(400);
  });
});
