// The pool on its own: a fake clock and a fake open(), so order, budget, victim choice, lifetime
// retirement and idle trimming are checked exactly, without a database or a single sleep.
import { pino } from 'pino';
import { BackendConnection, type BackendOwner } from '../backend/backendConnection.js';
import { FakeClock } from '../runtime/clock.js';
import { BackendPool, type PoolKey } from './backendPool.js';
import { computeBudget } from './budget.js';
import { fakeBackend, type FakeSocket } from './fakeBackend.js';

const APP: PoolKey = { user: 'app', database: 'db' };
const OTHER: PoolKey = { user: 'other', database: 'db' };
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function makePool(opts: { max?: number; idlePercent?: number; lifetimeMs?: number; idleTimeoutMs?: number; borrowTimeoutMs?: number } = {}) {
  const clock = new FakeClock(1_000_000);
  const opened: Array<{ key: PoolKey; b: BackendConnection; socket: FakeSocket }> = [];
  let failNext: Error | null = null;
  const pool = new BackendPool(
    { borrowTimeoutMs: opts.borrowTimeoutMs ?? 5000, maxConnectionLifetimeMs: opts.lifetimeMs ?? 0, idleConnectionTimeoutMs: opts.idleTimeoutMs ?? 60_000 },
    {
      open: async (key, endpoint) => {
        if (failNext) {
          const e = failNext;
          failNext = null;
          throw e;
        }
        const { b, socket } = fakeBackend(opened.length + 1, key, endpoint, clock.now());
        opened.push({ key, b, socket });
        return b;
      },
      clock,
      log: pino({ level: 'silent' }),
    },
  );
  // budget = floor(100 × percent / 100) less one health check connection.
  const max = opts.max ?? 3;
  pool.setLimits(computeBudget({ targetMaxConnections: 100, maxConnectionsPercent: max + 1, maxIdleConnectionsPercent: opts.idlePercent ?? max + 1, divisor: 1 }));
  pool.setEndpoint({ host: '127.0.0.1', port: 5432 });
  return { pool, clock, opened, failNextOpen: (e: Error) => (failNext = e), open: () => opened.filter((o) => !o.socket.destroyed).length };
}

const owner: BackendOwner = { onBackendData: () => undefined, onBackendClose: () => undefined };

test('an idle backend is lent at once, without a Promise; a borrower waits only when none is idle', async () => {
  const { pool } = makePool();
  expect(pool.tryBorrow(APP)).toBeNull();
  const first = await pool.borrow(APP).promise;
  pool.release(first);
  expect(pool.tryBorrow(APP)).toBe(first);
  expect(pool.stats().borrowed).toBe(1);
});

test('borrowers of one key are served first in, first out', async () => {
  const { pool } = makePool({ max: 1 });
  const b = await pool.borrow(APP).promise;
  const order: number[] = [];
  const waiters = [1, 2, 3].map((n) => pool.borrow(APP).promise.then((x) => (order.push(n), x)));
  await flush();
  expect(pool.stats().waiting).toBe(3);
  pool.release(b);
  const got1 = await waiters[0]!;
  pool.release(got1);
  const got2 = await waiters[1]!;
  pool.release(got2);
  await waiters[2];
  expect(order).toEqual([1, 2, 3]);
});

test('open + opening never exceeds the budget, whatever mix of keys asks', async () => {
  const { pool, open } = makePool({ max: 3 });
  const handles = Array.from({ length: 10 }, (_, i) => pool.borrow(i % 2 ? APP : OTHER));
  for (let i = 0; i < 20; i++) {
    const s = pool.stats();
    expect(s.databaseConnections + s.opening).toBeLessThanOrEqual(3);
    await flush();
  }
  expect(open()).toBe(3);
  for (const h of handles) h.cancel();
});

