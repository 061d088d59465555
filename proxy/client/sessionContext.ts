// What a pooled client session may use of the proxy: the endpoint's pool and the process-wide
// helpers its data path consults. Narrow on purpose, so a session can be read (and driven in a
// test) without the process around it; login has its own seam (LoginContext, clientConnection.ts).
import type { Logger } from 'pino';
import type { ProxyMetrics } from '../admin/metrics.js';
import type { PoolCounterRegistry } from '../admin/poolCounters.js';
import type { BackendConnection, BackendEndpoint } from '../backend/backendConnection.js';
import type { StatementClassifier } from '../classify/classifier.js';
import type { ProxyConfig } from '../contract/config.js';
import type { Lender } from '../pool/backendPool.js';
import type { Clock } from '../runtime/clock.js';
import type { KnownStatements } from '../session/preparedStatements.js';

export interface SessionContext {
  /** The config in force: a reload replaces it, so read it when needed rather than keeping a copy. */
  readonly config: ProxyConfig;
  /** Where this endpoint's sessions borrow: the writer's pool, or the standbys' for the read-only endpoint. */
  readonly pool: Lender;
  /**
   * The read-only endpoint: its transactions must not write, also when served by the writer
   * (readers.fallbackToWriter). Absent: the writer endpoint.
   */
  readonly readOnly?: { onWriter(b: BackendConnection): boolean };
  readonly classifier: StatementClassifier;
  readonly metrics: ProxyMetrics;
  /** Per-(user, database) traffic counters; a session takes its object once, at start. */
  readonly counters: PoolCounterRegistry;
  readonly log: Logger;
  readonly clock: Clock;
  /** Statements some backend has prepared successfully, shared by all sessions. */
  readonly knownStatements: KnownStatements;
  /**
   * Closes this proxy's idle server connections to a database, before a statement PostgreSQL
   * refuses while other sessions are connected to it (DROP DATABASE, ...). Absent on the
   * read-only endpoint, where such statements are refused anyway.
   */
  closeIdleConnections?(database: string): number;
  /**
   * The pid (BackendKeyData) of the client whose transaction last ran on the server process
   * `serverPid` of `endpoint`, when that process is one of this proxy's connections.
   */
  clientPidOf?(endpoint: BackendEndpoint, serverPid: number): number | undefined;
}
