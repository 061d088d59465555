// The pool actor: owns every backend connection of this proxy process, lends them to client
// sessions one transaction at a time, queues borrowers first in, first out, and keeps the total
// (open + opening) within the budget whatever mix of (user, database) pairs asks for them.
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../runtime/clock.js';
import { type BackendConnection, type BackendEndpoint, type BackendOwner, ServerError } from '../backend/backendConnection.js';
import { BorrowQueue, type Waiter } from './borrowQueue.js';
import type { PoolBudget } from './budget.js';
import { Framer, inspectTable } from '../protocol/framer.js';

/** Everything an idle backend says is looked at whole. */
const IDLE_INSPECT = inspectTable('', true);

export interface PoolKey {
  user: string;
  database: string;
}

export const keyString = (k: PoolKey): string => `${k.user}\u0000${k.database}`;

export interface PoolSettings {
  borrowTimeoutMs: number;
  maxConnectionLifetimeMs: number;
  idleConnectionTimeoutMs: number;
  /** Most connections (open and opening) each listed user's pools may hold together. */
  userLimits?: ReadonlyMap<string, number>;
}

export interface PoolDeps {
  open(key: PoolKey, endpoint: BackendEndpoint): Promise<BackendConnection>;
  clock: Clock;
  log: Logger;
  onBorrowed?(waitedMs: number): void;
  onBorrowTimeout?(): void;
}

export class BorrowTimeoutError extends Error {
  readonly code = '53300';
  constructor(message: string) {
    super(message);
    this.name = 'BorrowTimeoutError';
  }
}

/**
 * What a client session needs of a pool: the writer's BackendPool, or the read-only endpoint's
 * router over its standbys' pools.
 */
export interface Lender {
  tryBorrow(key: PoolKey, owner?: BackendOwner | null): BackendConnection | null;
  borrow(key: PoolKey, owner?: BackendOwner | null): BorrowHandle;
  release(b: BackendConnection): void;
  discard(b: BackendConnection): void;
  resetAndRelease(b: BackendConnection): void;
  markPinned(b: BackendConnection): void;
}

export interface BorrowHandle {
  promise: Promise<BackendConnection>;
  /** Withdraws from the queue (client went away); a backend already granted is released. */
  cancel(): void;
}

interface PendingBorrow extends Waiter<BackendConnection> {
  readonly owner: BackendOwner | null;
}

// The states a backend goes through, each written here and nowhere else (as PgBouncer's objects.c
// keeps its lists): opening (counted in KeyPool.opening), idle (KeyPool.idle, owned by the pool's
// idle listener), lent (in `lent`, owned by its borrower; also in `pinnedSet` when its client
// pinned it), resetting (a pinned one getting DISCARD ALL before it is idle again), closed.

class KeyPool {
  readonly idle: BackendConnection[] = [];
  readonly waiters = new BorrowQueue<BackendConnection>();
  /**
   * One timer for the whole queue, set for the oldest waiter's deadline: every waiter has the same
   * borrowTimeout and the queue is FIFO, so the head always expires first. A timer per waiter cost a
   * setTimeout and a clearTimeout on every wait, which at 100+ clients is most transactions.
   */
  expiry: TimerHandle | null = null;
  opening = 0;
  constructor(readonly key: PoolKey) {}
}

export interface PoolStats {
  databaseConnections: number;
  opening: number;
  borrowed: number;
  pinned: number;
  idle: number;
  waiting: number;
  borrowTimeouts: number;
  connectFailures: number;
  lastConnectError: string | null;
}

/** How long PostgreSQL's DROP DATABASE waits for other sessions of the database to exit. */
const RELEASE_WAIT_MS = 5000;

export class BackendPool {
  private readonly keys = new Map<string, KeyPool>();
  /** Databases closeIdle() was asked to empty, until when their returning connections are closed. */
  private readonly releasing = new Map<string, number>();
  private readonly lent = new Set<BackendConnection>();
  private readonly pinnedSet = new Set<BackendConnection>();
  private limits: PoolBudget | null = null;
  private endpoint: BackendEndpoint | null = null;
  private paused = false;
  private held = false;
  private closing = false;
  private seq = 0;
  private openCount = 0;
  private borrowTimeouts = 0;
  private connectFailures = 0;
  private consecutiveFailures = 0;
  private lastConnectError: Error | null = null;
  private retryTimer: TimerHandle | null = null;
  private readonly idleOwner: BackendOwner;

