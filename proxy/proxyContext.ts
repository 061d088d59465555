// What a client connection may use of the proxy: the seam between the per-connection actors
// (client/) and the process-wide ones (pool, monitor, registries), so each side can be read alone.
import type net from 'node:net';
import type { Logger } from 'pino';
import type { CredentialStore } from './auth/credentialStore.js';
import type { StatementClassifier } from './classify/classifier.js';
import type { ProxyConfig } from './contract/config.js';
import type { ProxyMetrics } from './admin/metrics.js';
import type { PoolCounterRegistry } from './admin/poolCounters.js';
import type { Lender, PoolKey } from './pool/backendPool.js';
import type { BackendConnection } from './backend/backendConnection.js';
import type { Clock } from './runtime/clock.js';
import type { KnownStatements } from './session/preparedStatements.js';
import type { ClientSession } from './client/clientSession.js';

export interface ProxyContext {
  readonly config: ProxyConfig;
  readonly credentials: CredentialStore;
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
  /** Keys the fake SCRAM verifiers of unknown users, so they look like real ones. */
  readonly authSecret: Buffer;
  /** Statements some backend has prepared successfully, shared by all sessions. */
  readonly knownStatements: KnownStatements;
  readonly shuttingDown: boolean;
  clientCount(): number;
  /** Routes a CancelRequest to the session it names; `source` is the sender's address, for the rate limit. */
  cancel(pid: number, secret: number, source: string | undefined): Promise<void>;
  /** After authentication: sends the session's ParameterStatus, BackendKeyData and ReadyForQuery. */
  startSession(socket: net.Socket, key: PoolKey, startupParams: Map<string, string>, leftover: Buffer): Promise<void>;
  startAdminSession(socket: net.Socket, user: string, leftover: Buffer): void;
  sessionClosed(session: ClientSession): void;
}
