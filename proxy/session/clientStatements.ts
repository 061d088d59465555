// A client's protocol-level prepared statements, multiplexed over shared backends: its names map to
// proxy-owned server statements (preparedStatements.ts), prepared lazily on whichever backend it
// holds; its unnamed statement follows it from backend to backend; Close is answered locally.
// Every answer keeps PostgreSQL's order and errors (42P05, 26000, 0A000 after DDL, skipped
// requests after an error in a pipeline), through the session's response queue.
import { serialize } from 'pg-protocol';
import type { Classification } from '../classify/classifier.js';
import type { PoolKey } from '../pool/backendPool.js';
import { locateParse, readBindNames, readParse, readTarget } from '../protocol/clientMessages.js';
import { closeComplete, errorResponse, parseComplete } from '../protocol/serverMessages.js';
import type { BackendConnection } from '../server/backendConnection.js';
import { type ClientStatement, type KnownStatements, rewriteBindStatement, serverStatementName } from './preparedStatements.js';
import type { RequestType, Slot } from './responseQueue.js';

/** How the statements reach the server and the client: the session's response queue and backend. */
export interface StatementHost {
  readonly key: PoolKey;
  readonly knownStatements: KnownStatements;
  searchPath(): string;
  /** Classify SQL text sitting in a message; `execute`: it runs now (a Bind), else it is only prepared. */
  judgeBytes(msg: Buffer, start: number, end: number, execute: boolean): Classification;
  judgeText(sql: string, execute: boolean): Classification;
  /** A request the server answers, visible to the client. */
  forward(msg: Buffer, req: RequestType, done?: (ok: boolean) => void): void;
  /** A request of the proxy's own, answered unseen. */
  hidden(msg: Buffer, slot: Omit<Slot, 'kind'>): void;
  /** An answer the proxy gives itself, in its turn. */
  local(bytes: Buffer, req: RequestType, undo?: () => void): void;
  /** An error the proxy gives in its turn; the server would skip what follows up to Sync. */
  failLocally(code: string, message: string): void;
  /** A name change to undo because the server skipped its message (newest first). */
  pushUndo(step: () => void): void;
  /** The server's latest error said "cached plan must not change result type". */
  staleStatementError(): boolean;
  /** The backend in use, if any. */
  backend(): BackendConnection | null;
}

/** What a Bind ran, for the session: the classification of the statement's text. */
export interface BoundStatement {
  portal: string;
  classification: Classification | null;
}

export class ClientStatements {
  private readonly named = new Map<string, ClientStatement>();
  /** The client's latest unnamed Parse, for a Bind("") that lands on another backend. */
  private unnamedParse: Buffer | null = null;
  private unnamedPlain = true;
  private unnamedGeneration = 0;
  /** What the session's unnamed statement is, for a backend to know whose it holds. */
  private readonly identity = {};

  constructor(private readonly host: StatementHost) {}

  /** DISCARD ALL / DEALLOCATE ALL: every name is gone. */
  clear(): void {
    this.named.clear();
    this.unnamedParse = null;
  }

  has(name: string): boolean {
    return this.named.has(name);
  }

  /**
   * Outside a transaction and holding no backend: a Parse of a statement some backend of this
   * user and database already prepared, or a Close of a name, needs no server. Returns the answer
   * to give, or null when a backend is needed.
   */
  answerWithoutBackend(t: number, msg: Buffer): { answer: Buffer; skipToSync?: boolean } | null {
    if (t === 0x43 /* C */) {
      const target = readTarget(msg);
      if (target.kind !== 'S' || target.name === '') return null;
      this.named.delete(target.name);
      return { answer: closeComplete() };
    }
    if (t !== 0x50 /* P */) return null;
    const parse = readParse(msg);
    if (parse.name === '') return null;
    if (this.named.has(parse.name)) {
      return { answer: errorResponse({ severity: 'ERROR', code: '42P05', message: `prepared statement "${parse.name}" already exists` }), skipToSync: true };
    }
    const serverName = serverStatementName(this.host.searchPath(), parse.query, parse.paramTypes);
    if (!this.host.knownStatements.has(this.host.key, serverName)) return null;
    const c = this.host.judgeText(parse.query, false);
    if (c.pins.length > 0 || c.settings.length > 0 || c.resets.length > 0) return null;
    this.named.set(parse.name, this.entry(serverName, parse.query, parse.paramTypes, c));
    return { answer: parseComplete() };
  }

  onParse(b: BackendConnection, msg: Buffer): void {
    const at = locateParse(msg);
    if (at.nameEnd === 5) {
      const c = this.host.judgeBytes(msg, at.nameEnd + 1, at.textEnd, false);
      this.unnamedParse = msg;
      this.unnamedPlain = isPlain(c);
      const generation = ++this.unnamedGeneration;
      b.unnamedOwner = { session: this.identity, generation };
      this.host.forward(msg, 'P');
      return;
    }
    const parse = readParse(msg);
    const c = this.host.judgeText(parse.query, false);
    if (this.named.has(parse.name)) {
      this.host.failLocally('42P05', `prepared statement "${parse.name}" already exists`);
      return;
    }
    const serverName = serverStatementName(this.host.searchPath(), parse.query, parse.paramTypes);
    const entry = this.entry(serverName, parse.query, parse.paramTypes, c);
    // Registered now so that a Bind pipelined behind this Parse finds it; undone if the Parse fails.
    this.named.set(parse.name, entry);
    const unregister = (): void => void this.named.delete(parse.name);
    if (b.statements.has(serverName)) {
      this.host.local(parseComplete(), 'P', unregister);
      return;
    }
    this.closeEvicted(b.statements.add(serverName));
    this.host.forward(entry.parse, 'P', (ok) => {
      if (ok) {
        b.statements.confirm(serverName);
        this.host.knownStatements.add(this.host.key, serverName);
      } else {
        b.statements.forget(serverName);
        this.host.pushUndo(unregister);
      }
    });
  }

