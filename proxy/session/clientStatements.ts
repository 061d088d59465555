// A client's protocol-level prepared statements, multiplexed over shared backends: its names map to
// proxy-owned server statements (preparedStatements.ts), prepared lazily on whichever backend it
// holds; its unnamed statement follows it from backend to backend; Close is answered locally.
// Every answer keeps PostgreSQL's order and errors (42P05, 26000, 0A000 after DDL, skipped
// requests after an error in a pipeline), through the session's response queue.
//
// What a statement means is fixed when it is Parsed, as on PostgreSQL:
// - A server statement is shared only by Parses made in the same state of the catalog (the
//   epoch in its name, KnownStatements): after DDL, a Parse gets a statement analysed afresh,
//   never one analysed before the change (new parameter types, no 0A000, no stale type OIDs).
// - A client's statement keeps the analysis it got (parameter types, result columns). Where the
//   server statement behind it still exists, PostgreSQL's own plan cache re-checks it; where the
//   proxy prepares it again on another backend, the proxy makes the same check first (same
//   parameter types, same result columns, else 0A000) and only then lets the Bind run.
// - A session pinned for SQL-level PREPARE/EXECUTE/DEALLOCATE shares one namespace with the
//   server, as on PostgreSQL: its protocol-level statements are prepared there under their own
//   names, and from then on its names go to its server unchanged.
import { serialize } from 'pg-protocol';
import type { Classification } from '../classify/classifier.js';
import type { PoolKey } from '../pool/backendPool.js';
import { locateParse, readBindNames, readParse, readTarget } from '../protocol/clientMessages.js';
import { closeComplete, errorResponse, parameterDescription, parseComplete } from '../protocol/serverMessages.js';
import type { BackendConnection } from '../backend/backendConnection.js';
import { type ClientStatement, type KnownStatements, rewriteBindStatement, serverStatementName, shapeOf } from './preparedStatements.js';
import type { RequestType, Slot } from './responseQueue.js';

/** How the statements reach the server and the client: the session's response queue and backend. */
export interface StatementHost {
  readonly key: PoolKey;
  readonly id: number;
  readonly knownStatements: KnownStatements;
  searchPath(): string;
  /** Classify SQL text sitting in a message; `execute`: it runs now (a Bind), else it is only prepared. */
  judgeBytes(msg: Buffer, start: number, end: number, execute: boolean): Classification;
  judgeText(sql: string, execute: boolean): Classification;
  /** A request the server answers, visible to the client. */
  forward(msg: Buffer, req: RequestType, done?: (ok: boolean, failedHere?: boolean) => void): void;
  /** A request of the proxy's own, answered unseen. */
  hidden(msg: Buffer, slot: Omit<Slot, 'kind'>): void;
  /** An answer the proxy gives itself, in its turn. */
  local(bytes: Buffer, req: RequestType, undo?: () => void): void;
  /** An error the proxy gives in its turn; the server would skip what follows up to Sync. */
  failLocally(code: string, message: string): void;
  /** A name change to undo because the server skipped its message (newest first). */
  pushUndo(step: () => void): void;
  /** The server's latest error says the catalog changed under a prepared statement. */
  catalogChangedError(): boolean;
  /** Nothing more of the client's has arrived after the message being handled. */
  loneMessage(): boolean;
  /** Sends a Flush: the server answers what it was sent so far without waiting for a Sync. */
  flushServer(): void;
  /** Lets the message that waited for a check go on (the check's answer has come). */
  resume(): void;
}

/** What a Bind ran, for the session: the classification of the statement's text. */
export interface BoundStatement {
  portal: string;
  classification: Classification | null;
}

const STATEMENT_CHANGED = 'cached plan must not change result type';
/** The result of a statement that returns no rows, in a StatementShape. */
const NO_DATA = '-';

export class ClientStatements {
  private readonly named = new Map<string, ClientStatement>();
  /** The client's latest unnamed Parse, for a Bind("") that lands on another backend. */
  private unnamedParse: Buffer | null = null;
  private unnamedPlain = true;
  private unnamedGeneration = 0;
  /** What the session's unnamed statement is, for a backend to know whose it holds. */
  private readonly identity = {};
  /** Temporary objects this session created: its own later Parses are not shared with anyone. */
  private localCatalog = 0;
  /** Pinned for SQL-level prepared statements: names go to the server as the client gives them. */
  private passthrough = false;
  /** The backend where the client's protocol-level statements were prepared under their own names. */
  private materializedOn: BackendConnection | null = null;

  constructor(private readonly host: StatementHost) {}

  /** DISCARD ALL / DEALLOCATE ALL: every name is gone. */
  clear(): void {
    this.named.clear();
    this.unnamedParse = null;
  }

