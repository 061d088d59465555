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

/** A standby as a pod sees it: in rotation unless `reason` (REPLICATION_LAG, UNREACHABLE, ...). */
export interface StandbyView {
  endpoint: string;
  reason?: string;
  lagMs?: number | null;
  lagBytes?: number | null;
  /** Connections its pool holds, and of those lent out. */
  connections?: number;
  borrowed?: number;
}

/**
 * A pod serving the read-only endpoint (readers in its config): the writer db-1:5432 plus
 * `standbys` among its targets, and the readers section of /stats as the proxy reports it.
 */
export function readersStats(standbys: StandbyView[], over: { fallbackToWriter?: boolean; waiting?: number } = {}): Partial<ProxyStats> {
  return {
    targets: [
      { endpoint: 'db-1:5432', state: 'AVAILABLE', role: 'writer', maxConnections: 100 },
      ...standbys.map((s) => ({
        endpoint: s.endpoint,
        // As a writer target a standby is UNAVAILABLE, READ_ONLY; as a reader it has its own state.
        state: 'UNAVAILABLE' as const,
        reason: 'READ_ONLY',
        role: 'reader' as const,
        maxConnections: 100,
        reader: {
          state: s.reason ? ('UNAVAILABLE' as const) : ('AVAILABLE' as const),
          ...(s.reason ? { reason: s.reason } : {}),
          lagMs: s.lagMs === undefined ? 0 : s.lagMs,
          lagBytes: s.lagBytes === undefined ? 0 : s.lagBytes,
          replayPaused: false,
        },
      })),
    ],
    readers: {
      maxReplicationLagMs: 30_000,
      fallbackToWriter: over.fallbackToWriter ?? false,
      databaseConnections: standbys.reduce((a, s) => a + (s.connections ?? 0), 0),
      borrowed: standbys.reduce((a, s) => a + (s.borrowed ?? 0), 0),
      pinned: 0,
      idle: standbys.reduce((a, s) => a + (s.connections ?? 0) - (s.borrowed ?? 0), 0),
      waiting: over.waiting ?? 0,
      pools: standbys.map((s) => ({
        endpoint: s.endpoint,
        usable: !s.reason,
        ...(s.reason ? { reason: s.reason } : {}),
        maxDatabaseConnections: 29,
        databaseConnections: s.connections ?? 0,
        borrowed: s.borrowed ?? 0,
        pinned: 0,
        idle: (s.connections ?? 0) - (s.borrowed ?? 0),
        waiting: 0,
      })),
    },
  };
}
