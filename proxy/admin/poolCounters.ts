// Per-(user, database) traffic counters, the numbers behind SHOW STATS and the per-pool metrics.
// A session looks up its counters object once, when it starts, and the data path then only bumps
// plain numeric fields: no Map lookup, no string, no allocation, no prom-client call per
// transaction. Everything that reads them (SHOW STATS, /metrics) does its work at read time.
import type { PoolKey } from '../pool/backendPool.js';

export class PoolCounters {
  /** Transactions: a client request answered by ReadyForQuery with status idle. */
  xactCount = 0;
  /** Client Query and Execute messages forwarded to a server. */
  queryCount = 0;
  /** Backends lent to a client (PgBouncer's server_assignment_count). */
  serverAssignments = 0;
  /** Bytes read from clients of this pool. */
  bytesIn = 0;
  /** Bytes read from servers while lent to a client of this pool (what is passed on to the client). */
  bytesOut = 0;
  /** Microseconds inside transactions (first request to the ReadyForQuery 'I' that ends it). */
  xactTimeUs = 0;
  /** Microseconds from a request being sent to the server being ready again. */
  queryTimeUs = 0;
  /** Microseconds clients waited for a backend to be lent. */
  waitTimeUs = 0;
  /**
   * Parse messages of named statements from clients; those the proxy sent to servers (fewer:
   * statements are shared); Bind messages to named statements. Named only, as PgBouncer counts.
   */
  clientParseCount = 0;
  serverParseCount = 0;
  bindCount = 0;

  constructor(
    readonly user: string,
    readonly database: string,
  ) {}
}

/** The totals of one database (SHOW STATS is per database, like PgBouncer's). */
export interface CounterTotals {
  database: string;
  xactCount: number;
  queryCount: number;
  serverAssignments: number;
  bytesIn: number;
  bytesOut: number;
  xactTimeUs: number;
  queryTimeUs: number;
  waitTimeUs: number;
  clientParseCount: number;
  serverParseCount: number;
  bindCount: number;
}

/** Per-second rates and mean durations over the last averaging period (PgBouncer's stats_period). */
export interface CounterAverages {
  database: string;
  serverAssignments: number;
  xactCount: number;
  queryCount: number;
  bytesIn: number;
  bytesOut: number;
  /** Mean transaction duration, microseconds. */
  xactTimeUs: number;
  /** Mean query duration, microseconds. */
  queryTimeUs: number;
  /** Mean wait for a backend per lend, microseconds. */
  waitTimeUs: number;
  clientParseCount: number;
  serverParseCount: number;
  bindCount: number;
}

const zeroTotals = (database: string): CounterTotals => ({
  database,
  xactCount: 0,
  queryCount: 0,
  serverAssignments: 0,
  bytesIn: 0,
  bytesOut: 0,
  xactTimeUs: 0,
  queryTimeUs: 0,
  waitTimeUs: 0,
  clientParseCount: 0,
  serverParseCount: 0,
  bindCount: 0,
});

export class PoolCounterRegistry {
  private readonly byKey = new Map<string, PoolCounters>();
  private previous = new Map<string, CounterTotals>();
  private previousAt: number;
  private averages: CounterAverages[] = [];

  constructor(
    private readonly now: () => number,
    /** Length of the averaging period, ms. */
    private readonly periodMs = 60_000,
  ) {
    this.previousAt = now();
  }

  /** The counters of a pool key; called once per session, never per transaction. */
  forKey(key: PoolKey): PoolCounters {
    const k = `${key.user}\u0000${key.database}`;
    let c = this.byKey.get(k);
    if (!c) {
      c = new PoolCounters(key.user, key.database);
      this.byKey.set(k, c);
    }
    return c;
  }

  all(): PoolCounters[] {
    return [...this.byKey.values()];
  }

  /** Sums per database, in database order. */
  totalsByDatabase(): CounterTotals[] {
    const out = new Map<string, CounterTotals>();
    for (const c of this.byKey.values()) {
      let t = out.get(c.database);
      if (!t) out.set(c.database, (t = zeroTotals(c.database)));
      t.xactCount += c.xactCount;
      t.queryCount += c.queryCount;
      t.serverAssignments += c.serverAssignments;
      t.bytesIn += c.bytesIn;
      t.bytesOut += c.bytesOut;
      t.xactTimeUs += c.xactTimeUs;
      t.queryTimeUs += c.queryTimeUs;
      t.waitTimeUs += c.waitTimeUs;
      t.clientParseCount += c.clientParseCount;
      t.serverParseCount += c.serverParseCount;
      t.bindCount += c.bindCount;
    }
    return [...out.values()].sort((a, b) => (a.database < b.database ? -1 : a.database > b.database ? 1 : 0));
  }

  /** Closes an averaging period when it is over; run periodically (the proxy's janitor, each second). */
  tick(): void {
    const now = this.now();
    const secs = (now - this.previousAt) / 1000;
    if (secs * 1000 < this.periodMs) return;
    const current = this.totalsByDatabase();
    this.averages = current.map((c) => {
      const p = this.previous.get(c.database) ?? zeroTotals(c.database);
      const d = (f: keyof Omit<CounterTotals, 'database'>): number => c[f] - p[f];
      const per = (n: number, over: number): number => (over > 0 ? Math.round(n / over) : 0);
      return {
        database: c.database,
        serverAssignments: per(d('serverAssignments'), secs),
        xactCount: per(d('xactCount'), secs),
        queryCount: per(d('queryCount'), secs),
        bytesIn: per(d('bytesIn'), secs),
        bytesOut: per(d('bytesOut'), secs),
        xactTimeUs: per(d('xactTimeUs'), d('xactCount')),
        queryTimeUs: per(d('queryTimeUs'), d('queryCount')),
        waitTimeUs: per(d('waitTimeUs'), d('serverAssignments')),
        clientParseCount: per(d('clientParseCount'), secs),
        serverParseCount: per(d('serverParseCount'), secs),
        bindCount: per(d('bindCount'), secs),
      };
    });
    this.previous = new Map(current.map((c) => [c.database, c]));
    this.previousAt = now;
  }

  /** Averages of the last complete period; zeros for a database seen only since. */
  averagesByDatabase(): CounterAverages[] {
    const byDb = new Map(this.averages.map((a) => [a.database, a]));
    return this.totalsByDatabase().map(
      (t) =>
        byDb.get(t.database) ?? {
          database: t.database,
          serverAssignments: 0,
          xactCount: 0,
          queryCount: 0,
          bytesIn: 0,
          bytesOut: 0,
          xactTimeUs: 0,
          queryTimeUs: 0,
          waitTimeUs: 0,
          clientParseCount: 0,
          serverParseCount: 0,
          bindCount: 0,
        },
    );
  }
}