  constructor(
    private settings: PoolSettings,
    private readonly deps: PoolDeps,
  ) {
    this.idleOwner = {
      onBackendData: (b, chunk) => this.onIdleData(b, chunk),
      onBackendClose: (b) => this.forget(b),
    };
  }

  updateSettings(settings: PoolSettings): void {
    this.settings = settings;
  }

  /** From the target monitor: the budget once max_connections is known. */
  setLimits(limits: PoolBudget | null): void {
    this.limits = limits;
    this.trim();
    this.pump();
  }

  get currentLimits(): PoolBudget | null {
    return this.limits;
  }

  /**
   * The writer to open new connections to. Connections to any other endpoint are closed, lent
   * ones included: their transactions get an error and their clients can retry on the new writer.
   */
  setEndpoint(endpoint: BackendEndpoint | null): void {
    const changed = !sameEndpoint(endpoint, this.endpoint) || endpoint === null;
    this.endpoint = endpoint;
    if (changed) {
      for (const kp of this.keys.values()) {
        for (const b of kp.idle.splice(0)) this.closeBackend(b);
      }
      // The session that holds it hears the close and gives its client the error.
      for (const b of this.lent) if (!sameEndpoint(b.endpoint, endpoint)) b.close();
    }
    this.pump();
  }

  /** While the writer is suspect: queue borrowers rather than lend connections that may be dead. */
  setHeld(held: boolean): void {
    this.held = held;
    this.pump();
  }

  get writer(): BackendEndpoint | null {
    return this.endpoint;
  }

  /** Why there is no writer, for the borrow-timeout message. */
  noWriterReason: string | undefined;

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** Backends lent out now (pinned ones included). */
  get lentCount(): number {
    return this.lent.size;
  }

  /** Borrowed backends not pinned: what PAUSE waits to reach zero. */
  get activeTransactions(): number {
    return this.lent.size - this.pinnedSet.size;
  }

  /**
   * Lends an idle backend at once, or returns null (then `borrow` and wait). The common case of
   * the data path: no Promise, no timer, no waiting in line behind nobody.
   */
  tryBorrow(key: PoolKey, owner: BackendOwner | null = null): BackendConnection | null {
    if (!this.canLend()) return null;
    const kp = this.keyPool(key);
    if (kp.waiters.size > 0) return null;
    const now = this.deps.clock.now();
    const b = this.takeIdle(kp, now);
    if (!b) return null;
    this.lend(b, owner, now, now);
    return b;
  }

  /**
   * Lends a backend to `owner` (who then hears its data and its close), now or once one is free.
   * Without an owner the borrower runs its own queries on it (BackendConnection.query).
   */
  borrow(key: PoolKey, owner: BackendOwner | null = null): BorrowHandle {
    const kp = this.keyPool(key);
    const started = this.deps.clock.now();
    if (this.canLend()) {
      const b = this.takeIdle(kp);
      if (b) {
        this.lend(b, owner, started);
        return { promise: Promise.resolve(b), cancel: () => this.release(b) };
      }
    }
    let granted: BackendConnection | null = null;
    let cancelled = false;
    const seq = ++this.seq;
    const promise = new Promise<BackendConnection>((resolve, reject) => {
      const w: PendingBorrow = {
        seq,
        enqueuedAt: started,
        owner,
        resolve: (b) => {
          if (cancelled) {
            this.release(b);
            return;
          }
          granted = b;
          resolve(b);
        },
        reject,
      };
      kp.waiters.push(w);
    });
    this.armExpiry(kp);
    this.pump();
    return {
      promise,
      cancel: () => {
        cancelled = true;
        if (granted) {
          this.release(granted);
          return;
        }
        if (kp.waiters.remove(seq)) this.pump();
      },
    };
  }

  /** Marks a lent backend as pinned to its client (for counts and status). */
  markPinned(b: BackendConnection): void {
    if (this.lent.has(b)) this.pinnedSet.add(b);
  }

