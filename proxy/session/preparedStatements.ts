// Protocol-level prepared statements, multiplexed: a client's statement names map to proxy-owned
// server names derived from (search_path, query text, parameter types), so every client that
// prepares the same statement shares one server-side statement per backend, prepared lazily.
import { createHash } from 'node:crypto';
import { LruMap } from '../runtime/lruMap.js';

/**
 * The server-side name for a statement. search_path is part of the key: the same text resolves
 * to different tables under different search paths, so it must not share a plan.
 */
export function serverStatementName(searchPath: string, query: string, paramTypes: readonly number[]): string {
  const h = createHash('sha1');
  h.update(searchPath);
  h.update('\0');
  h.update(query);
  h.update('\0');
  h.update(paramTypes.join(','));
  return `dbproxy_${h.digest('hex')}`;
}

export interface ClientStatement {
  serverName: string;
  /** Its text: the SETs in it are tracked each time it runs (unless `plain`). */
  query: string;
  /** The classifier found nothing in its text: nothing to track or pin when it runs. */
  plain: boolean;
  /** The Parse message that creates it on a backend, under its server name. */
  parse: Buffer;
  /** Its result type changed under it (DDL): it fails until the client prepares it again. */
  stale?: boolean;
  /** Answer of each Bind of it (one callback per statement, not per Bind). */
  bindDone: (ok: boolean) => void;
}

/** LRU of the statements prepared on one backend connection, by server name. */
export class BackendStatementCache {
  private readonly names: LruMap<string, 'ready' | 'preparing'>;
  /** Still on the server but unusable (its plan's result type changed): Close before re-preparing. */
  private readonly stale = new Set<string>();

  constructor(capacity: number) {
    this.names = new LruMap(capacity);
  }

  get capacity(): number {
    return this.names.capacity;
  }

  set capacity(n: number) {
    this.names.capacity = n;
  }

  get size(): number {
    return this.names.size;
  }

  /** Prepared or being prepared (and now most recently used): either way, a Parse for it must not be sent again. */
  has(name: string): boolean {
    return this.names.get(name) !== undefined;
  }

  /** Records a Parse about to be sent; returns the names to Close first (evicted or stale). */
  add(name: string): string[] {
    const toClose: string[] = [];
    if (this.stale.delete(name)) toClose.push(name);
    for (const [evicted] of this.names.set(name, 'preparing')) toClose.push(evicted);
    return toClose;
  }

  /** The server statement exists but must be replaced before it is used again. */
  invalidate(name: string): void {
    if (this.names.delete(name)) this.stale.add(name);
  }

  confirm(name: string): void {
    if (this.names.peek(name) !== undefined) this.names.set(name, 'ready');
  }

  /** The Parse failed or was skipped, or the server's statement must be replaced. */
  forget(name: string): void {
    this.names.delete(name);
  }

  clear(): void {
    this.names.clear();
    this.stale.clear();
  }
}

/**
 * Bind with its statement name replaced, the portal name and the parameters kept byte for byte:
 * hand-written because pg-protocol's serializer builds a Bind from values, not from bytes. One
 * allocation: it runs for every Bind of a named statement.
 */
export function rewriteBindStatement(msg: Buffer, statement: string): Buffer {
  const portalEnd = msg.indexOf(0, 5);
  const stmtEnd = msg.indexOf(0, portalEnd + 1);
  const nameLen = Buffer.byteLength(statement);
  const total = portalEnd + 1 + nameLen + 1 + (msg.length - stmtEnd - 1);
  const out = Buffer.allocUnsafe(total);
  out[0] = 0x42; // 'B'
  out.writeUInt32BE(total - 1, 1);
  msg.copy(out, 5, 5, portalEnd + 1);
  let o = portalEnd + 1;
  o += out.write(statement, o, 'utf8');
  out[o++] = 0;
  msg.copy(out, o, stmtEnd + 1);
  return out;
}

/**
 * Server statement names that some backend has prepared successfully, per (user, database): valid
 * SQL for their search_path that this user may prepare. A client preparing one of these while it
 * holds no backend is answered without borrowing one, which keeps clients that prepare
 * synchronously (libpq's PQprepare, pgbench -M prepared) from waiting on backends held by their
 * own idle-in-transaction siblings. Keyed by user and database because whether a text prepares
 * depends on who prepares it (privileges, the user's own schema in search_path): a Parse answered
 * locally for another tenant would reveal that tenant's query texts and move its errors.
 */
export class KnownStatements {
  private readonly names = new Set<string>();

  constructor(private readonly capacity = 10_000) {}

  private static entry(owner: { user: string; database: string }, name: string): string {
    return `${owner.user}\0${owner.database}\0${name}`;
  }

  has(owner: { user: string; database: string }, name: string): boolean {
    return this.names.has(KnownStatements.entry(owner, name));
  }

  add(owner: { user: string; database: string }, name: string): void {
    const e = KnownStatements.entry(owner, name);
    if (this.names.has(e)) return;
    if (this.names.size >= this.capacity) this.names.delete(this.names.values().next().value as string);
    this.names.add(e);
  }
}