test('at the budget, an idle backend of another key is closed to make room for a waiter (the least recently used)', async () => {
  const { pool, clock, opened, open } = makePool({ max: 2 });
  const a1 = await pool.borrow(APP).promise;
  clock.advance(10);
  const a2 = await pool.borrow(APP).promise;
  clock.advance(10);
  pool.release(a2);
  clock.advance(10);
  pool.release(a1);
  // Both APP backends idle, a1 used last. OTHER needs one: the least recently used (a2) goes.
  const o = pool.borrow(OTHER).promise;
  await flush();
  const got = await o;
  expect(got.user).toBe('other');
  expect(opened.find((x) => x.b === a2)!.socket.destroyed).toBe(true);
  expect(opened.find((x) => x.b === a1)!.socket.destroyed).toBe(false);
  expect(open()).toBe(2);
});

test('a backend past its lifetime is not lent again, and is closed', async () => {
  const { pool, clock, opened } = makePool({ lifetimeMs: 1000 });
  const b = await pool.borrow(APP).promise;
  pool.release(b);
  clock.advance(1000);
  expect(pool.tryBorrow(APP)).toBeNull();
  expect(opened[0]!.socket.destroyed).toBe(true);
});

test('idle backends above the idle cap are closed after the idle timeout, the least recently used first', async () => {
  // budget 4 less the health check: 3 backends; idle cap floor(100 × 2 / 100) = 2.
  const { pool, clock, opened, open } = makePool({ max: 3, idlePercent: 2, idleTimeoutMs: 30_000 });
  const bs = await Promise.all([pool.borrow(APP).promise, pool.borrow(APP).promise, pool.borrow(APP).promise]);
  for (const b of bs) {
    clock.advance(10);
    pool.release(b);
  }
  pool.trim();
  expect(open()).toBe(3);
  clock.advance(30_000);
  pool.trim();
  expect(open()).toBe(2);
  expect(opened[0]!.socket.destroyed).toBe(true);
});

test('a borrow that waits longer than the borrow timeout fails with 53300 and says why', async () => {
  const { pool, clock } = makePool({ max: 1, borrowTimeoutMs: 2000 });
  await pool.borrow(APP).promise;
  const waiting = pool.borrow(APP).promise;
  clock.advance(2000);
  await expect(waiting).rejects.toMatchObject({ code: '53300', message: expect.stringContaining('timed out after 2.0 s') });
  expect(pool.stats().borrowTimeouts).toBe(1);
});

test('each waiter times out at its own deadline, whether the ones before it were served, cancelled or timed out', async () => {
  const { pool, clock } = makePool({ max: 1, borrowTimeoutMs: 2000 });
  const held = await pool.borrow(APP).promise;
  const outcome = new Map<string, string>();
  const watch = (name: string, h: { promise: Promise<BackendConnection> }) =>
    h.promise.then(
      () => outcome.set(name, `granted at ${clock.now() - 1_000_000}`),
      (e: Error & { code?: string }) => outcome.set(name, `${e.code} at ${clock.now() - 1_000_000}`),
    );
  const a = pool.borrow(APP);
  void watch('a', a);
  clock.advance(500);
  const b = pool.borrow(APP);
  void watch('b', b);
  clock.advance(500);
  const c = pool.borrow(APP);
  void watch('c', c);
  clock.advance(300);
  const d = pool.borrow(APP);
  void watch('d', d);
  // t = 1300: a is served, b gives up; c and d are left with their own deadlines (3000, 3300).
  pool.release(held);
  b.cancel();
  await flush();
  clock.advance(1699); // t = 2999
  await flush();
  expect(outcome.get('c')).toBeUndefined();
  clock.advance(1); // t = 3000
  await flush();
  expect(outcome.get('c')).toBe('53300 at 3000');
  expect(outcome.get('d')).toBeUndefined();
  clock.advance(300);
  await flush();
  expect(Object.fromEntries(outcome)).toEqual({ a: 'granted at 1300', c: '53300 at 3000', d: '53300 at 3300' });
  expect(pool.stats()).toMatchObject({ waiting: 0, borrowTimeouts: 2 });
});

