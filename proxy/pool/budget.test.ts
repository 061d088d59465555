import { computeBudget } from './budget.js';

describe('computeBudget', () => {
  test.each([
    // max, pct, idlePct, replicas -> budget, maxDb, maxIdle
    [100, 90, 45, 1, 90, 89, 45],
    [100, 100, 50, 1, 100, 99, 50],
    [100, 90, 45, 4, 22, 21, 11],
    [11, 100, 50, 1, 11, 10, 5],
    [20, 10, 5, 1, 2, 1, 1],
    [5, 1, 0, 1, 1, 1, 0],
    [5000, 33, 10, 3, 550, 549, 166],
  ])('max_connections=%i pct=%i idle=%i replicas=%i', (max, pct, idle, replicas, budget, maxDb, maxIdle) => {
    expect(computeBudget({ targetMaxConnections: max, maxConnectionsPercent: pct, maxIdleConnectionsPercent: idle, divisor: replicas })).toEqual({
      budget,
      maxDatabaseConnections: maxDb,
      maxIdleConnections: maxIdle,
    });
  });

  test('the sum over replicas never exceeds the whole budget', () => {
    for (const max of [10, 97, 100, 333, 5000]) {
      for (const replicas of [1, 2, 3, 7]) {
        const b = computeBudget({ targetMaxConnections: max, maxConnectionsPercent: 90, maxIdleConnectionsPercent: 45, divisor: replicas });
        if (b.budget > 1) expect(b.budget * replicas).toBeLessThanOrEqual(Math.floor((max * 90) / 100));
      }
    }
  });
});
