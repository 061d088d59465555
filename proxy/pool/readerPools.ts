// The read-only endpoint's pools: one BackendPool per usable standby, each sized from that
// standby's own max_connections, and a router that lends from them a transaction at a time: a
// client's next transaction goes to the standby with the most room, so reads spread per
// transaction, not per connection. To a client session it looks like one pool (the same calls as
// BackendPool); it remembers which pool lent each connection to give it back there.
//
// A standby that falls too far behind stops lending (its pool is held, its connections kept); one
// that is no longer a standby (promoted, stopped, gone from DNS) has its pool closed at once: its
// waiters move to another standby, its lent connections are closed when their transactions end.
import type { Logger } from 'pino';
import type { Clock } from '../runtime/clock.js';
import type { BackendConnection, BackendEndpoint, BackendOwner } from '../backend/backendConnection.js';
import type { ReaderTarget } from '../target/targetMonitor.js';
import { BackendPool, BorrowTimeoutError, type BorrowHandle, type PoolKey, type PoolSettings, type PoolStats } from './backendPool.js';
import { computeBudget } from './budget.js';

export interface ReaderPoolsDeps {
  open(key: PoolKey, endpoint: BackendEndpoint): Promise<BackendConnection>;
  clock: Clock;
  log: Logger;
  settings(): PoolSettings;
  budget(): { maxConnectionsPercent: number; maxIdleConnectionsPercent: number; divisor: number };
  /** With no usable standby: the writer's pool, or null to wait for a standby. */
  fallback(): BackendPool | null;
  onBorrowed?(waitedMs: number): void;
  onBorrowTimeout?(): void;
}

interface Reader {
  target: ReaderTarget;
  pool: BackendPool;
}

export interface ReaderPoolStats extends PoolStats {
  endpoint: string;
  usable: boolean;
  reason?: string;
  maxDatabaseConnections: number | null;
}

export class ReaderPools {
  private readonly readers = new Map<string, Reader>();
  /** Which pool lent each connection out, to give it back there. */
  private readonly lender = new WeakMap<BackendConnection, BackendPool>();
  /** Borrowers waiting for a usable standby (none right now). */
  private readonly waitingForReader = new Set<() => void>();
  private closed = false;

  constructor(private readonly deps: ReaderPoolsDeps) {}

  /** After a round of health checks: the standbys and whether each may serve reads. */
  update(targets: readonly ReaderTarget[]): void {
    if (this.closed) return;
    const seen = new Set<string>();
    for (const t of targets) {
      seen.add(t.key);
      let r = this.readers.get(t.key);
      if (!r) {
        const pool = new BackendPool(this.deps.settings(), {
          open: (key, endpoint) => this.deps.open(key, endpoint),
          clock: this.deps.clock,
          log: this.deps.log,
          onBorrowed: this.deps.onBorrowed,
          onBorrowTimeout: this.deps.onBorrowTimeout,
        });
        pool.setEndpoint(t.endpoint);
        r = { target: t, pool };
        this.readers.set(t.key, r);
        this.deps.log.info({ reader: t.key }, 'standby joins the read-only endpoint');
      }
      if (r.target.usable !== t.usable) this.deps.log.info({ reader: t.key, usable: t.usable, reason: t.reason }, t.usable ? 'standby back in rotation' : 'standby out of rotation');
      r.target = t;
      const b = this.deps.budget();
      r.pool.setLimits(t.maxConnections === null ? null : computeBudget({ targetMaxConnections: t.maxConnections, ...b }));
      // Too far behind: lend nothing new from it (its connections stay for when it catches up).
      r.pool.setHeld(!t.usable);
    }
    for (const [k, r] of this.readers) {
      if (seen.has(k)) continue;
      // No longer a standby (promoted, stopped, gone): nothing more from it, at once.
      this.readers.delete(k);
      r.pool.close();
      this.deps.log.info({ reader: k }, 'standby leaves the read-only endpoint');
    }
    if (this.usable().length > 0 || this.deps.fallback()) {
      for (const wake of [...this.waitingForReader]) wake();
    }
  }

  updateSettings(): void {
    for (const r of this.readers.values()) r.pool.updateSettings(this.deps.settings());
  }

  /**
   * The usable standbys' pools with their room, the one with the most room first; among equals, a
   * different one each time, so that even one client's transactions spread over the standbys.
   */
  private ranked(): Array<{ pool: BackendPool; room: number }> {
    const pools: Array<{ pool: BackendPool; room: number; order: number }> = [];
    const n = this.readers.size;
    const turn = this.turn++;
    let i = 0;
    for (const r of this.readers.values()) {
      const order = (i++ - turn + n * 1024) % n;
      if (!r.target.usable) continue;
      const limit = r.pool.currentLimits?.maxDatabaseConnections;
      if (limit === undefined) continue;
      pools.push({ pool: r.pool, room: limit - r.pool.lentCount, order });
    }
    return pools.sort((a, b) => b.room - a.room || a.order - b.order);
  }

