// The read-only endpoint's router on its own: fake backends and a fake clock, so which standby
// lends each transaction is checked exactly.
import { pino } from 'pino';
import type { BackendConnection } from '../backend/backendConnection.js';
import type { ReaderTarget } from '../target/targetMonitor.js';
import { FakeClock } from '../runtime/clock.js';
import type { PoolKey } from './backendPool.js';
import { fakeBackend } from './fakeBackend.js';
import { ReaderPools } from './readerPools.js';

const APP: PoolKey = { user: 'app', database: 'db' };
const standby = (host: string): ReaderTarget => ({ endpoint: { host, port: 5432 }, key: `${host}:5432`, maxConnections: 100, usable: true });
const where = (b: BackendConnection): string => b.endpoint.host;

function makeReaders() {
  const clock = new FakeClock(1_000_000);
  let opened = 0;
  const readers = new ReaderPools({
    open: async (key, endpoint) => fakeBackend(++opened, key, endpoint, clock.now()).b,
    clock,
    log: pino({ level: 'silent' }),
    settings: () => ({ borrowTimeoutMs: 5000, maxConnectionLifetimeMs: 0, idleConnectionTimeoutMs: 60_000 }),
    // 100 × 6 % = 6 per standby, less one health-check connection: 5.
    budget: () => ({ maxConnectionsPercent: 6, maxIdleConnectionsPercent: 6, divisor: 1 }),
    fallback: () => null,
  });
  return { readers, opened: () => opened };
}

test('a transaction goes to the standby with the most room, even when another standby has an idle connection', async () => {
  const { readers, opened } = makeReaders();
  readers.update([standby('10.0.0.1')]);
  const a1 = await readers.borrow(APP).promise;
  const a2 = await readers.borrow(APP).promise;
  readers.release(a2);
  // Standby A: one lent, one idle. Standby B joins with nothing open: it has more room.
  readers.update([standby('10.0.0.1'), standby('10.0.0.2')]);
  expect(readers.tryBorrow(APP)).toBeNull();
  const next = await readers.borrow(APP).promise;
  expect([where(a1), where(next), opened()]).toEqual(['10.0.0.1', '10.0.0.2', 3]);
  // Now one lent on each: equal room, and A's idle connection is lent without opening another.
  const again = readers.tryBorrow(APP);
  expect([again && where(again), opened()]).toEqual(['10.0.0.1', 3]);
});