test('an idle backend that reports a parameter change split across two reads stays in the pool', async () => {
  const { pool, opened } = makePool();
  const b = await pool.borrow(APP).promise;
  pool.release(b);
  // ParameterStatus ("S", length, name\0value\0) cut inside its body.
  const body = Buffer.from('application_name\0x\0');
  const msg = Buffer.alloc(5 + body.length);
  msg[0] = 0x53;
  msg.writeUInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  opened[0]!.socket.emit('data', msg.subarray(0, 9));
  opened[0]!.socket.emit('data', msg.subarray(9));
  expect(opened[0]!.socket.destroyed).toBe(false);
  expect(pool.tryBorrow(APP)).toBe(b);
});

test('an idle backend that says anything but a parameter change or a notice is closed', async () => {
  const { pool, opened } = makePool();
  const b = await pool.borrow(APP).promise;
  pool.release(b);
  // An ErrorResponse: the server is going away (e.g. terminated by an administrator).
  opened[0]!.socket.emit('data', Buffer.from([0x45, 0, 0, 0, 5, 0]));
  expect(opened[0]!.socket.destroyed).toBe(true);
  expect(pool.tryBorrow(APP)).toBeNull();
});

test('the pool is the one that hands a backend to its borrower and takes it back', async () => {
  const { pool } = makePool({ max: 1 });
  const first = await pool.borrow(APP, owner).promise;
  expect(first.owner).toBe(owner);
  pool.release(first);
  // Idle: the pool listens to it.
  expect(first.owner).not.toBe(owner);
  expect(first.owner).not.toBeNull();
  const other: BackendOwner = { onBackendData: () => undefined, onBackendClose: () => undefined };
  expect(pool.tryBorrow(APP, other)).toBe(first);
  expect(first.owner).toBe(other);
  // A waiter gets it from the pool already made its own.
  const waiting = pool.borrow(APP, owner).promise;
  pool.release(first);
  expect((await waiting).owner).toBe(owner);
  pool.discard(first);
  expect(first.owner).toBeNull();
});

test("a user's cap (users[].maxConnections) holds whatever its borrowers ask; other users still get connections", async () => {
  const { pool, open } = makePool({ max: 6 });
  pool.updateSettings({ borrowTimeoutMs: 5000, maxConnectionLifetimeMs: 0, idleConnectionTimeoutMs: 60_000, userLimits: new Map([['app', 2]]) });
  const appBorrows = Array.from({ length: 5 }, () => pool.borrow(APP));
  await flush();
  await flush();
  expect(open()).toBe(2);
  expect(pool.stats().waiting).toBe(3);
  const o = await pool.borrow(OTHER).promise;
  expect(o.user).toBe('other');
  expect(open()).toBe(3);
  // An app borrower waiting gets app's own connection back, not a new one.
  const first = await appBorrows[0]!.promise;
  pool.release(first);
  expect(await appBorrows[2]!.promise).toBe(first);
  expect(open()).toBe(3);
  expect(pool.keyStats().find((k) => k.user === 'app')).toMatchObject({ maxConnections: 2 });
});

test('closeIdle(database) closes its idle connections now, and for 5 s those given back, so DROP DATABASE finds none', async () => {
  const other: PoolKey = { user: 'app', database: 'elsewhere' };
  const { pool, clock, opened } = makePool({ max: 3 });
  const idle = await pool.borrow(APP).promise;
  const lent = await pool.borrow(APP).promise;
  const unrelated = await pool.borrow(other).promise;
  pool.release(idle);
  pool.release(unrelated);
  expect(pool.closeIdle('db')).toBe(1);
  const socketOf = (b: BackendConnection): FakeSocket => opened.find((o) => o.b === b)!.socket;
  expect(socketOf(idle).destroyed).toBe(true);
  expect(socketOf(unrelated).destroyed).toBe(false);
  // A connection a client gives back within the window is closed, not kept idle...
  clock.advance(4_000);
  pool.release(lent);
  expect(socketOf(lent).destroyed).toBe(true);
  // ...after it, the database's connections are pooled again.
  const next = await pool.borrow(APP).promise;
  clock.advance(1_001);
  pool.release(next);
  expect(socketOf(next).destroyed).toBe(false);
  expect(pool.stats().idle).toBe(2);
});
