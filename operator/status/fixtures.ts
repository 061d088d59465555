// Example /stats answers and Deployment observations for status tests (here, so the operator's
// tests and the Argo CD health tests start from the same shapes).
import type { ProxyStats } from '../../proxy/contract/stats.js';
import type { DeploymentStatus } from '../runtime/types.js';
import type { ObservedDeployment, PodStats } from './status.js';

/** A healthy, idle pod's /stats; `over` replaces fields. */
export function exampleStats(over: Partial<ProxyStats> = {}): ProxyStats {
  return {
    version: 1,
    replicaId: 0,
    ready: true,
    paused: false,
    shuttingDown: false,
    clientConnections: 0,
    databaseConnections: 0,
    borrowed: 0,
    pinned: 0,
    idle: 0,
    waiting: 0,
    borrowTimeouts: 0,
    pinsByReason: {},
    pool: { budget: 30, maxDatabaseConnections: 29, targetMaxConnections: 100, maxConnectionsPercent: 90, maxIdleConnectionsPercent: 45, replicas: 3 },
    writer: 'db-1:5432',
    targets: [{ endpoint: 'db-1:5432', state: 'AVAILABLE', role: 'writer', maxConnections: 100 }],
    failovers: 0,
    lastFailover: null,
    ...over,
  };
}

/**
 * A pod that checked every target and found no writer: a verdict (writerProblem) and the failure
 * of each target. `reason` is the writer's (UNREACHABLE, AUTH_FAILURE, ...).
 */
export const noWriterStats = (reason = 'UNREACHABLE', endpoint = 'db-1:5432'): Partial<ProxyStats> => ({
  writer: null,
  writerProblem: 'NO_WRITER: no available target is out of recovery',
  targets: [{ endpoint, state: 'UNAVAILABLE', reason, role: 'unknown', maxConnections: null }],
});

/**
 * A pod whose first round of target checks has not finished, as a real proxy reports it then
 * (issue 19): no writer yet and no verdict either; a dead target already failed (ECONNREFUSED is
 * fast), the writer's check is still on its way (UNKNOWN).
 */
export const firstCheckPendingStats = (writer = 'db-1:5432', dead = 'db-0:5432'): Partial<ProxyStats> => ({
  ready: false,
  pool: { budget: null, maxDatabaseConnections: null, targetMaxConnections: null, maxConnectionsPercent: 90, maxIdleConnectionsPercent: 45, replicas: 3 },
  writer: null,
  targets: [
    { endpoint: dead, state: 'UNAVAILABLE', reason: 'UNREACHABLE', role: 'unknown', maxConnections: null },
    { endpoint: writer, state: 'UNKNOWN', role: 'unknown', maxConnections: null },
  ],
});

/** What the status reader hands computeStatus for one pod. */
export const examplePod = (name: string, over: Partial<ProxyStats> = {}, ready = true): PodStats => ({ pod: name, ready, stats: exampleStats(over) });

/** A Deployment as the operator observes it, at `generation`, with `status` (observedGeneration filled in). */
export function observedDeployment(status: Partial<DeploymentStatus>, specReplicas = 2, generation = 1): ObservedDeployment {
  return { generation, specReplicas, status: { observedGeneration: generation, ...status } };
}
