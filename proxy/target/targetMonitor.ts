// Health-checks every target endpoint on one persistent connection each: reachable, in recovery
// or not, and max_connections. A target given as a DNS name (a cluster endpoint) is re-resolved
// on every round and each address is checked. The writer is elected by writerElection.ts; this
// file is the I/O around it: timers, connections, and reporting changes and failovers.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from 'pino';
import type { TargetStats } from '../contract/stats.js';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import { type BackendConnection, type BackendEndpoint, ServerError } from '../backend/backendConnection.js';
import { electWriter, endpointOfAuroraInstance } from './writerElection.js';
import { WriterHistory, parseLsn } from './replicationLag.js';

/** A standby as the read-only endpoint sees it after a round of checks. */
export interface ReaderTarget {
  endpoint: BackendEndpoint;
  key: string;
  maxConnections: number | null;
  /** In recovery, answering, and within the lag limit. */
  usable: boolean;
  /** Why not usable: REPLICATION_LAG, or why it is unavailable. */
  reason?: string;
}

export interface FailoverRecord {
  /** When the old writer was first seen failing (ms since epoch). */
  startedAt: number;
  durationMs: number;
  from: string | null;
  to: string;
}

export interface TargetMonitorDeps {
  open(endpoint: BackendEndpoint): Promise<BackendConnection>;
  resolve?(host: string): Promise<string[]>;
  clock: Clock;
  log: Logger;
  intervalMs: number;
  /** Interval while the writer is suspect or missing. */
  fastIntervalMs?: number;
  onChange(writer: BackendEndpoint | null, maxConnections: number | null): void;
  /** The current writer failed a check: stop lending new connections until it answers again. */
  onSuspect?(suspect: boolean): void;
  onFailover?(record: FailoverRecord): void;
  /** After every round: the standbys, for the read-only endpoint. */
  onReaders?(readers: ReaderTarget[]): void;
  /** A standby further behind than this is not a usable reader. Default 30 s. */
  maxReplicationLagMs?: number;
}

interface EndpointState {
  endpoint: BackendEndpoint;
  /** The name it was configured by (before DNS resolution). */
  name: string;
  /** Whether its server has Aurora's topology function; undefined until asked on this connection. */
  aurora?: boolean;
  /** The writer's server_id by Aurora's topology, from this endpoint's last check. */
  auroraWriterId?: string | null;
  conn: BackendConnection | null;
  stats: TargetStats;
  failures: number;
  /** WAL position: the writer's current one, or how far a standby has replayed; null when unknown. */
  lsn: number | null;
  replayPaused: boolean;
}

export function unavailableReason(err: Error): string {
  if (err instanceof ServerError) {
    if (err.code.startsWith('28')) return 'AUTH_FAILURE';
    if (err.code === '57P03') return 'STARTING_UP';
    return 'CONNECTION_FAILED';
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || /timed out/.test(err.message)) return 'UNREACHABLE';
  return 'CONNECTION_FAILED';
}

const key = (e: BackendEndpoint): string => `${e.host}:${e.port}`;

async function defaultResolve(host: string): Promise<string[]> {
  const all = await lookup(host, { all: true });
  return all.map((a) => a.address);
}

export class TargetMonitor {
  private readonly endpoints = new Map<string, EndpointState>();
  private timer: TimerHandle | null = null;
  private stopped = false;
  private writer: string | null = null;
  private maxConnections: number | null = null;
  private suspect = false;
  private lostAt: number | null = null;
  private lostWriter: string | null = null;
  private checking: Promise<void> | null = null;
  private failovers = 0;
  private lastFailover: FailoverRecord | null = null;
  private problem: string | undefined;
  private readonly history: WriterHistory;

  constructor(
    private readonly targets: BackendEndpoint[],
    private readonly deps: TargetMonitorDeps,
  ) {
    // Remember the writer's positions a little past the lag limit: a standby behind all of it is over the limit anyway.
    this.history = new WriterHistory(2 * this.maxLagMs + 10_000);
  }

  private get maxLagMs(): number {
    return this.deps.maxReplicationLagMs ?? 30_000;
  }

  start(): Promise<void> {
    return this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    for (const t of this.endpoints.values()) t.conn?.close();
  }

  stats(): TargetStats[] {
    return [...this.endpoints.values()].map((t) => ({ ...t.stats }));
  }

  get currentWriter(): string | null {
    return this.writer;
  }

  get failoverCount(): number {
    return this.failovers;
  }

  get lastFailoverRecord(): FailoverRecord | null {
    return this.lastFailover;
  }

