// Pool sizing from the target's max_connections: pure, so every rounding rule has a test.

export interface BudgetInput {
  targetMaxConnections: number;
  maxConnectionsPercent: number;
  maxIdleConnectionsPercent: number;
  replicas: number;
}

export interface PoolBudget {
  /** floor(max_connections * maxConnectionsPercent / 100 / replicas), at least 1. */
  budget: number;
  /** Backends this process may open: the budget less its one health-check connection, at least 1. */
  maxDatabaseConnections: number;
  /** Idle backends kept open; more are closed after idleConnectionTimeout. */
  maxIdleConnections: number;
}

export function computeBudget(b: BudgetInput): PoolBudget {
  const replicas = Math.max(1, Math.floor(b.replicas));
  // Integer arithmetic first so 100 * 90 / 100 is exact, not 89.99999.
  const budget = Math.max(1, Math.floor((b.targetMaxConnections * b.maxConnectionsPercent) / 100 / replicas));
  const maxDatabaseConnections = Math.max(1, budget - 1);
  const idle = Math.floor((b.targetMaxConnections * b.maxIdleConnectionsPercent) / 100 / replicas);
  return { budget, maxDatabaseConnections, maxIdleConnections: Math.min(maxDatabaseConnections, Math.max(0, idle)) };
}