  has(name: string): boolean {
    return this.named.has(name);
  }

  /** A simple Query ran: as on PostgreSQL, it dropped the session's unnamed statement. */
  queryRan(): void {
    this.unnamedParse = null;
  }

  /** SQL `DEALLOCATE name` of one of the client's protocol-level statements: true if it was one (now gone). */
  deallocate(name: string): boolean {
    if (this.passthrough) return false;
    return this.named.delete(name);
  }

  /** This session created temporary objects (or dropped them at commit): names may now mean other things to it alone. */
  catalogChangedLocally(): void {
    this.localCatalog++;
  }

  /**
   * The session is pinned for SQL-level PREPARE/EXECUTE/DEALLOCATE, which share one namespace
   * with protocol-level statements: from now on its names go to its (own) server unchanged, and
   * the statements it prepared before are prepared there under their own names.
   */
  enterPassthrough(b: BackendConnection | null, midBatch: boolean): void {
    this.passthrough = true;
    if (b !== null) this.materialize(b, midBatch);
  }

  /** A backend was attached: a session in passthrough needs its statements there. */
  attached(b: BackendConnection): void {
    if (this.passthrough && this.materializedOn !== b) this.materialize(b, false);
  }

  private materialize(b: BackendConnection, midBatch: boolean): void {
    if (this.materializedOn === b) return;
    this.materializedOn = b;
    if (this.named.size === 0) return;
    for (const [name, entry] of this.named) {
      this.host.hidden(serialize.parse({ name, text: entry.query, types: [...entry.types] }), { req: 'P', forwardErrors: midBatch });
    }
    // Outside a batch, a failed Parse must not make the server skip the client's next Query.
    if (!midBatch) this.host.hidden(serialize.sync(), { req: 'S' });
  }

  /** The catalog state Parses are analysed in now, for the server name. */
  private catalog(): string {
    const epoch = this.host.knownStatements.epoch(this.host.key.database);
    return this.localCatalog === 0 ? String(epoch) : `${epoch}/${this.host.id}.${this.localCatalog}`;
  }