  /** Why there is no writer, when there is none. */
  get writerProblem(): string | undefined {
    return this.writer ? undefined : this.problem;
  }

  /** Runs one round of checks now (joining one in progress). */
  checkNow(): Promise<void> {
    this.checking ??= this.round().finally(() => (this.checking = null));
    return this.checking;
  }

  private async round(): Promise<void> {
    await this.refreshEndpoints();
    await Promise.all([...this.endpoints.values()].map((t) => this.check(t)));
    const current = this.writer ? this.endpoints.get(this.writer) : undefined;
    const result = electWriter({ targets: this.stats(), current: this.writer, currentFailures: current?.failures ?? 0, topologyWriter: this.topologyWriter() });
    this.problem = result.problem;
    this.assessReaders(result.writer);
    if (result.suspect !== this.suspect) {
      this.suspect = result.suspect;
      if (result.suspect) {
        this.lostAt ??= this.deps.clock.now();
        this.deps.log.warn({ writer: this.writer }, 'writer failed a health check; holding new borrows');
      }
      this.deps.onSuspect?.(result.suspect);
    }
    const next = result.writer ? this.endpoints.get(result.writer) : undefined;
    const maxConnections = next?.stats.maxConnections ?? this.maxConnections;
    if (result.writer === this.writer && maxConnections === this.maxConnections) {
      if (!result.suspect && result.writer) this.lostAt = null;
      return;
    }
    const previous = this.writer;
    if (result.writer !== previous) {
      const now = this.deps.clock.now();
      if (previous && !result.writer) {
        this.lostAt ??= now;
        this.lostWriter = previous;
        this.deps.log.error({ previous, problem: result.problem }, 'writer lost');
      } else if (result.writer && (previous || this.lostAt !== null)) {
        const record: FailoverRecord = { startedAt: this.lostAt ?? now, durationMs: now - (this.lostAt ?? now), from: previous ?? this.lostWriter, to: result.writer };
        this.failovers++;
        this.lastFailover = record;
        this.lostAt = null;
        this.lostWriter = null;
        this.deps.log.warn({ ...record }, 'failover: new writer');
        this.deps.onFailover?.(record);
      } else if (result.writer) {
        this.deps.log.info({ writer: result.writer }, 'writer found');
      }
    }
    this.writer = result.writer;
    this.maxConnections = maxConnections;
    this.deps.onChange(next?.endpoint ?? null, maxConnections);
  }

  /**
   * The standbys as read-only targets: each one's lag behind the writer (as far as the writer's
   * WAL position has been seen), and whether it may serve reads.
   */
  private assessReaders(writer: string | null): void {
    const now = this.deps.clock.now();
    const w = writer ? this.endpoints.get(writer) : undefined;
    if (w?.lsn !== null && w?.lsn !== undefined) this.history.observe(now, w.lsn);
    const readers: ReaderTarget[] = [];
    for (const [k, t] of this.endpoints) {
      if (t.stats.role !== 'reader') continue;
      const lag = t.lsn === null ? null : this.history.lag(now, t.lsn);
      const reachable = t.stats.reason === 'READ_ONLY';
      const late = lag !== null && lag.ms > this.maxLagMs;
      const reason = !reachable ? (t.stats.reason ?? 'UNAVAILABLE') : late ? 'REPLICATION_LAG' : undefined;
      t.stats = {
        ...t.stats,
        reader: { state: reason ? 'UNAVAILABLE' : 'AVAILABLE', ...(reason ? { reason } : {}), lagMs: lag?.ms ?? null, lagBytes: lag?.bytes ?? null, replayPaused: t.replayPaused },
      };
      readers.push({ endpoint: t.endpoint, key: k, maxConnections: t.stats.maxConnections, usable: !reason, ...(reason ? { reason } : {}) });
    }
    this.deps.onReaders?.(readers);
  }

  /** The writer named by Aurora's topology, if an available endpoint reports one we can map. */
  private topologyWriter(): string | null {
    const all = [...this.endpoints.entries()].map(([key, t]) => ({ key, name: t.name }));
    for (const t of this.endpoints.values()) {
      if (t.stats.state !== 'AVAILABLE' || !t.auroraWriterId) continue;
      const k = endpointOfAuroraInstance(t.auroraWriterId, all);
      if (k) return k;
    }
    return null;
  }

