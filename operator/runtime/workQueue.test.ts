import { FakeClock } from '../../proxy/runtime/clock.js';
import { WorkQueue } from './workQueue.js';

describe('WorkQueue', () => {
  test('a key is queued once however often it is added', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.len()).toBe(0);
  });

  test('a key added while it is processed is processed again afterwards, never twice at once', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    expect(await q.get()).toBe('a');
    q.add('a');
    const second = q.get(); // another worker
    let handed = false;
    void second.then(() => (handed = true));
    await Promise.resolve();
    expect(handed).toBe(false); // not while the first worker holds it
    q.done('a');
    expect(await second).toBe('a');
  });

  test('a waiting worker gets a key added later', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    const p = q.get();
    q.add('x');
    expect(await p).toBe('x');
  });

  test('addAfter fires on the clock; the earliest pending delay wins', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    q.addAfter('a', 1000);
    q.addAfter('a', 5000);
    q.addAfter('a', 500);
    clock.advance(499);
    expect(q.len()).toBe(0);
    clock.advance(1);
    expect(q.len()).toBe(1);
    expect(clock.pendingTimers()).toBe(0);
  });

  test('failures back off exponentially per key, capped, until forget', () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock, baseDelayMs: 100, maxDelayMs: 1000 });
    expect([1, 2, 3, 4, 5, 6].map(() => q.addRateLimited('a'))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(q.addRateLimited('b')).toBe(100); // per key
    expect(q.numFailures('a')).toBe(6);
    q.forget('a');
    expect(q.nextBackoffMs('a')).toBe(100);
  });

  test('shutdown releases waiting workers and drops delayed keys', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    const p = q.get();
    q.addAfter('a', 100);
    q.shutdown();
    expect(await p).toBeUndefined();
    expect(clock.pendingTimers()).toBe(0);
    q.add('b');
    expect(await q.get()).toBeUndefined();
  });
});
