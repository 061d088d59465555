// How far behind the writer a standby is, in time and in WAL bytes. Time is measured against the
// writer's own WAL position as the health checks saw it move: a standby that has replayed up to
// the writer's position of time t is (now - t) behind, whatever its transactions' timestamps say.
// So an idle primary never makes a standby look late, and a standby whose replay is paused while
// the primary writes falls behind by exactly the time since it stopped. Pure: fed one writer
// position per round, asked about each standby.

/** A WAL position ("16/B374D848") as a number of bytes (exact below 2^53, i.e. 8 PB). */
export function parseLsn(lsn: string | null | undefined): number | null {
  if (!lsn) return null;
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (!m) return null;
  return parseInt(m[1]!, 16) * 2 ** 32 + parseInt(m[2]!, 16);
}

export interface Lag {
  /** How long ago the writer was where this standby has replayed to; 0 when caught up. */
  ms: number;
  /** WAL bytes the writer has that this standby has not replayed. */
  bytes: number;
}

export class WriterHistory {
  /**
   * (time, writer position) from the health checks, oldest first, positions increasing: each
   * point says "the writer was still at lsn as late as at".
   */
  private readonly points: Array<{ at: number; lsn: number }> = [];

  /** @param keepMs how far back to remember (a standby behind all of it is at least that late). */
  constructor(private readonly keepMs: number) {}

  /** The writer's position as a check saw it. A new writer (failover) starts a new history. */
  observe(at: number, lsn: number): void {
    const last = this.points[this.points.length - 1];
    if (last && lsn < last.lsn) this.points.length = 0;
    const tail = this.points[this.points.length - 1];
    if (tail && tail.lsn === lsn) tail.at = at;
    else this.points.push({ at, lsn });
    while (this.points.length > 1 && this.points[0]!.at < at - this.keepMs) this.points.shift();
  }

  clear(): void {
    this.points.length = 0;
  }

  /** The lag of a standby that has replayed up to `replayLsn`, or null before the writer was seen. */
  lag(now: number, replayLsn: number): Lag | null {
    const latest = this.points[this.points.length - 1];
    if (!latest) return null;
    if (replayLsn >= latest.lsn) return { ms: 0, bytes: 0 };
    // The standby has everything the writer had the last time the writer was at or before its
    // position: its data is as of then.
    for (let i = this.points.length - 1; i >= 0; i--) {
      if (this.points[i]!.lsn <= replayLsn) return { ms: Math.max(0, now - this.points[i]!.at), bytes: latest.lsn - replayLsn };
    }
    // Behind everything remembered: at least that old.
    return { ms: Math.max(this.keepMs, now - this.points[0]!.at), bytes: latest.lsn - replayLsn };
  }
}
