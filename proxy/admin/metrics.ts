// Prometheus metrics, named after RDS Proxy's CloudWatch metrics. A Registry per proxy instance
// (no global default registry), and gauges read at scrape time so the data path only bumps counters.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastHistogram } from './fastHistogram.js';
import type { PinReason } from '../classify/pinReasons.js';
import type { PoolCounters } from './poolCounters.js';

export interface GaugeSource {
  writer(): string | null;
  targets(): Array<{ endpoint: string; state: string; reason?: string; role: string }>;
  lastFailoverSeconds(): number | null;
  clientConnections(): number;
  pool(): { databaseConnections: number; borrowed: number; pinned: number; idle: number; waiting: number };
  /** The read-only endpoint's standbys: health, lag and pool, by endpoint. */
  readers?(): Array<{ endpoint: string; usable: boolean; lagMs: number | null; lagBytes: number | null; databaseConnections: number; borrowed: number; pinned: number }>;
  /** Per user: connections held, and the cap (users[].maxConnections). */
  users?(): Array<{ user: string; connections: number; maxConnections: number | null }>;
  budget(): number | null;
  targetMaxConnections(): number | null;
  /** Per-(user, database) counters, read at scrape time. */
  counters(): readonly PoolCounters[];
  /** Client sessions now: holding a backend inside a transaction, over TLS, in plaintext. */
  sessions(): { inTransaction: number; tls: number; noTls: number };
  /** Backend connections now open over TLS. */
  databaseConnectionsTls(): number;
}