  /** Forwards a Bind (to the server's name of the statement); returns what it ran for the session to track. */
  onBind(b: BackendConnection, msg: Buffer): BoundStatement {
    const { statement, portal } = readBindNames(msg);
    if (statement === '') {
      let classification: Classification | null = null;
      if (this.unnamedParse && !this.unnamedPlain) {
        const at = locateParse(this.unnamedParse);
        classification = this.host.judgeBytes(this.unnamedParse, at.nameEnd + 1, at.textEnd, true);
      }
      this.ensureUnnamed(b);
      this.host.forward(msg, 'B');
      return { portal, classification };
    }
    const entry = this.named.get(statement);
    if (!entry) {
      this.host.failLocally('26000', `prepared statement "${statement}" does not exist`);
      return { portal, classification: null };
    }
    if (entry.stale) {
      // PostgreSQL fails a statement whose result type changed until the client prepares it again.
      this.host.failLocally('0A000', 'cached plan must not change result type');
      return { portal, classification: null };
    }
    const classification = entry.plain ? null : this.host.judgeText(entry.query, true);
    this.ensurePrepared(b, entry);
    this.host.forward(rewriteBindStatement(msg, entry.serverName), 'B', entry.bindDone);
    return { portal, classification };
  }

  onDescribe(b: BackendConnection, msg: Buffer): void {
    const target = readTarget(msg);
    if (target.kind !== 'S') {
      this.host.forward(msg, 'D');
      return;
    }
    if (target.name === '') {
      this.ensureUnnamed(b);
      this.host.forward(msg, 'D');
      return;
    }
    const entry = this.named.get(target.name);
    if (!entry) {
      this.host.failLocally('26000', `prepared statement "${target.name}" does not exist`);
      return;
    }
    this.ensurePrepared(b, entry);
    this.host.forward(serialize.describe({ type: 'S', name: entry.serverName }), 'D');
  }

  onClose(msg: Buffer): void {
    const target = readTarget(msg);
    if (target.kind === 'S' && target.name !== '') {
      // The server statement stays for others; the client's name is gone, as PostgreSQL would have it.
      const previous = this.named.get(target.name);
      this.named.delete(target.name);
      this.host.local(closeComplete(), 'C', previous && (() => void this.named.set(target.name, previous)));
      return;
    }
    this.host.forward(msg, 'C');
  }

  private entry(serverName: string, query: string, types: readonly number[], c: Classification): ClientStatement {
    const entry: ClientStatement = {
      serverName,
      query,
      plain: isPlain(c),
      parse: serialize.parse({ name: serverName, text: query, types: [...types] }),
      // One callback per statement, not per Bind: whether a failed Bind means the server's plan is stale.
      bindDone: (ok) => {
        // "cached plan must not change result type": the server statement is replaced on its next
        // use (so other clients do not keep failing), and this client's name fails until re-prepared.
        if (!ok && this.host.staleStatementError()) {
          this.host.backend()?.statements.invalidate(serverName);
          entry.stale = true;
        }
      },
    };
    return entry;
  }

  /** Makes sure the backend has the server statement behind a client statement name. */
  private ensurePrepared(b: BackendConnection, entry: ClientStatement): void {
    if (b.statements.has(entry.serverName)) return;
    this.closeEvicted(b.statements.add(entry.serverName));
    this.host.hidden(entry.parse, {
      req: 'P',
      // If the statement no longer prepares (a dropped table), the client sees why, as it would from the server.
      forwardErrors: true,
      done: (ok) => {
        if (!ok) {
          b.statements.forget(entry.serverName);
          return;
        }
        b.statements.confirm(entry.serverName);
        this.host.knownStatements.add(this.host.key, entry.serverName);
      },
    });
  }

  private ensureUnnamed(b: BackendConnection): void {
    const owner = b.unnamedOwner;
    if (!this.unnamedParse || (owner && owner.session === this.identity && owner.generation === this.unnamedGeneration)) return;
    b.unnamedOwner = { session: this.identity, generation: this.unnamedGeneration };
    this.host.hidden(this.unnamedParse, { req: 'P', forwardErrors: true });
  }

  /** Closes what must go before a Parse: least recently used statements, or a stale one of the same name. */
  private closeEvicted(toClose: string[]): void {
    for (const name of toClose) this.host.hidden(serialize.close({ type: 'S', name }), { req: 'C' });
  }
}

/** Nothing to pin, track or restore when the statement runs. */
function isPlain(c: Classification): boolean {
  return c.pins.length === 0 && c.settings.length === 0 && c.resets.length === 0 && !c.discardAll;
}
