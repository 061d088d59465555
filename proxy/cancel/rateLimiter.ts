// Per-source token buckets for cancel requests. A cancel key can only be guessed by trying keys,
// and PostgreSQL answers no cancel either way, so the one thing that bounds guessing is how many
// tries a source gets: a small burst, then a steady rate. Legitimate clients send a cancel now and
// then; a source that sends hundreds a second is guessing.
import { isIPv4, isIPv6 } from 'node:net';

export interface RateLimit {
  /** Tokens added per second. */
  perSecond: number;
  /** Bucket size: how many requests may come at once. */
  burst: number;
}

/**
 * The unit a limit applies to: an IPv4 address, or an IPv6 /64 (one host commonly has a whole
 * /64 to pick addresses from). IPv4-mapped IPv6 addresses count as their IPv4 address.
 */
export function sourceKey(address: string | undefined): string {
  if (!address) return '';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address) || !isIPv6(address)) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/**
 * Token buckets kept as the generic cell rate algorithm: per source one number, the time at which
 * its bucket will be full again. A request fits when that time is at most (burst - 1) intervals
 * ahead of now; a refused request changes nothing.
 */
export class SourceRateLimiter {
  private readonly fullAt = new Map<string, number>();

  constructor(
    private readonly now: () => number,
    /** Sources remembered at most; full buckets are forgotten first, then the least recently seen. */
    private readonly maxSources = 10_000,
  ) {}

  /** Takes one token from the source's bucket; false when it is empty. */
  take(source: string, limit: RateLimit): boolean {
    const now = this.now();
    const interval = 1000 / limit.perSecond;
    let full = this.fullAt.get(source);
    if (full === undefined) {
      if (this.fullAt.size >= this.maxSources) this.forget(now);
      full = now;
    } else {
      // Re-inserted below: Map order is then least recently seen first.
      this.fullAt.delete(source);
    }
    const base = Math.max(full, now);
    const allowed = base + interval - now <= interval * limit.burst;
    this.fullAt.set(source, allowed ? base + interval : full);
    return allowed;
  }

  get size(): number {
    return this.fullAt.size;
  }

  private forget(now: number): void {
    for (const [k, full] of this.fullAt) if (full <= now) this.fullAt.delete(k);
    // Still full: drop the least recently seen tenth.
    let n = this.fullAt.size >= this.maxSources ? Math.ceil(this.maxSources / 10) : 0;
    for (const k of this.fullAt.keys()) {
      if (n-- <= 0) break;
      this.fullAt.delete(k);
    }
  }
}