/** Counters of PoolCounters fields, one series per (user, database), read at scrape time. */
const POOL_COUNTERS: ReadonlyArray<[name: string, help: string, read: (c: PoolCounters) => number]> = [
  ['dbproxy_query_requests_total', 'Queries received from clients (Query and Execute messages), per user and database (RDS Proxy QueryRequests).', (c) => c.queryCount],
  ['dbproxy_transactions_total', 'Transactions completed (ReadyForQuery idle after a client request), per user and database.', (c) => c.xactCount],
  ['dbproxy_client_received_bytes_total', 'Bytes received from clients, per user and database.', (c) => c.bytesIn],
  ['dbproxy_client_sent_bytes_total', 'Bytes of server answers passed on to clients, per user and database.', (c) => c.bytesOut],
  ['dbproxy_transaction_seconds_total', 'Time spent inside transactions (idle in transaction included), per user and database.', (c) => c.xactTimeUs / 1e6],
  ['dbproxy_query_seconds_total', 'Time from client requests to the server being ready again, per user and database.', (c) => c.queryTimeUs / 1e6],
  ['dbproxy_client_wait_seconds_total', 'Time clients waited for a backend connection, per user and database.', (c) => c.waitTimeUs / 1e6],
  ['dbproxy_database_connections_borrows_total', 'Backend connections lent to clients, per user and database.', (c) => c.serverAssignments],
];

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly borrowLatency: FastHistogram;
  readonly borrowTimeouts: Counter;
  readonly pins: Counter<'reason'>;
  readonly clientRejections: Counter<'reason'>;
  readonly clientConnectionsTotal: Counter;
  readonly queryLatency: FastHistogram;
  readonly databaseResponseLatency: FastHistogram;
  readonly clientConnectionsClosed: Counter;
  readonly clientSetupSucceeded: Counter;
  readonly clientSetupFailed: Counter;
  readonly databaseConnectionRequests: Counter<'endpoint'>;
  readonly databaseSetupSucceeded: Counter<'endpoint'>;
  readonly databaseSetupFailed: Counter<'endpoint'>;
  readonly protocolErrors: Counter;
  readonly failovers: Counter;
  readonly cancelRequests: Counter<'via' | 'result'>;

  constructor(source: GaugeSource) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'dbproxy_process_' });
    const gauge = (name: string, help: string, read: () => number | null): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          const v = read();
          if (v !== null) this.set(v);
        },
      });
    };
    gauge('dbproxy_client_connections', 'Client connections currently open.', () => source.clientConnections());
    gauge('dbproxy_database_connections', 'Backend connections to the database currently open.', () => source.pool().databaseConnections);
    gauge('dbproxy_database_connections_currently_borrowed', 'Backend connections currently lent to a client.', () => source.pool().borrowed);
    gauge('dbproxy_database_connections_currently_session_pinned', 'Backend connections pinned to one client session.', () => source.pool().pinned);
    gauge('dbproxy_database_connections_currently_idle', 'Backend connections open and idle in the pool.', () => source.pool().idle);
    gauge('dbproxy_client_connections_waiting', 'Clients waiting to borrow a backend connection.', () => source.pool().waiting);
    gauge('dbproxy_database_connections_budget', 'Backend connections this replica may use (pool budget).', () => source.budget());
    gauge('dbproxy_target_max_connections', "The target's max_connections.", () => source.targetMaxConnections());
    // Observed once per transaction: histograms whose observe() costs nanoseconds.
    this.borrowLatency = new FastHistogram(
      'dbproxy_database_connections_borrow_latency_seconds',
      'Time from a client needing a backend connection to getting one.',
      [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      r,
    );
    this.borrowTimeouts = new Counter({ name: 'dbproxy_database_connections_borrow_timeouts_total', help: 'Borrows that timed out (SQLSTATE 53300).', registers: [r] });
    this.pins = new Counter({ name: 'dbproxy_session_pins_total', help: 'Client sessions pinned to a backend connection, by reason.', labelNames: ['reason'], registers: [r] });
    this.clientRejections = new Counter({
      name: 'dbproxy_client_connections_rejected_total',
      help: 'Client connections refused or closed by the proxy, by reason.',
      labelNames: ['reason'],
      registers: [r],
    });
    this.clientConnectionsTotal = new Counter({ name: 'dbproxy_client_connections_received_total', help: 'Client connections accepted.', registers: [r] });
    this.queryLatency = new FastHistogram(
      'dbproxy_query_response_latency_seconds',
      'Time from a client request arriving to the server being ready for the next one (per ReadyForQuery); a wait for a backend is included.',
      [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      r,
    );
    new Gauge({
      name: 'dbproxy_user_database_connections',
      help: "Backend connections one user's pools hold on this proxy (lent, idle and opening).",
      labelNames: ['user'],
      registers: [r],
      collect() {
        this.reset();
        for (const u of source.users?.() ?? []) this.set({ user: u.user }, u.connections);
      },
    });
    new Gauge({
      name: 'dbproxy_user_database_connections_limit',
      help: "A user's cap on backend connections (users[].maxConnections); absent for users without one.",
      labelNames: ['user'],
      registers: [r],
      collect() {
        this.reset();
        for (const u of source.users?.() ?? []) if (u.maxConnections !== null) this.set({ user: u.user }, u.maxConnections);
      },
    });
    const readerGauge = (name: string, help: string, read: (r: ReturnType<NonNullable<GaugeSource['readers']>>[number]) => number | null): void => {
      new Gauge({
        name,
        help,
        labelNames: ['endpoint', 'role'],
        registers: [r],
        collect() {
          this.reset();
          for (const x of source.readers?.() ?? []) {
            const v = read(x);
            if (v !== null) this.set({ endpoint: x.endpoint, role: 'reader' }, v);
          }
        },
      });
    };
    readerGauge('dbproxy_reader_available', 'Per standby of the read-only endpoint: 1 while in rotation (healthy, within readers.maxReplicationLag), else 0.', (x) => (x.usable ? 1 : 0));
    readerGauge('dbproxy_reader_replication_lag_seconds', 'Per standby: how long ago the writer was where the standby has replayed to.', (x) => (x.lagMs === null ? null : x.lagMs / 1000));
    readerGauge('dbproxy_reader_replication_lag_bytes', 'Per standby: WAL bytes the writer has that the standby has not replayed.', (x) => x.lagBytes);
    readerGauge('dbproxy_reader_database_connections', "Per standby: connections the read-only endpoint's pool holds to it.", (x) => x.databaseConnections);
    readerGauge('dbproxy_reader_database_connections_currently_borrowed', 'Per standby: connections lent to read-only clients.', (x) => x.borrowed);
    readerGauge('dbproxy_reader_database_connections_currently_session_pinned', 'Per standby: connections pinned to one read-only client.', (x) => x.pinned);
    this.databaseResponseLatency = new FastHistogram(
      'dbproxy_query_database_response_latency_seconds',
      'Time from a client request being sent to the database to its first answer bytes (RDS Proxy QueryDatabaseResponseLatency).',
      [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      r,
    );
    for (const [name, help, read] of POOL_COUNTERS) {
      new Counter({
        name,
        help,
        labelNames: ['user', 'database'],
        registers: [r],
        collect() {
          this.reset();
          for (const c of source.counters()) this.inc({ user: c.user, database: c.database }, read(c));
        },
      });
    }
    gauge('dbproxy_database_connections_currently_in_transaction', 'Backend connections lent to a client that is inside a transaction or waiting for an answer.', () => source.sessions().inTransaction);
    gauge('dbproxy_client_connections_tls', 'Client connections now open over TLS (RDS Proxy ClientConnectionsTLS).', () => source.sessions().tls);
    gauge('dbproxy_client_connections_no_tls', 'Client connections now open without TLS (RDS Proxy ClientConnectionsNoTLS).', () => source.sessions().noTls);
    gauge('dbproxy_database_connections_tls', 'Backend connections now open over TLS (RDS Proxy DatabaseConnectionsWithTLS).', () => source.databaseConnectionsTls());
    this.clientConnectionsClosed = new Counter({ name: 'dbproxy_client_connections_closed_total', help: 'Client connections closed, for any reason.', registers: [r] });
    this.clientSetupSucceeded = new Counter({
      name: 'dbproxy_client_connections_setup_succeeded_total',
      help: 'Client connections that logged in (to a database or to the admin console).',
      registers: [r],
    });
    this.clientSetupFailed = new Counter({
      name: 'dbproxy_client_connections_setup_failed_total',
      help: 'Client connections closed before they logged in (bad password, TLS or protocol errors, no backend, client gone); cancel requests excluded.',
      registers: [r],
    });
    this.databaseConnectionRequests = new Counter({
      name: 'dbproxy_database_connection_requests_total',
      help: 'Backend connections the pool tried to open, by target endpoint.',
      labelNames: ['endpoint'],
      registers: [r],
    });
    this.databaseSetupSucceeded = new Counter({
      name: 'dbproxy_database_connections_setup_succeeded_total',
      help: 'Backend connections opened and logged in, by target endpoint.',
      labelNames: ['endpoint'],
      registers: [r],
    });
    this.databaseSetupFailed = new Counter({
      name: 'dbproxy_database_connections_setup_failed_total',
      help: 'Backend connections that could not be opened (connect, TLS, login or init query failed), by target endpoint.',
      labelNames: ['endpoint'],
      registers: [r],
    });
    this.failovers = new Counter({ name: 'dbproxy_failovers_total', help: 'Changes to a new writer after the previous one failed.', registers: [r] });
    gauge('dbproxy_last_failover_duration_seconds', 'From the old writer first failing a check to the new writer taking over.', () => source.lastFailoverSeconds());
    new Gauge({
      name: 'dbproxy_current_writer',
      help: 'The endpoint used as the writer (value 1); absent when there is none.',
      labelNames: ['endpoint'],
      registers: [r],
      collect() {
        this.reset();
        const w = source.writer();
        if (w) this.set({ endpoint: w }, 1);
      },
    });
    new Gauge({
      name: 'dbproxy_target_available',
      help: 'Per target endpoint: 1 when AVAILABLE, 0 otherwise, with the reason (RDS Proxy TargetHealth) and its role (writer, reader, unknown).',
      labelNames: ['endpoint', 'state', 'reason', 'role'],
      registers: [r],
      collect() {
        this.reset();
        for (const t of source.targets()) this.set({ endpoint: t.endpoint, state: t.state, reason: t.reason ?? '', role: t.role }, t.state === 'AVAILABLE' ? 1 : 0);
      },
    });
    this.protocolErrors = new Counter({ name: 'dbproxy_client_protocol_errors_total', help: 'Malformed or unexpected client messages.', registers: [r] });
    // Never by whether a key matched: /metrics is as open as the cancel port, and a count of
    // matches would tell a guesser when a guess was right.
    this.cancelRequests = new Counter({
      name: 'dbproxy_cancel_requests_total',
      help: 'Cancel requests received, by where from (client port, peer) and whether they were processed or dropped by the rate limit.',
      labelNames: ['via', 'result'],
      registers: [r],
    });
  }

  pinned(reason: PinReason): void {
    this.pins.inc({ reason });
  }
}
