// One authenticated client on the pooled data path. It borrows a backend when the client starts
// talking, forwards bytes both ways, and returns the backend when the server's ReadyForQuery says
// the session is idle and nothing the client sent is still unanswered. Transaction boundaries
// come from the protocol, never from the SQL text; the SQL is looked at only to decide pinning
// and to learn which session settings to carry over to the next backend.
//
// Session state travels with the client instead of pinning it: startup parameters and SETs are
// replayed on each backend it borrows (only the difference), and its prepared statements map to
// proxy-owned server statements that are prepared lazily on whichever backend it lands on.
import type net from 'node:net';
import { serialize } from 'pg-protocol';
import type { DataRowMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { PinReason } from '../classify/pinReasons.js';
import { describePinReason } from '../classify/pinReasons.js';
import type { Classification, SessionSetting } from '../classify/classifier.js';
import { functionCallEffect } from '../classify/functionCalls.js';
import type { PoolKey, BorrowHandle } from '../pool/backendPool.js';
import { BorrowTimeoutError } from '../pool/backendPool.js';
import { Framer, FramingError, inspectTable, type FrameSink } from '../protocol/framer.js';
import {
  ProtocolViolation,
  readBindNames,
  readErrorFields,
  readExecutePortal,
  readFunctionCall,
  readParse,
  readQuery,
  readTarget,
} from '../protocol/clientMessages.js';
import { closeComplete, errorResponse, frame, parseComplete, readyForQuery, type ErrorFields } from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import { ServerError, type BackendConnection, type BackendOwner } from '../server/backendConnection.js';
import { paramSyncSql, readBackSql, restoreParamsSql } from '../session/sessionParams.js';
import {
  type ClientStatement,
  rewriteBindStatement,
  serverStatementName,
} from '../session/preparedStatements.js';
import { ResponseQueue, type RequestType, type Slot } from '../session/responseQueue.js';
import type { ProxyContext } from '../proxyContext.js';

/** Every message type a client may send after startup. */
const FRONTEND_TYPES = new Set('QPBEDCHSFdcfX'.split('').map((c) => c.charCodeAt(0)));

/**
 * Client messages the session looks at: all of them, except CopyData while the server is in
 * COPY FROM STDIN, when it streams through untouched. Outside a COPY a CopyData is a whole
 * message like any other, so a stray one can be dropped (PostgreSQL ignores it) without ever
 * sending half a message to a backend.
 */
const CLIENT_INSPECT = inspectTable('', true);
const CLIENT_INSPECT_COPY = inspectTable('', true).map((v, i) => (i === 'd'.charCodeAt(0) ? 0 : v));
/** CopyData, CopyDone, CopyFail: no answer is due, and outside a COPY the server ignores them. */
const COPY_TYPES = new Set('dcf'.split('').map((c) => c.charCodeAt(0)));
/** Server messages that answer a request or carry state; DataRow and CopyData pass through. */
const SERVER_INSPECT = inspectTable('123tTnCIsEZSNAGHWV');
/** While a proxy-issued request is at the head: everything, so its answers can be swallowed. */
const SERVER_INSPECT_ALL = inspectTable('', true);

const Z = 'Z'.charCodeAt(0);
const E = 'E'.charCodeAt(0);
const COPY_IN = 'G'.charCodeAt(0);
const COPY_BOTH = 'W'.charCodeAt(0);
const PARAMETER_STATUS = 'S'.charCodeAt(0);

/**
 * Reported parameters that follow the server or the role, not a SET: a change of any other one
 * (ParameterStatus) during a client's request is read back, even when no SQL the proxy saw made it
 * (a function that calls set_config, for one).
 */
const NOT_SESSION_SETTINGS: ReadonlySet<string> = new Set(['in_hot_standby', 'is_superuser', 'session_authorization', 'server_version', 'server_encoding', 'integer_datetimes']);

/** The proxy's own statement and portal that put startup values back after an extended-protocol RESET. */
const RESTORE_NAME = 'dbproxy_restore';

type TxStatus = 'I' | 'T' | 'E';

export class ClientSession implements BackendOwner, FrameSink {
  readonly id: number;
  readonly connectedAt: number;
  lastActivity: number;
  cancelPid = 0;
  private backend: BackendConnection | null = null;
  private borrowing: BorrowHandle | null = null;
  private readonly framer: Framer;
  /** Client messages waiting for a backend. */
  private readonly pending: Buffer[] = [];
  private readonly queue: ResponseQueue;
  /** Extended-protocol messages forwarded since the last Sync: the backend must stay. */
  private extendedPending = false;
  private txStatus: TxStatus = 'I';
  private readonly pinReasons = new Set<PinReason>();
  /** The client's session parameters: its startup values plus its tracked SETs. */
  private readonly wanted: Map<string, string>;
  /** Parameters SET in this session whose value must be read back before the backend is returned. */
  private readonly settingsToRead = new Set<string>();
  /** When each parameter (or, under '*', all of them) was last changed, so a late read-back loses to a newer change. */
  private readonly settingsChangedAt = new Map<string, number>();
  private settingsVersion = 0;
  /** The client's prepared statements by its own names. */
  private readonly statements = new Map<string, ClientStatement>();
  /**
   * Undo steps for statement-name changes whose message the server skipped (an earlier error in
   * the pipeline): run newest first, so the client's names end as PostgreSQL would have them.
   */
  private readonly undo: Array<() => void> = [];
  /** Portals bound to a statement that resets startup parameters: once executed, the values go back. */
  private readonly portalRestores = new Map<string, Map<string, string>>();
  /** The backend is being brought to the client's settings; the client's messages wait for it. */
  private syncing = false;
  /** The backend's settings could not be read back: it is closed rather than lent on. */
  private backendUnknown = false;
  /** The client's latest unnamed Parse, for a Bind("") that lands on another backend. */
  private unnamedParse: Buffer | null = null;
  private unnamedQuery = '';
  private unnamedGeneration = 0;
  /** The backend died while the client sat inside a transaction: its next request gets this error. */
  private transactionLost: string | null = null;
  /** No backend answered the client's batch (failed borrow, lost backend): skip to its Sync locally. */
  private skipToSync = false;
  private closed = false;
  private closeAfterTransaction = false;
  private clientBlocked = false;
  private backendBlocked = false;
  private requestStartedAt = 0;
  private readonly out: Buffer[] = [];

  constructor(
    private readonly socket: net.Socket,
    readonly key: PoolKey,
    private readonly startupParams: ReadonlyMap<string, string>,
    private readonly ctx: ProxyContext,
    id: number,
  ) {
    this.id = id;
    this.connectedAt = ctx.clock.now();
    this.lastActivity = this.connectedAt;
    this.wanted = new Map(startupParams);
    this.framer = new Framer(CLIENT_INSPECT, ctx.config.maxMessageBytes);
    this.queue = new ResponseQueue((bytes) => this.out.push(bytes));
  }

  get remoteAddress(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  get state(): 'idle' | 'waiting' | 'active' | 'pinned' {
    if (this.pinReasons.size > 0) return 'pinned';
    if (this.backend) return 'active';
    if (this.borrowing) return 'waiting';
    return 'idle';
  }

  get pinnedReasons(): PinReason[] {
    return [...this.pinReasons];
  }

  get currentBackend(): BackendConnection | null {
    return this.backend;
  }

  /** Between transactions: holding no backend, or holding only a pinned one with nothing in flight. */
  get isIdle(): boolean {
    if (this.borrowing || this.pending.length > 0) return false;
    if (!this.backend) return true;
    return this.pinReasons.size > 0 && this.queue.waiting === 0 && !this.extendedPending && this.txStatus === 'I';
  }

  start(leftover: Buffer): void {
    this.socket.on('data', (chunk: Buffer) => this.onClientData(chunk));
    this.socket.on('close', () => this.onClientClosed());
    this.socket.on('drain', () => {
      if (this.backendBlocked) {
        this.backendBlocked = false;
        this.backend?.socket.resume();
      }
    });
    if (leftover.length > 0) this.onClientData(leftover);
  }

  /** Closes the session from the proxy's side with a FATAL error (idle timeout, shutdown, ...). */
  terminate(fields: Omit<ErrorFields, 'severity'>): void {
    if (this.closed) return;
    if (this.socket.writable) this.socket.end(errorResponse({ severity: 'FATAL', ...fields }));
    this.onClientClosed();
    this.socket.destroySoon();
  }

  /** For graceful shutdown: close now when idle, else as soon as the transaction ends. */
  drain(): void {
    if (this.isIdle) this.terminate({ code: SQLSTATE.adminShutdown, message: 'terminating connection due to administrator command' });
    else this.closeAfterTransaction = true;
  }

  // ---- client -> server ----

  private onClientData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastActivity = this.ctx.clock.now();
    // Everything this read produces for the server goes out in one write (writev), not one per message.
    const corked = this.backend;
    corked?.socket.cork();
    try {
      this.framer.push(chunk, this);
      this.flushOut();
      if (this.backend && !this.framer.inRawMessage) this.maybeRelease();
    } catch (e) {
      if (e instanceof FramingError || e instanceof ProtocolViolation) {
        this.ctx.metrics.protocolErrors.inc();
        this.ctx.log.warn({ client: this.id, err: e.message }, 'protocol violation from client');
        this.terminate({ code: SQLSTATE.protocolViolation, message: e.message });
        return;
      }
      throw e;
    } finally {
      corked?.socket.uncork();
    }
  }

  /** FrameSink: CopyData bytes from the client, during a COPY FROM STDIN. */
  raw(bytes: Buffer): void {
    if (this.backend && this.pending.length === 0 && !this.syncing) this.write(bytes);
    else if (this.backend || this.borrowing || this.pending.length > 0) this.enqueuePending(bytes);
    // else: the COPY's backend is gone (its client got the error); the rest of its data goes nowhere.
  }

  /** FrameSink: a whole client message. */
  message(type: number, msg: Buffer): void {
    if (this.closed) return;
    if (!FRONTEND_TYPES.has(type)) throw new ProtocolViolation(`invalid frontend message type ${type}`);
    if (type === 0x58 /* X: Terminate */) {
      this.onClientClosed();
      this.socket.end();
      return;
    }
    if (COPY_TYPES.has(type) && !this.backend && !this.borrowing && this.pending.length === 0) {
      // Outside a COPY: PostgreSQL accepts and ignores these, and they expect no answer, so no
      // backend is borrowed for them (it would never be returned).
      return;
    }
    if (this.skipToSync) {
      if (type === 0x53 /* S: Sync */) {
        this.skipToSync = false;
        this.out.push(readyForQuery('I'));
      }
      return;
    }
    if (this.transactionLost !== null) {
      const message = this.transactionLost;
      this.transactionLost = null;
      this.pending.push(msg);
      this.failPending(new Error(message), { code: SQLSTATE.connectionFailure, message });
      return;
    }
    if (!this.backend && !this.borrowing && this.txStatus === 'I' && this.answerWithoutBackend(type, msg)) return;
    this.localBatch = false;
    if (this.backend && this.pending.length === 0 && !this.syncing) {
      this.process(String.fromCharCode(type), msg);
      this.runUndo();
    } else {
      this.enqueuePending(msg);
    }
  }

  /** Every message since the last Sync was answered by the proxy: the Sync is too. */
  private localBatch = false;

  /**
   * Outside a transaction and holding no backend, a client that prepares an already known
   * statement or closes one of its names needs no server: answer it here.
   */
  private answerWithoutBackend(type: number, msg: Buffer): boolean {
    const t = String.fromCharCode(type);
    if (t === 'S' || t === 'H') {
      if (!this.localBatch) return false;
      if (t === 'S') {
        this.localBatch = false;
        this.out.push(readyForQuery('I'));
      }
      return true;
    }
    if (t === 'C') {
      const target = readTarget(msg);
      if (target.kind !== 'S' || target.name === '') return false;
      this.statements.delete(target.name);
      this.out.push(closeComplete());
      this.localBatch = true;
      return true;
    }
    if (t !== 'P') return false;
    const parse = readParse(msg);
    if (parse.name === '') return false;
    if (this.statements.has(parse.name)) {
      this.out.push(errorResponse({ severity: 'ERROR', code: '42P05', message: `prepared statement "${parse.name}" already exists` }));
      this.localBatch = false;
      this.skipToSync = true;
      return true;
    }
    const serverName = serverStatementName(this.wanted.get('search_path') ?? '', parse.query, parse.paramTypes);
    if (!this.ctx.knownStatements.has(this.key, serverName)) return false;
    const c = this.ctx.classifier.classify(parse.query, false);
    if (c.pins.length > 0 || c.settings.length > 0) return false;
    this.statements.set(parse.name, { serverName, query: parse.query, parse: serialize.parse({ name: serverName, text: parse.query, types: parse.paramTypes }) });
    this.out.push(parseComplete());
    this.localBatch = true;
    return true;
  }

  private enqueuePending(msg: Buffer): void {
    this.pending.push(msg);
    if (!this.backend && !this.borrowing) this.borrow();
  }

  /** Handles one client message with a backend attached. */
  private process(t: string, msg: Buffer): void {
    if (this.queue.skipping && t !== 'S') {
      // After an error the server (or the proxy on its behalf) ignores everything until Sync.
      if (t === 'P' || t === 'B' || t === 'D' || t === 'E' || t === 'C' || t === 'H') return;
    }
    if (this.queue.waiting === 0 && this.requestStartedAt === 0) this.requestStartedAt = this.ctx.clock.now();
    switch (t) {
      case 'Q': {
        const c = this.classify(readQuery(msg));
        if (c.resets.length === 0) {
          this.forward(msg, 'Q');
        } else if (c.statements === 1) {
          // Alone (DISCARD ALL may not share a query string): the values go back right after it,
          // in the same transaction block if it runs in one, or fail with it in an aborted one.
          this.forward(msg, 'Q');
          const values = this.startupValuesReset(c.resets[0]!.names);
          if (values.size > 0) this.hidden(serialize.query(restoreParamsSql(values)), { req: 'Q' });
        } else {
          const restore = this.restoringQuery(msg, c);
          this.queue.push({ kind: 'client', req: 'Q', ...(restore ? { swallow: restore.swallow } : {}) });
          this.write(restore?.msg ?? msg);
        }
        return;
      }
      case 'P':
        this.extendedPending = true;
        this.onParse(msg);
        return;
      case 'B':
        this.extendedPending = true;
        this.onBind(msg);
        return;
      case 'D':
        this.extendedPending = true;
        this.onDescribe(msg);
        return;
      case 'C':
        this.extendedPending = true;
        this.onClose(msg);
        return;
      case 'E': {
        this.extendedPending = true;
        this.forward(msg, 'E');
        const restore = this.portalRestores.size > 0 ? this.portalRestores.get(readExecutePortal(msg)) : undefined;
        if (restore) this.restoreAfterExecute(restore);
        return;
      }
      case 'H':
        this.extendedPending = true;
        this.write(msg);
        return;
      case 'S':
        this.extendedPending = false;
        this.portalRestores.clear();
        this.forward(msg, 'S');
        return;
      case 'F':
        this.onFunctionCall(msg);
        this.forward(msg, 'F');
        return;
      case 'd':
      case 'c':
      case 'f':
        this.write(msg);
        return;
      default:
        throw new ProtocolViolation(`invalid frontend message type ${t.charCodeAt(0)}`);
    }
  }

  private forward(msg: Buffer, req: RequestType, done?: Slot['done']): void {
    this.queue.push({ kind: 'client', req, done });
    this.write(msg);
  }

  private hidden(msg: Buffer, slot: Omit<Slot, 'kind'>): void {
    this.queue.push({ kind: 'hidden', ...slot });
    this.write(msg);
  }

  private local(bytes: Buffer, req: RequestType, undo?: () => void): void {
    this.queue.push({ kind: 'local', req, bytes, done: undo && ((ok) => ok || this.undo.push(undo)) });
  }

  private runUndo(): void {
    while (this.undo.length > 0) this.undo.pop()!();
  }

  private failLocally(code: string, message: string): void {
    this.queue.failLocally(errorResponse({ severity: 'ERROR', code, message }));
  }

  private onParse(msg: Buffer): void {
    const parse = readParse(msg);
    this.classify(parse.query, false);
    const b = this.backend!;
    if (parse.name === '') {
      this.unnamedParse = msg;
      this.unnamedQuery = parse.query;
      const generation = ++this.unnamedGeneration;
      b.unnamedOwner = { session: this, generation };
      this.forward(msg, 'P');
      return;
    }
    if (this.statements.has(parse.name)) {
      this.failLocally('42P05', `prepared statement "${parse.name}" already exists`);
      return;
    }
    const serverName = serverStatementName(this.wanted.get('search_path') ?? '', parse.query, parse.paramTypes);
    const entry: ClientStatement = { serverName, query: parse.query, parse: serialize.parse({ name: serverName, text: parse.query, types: parse.paramTypes }) };
    // Registered now so that a Bind pipelined behind this Parse finds it; undone if the Parse fails.
    this.statements.set(parse.name, entry);
    const unregister = (): void => void this.statements.delete(parse.name);
    if (b.statements.has(serverName)) {
      this.local(parseComplete(), 'P', unregister);
      return;
    }
    this.closeEvicted(b, b.statements.add(serverName));
    this.forward(entry.parse, 'P', (ok) => {
      if (ok) {
        b.statements.confirm(serverName);
        this.ctx.knownStatements.add(this.key, serverName);
      } else {
        b.statements.forget(serverName);
        this.undo.push(unregister);
      }
    });
  }

  /** Makes sure the backend has the server statement behind a client statement name. */
  private ensurePrepared(entry: ClientStatement): void {
    const b = this.backend!;
    if (b.statements.has(entry.serverName)) return;
    this.closeEvicted(b, b.statements.add(entry.serverName));
    this.hidden(entry.parse, {
      req: 'P',
      // If the statement no longer prepares (a dropped table), the client sees why, as it would from the server.
      forwardErrors: true,
      done: (ok) => {
        if (!ok) {
          b.statements.forget(entry.serverName);
          return;
        }
        b.statements.confirm(entry.serverName);
        this.ctx.knownStatements.add(this.key, entry.serverName);
      },
    });
  }

  private ensureUnnamed(): void {
    const b = this.backend!;
    const owner = b.unnamedOwner;
    if (!this.unnamedParse || (owner && owner.session === this && owner.generation === this.unnamedGeneration)) return;
    b.unnamedOwner = { session: this, generation: this.unnamedGeneration };
    this.hidden(this.unnamedParse, { req: 'P', forwardErrors: true });
  }

  /** Closes what must go before a Parse: least recently used statements, or a stale one of the same name. */
  private closeEvicted(b: BackendConnection, toClose: string[]): void {
    for (const name of toClose) this.hidden(serialize.close({ type: 'S', name }), { req: 'C' });
  }

  /** Whether a server error on this statement means its cached plan is stale (after DDL). */
  private invalidateOnError(entry: ClientStatement): Slot['done'] {
    const b = this.backend!;
    return (ok) => {
      // "cached plan must not change result type": the server statement is replaced on its next
      // use (so other clients do not keep failing), and this client's name fails until re-prepared.
      if (!ok && this.lastServerErrorCode === '0A000') {
        b.statements.invalidate(entry.serverName);
        entry.stale = true;
      }
    };
  }

  private onBind(msg: Buffer): void {
    const { statement, portal } = readBindNames(msg);
    if (statement === '') {
      if (this.unnamedParse) this.notePortalRestore(portal, this.classify(this.unnamedQuery));
      this.ensureUnnamed();
      this.forward(msg, 'B');
      return;
    }
    const entry = this.statements.get(statement);
    if (!entry) {
      this.failLocally('26000', `prepared statement "${statement}" does not exist`);
      return;
    }
    if (entry.stale) {
      // PostgreSQL fails a statement whose result type changed until the client prepares it again.
      this.failLocally('0A000', 'cached plan must not change result type');
      return;
    }
    this.notePortalRestore(portal, this.classify(entry.query));
    this.ensurePrepared(entry);
    this.forward(rewriteBindStatement(msg, entry.serverName), 'B', this.invalidateOnError(entry));
  }

  private onDescribe(msg: Buffer): void {
    const target = readTarget(msg);
    if (target.kind !== 'S') {
      this.forward(msg, 'D');
      return;
    }
    if (target.name === '') {
      this.ensureUnnamed();
      this.forward(msg, 'D');
      return;
    }
    const entry = this.statements.get(target.name);
    if (!entry) {
      this.failLocally('26000', `prepared statement "${target.name}" does not exist`);
      return;
    }
    this.ensurePrepared(entry);
    this.forward(serialize.describe({ type: 'S', name: entry.serverName }), 'D');
  }

  private onClose(msg: Buffer): void {
    const target = readTarget(msg);
    if (target.kind === 'S' && target.name !== '') {
      // The server statement stays for others; the client's name is gone, as PostgreSQL would have it.
      const previous = this.statements.get(target.name);
      this.statements.delete(target.name);
      this.local(closeComplete(), 'C', previous && (() => void this.statements.set(target.name, previous)));
      return;
    }
    this.forward(msg, 'C');
  }

  /**
   * Pins for what the text does, and tracks its SETs. For the extended protocol the SETs take
   * effect when the statement runs, so they are tracked at Bind (`execute`), not at Parse.
   */
  private classify(sql: string, execute = true): Classification {
    const c = this.ctx.classifier.classify(sql, this.txStatus !== 'I');
    if (!execute) {
      for (const reason of c.pins) if (reason !== 'set' || !this.ctx.config.session.trackSettings) this.pin(reason, c.digest);
      return c;
    }
    const tracked = c.settings.length > 0 && this.trackSettings(c.settings);
    for (const reason of c.pins) {
      if (reason === 'set' && tracked) continue;
      this.pin(reason, c.digest);
    }
    if (c.discardAll) {
      this.statements.clear();
      this.unnamedParse = null;
      this.backend?.statements.clear();
    }
    return c;
  }

  /** The startup values a statement's resets take away, which PostgreSQL would have put back. */
  private startupValuesReset(names: readonly string[] | null): Map<string, string> {
    const out = new Map<string, string>();
    if (names === null) for (const [k, v] of this.startupParams) out.set(k, v);
    else for (const n of names) if (this.startupParams.has(n)) out.set(n, this.startupParams.get(n)!);
    return out;
  }

  /**
   * A Query whose statements reset parameters the client gave at startup: PostgreSQL resets those
   * to the startup values, but the proxy applied them with SET, so a RESET alone would go back to
   * the server's defaults. After each such statement the startup values are put back in the same
   * query string (same transaction, before any later statement reads them), and the extra
   * statement's CommandComplete is kept from the client.
   */
  private restoringQuery(msg: Buffer, c: Classification): { msg: Buffer; swallow: number[] } | null {
    const text = msg.subarray(5, msg.length - 1);
    const parts: Buffer[] = [];
    const swallow: number[] = [];
    let from = 0;
    for (const r of c.resets) {
      const values = this.startupValuesReset(r.names);
      if (values.size === 0) continue;
      // Offsets are bytes of the UTF-8 text; a client in another encoding keeps its text as sent.
      if (r.end > text.length) return null;
      parts.push(text.subarray(from, r.end), Buffer.from(`\n;${restoreParamsSql(values)}`));
      from = r.end;
      swallow.push(r.statement + 1 + swallow.length);
    }
    if (swallow.length === 0) return null;
    parts.push(text.subarray(from), Buffer.of(0));
    return { msg: frame('Q', Buffer.concat(parts)), swallow };
  }

  private notePortalRestore(portal: string, c: Classification): void {
    for (const r of c.resets) {
      const values = this.startupValuesReset(r.names);
      if (values.size === 0) continue;
      const all = this.portalRestores.get(portal) ?? new Map<string, string>();
      for (const [k, v] of values) all.set(k, v);
      this.portalRestores.set(portal, all);
    }
  }

  /** After an Execute that reset startup parameters: put them back, unseen, before anything else runs. */
  private restoreAfterExecute(values: ReadonlyMap<string, string>): void {
    this.hidden(serialize.parse({ name: RESTORE_NAME, text: restoreParamsSql(values) }), { req: 'P' });
    this.hidden(serialize.bind({ portal: RESTORE_NAME, statement: RESTORE_NAME }), { req: 'B' });
    this.hidden(serialize.execute({ portal: RESTORE_NAME }), { req: 'E' });
    this.hidden(serialize.close({ type: 'P', name: RESTORE_NAME }), { req: 'C' });
    this.hidden(serialize.close({ type: 'S', name: RESTORE_NAME }), { req: 'C' });
  }

  /** FunctionCall carries no SQL: its effect comes from the function's OID. */
  private onFunctionCall(msg: Buffer): void {
    const call = readFunctionCall(msg);
    if (!call) return;
    const effect = functionCallEffect(call, this.txStatus !== 'I');
    const tracked = effect.settings.length > 0 && this.trackSettings(effect.settings);
    for (const reason of effect.pins) if (reason !== 'set' || !tracked) this.pin(reason, `FunctionCall ${call.oid}`);
  }

  /** Records SET/RESET for replay; false when they cannot be tracked and the session must pin. */
  private trackSettings(settings: readonly SessionSetting[]): boolean {
    const cfg = this.ctx.config.session;
    if (!cfg.trackSettings) return false;
    for (const s of settings) {
      if (s.kind === 'opaque') return false;
      if (s.kind !== 'reset_all' && cfg.untrackedParameters.includes(s.name)) return false;
    }
    this.settingsVersion++;
    for (const s of settings) {
      if (s.kind === 'opaque') continue;
      // Whatever the statement did, the values are read back once the transaction ends: a RESET
      // that a later error rolled back, or one whose startup value was put back, is then known
      // exactly as the server has it.
      this.settingsChangedAt.set(s.kind === 'reset_all' ? '*' : s.name, this.settingsVersion);
      if (s.kind === 'reset_all') {
        for (const k of this.wanted.keys()) this.settingsToRead.add(k);
        for (const k of this.startupParams.keys()) this.settingsToRead.add(k);
        for (const k of this.backend?.appliedParams.keys() ?? []) this.settingsToRead.add(k);
      } else {
        this.settingsToRead.add(s.name);
      }
    }
    return true;
  }

  private pin(reason: PinReason, digest: string): void {
    if (this.pinReasons.has(reason)) return;
    const first = this.pinReasons.size === 0;
    this.pinReasons.add(reason);
    this.ctx.metrics.pinned(reason);
    // One line per pin, with a normalized digest: never literal values.
    this.ctx.log.info({ client: this.id, user: this.key.user, database: this.key.database, reason, statement: digest.slice(0, 200) }, `session pinned: ${describePinReason(reason)}`);
    if (first && this.backend) this.ctx.pool.markPinned(this.backend);
  }

  private write(buf: Buffer): void {
    const b = this.backend!;
    // Closing (a writer change): its close event is on the way and will fail the request.
    if (b.closed) return;
    if (!b.write(buf) && !this.clientBlocked) {
      this.clientBlocked = true;
      this.socket.pause();
      b.socket.once('drain', () => {
        this.clientBlocked = false;
        if (!this.borrowing && !this.closed) this.socket.resume();
      });
    }
  }

  private borrow(): void {
    this.socket.pause();
    const handle = this.ctx.pool.borrow(this.key);
    this.borrowing = handle;
    handle.promise.then(
      (b) => {
        if (this.borrowing !== handle) return;
        this.borrowing = null;
        if (this.closed) {
          this.ctx.pool.release(b);
          return;
        }
        this.attach(b);
      },
      (err: Error) => {
        if (this.borrowing !== handle) return;
        this.borrowing = null;
        if (!this.closed) this.failPending(err);
      },
    );
  }

  private attach(b: BackendConnection): void {
    this.backend = b;
    b.owner = this;
    b.statements.capacity = this.ctx.config.session.maxPreparedStatements;
    b.framer ??= new Framer(SERVER_INSPECT, 1 << 30);
    if (this.pinReasons.size > 0) this.ctx.pool.markPinned(b);
    // The client's messages wait until the backend has its settings: if that fails, they must not
    // run with the previous client's.
    if (this.syncParams(b)) return;
    this.sendPending(b);
  }

  /** Sends what the client said while it had no backend (or while the backend was being synced). */
  private sendPending(b: BackendConnection): void {
    b.socket.cork();
    try {
      while (this.pending.length > 0 && this.backend === b && !this.closed) {
        const m = this.pending.shift()!;
        // A message may be CopyData bytes rather than a whole message; those have no type of their own.
        if (this.framer.inspect[m[0]!] && m.length >= 5 && m.readUInt32BE(1) + 1 === m.length) this.process(String.fromCharCode(m[0]!), m);
        else this.write(m);
      }
    } catch (e) {
      if (!(e instanceof ProtocolViolation)) throw e;
      this.ctx.metrics.protocolErrors.inc();
      this.terminate({ code: SQLSTATE.protocolViolation, message: e.message });
      return;
    } finally {
      b.socket.uncork();
    }
    this.runUndo();
    this.flushOut();
    if (!this.clientBlocked) this.socket.resume();
  }

  /**
   * Brings the backend's session parameters to the client's, in one round trip, unseen; true when
   * one was sent (the client's messages then wait for its answer). Several statements in one
   * Query run in one implicit transaction, so a failure leaves the backend as it was.
   */
  private syncParams(b: BackendConnection): boolean {
    const sql = paramSyncSql(this.wanted, b.appliedParams);
    if (!sql) return false;
    const wanted = new Map(this.wanted);
    this.syncing = true;
    b.socket.cork();
    this.hidden(serialize.query(sql), {
      req: 'Q',
      done: (ok) => {
        this.syncing = false;
        if (ok) {
          b.appliedParams.clear();
          for (const [k, v] of wanted) b.appliedParams.set(k, v);
        } else {
          this.ctx.log.warn({ client: this.id, err: this.lastServerErrorMessage }, 'could not apply session parameters on a backend connection');
        }
        if (this.backend !== b || this.closed) return;
        if (ok) this.sendPending(b);
        else this.failPending(new ServerError(this.lastServerErrorCode ?? SQLSTATE.connectionFailure, this.lastServerErrorMessage ?? 'could not apply session parameters', 'ERROR'));
      },
    });
    b.socket.uncork();
    return true;
  }

  /** Reads back the values of parameters this session SET, so they can follow it to other backends. */
  private readBackSettings(b: BackendConnection): void {
    const names = [...this.settingsToRead];
    this.settingsToRead.clear();
    const askedAt = this.settingsVersion;
    const rows: Buffer[] = [];
    this.hidden(serialize.query(readBackSql(names)), {
      req: 'Q',
      rows,
      done: (ok) => {
        if (!ok || rows.length !== 1) {
          // Nobody knows what this connection's settings are now: it is not lent again.
          this.backendUnknown = true;
          return;
        }
        const values: Array<string | null> = [];
        new Parser().parse(rows[0]!, (m) => {
          if (m.name === 'dataRow') values.push(...((m as DataRowMessage).fields as Array<string | null>));
        });
        const resetSince = (this.settingsChangedAt.get('*') ?? 0) > askedAt;
        names.forEach((name, i) => {
          if (resetSince || (this.settingsChangedAt.get(name) ?? 0) > askedAt) return;
          const v = values[i];
          if (v === null || v === undefined) {
            this.wanted.delete(name);
            b.appliedParams.delete(name);
          } else {
            this.wanted.set(name, v);
            b.appliedParams.set(name, v);
          }
        });
      },
    });
  }

  /** Answers what the client sent, as the server would have, when no backend could be had. */
  private failPending(err: Error, override?: Omit<ErrorFields, 'severity'>): void {
    const fields: Omit<ErrorFields, 'severity'> = override ??
      (err instanceof BorrowTimeoutError
        ? { code: SQLSTATE.tooManyConnections, message: err.message }
        : err instanceof ServerError
          ? { code: err.code, message: err.message, detail: err.detail }
          : { code: SQLSTATE.connectionFailure, message: `could not get a database connection: ${err.message}` });
    if (err instanceof ServerError && err.isLoginRefusal) {
      this.terminate(fields);
      return;
    }
    const msgs = this.pending.splice(0);
    let errored = false;
    for (const m of msgs) {
      const t = String.fromCharCode(m[0]!);
      if (t === 'Q' || t === 'F') {
        this.out.push(errorResponse({ severity: 'ERROR', ...fields }));
        this.out.push(readyForQuery('I'));
      } else if (t === 'S') {
        if (!errored) this.out.push(errorResponse({ severity: 'ERROR', ...fields }));
        this.out.push(readyForQuery('I'));
        errored = false;
      } else if (t === 'P' || t === 'B' || t === 'D' || t === 'E' || t === 'C') {
        if (!errored) this.out.push(errorResponse({ severity: 'ERROR', ...fields }));
        errored = true;
      }
    }
    // Messages of the same batch still to come belong to the failed request: skip them to Sync.
    this.extendedPending = errored;
    this.skipToSync = errored;
    this.requestStartedAt = 0;
    this.flushOut();
    if (this.closeAfterTransaction) this.drain();
    else this.socket.resume();
  }

  // ---- server -> client ----

  private lastServerErrorCode: string | undefined;
  private lastServerErrorMessage: string | undefined;

  onBackendData(b: BackendConnection, chunk: Buffer): void {
    if (b !== this.backend) return;
    try {
      b.framer!.inspect = this.queue.headIsHidden ? SERVER_INSPECT_ALL : SERVER_INSPECT;
      b.framer!.push(chunk, this.backendSink);
    } catch (e) {
      this.ctx.log.error({ backend: b.label, err: (e as Error).message }, 'malformed data from server');
      this.out.length = 0;
      this.loseBackend('malformed data from the database server');
      return;
    }
    this.flushOut();
    this.maybeRelease();
  }

  private readonly backendSink: FrameSink = {
    raw: (bytes) => {
      if (!this.queue.headIsHidden) this.out.push(bytes);
    },
    message: (type, msg) => {
      if (type === E) {
        const f = readErrorFields(msg);
        this.lastServerErrorCode = f.get('C');
        this.lastServerErrorMessage = f.get('M');
      } else if (type === PARAMETER_STATUS && this.queue.waiting > 0 && !this.queue.headIsHidden) {
        const name = msg.toString('utf8', 5, msg.indexOf(0, 5)).toLowerCase();
        if (!NOT_SESSION_SETTINGS.has(name)) this.settingsToRead.add(name);
      }
      const completed = this.queue.onServer(type, msg);
      this.runUndo();
      if ((type === COPY_IN || type === COPY_BOTH) && !this.queue.headIsHidden) this.framer.inspect = CLIENT_INSPECT_COPY;
      if (type === Z) {
        this.framer.inspect = CLIENT_INSPECT;
        this.txStatus = String.fromCharCode(msg[5]!) as TxStatus;
        if (completed?.kind === 'client' && this.queue.waiting === 0 && this.requestStartedAt > 0) {
          this.ctx.metrics.queryLatency.observe((this.ctx.clock.now() - this.requestStartedAt) / 1000);
          this.requestStartedAt = 0;
        }
      }
      const b = this.backend;
      if (b?.framer) b.framer.inspect = this.queue.headIsHidden ? SERVER_INSPECT_ALL : SERVER_INSPECT;
    },
  };

  private flushOut(): void {
    const out = this.out;
    if (out.length === 0) return;
    let ok = true;
    if (out.length === 1) {
      ok = this.socket.write(out[0]!);
    } else {
      this.socket.cork();
      for (const buf of out) ok = this.socket.write(buf);
      this.socket.uncork();
    }
    out.length = 0;
    if (!ok && this.backend && !this.backendBlocked) {
      // A slow client: stop reading its backend until the client catches up.
      this.backendBlocked = true;
      this.backend.socket.pause();
    }
  }

  private maybeRelease(): void {
    const b = this.backend;
    if (!b || this.queue.waiting > 0 || this.extendedPending || this.txStatus !== 'I' || this.pending.length > 0) return;
    if (this.pinReasons.size > 0) {
      if (this.closeAfterTransaction && this.isIdle) this.drain();
      return;
    }
    if (!b.framer || !b.framer.atBoundary) return;
    // Half of a passed-through client message went to this backend: the rest must follow it.
    if (this.framer.inRawMessage) return;
    if (this.settingsToRead.size > 0) {
      this.readBackSettings(b);
      return;
    }
    this.detachBackend();
    if (this.backendUnknown) {
      this.backendUnknown = false;
      this.ctx.pool.discard(b);
    } else {
      this.ctx.pool.release(b);
    }
    if (this.closeAfterTransaction) this.drain();
  }

  private detachBackend(): void {
    const b = this.backend!;
    this.backend = null;
    b.owner = null;
    if (this.backendBlocked) {
      this.backendBlocked = false;
      b.socket.resume();
    }
  }

  onBackendClose(b: BackendConnection, err: Error | undefined): void {
    if (b !== this.backend) return;
    this.ctx.log.warn({ client: this.id, backend: b.label, err: err?.message }, 'backend connection lost during a session');
    this.loseBackend('the database server closed the connection');
  }

  /** The backend died or misbehaved: the client loses its transaction but keeps its connection. */
  private loseBackend(why: string): void {
    const b = this.backend;
    if (!b) return;
    this.backend = null;
    b.owner = null;
    this.framer.inspect = CLIENT_INSPECT;
    if (this.clientBlocked) {
      // It was waiting for this backend to drain, which it never will.
      this.clientBlocked = false;
      this.socket.resume();
    }
    this.ctx.pool.discard(b);
    if (this.syncing) {
      // Lost before the client's messages were sent: they go to another backend.
      this.syncing = false;
      this.queue.abandon();
      if (this.pinReasons.size === 0 && !this.closed) {
        this.borrow();
        return;
      }
    }
    const waiting = this.queue.waiting > 0;
    const inTransaction = this.txStatus !== 'I' || this.extendedPending;
    this.queue.abandon();
    if (this.pinReasons.size > 0) {
      // Session state (temp tables, locks, ...) is gone with the server connection: say so and close.
      this.terminate({ code: SQLSTATE.connectionFailure, message: `${why}; this session held state on it (pinned: ${this.pinnedReasons.join(', ')})` });
      return;
    }
    const lost = `${why} during the transaction; the transaction was lost, retry it`;
    if (waiting) {
      // The client is waiting for an answer: it gets the error now, and a ReadyForQuery or a skip to its Sync.
      this.out.push(errorResponse({ severity: 'ERROR', code: SQLSTATE.connectionFailure, message: lost }));
      if (this.extendedPending) this.skipToSync = true;
      else this.out.push(readyForQuery('I'));
      this.flushOut();
    } else if (inTransaction) {
      // Idle inside a transaction: nothing to answer yet. Its next request fails, then it starts afresh.
      this.transactionLost = lost;
    }
    this.extendedPending = false;
    this.txStatus = 'I';
    this.requestStartedAt = 0;
  }

  // ---- end of session ----

  private onClientClosed(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.borrowing) {
      this.borrowing.cancel();
      this.borrowing = null;
    }
    const b = this.backend;
    if (b) {
      const clean = this.queue.waiting === 0 && !this.extendedPending && this.txStatus === 'I' && b.framer?.atBoundary !== false && !this.framer.inRawMessage;
      this.detachBackend();
      this.queue.abandon();
      if (!clean) {
        // Mid-transaction or mid-result: nobody can vouch for this connection's state.
        this.ctx.pool.discard(b);
      } else if (this.pinReasons.size > 0) {
        if (this.pinReasons.has('load')) this.ctx.pool.discard(b);
        else this.ctx.pool.resetAndRelease(b);
      } else {
        this.ctx.pool.release(b);
      }
    }
    this.ctx.sessionClosed(this);
  }
}
