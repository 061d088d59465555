// Pool sizing from the target's max_connections: pure, so every rounding rule has a test.

export interface BudgetInput {
  targetMaxConnections: number;
  maxConnectionsPercent: number;
  maxIdleConnectionsPercent: number;
  /** Pods the budget is shared by, allowing for a rolling update's overlap (config pool.divisor). */
  divisor: number;
}

export interface PoolBudget {
  /** floor(max_connections * maxConnectionsPercent / 100 / divisor), at least 1. */
  budget: number;
  /** Backends this process may open: the budget less its one health-check connection, at least 1. */
  maxDatabaseConnections: number;
  /** Idle backends kept open; more are closed after idleConnectionTimeout. */
  maxIdleConnections: number;
}

export function computeBudget(b: BudgetInput): PoolBudget {
  const divisor = Math.max(1, Math.floor(b.divisor));
  // Integer arithmetic first so 100 * 90 / 100 is exact, not 89.99999.
  const budget = Math.max(1, Math.floor((b.targetMaxConnections * b.maxConnectionsPercent) / 100 / divisor));
  const maxDatabaseConnections = Math.max(1, budget - 1);
  const idle = Math.floor((b.targetMaxConnections * b.maxIdleConnectionsPercent) / 100 / divisor);
  return { budget, maxDatabaseConnections, maxIdleConnections: Math.min(maxDatabaseConnections, Math.max(0, idle)) };
}