  /**
   * Outside a transaction and holding no backend: a Parse of a statement some backend of this
   * user and database already prepared (in the current state of the catalog), or a Close of a
   * name, needs no server. Returns the answer to give, or null when a backend is needed.
   */
  answerWithoutBackend(t: number, msg: Buffer): { answer: Buffer; skipToSync?: boolean } | null {
    if (t === 0x43 /* C */) {
      const target = readTarget(msg);
      if (target.kind !== 'S' || target.name === '') return null;
      this.named.delete(target.name);
      return { answer: closeComplete() };
    }
    if (t !== 0x50 /* P */) return null;
    // A Parse nothing follows yet (its Describe or Sync still to come): PostgreSQL starts the
    // statement there (statement_timeout runs from it), so the server must see it.
    if (this.host.loneMessage()) return null;
    const parse = readParse(msg);
    if (parse.name === '') return null;
    if (this.named.has(parse.name)) {
      return { answer: errorResponse({ severity: 'ERROR', code: '42P05', message: `prepared statement "${parse.name}" already exists` }), skipToSync: true };
    }
    const serverName = serverStatementName(this.host.searchPath(), parse.query, parse.paramTypes, this.catalog());
    if (!this.host.knownStatements.has(this.host.key, serverName)) return null;
    const c = this.host.judgeText(parse.query, false);
    if (!isPlain(c)) return null;
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
    if (this.passthrough) {
      // The server holds the client's names (and its SQL-prepared ones): it answers, 42P05 included.
      const entry = this.entry(parse.name, parse.query, parse.paramTypes, c);
      this.host.forward(msg, 'P', (ok) => {
        if (ok) this.named.set(parse.name, entry);
      });
      return;
    }
    if (this.named.has(parse.name)) {
      this.host.failLocally('42P05', `prepared statement "${parse.name}" already exists`);
      return;
    }
    const serverName = serverStatementName(this.host.searchPath(), parse.query, parse.paramTypes, this.catalog());
    const entry = this.entry(serverName, parse.query, parse.paramTypes, c);
    // Registered now so that a Bind pipelined behind this Parse finds it; undone if the Parse fails.
    this.named.set(parse.name, entry);
    const unregister = (): void => void this.named.delete(parse.name);
    if (b.statements.has(serverName)) {
      if (this.host.loneMessage()) {
        // Nothing follows it yet: let the server see a Parse now, as it would directly (its
        // statement_timeout starts there). The unnamed statement takes it, analysed afresh.
        b.unnamedOwner = null;
        this.host.forward(serialize.parse({ name: '', text: parse.query, types: parse.paramTypes }), 'P', (ok) => {
          if (!ok) this.host.pushUndo(unregister);
        });
        return;
      }
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
    this.learnShape(serverName);
  }

  /**
   * Forwards a Bind (to the server's name of the statement); returns what it ran for the session
   * to track, or null when the Bind must wait (the proxy is re-checking the statement first).
   */
  onBind(b: BackendConnection, msg: Buffer): BoundStatement | null {
    const { statement, portal } = readBindNames(msg);
    if (statement === '') {
      let classification: Classification | null = null;
      if (this.unnamedParse && !this.unnamedPlain) {
        const at = locateParse(this.unnamedParse);
        classification = this.host.judgeBytes(this.unnamedParse, at.nameEnd + 1, at.textEnd, true);
      }
      if (!this.ensureUnnamed(b)) {
        this.host.failLocally('26000', 'unnamed prepared statement does not exist');
        return { portal, classification: null };
      }
      this.host.forward(msg, 'B');
      return { portal, classification };
    }
    const entry = this.named.get(statement);
    if (this.passthrough) {
      this.host.forward(msg, 'B');
      return { portal, classification: entry && !entry.plain ? this.host.judgeText(entry.query, true) : null };
    }
    if (!entry) {
      this.host.failLocally('26000', `prepared statement "${statement}" does not exist`);
      return { portal, classification: null };
    }
    if (entry.changed) {
      entry.changed = false;
      this.host.failLocally('0A000', STATEMENT_CHANGED);
      return { portal, classification: null };
    }
    if (!this.ensurePrepared(b, entry)) return null;
    const classification = entry.plain ? null : this.host.judgeText(entry.query, true);
    this.host.forward(rewriteBindStatement(msg, entry.serverName), 'B', entry.bindDone);
    return { portal, classification };
  }

  /** Forwards a Describe; false when it must wait (the proxy is re-checking the statement first). */
  onDescribe(b: BackendConnection, msg: Buffer): boolean {
    const target = readTarget(msg);
    if (target.kind !== 'S' || this.passthrough) {
      this.host.forward(msg, 'D');
      return true;
    }
    if (target.name === '') {
      if (!this.ensureUnnamed(b)) {
        this.host.failLocally('26000', 'unnamed prepared statement does not exist');
        return true;
      }
      this.host.forward(msg, 'D');
      return true;
    }
    const entry = this.named.get(target.name);
    if (!entry) {
      this.host.failLocally('26000', `prepared statement "${target.name}" does not exist`);
      return true;
    }
    if (entry.changed) {
      entry.changed = false;
      // PostgreSQL describes the parameters (fixed at Parse) before it finds the result changed.
      const shape = this.host.knownStatements.shape(this.host.key, entry.serverName);
      if (shape !== null) this.host.local(parameterDescription(shape.params), 'D');
      this.host.failLocally('0A000', STATEMENT_CHANGED);
      return true;
    }
    if (!this.ensurePrepared(b, entry)) return false;
    this.host.forward(serialize.describe({ type: 'S', name: entry.serverName }), 'D', entry.bindDone);
    return true;
  }

  onClose(b: BackendConnection, msg: Buffer): void {
    const target = readTarget(msg);
    if (target.kind === 'S' && this.passthrough) {
      this.named.delete(target.name);
      this.host.forward(msg, 'C');
      return;
    }
    if (target.kind === 'S' && target.name !== '') {
      // The server statement stays for others; the client's name is gone, as PostgreSQL would have it.
      const previous = this.named.get(target.name);
      this.named.delete(target.name);
      this.host.local(closeComplete(), 'C', previous && (() => void this.named.set(target.name, previous)));
      return;
    }
    if (target.kind === 'S') {
      // The unnamed statement: the server's is closed only if it is this client's.
      this.unnamedParse = null;
      const owner = b.unnamedOwner;
      if (owner === null || owner.session !== this.identity) {
        this.host.local(closeComplete(), 'C');
        return;
      }
      b.unnamedOwner = null;
    }
    this.host.forward(msg, 'C');
  }

  private entry(serverName: string, query: string, types: readonly number[], c: Classification): ClientStatement {
    return {
      serverName,
      query,
      types,
      plain: isPlain(c),
      parse: serialize.parse({ name: serverName, text: query, types: [...types] }),
      // One callback per statement, not per Bind or Describe: a failure that says the catalog
      // changed under the statement (DDL the proxy did not see: another connection's, a
      // function's) means later Parses must be analysed afresh.
      bindDone: (ok, failedHere) => {
        if (!ok && failedHere === true && this.host.catalogChangedError()) this.host.knownStatements.bump(this.host.key.database);
      },
    };
  }

  /** Asks the server, unseen, what a statement it is preparing looks like, unless that is known. */
  private learnShape(serverName: string): void {
    const known = this.host.knownStatements;
    if (known.shape(this.host.key, serverName) !== null) return;
    const answer: Buffer[] = [];
    this.host.hidden(serialize.describe({ type: 'S', name: serverName }), {
      req: 'D',
      collect: answer,
      forwardErrors: true,
      done: (ok) => {
        const shape = ok ? shapeOf(answer) : null;
        if (shape !== null) known.setShape(this.host.key, serverName, shape);
      },
    });
  }

  /**
   * Makes sure the backend has the server statement behind a client statement name; false when
   * the client's message must wait for the answer of a check (see `recheck`).
   */
  private ensurePrepared(b: BackendConnection, entry: ClientStatement): boolean {
    if (b.statements.has(entry.serverName)) return true;
    const known = this.host.knownStatements;
    const shape = known.shape(this.host.key, entry.serverName);
    if (shape !== null && shape.result !== NO_DATA) {
      this.recheck(b, entry, shape.params, shape.result);
      return false;
    }
    // With its parameter types fixed, a statement that returns no rows means what it meant: no check needed.
    this.closeEvicted(b.statements.add(entry.serverName));
    this.host.hidden(shape === null ? entry.parse : serialize.parse({ name: entry.serverName, text: entry.query, types: [...shape.params] }), {
      req: 'P',
      // If the statement no longer prepares (a dropped table), the client sees why, as it would from the server.
      forwardErrors: true,
      done: (ok) => {
        if (!ok) {
          b.statements.forget(entry.serverName);
          return;
        }
        b.statements.confirm(entry.serverName);
        known.add(this.host.key, entry.serverName);
      },
    });
    if (shape === null) this.learnShape(entry.serverName);
    return true;
  }

  /**
   * This backend does not have the statement, which returns rows. The catalog may have changed
   * since the client prepared it (DDL through the proxy or not): PostgreSQL would re-analyse the
   * client's own statement with the parameter types fixed at its Parse, and fail it with 0A000 if
   * its result columns changed. The proxy does the same before the client's Bind (or Describe)
   * runs: Parse with those types, Describe, compare (one round trip, once per backend).
   */
  private recheck(b: BackendConnection, entry: ClientStatement, params: readonly number[], result: string): void {
    const name = entry.serverName;
    this.closeEvicted(b.statements.add(name));
    let prepared = false;
    this.host.hidden(serialize.parse({ name, text: entry.query, types: [...params] }), {
      req: 'P',
      forwardErrors: true,
      done: (ok) => {
        prepared = ok;
        if (!ok) b.statements.forget(name);
      },
    });
    const answer: Buffer[] = [];
    this.host.hidden(serialize.describe({ type: 'S', name }), {
      req: 'D',
      collect: answer,
      forwardErrors: true,
      done: (ok) => {
        // Settled after the queue has finished with this answer (an error skips to Sync first).
        queueMicrotask(() => {
          if (ok && prepared) {
            const now = shapeOf(answer);
            if (now !== null && now.result !== result) {
              // Not the statement the client prepared any more: the client gets 0A000, the server
              // copy goes, and Parses from now on are analysed afresh.
              b.statements.forget(name);
              this.host.hidden(serialize.close({ type: 'S', name }), { req: 'C' });
              entry.changed = true;
              this.host.knownStatements.bump(this.host.key.database);
            } else {
              b.statements.confirm(name);
            }
          } else if (prepared) {
            b.statements.forget(name);
          }
          this.host.resume();
        });
      },
    });
    // Nothing of the client's follows yet: ask the server to answer now rather than at a Sync.
    this.host.flushServer();
  }

  /** Whether the client has an unnamed statement; re-Parsed here if this backend holds another one. */
  private ensureUnnamed(b: BackendConnection): boolean {
    const owner = b.unnamedOwner;
    if (owner !== null && owner.session === this.identity && owner.generation === this.unnamedGeneration) return true;
    // Never someone else's: PostgreSQL says 26000 to a client that has none.
    if (!this.unnamedParse) return false;
    b.unnamedOwner = { session: this.identity, generation: this.unnamedGeneration };
    this.host.hidden(this.unnamedParse, { req: 'P', forwardErrors: true });
    return true;
  }

  /** Closes least recently used statements before a Parse. */
  private closeEvicted(toClose: string[]): void {
    for (const name of toClose) this.host.hidden(serialize.close({ type: 'S', name }), { req: 'C' });
  }
}

/** Nothing to pin, track, restore or invalidate when the statement runs. */
function isPlain(c: Classification): boolean {
  return c.pins.length === 0 && c.settings.length === 0 && c.resets.length === 0 && !c.discardAll && !c.ddl && !c.ddlTemp && c.deallocate === null;
}
