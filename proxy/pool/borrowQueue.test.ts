import { BorrowQueue, type Waiter } from './borrowQueue.js';

const waiter = (seq: number, log: string[]): Waiter<string> => ({
  seq,
  enqueuedAt: seq,
  resolve: (v) => log.push(`${seq}:${v}`),
  reject: (e) => log.push(`${seq}!${e.message}`),
});

test('serves waiters first in, first out, and removes a waiter that gave up', () => {
  const q = new BorrowQueue<string>();
  const log: string[] = [];
  [1, 2, 3, 4].forEach((s) => q.push(waiter(s, log)));
  expect(q.remove(2)).toBe(true);
  expect(q.remove(2)).toBe(false);
  q.shift()!.resolve('a');
  q.shift()!.resolve('b');
  expect(q.peek()!.seq).toBe(4);
  expect(q.size).toBe(1);
  q.drain().forEach((w) => w.reject(new Error('closed')));
  expect(log).toEqual(['1:a', '3:b', '4!closed']);
  expect(q.size).toBe(0);
  expect(q.shift()).toBeUndefined();
});
