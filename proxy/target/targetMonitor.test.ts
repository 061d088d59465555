import { pino } from 'pino';
import type { BackendConnection, BackendEndpoint } from '../backend/backendConnection.js';
import type { Clock } from '../runtime/clock.js';
import { TargetMonitor } from './targetMonitor.js';

/** Servers by address: in recovery or not; absent means unreachable. */
type Servers = Map<string, { inRecovery: boolean }>;

function fakeOpen(servers: Servers) {
  return async (e: BackendEndpoint): Promise<BackendConnection> => {
    const key = `${e.host}:${e.port}`;
    if (!servers.has(key)) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const conn = {
      closed: false,
      close() {
        conn.closed = true;
      },
      async query(sql: string) {
        const s = servers.get(key);
        if (!s) throw Object.assign(new Error('server closed the connection'), { code: 'ECONNRESET' });
        if (sql.includes('aurora')) return { rows: [['f']], commandTags: [] };
        return { rows: [[String(s.inRecovery), '100']], commandTags: [] };
      },
    };
    return conn as unknown as BackendConnection;
  };
}

const manualClock: Clock = { now: () => 0, setTimeout: () => ({}), clearTimeout: () => undefined };

test('a DNS name is re-resolved every round and the writer follows it', async () => {
  const servers: Servers = new Map([
    ['10.0.0.1:5432', { inRecovery: false }],
    ['10.0.0.2:5432', { inRecovery: true }],
  ]);
  let addresses = ['10.0.0.1'];
  const changes: Array<string | null> = [];
  const m = new TargetMonitor([{ host: 'cluster.example', port: 5432 }], {
    open: fakeOpen(servers),
    resolve: async () => addresses,
    clock: manualClock,
    log: pino({ level: 'silent' }),
    intervalMs: 1000,
    onChange: (w) => changes.push(w ? `${w.host}:${w.port}` : null),
  });
  await m.checkNow();
  expect(m.currentWriter).toBe('10.0.0.1:5432');
  // The cluster endpoint now points at the promoted instance.
  servers.set('10.0.0.2:5432', { inRecovery: false });
  servers.delete('10.0.0.1:5432');
  addresses = ['10.0.0.2'];
  await m.checkNow();
  expect(m.currentWriter).toBe('10.0.0.2:5432');
  expect(m.stats().map((t) => t.endpoint)).toEqual(['10.0.0.2:5432']);
  expect(changes).toEqual(['10.0.0.1:5432', '10.0.0.2:5432']);
  expect(m.failoverCount).toBe(1);
});

test('a writer failing one check is suspect; failing two is lost; a standby promoted takes over', async () => {
  const servers: Servers = new Map([
    ['10.0.0.1:5432', { inRecovery: false }],
    ['10.0.0.2:5432', { inRecovery: true }],
  ]);
  const suspects: boolean[] = [];
  const m = new TargetMonitor(
    [
      { host: '10.0.0.1', port: 5432 },
      { host: '10.0.0.2', port: 5432 },
    ],
    { open: fakeOpen(servers), clock: manualClock, log: pino({ level: 'silent' }), intervalMs: 1000, onChange: () => undefined, onSuspect: (s) => suspects.push(s) },
  );
  await m.checkNow();
  servers.delete('10.0.0.1:5432');
  await m.checkNow();
  expect(m.currentWriter).toBe('10.0.0.1:5432');
  expect(suspects).toEqual([true]);
  await m.checkNow();
  expect(m.currentWriter).toBeNull();
  expect(m.writerProblem).toMatch(/NO_WRITER/);
  expect(m.stats().find((t) => t.endpoint === '10.0.0.2:5432')).toMatchObject({ state: 'UNAVAILABLE', reason: 'READ_ONLY' });
  servers.set('10.0.0.2:5432', { inRecovery: false });
  await m.checkNow();
  expect(m.currentWriter).toBe('10.0.0.2:5432');
  expect(m.lastFailoverRecord).toMatchObject({ from: '10.0.0.1:5432', to: '10.0.0.2:5432' });
  expect(suspects).toEqual([true, false]);
});