  /** Returns a clean backend (idle, no session state the next client could see). */
  release(b: BackendConnection): void {
    if (!this.lent.delete(b)) return;
    this.pinnedSet.delete(b);
    if (b.closed) {
      this.forget(b);
      return;
    }
    const now = this.deps.clock.now();
    b.lastUsedAt = now;
    if (this.shouldRetire(b, now) || (this.releasing.size > 0 && this.isReleasing(b.database, now))) {
      this.closeBackend(b);
      this.pump();
      return;
    }
    const kp = this.keyPoolOf(b);
    if (kp.waiters.size > 0 && this.canLend()) {
      this.grant(kp, b);
      return;
    }
    if (this.limits && this.openCount >= this.limits.maxDatabaseConnections && this.othersWaiting(kp)) {
      // At the budget with another (user, database) waiting: make room for it.
      this.closeBackend(b);
      this.pump();
      return;
    }
    b.owner = this.idleOwner;
    kp.idle.push(b);
  }

  /** Resets session state with DISCARD ALL, then releases; closes the backend if that fails. */
  resetAndRelease(b: BackendConnection): void {
    if (!this.lent.has(b) || b.closed) {
      this.discard(b);
      return;
    }
    b.owner = null;
    b.query('DISCARD ALL', 10_000).then(
      () => {
        b.appliedParams.clear();
        b.statements.clear();
        b.unnamedOwner = null;
        this.release(b);
      },
      (err: Error) => {
        this.deps.log.warn({ backend: b.label, err: err.message }, 'reset failed; closing backend connection');
        this.discard(b);
      },
    );
  }

  /** Closes a lent backend whose state cannot be trusted (client left mid-transaction, ...). */
  discard(b: BackendConnection): void {
    b.owner = null;
    this.lent.delete(b);
    this.pinnedSet.delete(b);
    this.closeBackend(b);
    this.pump();
  }

  /** Closes idle connections beyond the idle cap or past their lifetime. Run periodically. */
  trim(): void {
    const now = this.deps.clock.now();
    const idleAll: BackendConnection[] = [];
    for (const kp of this.keys.values()) {
      for (let i = kp.idle.length - 1; i >= 0; i--) {
        const b = kp.idle[i]!;
        if (this.shouldRetire(b, now)) {
          kp.idle.splice(i, 1);
          this.closeBackend(b);
        } else {
          idleAll.push(b);
        }
      }
    }
    if (this.limits) {
      const maxIdle = this.limits.maxIdleConnections;
      idleAll.sort((a, b) => a.lastUsedAt - b.lastUsedAt);
      let excess = idleAll.length - maxIdle;
      for (const b of idleAll) {
        if (excess <= 0) break;
        const overBudget = this.openCount > this.limits.maxDatabaseConnections;
        if (overBudget || now - b.lastUsedAt >= this.settings.idleConnectionTimeoutMs) {
          this.removeIdle(b);
          this.closeBackend(b);
          excess--;
        }
      }
    }
    this.pump();
  }

  /**
   * Closes the idle connections to one database now: PostgreSQL refuses DROP DATABASE (and
   * RENAME, SET TABLESPACE, use as a TEMPLATE) while any other session is connected to it, and
   * an idle pooled connection is a session no client is using. Returns how many were closed.
   */
  closeIdle(database: string): number {
    // Connections clients are giving back right now (a pool closing just before its DROP
    // DATABASE, a pinned session being reset) are closed too, for as long as PostgreSQL waits
    // for other sessions to leave.
    this.releasing.set(database, this.deps.clock.now() + RELEASE_WAIT_MS);
    let closed = 0;
    for (const kp of this.keys.values()) {
      if (kp.key.database !== database) continue;
      for (const b of kp.idle.splice(0)) {
        this.closeBackend(b);
        closed++;
      }
    }
    if (closed > 0) this.pump();
    return closed;
  }

  /** Rejects every waiter and closes every idle backend (shutdown). Lent backends close on release. */
  close(): void {
    this.closing = true;
    for (const kp of this.keys.values()) {
      for (const w of kp.waiters.drain()) w.reject(new Error('the proxy is shutting down'));
      if (kp.expiry) this.deps.clock.clearTimeout(kp.expiry);
      kp.expiry = null;
      for (const b of kp.idle.splice(0)) this.closeBackend(b);
    }
    for (const b of this.lent) this.closeBackend(b);
    if (this.retryTimer) this.deps.clock.clearTimeout(this.retryTimer);
  }

