// Prometheus metrics, named after RDS Proxy's CloudWatch metrics. A Registry per proxy instance
// (no global default registry), and gauges read at scrape time so the data path only bumps counters.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastHistogram } from './fastHistogram.js';
import type { PinReason } from '../classify/pinReasons.js';

export interface GaugeSource {
  writer(): string | null;
  targets(): Array<{ endpoint: string; state: string; reason?: string }>;
  lastFailoverSeconds(): number | null;
  clientConnections(): number;
  pool(): { databaseConnections: number; borrowed: number; pinned: number; idle: number; waiting: number };
  /** The read-only endpoint's standbys: health, lag and pool, by endpoint. */
  readers?(): Array<{ endpoint: string; usable: boolean; lagMs: number | null; lagBytes: number | null; databaseConnections: number; borrowed: number; pinned: number }>;
  /** Per user: connections held, and the cap (users[].maxConnections). */
  users?(): Array<{ user: string; connections: number; maxConnections: number | null }>;
  budget(): number | null;
  targetMaxConnections(): number | null;
}

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly borrowLatency: FastHistogram;
  readonly borrowTimeouts: Counter;
  readonly pins: Counter<'reason'>;
  readonly clientRejections: Counter<'reason'>;
  readonly clientConnectionsTotal: Counter;
  readonly queryLatency: FastHistogram;
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
      'Time from a client request to the server being ready for the next one (per ReadyForQuery).',
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
      help: 'Per target endpoint: 1 when AVAILABLE, 0 otherwise, with the reason (RDS Proxy TargetHealth).',
      labelNames: ['endpoint', 'state', 'reason'],
      registers: [r],
      collect() {
        this.reset();
        for (const t of source.targets()) this.set({ endpoint: t.endpoint, state: t.state, reason: t.reason ?? '' }, t.state === 'AVAILABLE' ? 1 : 0);
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