test('until the first round finishes there is no writer and no verdict, the unchecked target is UNKNOWN; finding the writer then is no failover', async () => {
  const servers: Servers = new Map([['10.0.0.2:5432', { inRecovery: false }]]);
  const open = fakeOpen(servers);
  let letThrough: () => void = () => undefined;
  const held = new Promise<void>((r) => (letThrough = r));
  const changes: Array<string | null> = [];
  const m = new TargetMonitor(
    [
      { host: '10.0.0.1', port: 5432 }, // the old primary, gone: refused at once
      { host: '10.0.0.2', port: 5432 }, // the writer, whose first check is slow
    ],
    {
      open: async (e) => {
        if (e.host === '10.0.0.2') await held;
        return open(e);
      },
      clock: manualClock,
      log: pino({ level: 'silent' }),
      intervalMs: 1000,
      onChange: (w) => changes.push(w ? `${w.host}:${w.port}` : null),
    },
  );
  const round = m.checkNow();
  // The refused target's check has settled; the writer's is held.
  await new Promise((r) => setImmediate(r));
  expect(m.stats()).toEqual([
    { endpoint: '10.0.0.1:5432', state: 'UNAVAILABLE', reason: 'UNREACHABLE', role: 'unknown', maxConnections: null },
    { endpoint: '10.0.0.2:5432', state: 'UNKNOWN', role: 'unknown', maxConnections: null },
  ]);
  expect(m.currentWriter).toBeNull();
  expect(m.writerProblem).toBeUndefined();
  expect(changes).toEqual([]);
  letThrough();
  await round;
  expect(m.currentWriter).toBe('10.0.0.2:5432');
  expect(changes).toEqual(['10.0.0.2:5432']);
  expect(m.failoverCount).toBe(0);
  expect(m.lastFailoverRecord).toBeNull();
});

test('a first round that finds no writer gives a verdict; the writer found later is no failover', async () => {
  const servers: Servers = new Map([['10.0.0.1:5432', { inRecovery: true }]]); // still starting as a standby
  const changes: Array<string | null> = [];
  const suspects: boolean[] = [];
  const m = new TargetMonitor([{ host: '10.0.0.1', port: 5432 }], {
    open: fakeOpen(servers),
    clock: manualClock,
    log: pino({ level: 'silent' }),
    intervalMs: 1000,
    onChange: (w) => changes.push(w ? `${w.host}:${w.port}` : null),
    onSuspect: (s) => suspects.push(s),
  });
  await m.checkNow();
  expect(m.currentWriter).toBeNull();
  expect(m.writerProblem).toMatch(/^NO_WRITER/);
  servers.set('10.0.0.1:5432', { inRecovery: false });
  await m.checkNow();
  expect(m.currentWriter).toBe('10.0.0.1:5432');
  expect(changes).toEqual(['10.0.0.1:5432']);
  expect(suspects).toEqual([]);
  expect(m.failoverCount).toBe(0);
});

test('readers: two servers out of recovery (split brain) are never readers; the old primary back as a standby joins the readers', async () => {
  const servers: Servers = new Map([
    ['10.0.0.1:5432', { inRecovery: false }],
    ['10.0.0.2:5432', { inRecovery: true }],
  ]);
  let readers: string[] = [];
  const m = new TargetMonitor(
    [
      { host: '10.0.0.1', port: 5432 },
      { host: '10.0.0.2', port: 5432 },
    ],
    {
      open: fakeOpen(servers),
      clock: manualClock,
      log: pino({ level: 'silent' }),
      intervalMs: 1000,
      onChange: () => undefined,
      onReaders: (rs) => (readers = rs.filter((r) => r.usable).map((r) => r.key)),
    },
  );
  await m.checkNow();
  expect([m.currentWriter, readers]).toEqual(['10.0.0.1:5432', ['10.0.0.2:5432']]);
  // The standby is promoted while the old primary still runs: two writers.
  servers.set('10.0.0.2:5432', { inRecovery: false });
  await m.checkNow();
  expect(readers).toEqual([]);
  // The old primary is gone, then comes back rebuilt as a standby of the new writer.
  servers.delete('10.0.0.1:5432');
  await m.checkNow();
  await m.checkNow();
  expect([m.currentWriter, readers]).toEqual(['10.0.0.2:5432', []]);
  servers.set('10.0.0.1:5432', { inRecovery: true });
  await m.checkNow();
  expect([m.currentWriter, readers]).toEqual(['10.0.0.2:5432', ['10.0.0.1:5432']]);
});
