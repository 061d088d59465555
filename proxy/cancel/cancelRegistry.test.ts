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
  let s = 41;
  const r = new CancelRegistry<string>(7, () => ++s);
  const k1 = r.register('a');
  const k2 = r.register('b');
  expect(k1.pid).not.toBe(k2.pid);
  expect(r.isLocal(k1.pid)).toBe(true);
  expect(r.isLocal(makeCancelPid(8, 1))).toBe(false);
  expect(r.lookup(k1.pid, k1.secret)).toBe('a');
  expect(r.lookup(k1.pid, k1.secret + 1)).toBeUndefined();
  expect(r.lookup(k2.pid, k2.secret)).toBe('b');
  r.unregister(k1.pid);
  expect(r.lookup(k1.pid, k1.secret)).toBeUndefined();
});