  private async refreshEndpoints(): Promise<void> {
    const seen = new Set<string>();
    for (const t of this.targets) {
      let hosts = [t.host];
      if (isIP(t.host) === 0) {
        try {
          hosts = await (this.deps.resolve ?? defaultResolve)(t.host);
        } catch (e) {
          this.deps.log.warn({ target: `${t.host}:${t.port}`, err: (e as Error).message }, 'target name did not resolve');
          hosts = [];
        }
      }
      for (const host of hosts) {
        const endpoint: BackendEndpoint = host === t.host ? { host, port: t.port } : { host, port: t.port, name: t.host };
        const k = key(endpoint);
        seen.add(k);
        if (!this.endpoints.has(k)) {
          this.endpoints.set(k, { endpoint, name: t.host, conn: null, failures: 0, lsn: null, replayPaused: false, stats: { endpoint: k, state: 'UNKNOWN', role: 'unknown', maxConnections: null } });
        }
      }
    }
    // An address the name no longer resolves to is no longer a target.
    for (const [k, t] of this.endpoints) {
      if (!seen.has(k)) {
        t.conn?.close();
        this.endpoints.delete(k);
        this.deps.log.info({ target: k }, 'target address gone from DNS');
      }
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    await this.checkNow();
    if (this.stopped) return;
    const fast = this.suspect || this.writer === null;
    this.timer = this.deps.clock.setTimeout(() => void this.tick(), fast ? (this.deps.fastIntervalMs ?? 100) : this.deps.intervalMs);
    this.timer.unref?.();
  }

  /**
   * The writer's WAL position, or how far a standby has replayed. Apart from the main check: a
   * server that cannot say (Aurora has no WAL of its own) is no less healthy; its lag is unknown.
   */
  private async readWalPosition(t: EndpointState, inRecovery: boolean): Promise<void> {
    try {
      const r = await t.conn!.query(
        inRecovery ? 'SELECT pg_last_wal_replay_lsn()::text, pg_is_wal_replay_paused()::text' : "SELECT pg_current_wal_lsn()::text, 'false'",
        Math.max(1000, this.deps.intervalMs * 2),
      );
      t.lsn = parseLsn(r.rows[0]?.[0]);
      t.replayPaused = r.rows[0]?.[1] === 'true';
    } catch {
      t.lsn = null;
      t.replayPaused = false;
    }
  }

  private async check(t: EndpointState): Promise<void> {
    const before = `${t.stats.state}/${t.stats.reason ?? ''}/${t.stats.role}`;
    try {
      if (!t.conn || t.conn.closed) t.conn = await this.deps.open(t.endpoint);
      const r = await t.conn.query("SELECT pg_is_in_recovery()::text, current_setting('max_connections')", Math.max(1000, this.deps.intervalMs * 2));
      const row = r.rows[0] ?? [];
      const inRecovery = row[0] === 'true';
      if (t.aurora === undefined) {
        const probe = await t.conn.query("SELECT to_regproc('aurora_replica_status') IS NOT NULL");
        t.aurora = probe.rows[0]?.[0] === 't';
      }
      if (t.aurora) {
        const topo = await t.conn.query("SELECT server_id FROM aurora_replica_status() WHERE session_id = 'MASTER_SESSION_ID'");
        t.auroraWriterId = topo.rows[0]?.[0] ?? null;
      }
      await this.readWalPosition(t, inRecovery);
      t.failures = 0;
      t.stats = {
        endpoint: t.stats.endpoint,
        // A standby cannot take writes: it is not an available target for a writer proxy.
        state: inRecovery ? 'UNAVAILABLE' : 'AVAILABLE',
        ...(inRecovery ? { reason: 'READ_ONLY' } : {}),
        role: inRecovery ? 'reader' : 'writer',
        maxConnections: Number(row[1]) || null,
      };
    } catch (e) {
      const err = e as Error;
      t.conn?.close();
      t.conn = null;
      t.aurora = undefined;
      t.auroraWriterId = null;
      t.lsn = null;
      t.failures++;
      t.stats = { endpoint: t.stats.endpoint, state: 'UNAVAILABLE', reason: unavailableReason(err), role: 'unknown', maxConnections: t.stats.maxConnections };
      if (before !== `UNAVAILABLE/${t.stats.reason}/unknown`) this.deps.log.warn({ target: t.stats.endpoint, reason: t.stats.reason, err: err.message }, 'target unavailable');
      return;
    }
    const after = `${t.stats.state}/${t.stats.reason ?? ''}/${t.stats.role}`;
    if (before !== after) this.deps.log.info({ target: t.stats.endpoint, state: t.stats.state, role: t.stats.role }, 'target state changed');
  }
}
