// Health-checks every target endpoint on one persistent connection each: reachable, in recovery
// or not, and max_connections. Decides which endpoint is the writer (exactly one not in recovery;
// two claiming it means neither, rather than split the writes) and reports changes.
import type { Logger } from 'pino';
import type { TargetStats } from '../contract/stats.js';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import { type BackendConnection, type BackendEndpoint, ServerError } from '../server/backendConnection.js';

export interface TargetMonitorDeps {
  open(endpoint: BackendEndpoint): Promise<BackendConnection>;
  clock: Clock;
  log: Logger;
  intervalMs: number;
  onChange(writer: BackendEndpoint | null, maxConnections: number | null): void;
}

interface TargetState {
  endpoint: BackendEndpoint;
  conn: BackendConnection | null;
  stats: TargetStats;
}

export function chooseWriter(targets: TargetStats[]): { writer: string | null; problem?: string } {
  const writers = targets.filter((t) => t.state === 'AVAILABLE' && t.role === 'writer');
  if (writers.length === 1) return { writer: writers[0]!.endpoint };
  if (writers.length > 1) return { writer: null, problem: `MULTIPLE_WRITERS: ${writers.map((w) => w.endpoint).join(', ')} all claim to be the writer` };
  return { writer: null, problem: 'NO_WRITER: no available target is out of recovery' };
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

export class TargetMonitor {
  private readonly targets: TargetState[];
  private timer: TimerHandle | null = null;
  private stopped = false;
  private writer: string | null = null;
  private maxConnections: number | null = null;
  private checking = false;

  constructor(
    endpoints: BackendEndpoint[],
    private readonly deps: TargetMonitorDeps,
  ) {
    this.targets = endpoints.map((endpoint) => ({
      endpoint,
      conn: null,
      stats: { endpoint: `${endpoint.host}:${endpoint.port}`, state: 'UNKNOWN', role: 'unknown', maxConnections: null },
    }));
  }

  start(): Promise<void> {
    return this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    for (const t of this.targets) t.conn?.close();
  }

  stats(): TargetStats[] {
    return this.targets.map((t) => ({ ...t.stats }));
  }

  get currentWriter(): string | null {
    return this.writer;
  }

  /** Runs one round of checks now; resolves when every target has answered or failed. */
  async checkNow(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      await Promise.all(this.targets.map((t) => this.check(t)));
    } finally {
      this.checking = false;
    }
    const { writer, problem } = chooseWriter(this.targets.map((t) => t.stats));
    const writerState = this.targets.find((t) => t.stats.endpoint === writer);
    const maxConnections = writerState?.stats.maxConnections ?? this.maxConnections;
    if (writer !== this.writer || maxConnections !== this.maxConnections) {
      if (writer !== this.writer) this.deps.log.info({ writer, previous: this.writer, problem }, writer ? 'writer found' : 'no writer');
      this.writer = writer;
      this.maxConnections = maxConnections;
      this.deps.onChange(writerState?.endpoint ?? null, maxConnections);
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    await this.checkNow();
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => void this.tick(), this.deps.intervalMs);
    this.timer.unref?.();
  }

  private async check(t: TargetState): Promise<void> {
    const before = `${t.stats.state}/${t.stats.reason ?? ''}/${t.stats.role}`;
    try {
      if (!t.conn || t.conn.closed) t.conn = await this.deps.open(t.endpoint);
      const r = await t.conn.query("SELECT pg_is_in_recovery()::text, current_setting('max_connections')", Math.max(1000, this.deps.intervalMs * 5));
      const row = r.rows[0] ?? [];
      t.stats = { endpoint: t.stats.endpoint, state: 'AVAILABLE', role: row[0] === 'true' ? 'reader' : 'writer', maxConnections: Number(row[1]) || null };
    } catch (e) {
      const err = e as Error;
      t.conn?.close();
      t.conn = null;
      t.stats = { endpoint: t.stats.endpoint, state: 'UNAVAILABLE', reason: unavailableReason(err), role: 'unknown', maxConnections: t.stats.maxConnections };
      if (before !== `UNAVAILABLE/${t.stats.reason}/unknown`) this.deps.log.warn({ target: t.stats.endpoint, reason: t.stats.reason, err: err.message }, 'target unavailable');
      return;
    }
    if (before !== `${t.stats.state}/${t.stats.reason ?? ''}/${t.stats.role}`) this.deps.log.info({ target: t.stats.endpoint, role: t.stats.role }, 'target available');
  }
}
