import { SourceRateLimiter, sourceKey } from './rateLimiter.js';

test('a burst, then the steady rate; each source has its own bucket', () => {
  let now = 0;
  const limiter = new SourceRateLimiter(() => now);
  const limit = { burst: 3, perSecond: 2 };
  expect([1, 2, 3, 4].map(() => limiter.take('a', limit))).toEqual([true, true, true, false]);
  expect(limiter.take('b', limit)).toBe(true);
  now += 499;
  expect(limiter.take('a', limit)).toBe(false);
  now += 2; // 501 ms after the empty bucket: one token back
  expect(limiter.take('a', limit)).toBe(true);
  expect(limiter.take('a', limit)).toBe(false);
  now += 60_000; // refilled, but never beyond the burst
  expect([1, 2, 3, 4].map(() => limiter.take('a', limit))).toEqual([true, true, true, false]);
});

test('refused attempts do not earn tokens, and do not push the refill back', () => {
  let now = 0;
  const limiter = new SourceRateLimiter(() => now);
  const limit = { burst: 1, perSecond: 1 };
  expect(limiter.take('a', limit)).toBe(true);
  for (let i = 0; i < 10; i++) {
    now += 90;
    expect(limiter.take('a', limit)).toBe(false);
  }
  now += 100; // 1000 ms since the last token was taken
  expect(limiter.take('a', limit)).toBe(true);
});

test('memory is bounded: full buckets are forgotten first, then the least recently seen', () => {
  let now = 0;
  const limiter = new SourceRateLimiter(() => now, 100);
  const limit = { burst: 2, perSecond: 1 };
  // A busy source keeps its empty bucket while a crowd of one-off sources comes and goes.
  limiter.take('busy', limit);
  limiter.take('busy', limit);
  for (let i = 0; i < 1000; i++) {
    limiter.take(`one-off-${i}`, limit);
    expect(limiter.size).toBeLessThanOrEqual(100);
    if (i % 20 === 0) expect(limiter.take('busy', limit)).toBe(false);
  }
  now += 10_000;
  expect(limiter.take('busy', limit)).toBe(true);
});

test('sources: IPv4 as is, IPv4-mapped as IPv4, IPv6 by /64', () => {
  expect(sourceKey('10.1.2.3')).toBe('10.1.2.3');
  expect(sourceKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
  expect(sourceKey('2001:db8:0:1::5')).toBe('2001:db8:0:1::/64');
  expect(sourceKey('2001:0db8:0000:0001:ffff:0:0:9')).toBe('2001:db8:0:1::/64');
  expect(sourceKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
  expect(sourceKey('::1')).toBe('0:0:0:0::/64');
  expect(sourceKey(undefined)).toBe('');
});
