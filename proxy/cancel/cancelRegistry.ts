// The proxy issues its own BackendKeyData: clients never see a server's pid and secret, because
// their session moves between servers. The pid carries the issuing replica's id, so a cancel that
// lands on another replica (a Service balances each TCP connection) can be routed back to it.
// Everything else in a key is random: a cancel key is the only thing that lets a stranger
// interrupt someone's query, so one session's key must say nothing about another's.
import { randomInt, timingSafeEqual } from 'node:crypto';

const COUNTER_BITS = 22;
const COUNTER_MASK = (1 << COUNTER_BITS) - 1;

/** pid = (replicaId + 1) << 22 | low bits: positive as an int32 for every replicaId 0-255. */
export const makeCancelPid = (replicaId: number, low: number): number => (((replicaId + 1) << COUNTER_BITS) | (low & COUNTER_MASK)) >>> 0;
export const replicaOfCancelPid = (pid: number): number => (pid >>> COUNTER_BITS) - 1;

export interface CancelKey {
  pid: number;
  secret: number;
}

export class CancelRegistry<T> {
  private readonly entries = new Map<number, { secret: number; target: T }>();

  constructor(
    readonly replicaId: number,
    /**
     * A uniformly random uint32 from a CSPRNG. The secret uses all 32 bits, as PostgreSQL's does;
     * drivers that read it as a signed int32 (node-postgres) write it back the same way, and
     * lookups compare it as unsigned, so both spellings of a key match.
     */
    private readonly randomUint32: () => number = () => randomInt(0, 2 ** 32),
  ) {}

  register(target: T): CancelKey {
    let pid: number;
    do {
      pid = makeCancelPid(this.replicaId, this.randomUint32());
    } while (this.entries.has(pid));
    const secret = this.randomUint32() >>> 0;
    this.entries.set(pid, { secret, target });
    return { pid, secret };
  }

  unregister(pid: number): void {
    this.entries.delete(pid);
  }

  /** The registered target when both pid and secret match (secret compared in constant time). */
  lookup(pid: number, secret: number): T | undefined {
    const e = this.entries.get(pid >>> 0);
    if (!e) return undefined;
    const a = Buffer.alloc(4);
    const b = Buffer.alloc(4);
    a.writeUInt32BE(e.secret >>> 0);
    b.writeUInt32BE(secret >>> 0);
    return timingSafeEqual(a, b) ? e.target : undefined;
  }

  isLocal(pid: number): boolean {
    return replicaOfCancelPid(pid) === this.replicaId;
  }
}
