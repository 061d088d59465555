// Which endpoint is the writer, decided from the latest health of every endpoint. Pure, so the
// rules (one writer or none; two claiming it means neither; one failed check is a suspicion,
// two are a failure) are table-tested without servers.
import type { TargetStats } from '../contract/stats.js';

/** Consecutive failed checks of the current writer before it is declared lost. */
export const FAILURES_TO_LOSE_WRITER = 2;

export interface ElectionInput {
  targets: readonly TargetStats[];
  /** The writer in use, if any. */
  current: string | null;
  /** Consecutive failed checks of `current`. */
  currentFailures: number;
  /** The writer by Aurora's topology (aurora_replica_status()), where the targets report one. */
  topologyWriter?: string | null;
}

export interface ElectionResult {
  writer: string | null;
  /** The current writer failed a check but is not yet given up: check fast, lend nothing new. */
  suspect: boolean;
  /** Why there is no writer (NO_WRITER, MULTIPLE_WRITERS), for logs and status. */
  problem?: string;
}

export function electWriter(input: ElectionInput): ElectionResult {
  const writers = input.targets.filter((t) => t.state === 'AVAILABLE' && t.role === 'writer');
  // Aurora's own topology is authoritative there: it settles a moment when two instances answer as writers.
  const byTopology = writers.find((w) => w.endpoint === input.topologyWriter);
  if (writers.length > 1 && byTopology) return { writer: byTopology.endpoint, suspect: false };
  if (writers.length > 1) {
    // Split brain (an old primary back up still believing it is the writer): sending writes to
    // either could lose them, so use neither until exactly one remains.
    return { writer: null, suspect: false, problem: `MULTIPLE_WRITERS: ${writers.map((w) => w.endpoint).join(', ')} all claim to be the writer` };
  }
  const only = writers[0];
  if (input.current !== null) {
    if (only && only.endpoint === input.current) return { writer: input.current, suspect: false };
    const cur = input.targets.find((t) => t.endpoint === input.current);
    const transient = cur !== undefined && cur.state === 'UNAVAILABLE' && cur.reason !== 'READ_ONLY' && input.currentFailures < FAILURES_TO_LOSE_WRITER;
    if (transient && !only) return { writer: input.current, suspect: true };
  }
  if (only) return { writer: only.endpoint, suspect: false };
  return { writer: null, suspect: false, problem: 'NO_WRITER: no available target is out of recovery' };
}

/**
 * The endpoint of an Aurora instance by its server_id: instance endpoints are named
 * `<instance-id>.<cluster-hash>.<region>.rds.amazonaws.com`.
 */
export function endpointOfAuroraInstance(serverId: string, endpoints: ReadonlyArray<{ key: string; name: string }>): string | null {
  const prefix = `${serverId.toLowerCase()}.`;
  const matches = endpoints.filter((e) => e.name.toLowerCase().startsWith(prefix));
  return matches.length === 1 ? matches[0]!.key : null;
}