  stats(): PoolStats {
    let idle = 0;
    let waiting = 0;
    let opening = 0;
    for (const kp of this.keys.values()) {
      idle += kp.idle.length;
      waiting += kp.waiters.size;
      opening += kp.opening;
    }
    return {
      databaseConnections: this.openCount - opening,
      opening,
      borrowed: this.lent.size,
      pinned: this.pinnedSet.size,
      idle,
      waiting,
      borrowTimeouts: this.borrowTimeouts,
      connectFailures: this.connectFailures,
      lastConnectError: this.lastConnectError?.message ?? null,
    };
  }

  /**
   * Per-key view for SHOW POOLS: `oldestWaitSince` is when the longest waiter started (null: none
   * waits); maxConnections is the user's cap (users[].maxConnections), null without one.
   */
  keyStats(): Array<PoolKey & { idle: number; waiting: number; opening: number; borrowed: number; pinned: number; oldestWaitSince: number | null; maxConnections: number | null }> {
    const borrowed = new Map<string, number>();
    const pinned = new Map<string, number>();
    for (const b of this.lent) {
      const k = keyString(b);
      borrowed.set(k, (borrowed.get(k) ?? 0) + 1);
      if (this.pinnedSet.has(b)) pinned.set(k, (pinned.get(k) ?? 0) + 1);
    }
    return [...this.keys.values()].map((kp) => ({
      ...kp.key,
      idle: kp.idle.length,
      waiting: kp.waiters.size,
      opening: kp.opening,
      borrowed: borrowed.get(keyString(kp.key)) ?? 0,
      pinned: pinned.get(keyString(kp.key)) ?? 0,
      oldestWaitSince: kp.waiters.peek()?.enqueuedAt ?? null,
      maxConnections: this.settings.userLimits?.get(kp.key.user) ?? null,
    }));
  }

  /** Per user, summed over its (user, database) pools: for /stats and metrics. */
  userStats(): Array<{ user: string; connections: number; borrowed: number; waiting: number; maxConnections: number | null }> {
    const by = new Map<string, { user: string; connections: number; borrowed: number; waiting: number; maxConnections: number | null }>();
    const of = (user: string) => {
      let u = by.get(user);
      if (!u) by.set(user, (u = { user, connections: 0, borrowed: 0, waiting: 0, maxConnections: this.settings.userLimits?.get(user) ?? null }));
      return u;
    };
    for (const kp of this.keys.values()) {
      const u = of(kp.key.user);
      u.connections += kp.idle.length + kp.opening;
      u.waiting += kp.waiters.size;
    }
    for (const b of this.lent) {
      const u = of(b.user);
      u.connections++;
      u.borrowed++;
    }
    return [...by.values()];
  }

  /** Every open backend with its state, for SHOW SERVERS. */
  backends(): Array<{ backend: BackendConnection; state: 'idle' | 'borrowed' | 'pinned' }> {
    const out: Array<{ backend: BackendConnection; state: 'idle' | 'borrowed' | 'pinned' }> = [];
    for (const kp of this.keys.values()) for (const b of kp.idle) out.push({ backend: b, state: 'idle' });
    for (const b of this.lent) out.push({ backend: b, state: this.pinnedSet.has(b) ? 'pinned' : 'borrowed' });
    return out;
  }

  // ---- internals ----

  private canLend(): boolean {
    return !this.paused && !this.held && !this.closing && this.endpoint !== null && this.limits !== null;
  }

  private keyPool(key: PoolKey): KeyPool {
    // Sessions keep their key object: found by identity, without building the string each time.
    const known = this.byKeyObject.get(key);
    if (known) return known;
    const k = keyString(key);
    let kp = this.keys.get(k);
    if (!kp) {
      kp = new KeyPool({ user: key.user, database: key.database });
      this.keys.set(k, kp);
    }
    this.byKeyObject.set(key, kp);
    return kp;
  }

  private readonly byKeyObject = new WeakMap<PoolKey, KeyPool>();
  private readonly byBackend = new WeakMap<BackendConnection, KeyPool>();

  private keyPoolOf(b: BackendConnection): KeyPool {
    return this.byBackend.get(b) ?? this.keyPool({ user: b.user, database: b.database });
  }

  private takeIdle(kp: KeyPool, now = this.deps.clock.now()): BackendConnection | undefined {
    while (kp.idle.length > 0) {
      // Most recently used first: keeps the warm set small so idle trimming can work.
      const b = kp.idle.pop()!;
      if (b.closed) {
        this.forget(b, false);
        continue;
      }
      if (this.shouldRetire(b, now)) {
        this.closeBackend(b);
        continue;
      }
      return b;
    }
    return undefined;
  }