  private usable(): BackendPool[] {
    return this.ranked().map((p) => p.pool);
  }

  private turn = 0;

  /**
   * An idle connection of a standby with the most room, or null: then `borrow`, which opens one
   * there. An idle connection on a busier standby is not taken instead, or the standby whose pool
   * grew first would keep most of the reads.
   */
  tryBorrow(key: PoolKey, owner: BackendOwner | null = null): BackendConnection | null {
    const ranked = this.ranked();
    for (const { pool, room } of ranked) {
      if (room < ranked[0]!.room) break;
      const b = pool.tryBorrow(key, owner);
      if (b) {
        this.lender.set(b, pool);
        return b;
      }
    }
    return null;
  }

  borrow(key: PoolKey, owner: BackendOwner | null = null): BorrowHandle {
    const started = this.deps.clock.now();
    const timeoutMs = this.deps.settings().borrowTimeoutMs;
    let current: BorrowHandle | null = null;
    let cancelled = false;
    let wake: (() => void) | null = null;
    const attempt = async (): Promise<BackendConnection> => {
      for (;;) {
        if (cancelled) throw new Error('borrow cancelled');
        const pool = this.usable()[0] ?? this.deps.fallback();
        if (!pool) {
          const left = timeoutMs - (this.deps.clock.now() - started);
          if (left <= 0) {
            this.deps.onBorrowTimeout?.();
            throw new BorrowTimeoutError(`timed out after ${(timeoutMs / 1000).toFixed(1)} s waiting for a read-only connection: ${this.noReaderReason()}`);
          }
          await new Promise<void>((resolve) => {
            const timer = this.deps.clock.setTimeout(() => done(), left);
            const done = (): void => {
              this.deps.clock.clearTimeout(timer);
              this.waitingForReader.delete(done);
              wake = null;
              resolve();
            };
            wake = done;
            this.waitingForReader.add(done);
          });
          continue;
        }
        current = pool.borrow(key, owner);
        try {
          const b = await current.promise;
          this.lender.set(b, pool);
          return b;
        } catch (e) {
          // That standby left while we waited on it: try another, in the time that is left.
          if (e instanceof BorrowTimeoutError || !this.isClosedPoolError(e as Error)) throw e;
        }
      }
    };
    return {
      promise: attempt(),
      cancel: () => {
        cancelled = true;
        current?.cancel();
        (wake as (() => void) | null)?.();
      },
    };
  }

  private isClosedPoolError(e: Error): boolean {
    return e.message === 'the proxy is shutting down';
  }

  /** Why no standby can serve reads now, for the 53300 message. */
  private noReaderReason(): string {
    if (this.readers.size === 0) return 'no target is a healthy standby';
    return `no standby is usable (${[...this.readers.values()].map((r) => `${r.target.key}: ${r.target.reason ?? 'AVAILABLE'}`).join(', ')})`;
  }

  private poolOf(b: BackendConnection): BackendPool | undefined {
    return this.lender.get(b);
  }

  release(b: BackendConnection): void {
    this.poolOf(b)?.release(b);
  }

  discard(b: BackendConnection): void {
    const p = this.poolOf(b);
    if (p) p.discard(b);
    else b.close();
  }

  resetAndRelease(b: BackendConnection): void {
    const p = this.poolOf(b);
    if (p) p.resetAndRelease(b);
    else b.close();
  }

  markPinned(b: BackendConnection): void {
    this.poolOf(b)?.markPinned(b);
  }

  /** Whether this connection was lent by the writer's pool (the fallback), not a standby's. */
  isWriterConnection(b: BackendConnection): boolean {
    return this.poolOf(b) === this.deps.fallback() && this.deps.fallback() !== null;
  }

  trim(): void {
    for (const r of this.readers.values()) r.pool.trim();
  }

  close(): void {
    this.closed = true;
    for (const r of this.readers.values()) r.pool.close();
    this.readers.clear();
    for (const wake of [...this.waitingForReader]) wake();
  }

  stats(): ReaderPoolStats[] {
    return [...this.readers.values()].map((r) => ({
      endpoint: r.target.key,
      usable: r.target.usable,
      ...(r.target.reason ? { reason: r.target.reason } : {}),
      maxDatabaseConnections: r.pool.currentLimits?.maxDatabaseConnections ?? null,
      ...r.pool.stats(),
    }));
  }

  /** Totals over every standby's pool. */
  totals(): { databaseConnections: number; borrowed: number; pinned: number; idle: number; waiting: number } {
    const t = { databaseConnections: 0, borrowed: 0, pinned: 0, idle: 0, waiting: this.waitingForReader.size };
    for (const s of this.stats()) {
      t.databaseConnections += s.databaseConnections;
      t.borrowed += s.borrowed;
      t.pinned += s.pinned;
      t.idle += s.idle;
      t.waiting += s.waiting;
    }
    return t;
  }
}
