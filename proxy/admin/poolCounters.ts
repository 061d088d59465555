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

/**
 * The counters, in the order of PgBouncer's SHOW STATS columns (server_assignment_count,
 * xact_count, query_count, received, sent, xact_time, query_time, wait_time, client_parse_count,
 * server_parse_count, bind_count): the one list every sum, average and SHOW row is built from.
 */
export const COUNTER_FIELDS = [
  'serverAssignments',
  'xactCount',
  'queryCount',
  'bytesIn',
  'bytesOut',
  'xactTimeUs',
  'queryTimeUs',
  'waitTimeUs',
  'clientParseCount',
  'serverParseCount',
  'bindCount',
] as const satisfies ReadonlyArray<keyof PoolCounters>;

export type CounterField = (typeof COUNTER_FIELDS)[number];

/** The totals of one database (SHOW STATS is per database, like PgBouncer's). */
export type CounterTotals = { database: string } & Record<CounterField, number>;

/**
 * Per-second rates and mean durations over the last averaging period (PgBouncer's stats_period):
 * the *TimeUs fields are means in microseconds (per transaction, per query, per lend), the others
 * per second.
 */
export type CounterAverages = CounterTotals;

/** Durations are averaged over their own events, not over time. */
const MEAN_OVER: Partial<Record<CounterField, CounterField>> = { xactTimeUs: 'xactCount', queryTimeUs: 'queryCount', waitTimeUs: 'serverAssignments' };

const zeroTotals = (database: string): CounterTotals => {
  const t = { database } as CounterTotals;
  for (const f of COUNTER_FIELDS) t[f] = 0;
  return t;
};

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
      for (const f of COUNTER_FIELDS) t[f] += c[f];
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
      const d = (f: CounterField): number => c[f] - p[f];
      const per = (n: number, over: number): number => (over > 0 ? Math.round(n / over) : 0);
      const a = zeroTotals(c.database);
      for (const f of COUNTER_FIELDS) {
        const over = MEAN_OVER[f];
        a[f] = per(d(f), over !== undefined ? d(over) : secs);
      }
      return a;
    });
    this.previous = new Map(current.map((c) => [c.database, c]));
    this.previousAt = now;
  }

  /** Averages of the last complete period; zeros for a database seen only since. */
  averagesByDatabase(): CounterAverages[] {
    const byDb = new Map(this.averages.map((a) => [a.database, a]));
    return this.totalsByDatabase().map((t) => byDb.get(t.database) ?? zeroTotals(t.database));
  }
}
