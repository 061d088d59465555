import { CancelRegistry, makeCancelPid, replicaOfCancelPid } from './cancelRegistry.js';

test('cancel pids name their replica and stay positive int32', () => {
  for (const replica of [0, 1, 127, 128, 255]) {
    for (const counter of [0, 1, 0x3fffff, 0x400000 + 5]) {
      const pid = makeCancelPid(replica, counter);
      expect(replicaOfCancelPid(pid)).toBe(replica);
      expect(pid).toBeGreaterThan(0);
      expect(pid).toBeLessThan(2 ** 31);
    }
  }
});

test('lookup needs the right secret; unregister forgets', () => {
  const r = new CancelRegistry<string>(7);
  const k1 = r.register('a');
  const k2 = r.register('b');
  expect(k1.pid).not.toBe(k2.pid);
  expect(r.isLocal(k1.pid)).toBe(true);
  expect(r.isLocal(makeCancelPid(8, 1))).toBe(false);
  expect(r.lookup(k1.pid, k1.secret)).toBe('a');
  expect(r.lookup(k1.pid, (k1.secret + 1) >>> 0)).toBeUndefined();
  expect(r.lookup(k2.pid, k2.secret)).toBe('b');
  // A key read as a signed int32 (node-postgres does) is the same key.
  expect(r.lookup(k1.pid | 0, k1.secret | 0)).toBe('a');
  r.unregister(k1.pid);
  expect(r.lookup(k1.pid, k1.secret)).toBeUndefined();
});

test('pids are random within the replica, secrets random over all 32 bits', () => {
  const r = new CancelRegistry<number>(3);
  const keys = Array.from({ length: 2000 }, (_, i) => r.register(i));
  expect(new Set(keys.map((k) => k.pid)).size).toBe(keys.length);
  for (const k of keys) expect(replicaOfCancelPid(k.pid)).toBe(3);
  const sequential = keys.slice(1).filter((k, i) => Math.abs(k.pid - keys[i]!.pid) === 1).length;
  expect(sequential).toBeLessThan(5);
  const highBit = keys.filter((k) => k.secret >= 2 ** 31).length;
  expect(highBit).toBeGreaterThan(800);
  expect(highBit).toBeLessThan(1200);
});

test('a random pid already in use is drawn again', () => {
  const draws = [5, 5, 5, 9, 0xdeadbeef];
  const r = new CancelRegistry<string>(0, () => draws.shift()!);
  const a = r.register('a');
  const b = r.register('b');
  expect(a.pid).toBe(makeCancelPid(0, 5));
  expect(b.pid).toBe(makeCancelPid(0, 9));
  expect([a.secret, b.secret]).toEqual([5, 0xdeadbeef]);
});