  private lend(b: BackendConnection, owner: BackendOwner | null, startedAt: number, now = this.deps.clock.now()): void {
    b.owner = owner;
    this.lent.add(b);
    b.lastUsedAt = now;
    this.deps.onBorrowed?.(now - startedAt);
  }

  /** Makes sure the queue's timer runs while anyone waits (see KeyPool.expiry). */
  private armExpiry(kp: KeyPool): void {
    if (kp.expiry) return;
    const head = kp.waiters.peek();
    if (!head) return;
    const delay = Math.max(1, head.enqueuedAt + this.settings.borrowTimeoutMs - this.deps.clock.now());
    kp.expiry = this.deps.clock.setTimeout(() => this.expire(kp), delay);
  }

  /** Fails the waiters past their borrowTimeout (oldest first), then waits for the next one's. */
  private expire(kp: KeyPool): void {
    kp.expiry = null;
    const now = this.deps.clock.now();
    for (let w = kp.waiters.peek(); w && w.enqueuedAt + this.settings.borrowTimeoutMs <= now; w = kp.waiters.peek()) {
      kp.waiters.shift();
      this.borrowTimeouts++;
      this.deps.onBorrowTimeout?.();
      w.reject(this.timeoutError(w.enqueuedAt));
    }
    this.armExpiry(kp);
  }

  private grant(kp: KeyPool, b: BackendConnection): void {
    const w = kp.waiters.shift()! as PendingBorrow;
    this.lend(b, w.owner, w.enqueuedAt);
    w.resolve(b);
  }

  private othersWaiting(except: KeyPool): boolean {
    for (const kp of this.keys.values()) if (kp !== except && kp.waiters.size > kp.opening) return true;
    return false;
  }

  private isReleasing(database: string, now: number): boolean {
    const until = this.releasing.get(database);
    if (until === undefined) return false;
    if (now < until) return true;
    this.releasing.delete(database);
    return false;
  }

  private shouldRetire(b: BackendConnection, now: number): boolean {
    if (b.closed) return true;
    if (!sameEndpoint(b.endpoint, this.endpoint)) return true;
    if (this.settings.maxConnectionLifetimeMs > 0 && now - b.createdAt >= this.settings.maxConnectionLifetimeMs) return true;
    return this.limits !== null && this.openCount > this.limits.maxDatabaseConnections;
  }

  private pump(): void {
    if (!this.canLend()) return;
    for (const kp of this.keys.values()) {
      while (kp.waiters.size > 0) {
        const b = this.takeIdle(kp);
        if (!b) break;
        this.grant(kp, b);
      }
    }
    const limits = this.limits!;
    for (;;) {
      // The key whose oldest unserved waiter has waited longest gets the next new connection.
      let next: KeyPool | undefined;
      for (const kp of this.keys.values()) {
        if (kp.waiters.size <= kp.opening) continue;
        // A user at its cap waits for its own connections to come back, not for new ones.
        if (!this.userHasRoom(kp.key.user)) continue;
        if (!next || kp.waiters.peek()!.seq < next.waiters.peek()!.seq) next = kp;
      }
      if (!next) return;
      if (this.openCount < limits.maxDatabaseConnections) {
        this.openFor(next);
        continue;
      }
      const victim = this.idleVictim();
      if (!victim) return;
      this.removeIdle(victim);
      this.closeBackend(victim);
    }
  }

  /** Connections (lent, idle and opening) of all of one user's pools. */
  private userConnections(user: string): number {
    let n = 0;
    for (const kp of this.keys.values()) if (kp.key.user === user) n += kp.idle.length + kp.opening;
    for (const b of this.lent) if (b.user === user) n++;
    return n;
  }

  /** Whether the user's cap (users[].maxConnections) leaves room for one more connection. */
  private userHasRoom(user: string): boolean {
    const cap = this.settings.userLimits?.get(user);
    return cap === undefined || this.userConnections(user) < cap;
  }

  private idleVictim(): BackendConnection | undefined {
    let victim: BackendConnection | undefined;
    for (const kp of this.keys.values()) {
      if (kp.waiters.size > 0) continue;
      for (const b of kp.idle) if (!victim || b.lastUsedAt < victim.lastUsedAt) victim = b;
    }
    return victim;
  }

