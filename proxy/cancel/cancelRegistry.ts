// The proxy issues its own BackendKeyData: clients never see a server's pid and secret, because
// their session moves between servers. The pid carries the issuing replica's id, so a cancel that
// lands on another replica (a Service balances each TCP connection) can be routed back to it.
import { randomInt, timingSafeEqual } from 'node:crypto';

const COUNTER_BITS = 22;
const COUNTER_MASK = (1 << COUNTER_BITS) - 1;

/** pid = (replicaId + 1) << 22 | counter: positive as an int32 for every replicaId 0-255. */
export const makeCancelPid = (replicaId: number, counter: number): number => (((replicaId + 1) << COUNTER_BITS) | (counter & COUNTER_MASK)) >>> 0;
export const replicaOfCancelPid = (pid: number): number => (pid >>> COUNTER_BITS) - 1;

export interface CancelKey {
  pid: number;
  secret: number;
}

export class CancelRegistry<T> {
  private readonly entries = new Map<number, { secret: number; target: T }>();
  private counter = 0;

  constructor(
    readonly replicaId: number,
    // Below 2^31: some drivers (node-postgres) serialize the secret as a signed int32.
    private readonly randomSecret: () => number = () => randomInt(0, 2 ** 31),
  ) {}

  register(target: T): CancelKey {
    let pid: number;
    do {
      this.counter = (this.counter + 1) & COUNTER_MASK;
      pid = makeCancelPid(this.replicaId, this.counter);
    } while (this.entries.has(pid));
    const secret = this.randomSecret() >>> 0;
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
