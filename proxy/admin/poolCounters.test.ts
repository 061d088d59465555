import { readFileSync } from 'node:fs';
import { PoolCounterRegistry } from './poolCounters.js';
import { DBPROXY_VERSION } from './version.js';

describe('PoolCounterRegistry', () => {
  test('one counters object per (user, database), summed per database for SHOW STATS', () => {
    const r = new PoolCounterRegistry(() => 0);
    const a = r.forKey({ user: 'app', database: 'orders' });
    expect(r.forKey({ user: 'app', database: 'orders' })).toBe(a);
    const b = r.forKey({ user: 'report', database: 'orders' });
    const c = r.forKey({ user: 'app', database: 'billing' });
    a.xactCount += 3;
    b.xactCount += 4;
    c.queryCount += 7;
    a.bytesIn += 100;
    b.bytesIn += 11;
    expect(r.totalsByDatabase().map((t) => [t.database, t.xactCount, t.queryCount, t.bytesIn])).toEqual([
      ['billing', 0, 7, 0],
      ['orders', 7, 0, 111],
    ]);
  });

  test('averages are rates per second and mean durations over the last complete period, like PgBouncer stats_period', () => {
    let now = 1_000_000;
    const r = new PoolCounterRegistry(() => now, 60_000);
    const c = r.forKey({ user: 'app', database: 'orders' });
    expect(r.averagesByDatabase()[0]).toMatchObject({ database: 'orders', xactCount: 0, xactTimeUs: 0 });
    c.xactCount = 600;
    c.xactTimeUs = 600 * 2500;
    c.queryCount = 1200;
    c.queryTimeUs = 1200 * 1000;
    c.serverAssignments = 600;
    c.waitTimeUs = 600 * 40;
    c.bytesIn = 60_000;
    now += 59_000;
    r.tick(); // the period is not over: nothing changes
    expect(r.averagesByDatabase()[0]!.xactCount).toBe(0);
    now += 1_000;
    r.tick();
    expect(r.averagesByDatabase()[0]).toMatchObject({ xactCount: 10, queryCount: 20, bytesIn: 1000, xactTimeUs: 2500, queryTimeUs: 1000, waitTimeUs: 40 });
    // The next period sees only what happened in it.
    c.xactCount += 60;
    c.xactTimeUs += 60 * 100;
    now += 60_000;
    r.tick();
    expect(r.averagesByDatabase()[0]).toMatchObject({ xactCount: 1, xactTimeUs: 100, queryCount: 0, queryTimeUs: 0 });
  });
});

test('SHOW VERSION reports the version in package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  expect(DBPROXY_VERSION).toBe(pkg.version);
});
