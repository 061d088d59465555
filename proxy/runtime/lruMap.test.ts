import fc from 'fast-check';
import { LruMap } from './lruMap.js';

test('evicts the least recently used entry; get marks use, peek does not', () => {
  const m = new LruMap<string, number>(2);
  expect(m.set('a', 1)).toEqual([]);
  expect(m.set('b', 2)).toEqual([]);
  expect(m.get('a')).toBe(1);
  expect(m.set('c', 3)).toEqual([['b', 2]]);
  expect(m.peek('a')).toBe(1);
  expect(m.set('d', 4)).toEqual([['a', 1]]);
  expect([...m.keys()]).toEqual(['c', 'd']);
  expect(m.delete('c')).toBe(true);
  expect([...m.keys()]).toEqual(['d']);
  m.clear();
  expect(m.size).toBe(0);
});

test('behaves as a Map re-inserted on every use would (the reference LRU)', () => {
  const op = fc.oneof(
    fc.record({ op: fc.constant('get' as const), k: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ op: fc.constant('set' as const), k: fc.integer({ min: 0, max: 9 }) }),
    fc.record({ op: fc.constant('delete' as const), k: fc.integer({ min: 0, max: 9 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 60 }), (cap, ops) => {
      const lru = new LruMap<number, number>(cap);
      const ref = new Map<number, number>();
      ops.forEach(({ op, k }, i) => {
        if (op === 'get') {
          const v = ref.get(k);
          if (v !== undefined) {
            ref.delete(k);
            ref.set(k, v);
          }
          expect(lru.get(k)).toBe(v);
        } else if (op === 'set') {
          ref.delete(k);
          ref.set(k, i);
          const evicted: Array<[number, number]> = [];
          while (ref.size > cap) {
            const [ok, ov] = ref.entries().next().value as [number, number];
            ref.delete(ok);
            evicted.push([ok, ov]);
          }
          expect(lru.set(k, i)).toEqual(evicted);
        } else {
          expect(lru.delete(k)).toBe(ref.delete(k));
        }
        expect([...lru.keys()]).toEqual([...ref.keys()]);
      });
    }),
    { seed: 18, numRuns: 300 },
  );
});
