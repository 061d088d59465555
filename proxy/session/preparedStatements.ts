// Protocol-level prepared statements, multiplexed: a client's statement names map to proxy-owned
// server names derived from (search_path, query text, parameter types), so every client that
// prepares the same statement shares one server-side statement per backend, prepared lazily.
import { createHash } from 'node:crypto';
import { LruMap } from '../runtime/lruMap.js';

/**
 * The server-side name for a statement. search_path is part of the key: the same text resolves
 * to different tables under different search paths, so it must not share a plan. `catalog` says
 * which state of the catalog the statement was analysed in (KnownStatements' epoch): a Parse made
 * after DDL never shares a statement analysed before it, as every Parse on PostgreSQL is analysed
 * afresh. Names stay 48 characters (PostgreSQL keys prepared statements by their first 63 bytes).
 */
export function serverStatementName(searchPath: string, query: string, paramTypes: readonly number[], catalog = ''): string {
  const h = createHash('sha1');
  h.update(searchPath);
  h.update('\0');
  h.update(query);
  h.update('\0');
  h.update(paramTypes.join(','));
  if (catalog !== '') {
    h.update('\0');
    h.update(catalog);
  }
  return `dbproxy_${h.digest('hex')}`;
}

export interface ClientStatement {
  serverName: string;
  /** Its text: the SETs in it are tracked each time it runs (unless `plain`). */
  query: string;
  /** The parameter types the client gave (0: let the server infer). */
  types: readonly number[];
  /** The classifier found nothing in its text: nothing to track or pin when it runs. */
  plain: boolean;
  /** The Parse message that creates it on a backend, under its server name. */
  parse: Buffer;
  /**
   * Re-analysed on a backend after DDL, its result type is no longer the one it was prepared with:
   * its next Bind or Describe fails with 0A000, as PostgreSQL's plan cache fails it.
   */
  changed?: boolean;
  /** Answer of each Bind of it (one callback per statement, not per Bind). */
  bindDone: (ok: boolean, failedHere?: boolean) => void;
}

/**
 * What a statement's analysis gave, from its Describe: the parameter types (fixed at Parse, as
 * PostgreSQL fixes them) and the result columns (names, types and type modifiers, what PostgreSQL
 * compares before it says "cached plan must not change result type").
 */
export interface StatementShape {
  readonly params: readonly number[];
  readonly result: string;
}

/** The shape in a Describe's answer (ParameterDescription, then RowDescription or NoData); null if incomplete. */
export function shapeOf(messages: readonly Buffer[]): StatementShape | null {
  let params: number[] | null = null;
  let result: string | null = null;
  for (const m of messages) {
    if (m[0] === 0x74 /* t */) {
      const n = m.readInt16BE(5);
      params = [];
      for (let i = 0; i < n; i++) params.push(m.readUInt32BE(7 + 4 * i));
    } else if (m[0] === 0x6e /* n */) {
      result = '-';
    } else if (m[0] === 0x54 /* T */) {
      const n = m.readInt16BE(5);
      const cols: string[] = [];
      let i = 7;
      for (let k = 0; k < n; k++) {
        const end = m.indexOf(0, i);
        const name = m.toString('utf8', i, end);
        i = end + 1;
        // table OID (4), column number (2), type OID (4), type length (2), type modifier (4), format (2)
        cols.push(`${name}\0${m.readUInt32BE(i + 6)}\0${m.readInt32BE(i + 12)}`);
        i += 18;
      }
      result = cols.join('\0\0');
    }
  }
  return params !== null && result !== null ? { params, result } : null;
}

/** LRU of the statements prepared on one backend connection, by server name. */
export class BackendStatementCache {
  private readonly names: LruMap<string, 'ready' | 'preparing'>;

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

  /** Records a Parse about to be sent; returns the names to Close first (evicted). */
  add(name: string): string[] {
    const toClose: string[] = [];
    for (const [evicted] of this.names.set(name, 'preparing')) toClose.push(evicted);
    return toClose;
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
  /** Known names, with their shape once a Describe told it (null until then). */
  private readonly names = new Map<string, StatementShape | null>();
  /** Catalog epoch per database: moves on DDL, and when a statement fails because the catalog changed. */
  private readonly epochs = new Map<string, number>();

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
    if (this.names.size >= this.capacity) this.names.delete(this.names.keys().next().value as string);
    this.names.set(e, null);
  }

  /** The shape of a known statement, if a Describe has told it. */
  shape(owner: { user: string; database: string }, name: string): StatementShape | null {
    return this.names.get(KnownStatements.entry(owner, name)) ?? null;
  }

  setShape(owner: { user: string; database: string }, name: string, shape: StatementShape): void {
    const e = KnownStatements.entry(owner, name);
    if (this.names.has(e)) this.names.set(e, shape);
  }

  /**
   * The catalog state statements are analysed in now, for one database (a DDL by any user there
   * can change what any user's statement means).
   */
  epoch(database: string): number {
    return this.epochs.get(database) ?? 0;
  }

  /** The catalog changed (or may have): statements Parsed from now on are analysed afresh. */
  bump(database: string): void {
    this.epochs.set(database, this.epoch(database) + 1);
  }
}