  private openFor(kp: KeyPool): void {
    const endpoint = this.endpoint!;
    kp.opening++;
    this.openCount++;
    this.deps.open(kp.key, endpoint).then(
      (b) => {
        kp.opening--;
        this.consecutiveFailures = 0;
        this.byBackend.set(b, kp);
        if (this.closing || !sameEndpoint(endpoint, this.endpoint)) {
          this.openCount--;
          b.close();
          this.pump();
          return;
        }
        b.owner = this.idleOwner;
        if (kp.waiters.size > 0 && this.canLend()) {
          this.grant(kp, b);
        } else {
          kp.idle.push(b);
        }
        this.pump();
      },
      (err: Error) => {
        kp.opening--;
        this.openCount--;
        this.connectFailures++;
        this.consecutiveFailures++;
        this.lastConnectError = err;
        this.deps.log.warn({ endpoint: `${endpoint.host}:${endpoint.port}`, user: kp.key.user, database: kp.key.database, err: err.message }, 'backend connection failed');
        if (err instanceof ServerError && err.isLoginRefusal) {
          // Waiting will not fix a refused login: tell the waiters now, with the server's reason.
          for (const w of kp.waiters.drain()) w.reject(err);
          return;
        }
        this.scheduleRetry();
      },
    );
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.closing) return;
    const delay = Math.min(2000, 50 * 2 ** Math.min(this.consecutiveFailures, 6));
    this.retryTimer = this.deps.clock.setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, delay);
  }

  private removeIdle(b: BackendConnection): void {
    const kp = this.keys.get(keyString(b));
    if (!kp) return;
    const i = kp.idle.indexOf(b);
    if (i >= 0) kp.idle.splice(i, 1);
  }

  private closeBackend(b: BackendConnection): void {
    // Whoever else owns it (a proxy query in flight, a session) must hear that it closed.
    if (b.owner === this.idleOwner) b.owner = null;
    b.close();
    this.uncount(b);
  }

  // A backend is counted in openCount from openFor() until it is closed or forgotten: once.
  private readonly uncounted = new WeakSet<BackendConnection>();

  private uncount(b: BackendConnection): void {
    if (this.uncounted.has(b)) return;
    this.uncounted.add(b);
    this.openCount--;
  }

  private forget(b: BackendConnection, pump = true): void {
    this.removeIdle(b);
    this.lent.delete(b);
    this.pinnedSet.delete(b);
    this.uncount(b);
    if (pump) this.pump();
  }

  private onIdleData(b: BackendConnection, chunk: Buffer): void {
    // An idle server only speaks up to report a parameter change or to say it is going away;
    // anything but ParameterStatus/Notice means the connection is no longer trustworthy. The
    // connection's own framer reads it, so a message split across reads is still one message.
    b.framer ??= new Framer(IDLE_INSPECT, 1 << 30);
    b.framer.inspect = IDLE_INSPECT;
    let unexpected = false;
    try {
      b.framer.push(chunk, {
        raw: () => void (unexpected = true),
        message: (type) => {
          if (type !== 0x53 /* S */ && type !== 0x4e /* N */) unexpected = true;
        },
      });
    } catch {
      unexpected = true;
    }
    if (unexpected) {
      this.deps.log.info({ backend: b.label }, 'idle backend connection sent unexpected data; closing it');
      this.removeIdle(b);
      this.closeBackend(b);
      this.pump();
    }
  }

  private timeoutError(started: number): BorrowTimeoutError {
    const waited = (this.deps.clock.now() - started) / 1000;
    const s = this.stats();
    const size = this.limits?.maxDatabaseConnections;
    let msg = `timed out after ${waited.toFixed(1)} s waiting for a database connection (pool size ${size ?? 'unknown'}, ${s.borrowed} in use, ${s.waiting} waiting)`;
    if (this.paused) msg += '; the pool is paused';
    else if (!this.endpoint) msg += `; no writable target is available${this.noWriterReason ? ` (${this.noWriterReason})` : ''}`;
    else if (this.held) msg += '; the writer is failing health checks';
    else if (this.lastConnectError && this.consecutiveFailures > 0) msg += `; last connection attempt failed: ${this.lastConnectError.message}`;
    return new BorrowTimeoutError(msg);
  }
}

function sameEndpoint(a: BackendEndpoint | null, b: BackendEndpoint | null): boolean {
  return a !== null && b !== null && a.host === b.host && a.port === b.port;
}
