// One authenticated client on the pooled data path. It borrows a backend when the client starts
// talking, forwards bytes both ways, and returns the backend when the server's ReadyForQuery says
// the session is idle and nothing the client sent is still unanswered. Transaction boundaries
// come from the protocol, never from the SQL text; the SQL is looked at only to decide pinning
// and to learn which session settings to carry over to the next backend.
//
// The session decides; others do the work: the stream core moves the bytes (stream/), the
// response queue keeps answers in order (session/responseQueue.ts), ClientStatements maps the
// client's prepared statements to shared server ones, SessionSettings carries its parameters
// from backend to backend, SessionPins says why it must keep one.
import type net from 'node:net';
import { serialize } from 'pg-protocol';
import type { DataRowMessage } from 'pg-protocol/dist/messages.js';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { PoolCounters } from '../admin/poolCounters.js';
import type { Classification } from '../classify/classifier.js';
import { functionCallEffect } from '../classify/functionCalls.js';
import type { PinReason } from '../classify/pinReasons.js';
import type { BorrowHandle, PoolKey } from '../pool/backendPool.js';
import { BorrowTimeoutError } from '../pool/backendPool.js';
import { locateParse, ProtocolViolation, readErrorFields, readExecutePortal, readFunctionCall } from '../protocol/clientMessages.js';
import { Framer, type FrameSink, FramingError, inspectTable } from '../protocol/framer.js';
import { commandComplete, errorResponse, frame, readyForQuery, type ErrorFields } from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import { type BackendConnection, type BackendOwner, ServerError } from '../backend/backendConnection.js';
import { ClientStatements, type StatementHost } from '../session/clientStatements.js';
import { CLIENT_SLOT, type RequestType, ResponseQueue, type Slot } from '../session/responseQueue.js';
import { SessionPins } from '../session/sessionPins.js';
import { SessionSettings } from '../session/sessionSettings.js';
import { restoreParamsSql } from '../session/sessionParams.js';
import type { KnownStatements } from '../session/preparedStatements.js';
import { PAUSE_BORROW, StreamPair, type StreamOwner } from '../stream/streamPair.js';
import type { SessionContext } from './sessionContext.js';

/** Every message type a client may send after startup, by type byte. */
const FRONTEND_TYPE = inspectTable('QPBEDCHSFdcfX');

/**
 * Client messages the session looks at: all of them, except CopyData while the server is in
 * COPY FROM STDIN, when it streams through untouched. Outside a COPY a CopyData is a whole
 * message like any other, so a stray one can be dropped (PostgreSQL ignores it) without ever
 * sending half a message to a backend.
 */
const CLIENT_INSPECT = inspectTable('', true);
const CLIENT_INSPECT_COPY = inspectTable('', true).map((v, i) => (i === 0x64 /* d */ ? 0 : v));
/**
 * Server messages the session must see, by the request at the head of the queue: what completes
 * it, errors, parameter changes, the start of a COPY. Everything else (RowDescription, DataRow,
 * CommandComplete of a Query, notices...) passes through as bytes, so a simple query's answer
 * costs one look, at its ReadyForQuery.
 */
const SERVER_WATCH: Readonly<Record<RequestType, Uint8Array>> = {
  Q: inspectTable('EZSGWA'),
  F: inspectTable('EZSA'),
  S: inspectTable('EZSA'),
  P: inspectTable('1EZSA'),
  B: inspectTable('2EZSA'),
  C: inspectTable('3EZSA'),
  D: inspectTable('TnEZSA'),
  E: inspectTable('CIsEZSGWA'),
};
/** Nothing is waiting: whatever comes (a notice, a notification, a server going away) is looked at. */
const SERVER_INSPECT = inspectTable('123tTnCIsEZSNAGHWV');
/** While a proxy-issued request is at the head, or a Query's CommandCompletes are counted: everything. */
const SERVER_INSPECT_ALL = inspectTable('', true);

/** What a client waiting for a backend may send before it is paused (about one socket read). */
const BORROW_BACKLOG_LIMIT = 64 * 1024;
const Q = 0x51;
const P = 0x50;
const B = 0x42;
const E = 0x45;
const D = 0x44;
const C = 0x43;
const H = 0x48;
const S = 0x53;
const F = 0x46;
const X = 0x58;
const Z = 0x5a;
const COPY_DATA = 0x64;
const COPY_DONE = 0x63;
const COPY_FAIL = 0x66;
const COPY_IN = 0x47;
const COPY_BOTH = 0x57;
const PARAMETER_STATUS = 0x53;
const ERROR_RESPONSE = 0x45;
const NOTIFICATION = 0x41;

/** The proxy's own statement and portal that put startup values back after an extended-protocol RESET. */
const RESTORE_NAME = 'dbproxy_restore';
const NO_SWALLOW: readonly number[] = Object.freeze([]);
const EMPTY_QUERY = serialize.query('');
const FLUSH = serialize.flush();
const DEALLOCATE_COMPLETE = commandComplete('DEALLOCATE');

/**
 * What a read-only endpoint's client gets, from the server itself, for asking a read-write
 * transaction of the writer (readers.fallbackToWriter): the error a standby would give, 25006,
 * at the same step, and an aborted transaction where PostgreSQL would abort it.
 */
const REFUSE_READ_WRITE =
  "DO $dbproxy$ BEGIN RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction', MESSAGE = 'cannot set transaction read-write mode on the read-only endpoint'; END $dbproxy$";

type TxStatus = 'I' | 'T' | 'E';

export class ClientSession implements BackendOwner, StreamOwner, StatementHost {
  readonly id: number;
  readonly connectedAt: number;
  lastActivity: number;
  cancelPid = 0;
  private readonly pair: StreamPair;
  private backend_: BackendConnection | null = null;
  private borrowing: BorrowHandle | null = null;
  /** Client messages waiting for a backend (or for its settings to be applied). */
  private readonly pending: Buffer[] = [];
  /** Bytes the client sent since it began waiting for a backend (see queuePending). */
  private borrowBacklog = 0;
  private readonly queue: ResponseQueue;
  private readonly statements: ClientStatements;
  private readonly settings: SessionSettings;
  private readonly pins: SessionPins;
  /** Extended-protocol messages forwarded since the last Sync: the backend must stay. */
  private extendedPending = false;
  private txStatus: TxStatus = 'I';
  /** Undo steps for statement-name changes whose message the server skipped, run newest first. */
  private readonly undo: Array<() => void> = [];
  /** Portals bound to a statement that resets startup parameters: once executed, the values go back. */
  private readonly portalRestores = new Map<string, Map<string, string>>();
  /** The backend is being brought to the client's settings; the client's messages wait for it. */
  private syncing = false;
  /** A client message waits (first in `pending`) for the answer to a check the proxy made first. */
  private held = false;
  /** DDL ran in the current transaction (1: shared objects, 2: temporary ones): at its end, the catalog changed. */
  private catalogChange = 0;
  /** The backend's settings could not be read back: it is closed rather than lent on. */
  private backendUnknown = false;
  /** The backend died while the client sat inside a transaction: its next request gets this error. */
  private transactionLost: Omit<ErrorFields, 'severity'> | null = null;
  /** The FATAL error the server sent before closing the backend (pg_terminate_backend, shutdown): what the client is told. */
  private serverFatal: Omit<ErrorFields, 'severity'> | null = null;
  /** No backend answered the client's batch (failed borrow, lost backend): skip to its Sync locally. */
  private skipToSync = false;
  /** Every message since the last Sync was answered by the proxy: the Sync is too. */
  private localBatch = false;
  private closed = false;
  private closeAfterTransaction = false;
  private requestStartedAt = 0;
  /** When the transaction in progress sent its first request (0: none in progress). */
  private xactStartedAt = 0;
  /** The request in progress has not heard from the server yet (for the database response latency). */
  private awaitingServer = false;
  /** The server read being walked is the request's first: its time is the database response time. */
  private firstServerRead = false;
  /** When the client started waiting in line for a backend (0: not waiting). */
  borrowStartedAt = 0;
  /** This pool's counters, looked up once: the data path only bumps their fields. */
  private readonly counters: PoolCounters;
  private lastServerErrorCode: string | undefined;
  private lastServerErrorMessage: string | undefined;

  constructor(
    private readonly socket: net.Socket,
    readonly key: PoolKey,
    startupParams: ReadonlyMap<string, string>,
    private readonly ctx: SessionContext,
    id: number,
    /** Called once, when the session has ended and given its backend back. */
    private readonly onClosed: () => void,
  ) {
    this.id = id;
    this.connectedAt = ctx.clock.now();
    this.lastActivity = this.connectedAt;
    this.pair = new StreamPair(socket, new Framer(CLIENT_INSPECT, ctx.config.maxMessageBytes), this);
    this.queue = new ResponseQueue((bytes) => this.pair.toClient.push(bytes));
    this.settings = new SessionSettings(startupParams, () => this.ctx.config.session);
    this.pins = new SessionPins({ log: ctx.log, counted: (r) => ctx.metrics.pinned(r), client: id, user: key.user, database: key.database });
    this.statements = new ClientStatements(this);
    this.counters = ctx.counters.forKey(key);
  }

  // ---- what others see ----

  get remoteAddress(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  get state(): 'idle' | 'waiting' | 'active' | 'pinned' {
    if (this.pins.pinned) return 'pinned';
    if (this.backend_) return 'active';
    if (this.borrowing) return 'waiting';
    return 'idle';
  }

  get pinnedReasons(): PinReason[] {
    return this.pins.list;
  }

  get currentBackend(): BackendConnection | null {
    return this.backend_;
  }

  /** Holding a backend inside a transaction with nothing in flight: the client is what keeps it. */
  get idleInTransaction(): boolean {
    return this.backend_ !== null && this.txStatus !== 'I' && this.queue.waiting === 0 && this.pending.length === 0 && !this.syncing;
  }

  /** When the request the server is running now started (0: none running). */
  get runningSince(): number {
    return this.backend_ !== null && this.queue.waiting > 0 ? this.requestStartedAt : 0;
  }

  /** The connection as SHOW CLIENTS describes it: TLS version ('' for plaintext), local end, application_name. */
  get connection(): { tls: string; remoteAddress: string; remotePort: number; localAddress: string; localPort: number; applicationName: string } {
    const s = this.socket as net.Socket & { encrypted?: boolean; getProtocol?: () => string | null };
    return {
      tls: s.encrypted === true ? (s.getProtocol?.() ?? 'TLS') : '',
      remoteAddress: s.remoteAddress ?? '',
      remotePort: s.remotePort ?? 0,
      localAddress: s.localAddress ?? '',
      localPort: s.localPort ?? 0,
      applicationName: this.settings.wanted.get('application_name') ?? '',
    };
  }

  /** Holding a backend with a transaction or a request still open (RDS Proxy's "currently in transaction"). */
  get inTransaction(): boolean {
    return this.backend_ !== null && (this.txStatus !== 'I' || this.queue.waiting > 0 || this.extendedPending);
  }

  /** Between transactions: holding no backend, or holding only a pinned one with nothing in flight. */
  get isIdle(): boolean {
    if (this.borrowing || this.pending.length > 0) return false;
    if (!this.backend_) return true;
    return this.pins.pinned && this.queue.waiting === 0 && !this.extendedPending && this.txStatus === 'I';
  }

  start(leftover: Buffer): void {
    this.socket.on('data', (chunk: Buffer) => {
      if (this.closed) return;
      this.lastActivity = this.ctx.clock.now();
      this.counters.bytesIn += chunk.length;
      this.pair.clientData(chunk);
    });
    this.socket.on('close', () => this.onClientClosed());
    if (leftover.length > 0) {
      this.counters.bytesIn += leftover.length;
      this.pair.clientData(leftover);
    }
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

  readonly fromClient: FrameSink = {
    raw: (bytes) => this.clientRaw(bytes),
    message: (type, msg) => this.clientMessage(type, msg),
  };

  /** CopyData bytes from the client, during a COPY FROM STDIN. */
  private clientRaw(bytes: Buffer): void {
    if (this.backend_ && this.pending.length === 0 && !this.syncing) this.pair.toServer.push(bytes);
    else if (this.backend_ || this.borrowing || this.pending.length > 0) this.queuePending(bytes);
    // else: the COPY's backend is gone (its client got the error); the rest of its data goes nowhere.
  }

  private clientMessage(type: number, msg: Buffer): void {
    if (this.closed) return;
    if (!FRONTEND_TYPE[type]) throw new ProtocolViolation(`invalid frontend message type ${type}`);
    if (this.backend_ !== null && this.pending.length === 0 && !this.syncing && !this.held && !this.skipToSync && this.transactionLost === null) {
      // The common case: a backend is attached and nothing waits before this message.
      if (type === X) {
        this.onClientClosed();
        this.socket.end();
        return;
      }
      this.localBatch = false;
      this.process(type, msg);
      if (this.undo.length > 0) this.runUndo();
      return;
    }
    if (type === X) {
      this.onClientClosed();
      this.socket.end();
      return;
    }
    if ((type === COPY_DATA || type === COPY_DONE || type === COPY_FAIL) && !this.backend_ && !this.borrowing && this.pending.length === 0) {
      // Outside a COPY: PostgreSQL accepts and ignores these, and they expect no answer, so no
      // backend is borrowed for them (it would never be returned).
      return;
    }
    if (this.skipToSync) {
      if (type === S) {
        this.skipToSync = false;
        this.pair.toClient.push(readyForQuery('I'));
      }
      return;
    }
    if (this.transactionLost !== null) {
      const fields = this.transactionLost;
      this.transactionLost = null;
      this.pending.push(msg);
      this.failPending(new Error(fields.message), fields);
      return;
    }
    if (!this.backend_ && !this.borrowing && this.txStatus === 'I' && this.answerWithoutBackend(type, msg)) return;
    this.localBatch = false;
    this.queuePending(msg);
    if (!this.backend_ && !this.borrowing) this.getBackend();
  }

  /**
   * Keeps a client message until the backend can take it. A client waiting for a backend is not
   * paused up front (a pause and a resume on every wait cost more than the rest of the transaction
   * when most transactions wait, as with 100 clients on 20 backends); it is paused only once it has
   * sent more than BORROW_BACKLOG_LIMIT meanwhile, which bounds what a waiting client can buffer.
   */
  private queuePending(msg: Buffer): void {
    this.pending.push(msg);
    if (this.borrowing && (this.borrowBacklog += msg.length) > BORROW_BACKLOG_LIMIT) this.pair.pauseClient(PAUSE_BORROW);
  }

  /**
   * Outside a transaction and holding no backend, a client that prepares an already known
   * statement or closes one of its names needs no server: answer it here.
   */
  private answerWithoutBackend(type: number, msg: Buffer): boolean {
    if (type === S || type === H) {
      if (!this.localBatch) return false;
      if (type === S) {
        this.localBatch = false;
        this.pair.toClient.push(readyForQuery('I'));
      }
      return true;
    }
    const r = this.statements.answerWithoutBackend(type, msg);
    if (!r) return false;
    if (type === P && msg[5] !== 0) this.counters.clientParseCount++;
    this.pair.toClient.push(r.answer);
    if (r.skipToSync) {
      this.localBatch = false;
      this.skipToSync = true;
    } else {
      this.localBatch = true;
    }
    return true;
  }

  /** Handles one client message with a backend attached. */
  private process(type: number, msg: Buffer): void {
    if (this.queue.skipping && type !== S) {
      // After an error the server (or the proxy on its behalf) ignores everything until Sync.
      if (type === P || type === B || type === D || type === E || type === C || type === H) return;
    }
    if (this.requestStartedAt === 0 && this.queue.waiting === 0) {
      // When the client read carrying the request arrived (read in the same tick, or earlier
      // when the request waited for a backend): one clock read per read, not one more per request.
      this.requestStartedAt = this.lastActivity;
      this.awaitingServer = true;
      if (this.xactStartedAt === 0) this.xactStartedAt = this.requestStartedAt;
    }
    const b = this.backend_!;
    switch (type) {
      case Q:
        this.counters.queryCount++;
        this.onQuery(msg);
        return;
      case P:
        // Named statements only, as PgBouncer counts them (its prepared-statement tracking).
        if (msg[5] !== 0) this.counters.clientParseCount++;
        this.extendedPending = true;
        this.statements.onParse(b, this.ctx.readOnly?.onWriter(b) ? this.readOnlyParse(msg) : msg);
        return;
      case B: {
        this.extendedPending = true;
        const bound = this.statements.onBind(b, msg);
        // A held Bind comes through here again once the check it waits for is answered: count it then.
        if (bound === null) {
          this.hold(msg);
          return;
        }
        if (msg[msg[5] === 0 ? 6 : msg.indexOf(0, 5) + 1] !== 0) this.counters.bindCount++;
        if (bound.classification) this.notePortalRestore(bound.portal, bound.classification);
        return;
      }
      case D:
        this.extendedPending = true;
        if (!this.statements.onDescribe(b, msg)) this.hold(msg);
        return;
      case C:
        this.extendedPending = true;
        this.statements.onClose(b, msg);
        return;
      case E: {
        this.counters.queryCount++;
        this.extendedPending = true;
        this.forward(msg, 'E');
        const restore = this.portalRestores.size > 0 ? this.portalRestores.get(readExecutePortal(msg)) : undefined;
        if (restore) this.restoreAfterExecute(restore);
        return;
      }
      case H:
        this.extendedPending = true;
        this.pair.toServer.push(msg);
        return;
      case S:
        this.extendedPending = false;
        if (this.portalRestores.size > 0) this.portalRestores.clear();
        this.forward(msg, 'S');
        return;
      case F:
        this.onFunctionCall(msg);
        this.forward(msg, 'F');
        return;
      case COPY_DATA:
      case COPY_DONE:
      case COPY_FAIL:
        this.pair.toServer.push(msg);
        return;
      default:
        throw new ProtocolViolation(`invalid frontend message type ${type}`);
    }
  }

  /** A Parse of a read-write request, from a read-only client on the writer, becomes one that fails when run. */
  private readOnlyParse(msg: Buffer): Buffer {
    const at = locateParse(msg);
    const c = this.ctx.classifier.classifyBytes(msg, at.nameEnd + 1, at.textEnd, this.txStatus !== 'I');
    if (!c.readWrite) return msg;
    return serialize.parse({ name: msg.toString('utf8', 5, at.nameEnd), text: REFUSE_READ_WRITE });
  }

  private onQuery(msg: Buffer): void {
    if (msg[msg.length - 1] !== 0) throw new ProtocolViolation('invalid string in message');
    // A simple Query drops the server session's unnamed statement, whoever Parsed it.
    this.backend_!.unnamedOwner = null;
    this.statements.queryRan();
    const c = this.judge(this.ctx.classifier.classifyBytes(msg, 5, msg.length - 1, this.txStatus !== 'I'), true, () => msg.toString('utf8', 5, msg.length - 1));
    if (c.readWrite && this.ctx.readOnly?.onWriter(this.backend_!)) {
      this.forward(serialize.query(REFUSE_READ_WRITE), 'Q');
      return;
    }
    if (c.resets.length === 0) {
      if (c.deallocate === null) this.forward(msg, 'Q');
      else this.onDeallocate(msg, c.deallocate);
      return;
    }
    // Startup values go back in the same query string, so the server reports them (ParameterStatus,
    // before its ReadyForQuery) exactly as PostgreSQL reports a RESET to the startup value.
    const restore = c.discardAll ? null : this.restoringQuery(msg, c);
    if (restore) {
      this.queue.push({ kind: 'client', req: 'Q', swallow: restore.swallow });
      this.pair.toServer.push(restore.msg);
    } else if (c.statements === 1) {
      // DISCARD ALL, which may not share a query string: the values go back right after it, and
      // the client sees their reports (after its ReadyForQuery: the values it ends up with).
      this.forward(msg, 'Q');
      const values = this.settings.startupValuesReset(c.resets[0]!.names);
      if (values.size > 0) this.hidden(serialize.query(restoreParamsSql(values)), { req: 'Q', forwardReports: true });
    } else {
      this.forward(msg, 'Q');
    }
  }

  /**
   * A lone `DEALLOCATE name`. PostgreSQL has one namespace for SQL-level and protocol-level
   * statements, so it deallocates the client's protocol-level statement of that name, which the
   * server knows only under the proxy's name: the name goes here, and the server answers an empty
   * query in its place (so the transaction status is the server's), shown as DEALLOCATE.
   */
  private onDeallocate(msg: Buffer, name: string): void {
    if (this.txStatus !== 'E' && this.statements.deallocate(name)) {
      this.queue.push({ kind: 'client', req: 'Q', swallow: NO_SWALLOW, emptyAs: DEALLOCATE_COMPLETE });
      this.pair.toServer.push(EMPTY_QUERY);
      return;
    }
    // In an aborted transaction the server says 25P02; a name the client never prepared: 26000,
    // or, in a session pinned for SQL-level statements, whatever the server holds.
    this.forward(msg, 'Q');
  }

  // ---- requests (StatementHost) ----

  forward(msg: Buffer, req: RequestType, done?: (ok: boolean) => void): void {
    if (req === 'P' && msg[5] !== 0) this.counters.serverParseCount++;
    this.queue.push(done ? { kind: 'client', req, done } : CLIENT_SLOT[req]);
    this.pair.toServer.push(msg);
  }

  hidden(msg: Buffer, slot: Omit<Slot, 'kind'>): void {
    if (slot.req === 'Q' && this.backend_ !== null) this.backend_.unnamedOwner = null;
    if (slot.req === 'P' && msg[5] !== 0) this.counters.serverParseCount++;
    this.queue.push({ kind: 'hidden', ...slot });
    this.pair.toServer.push(msg);
  }

  local(bytes: Buffer, req: RequestType, undo?: () => void): void {
    this.queue.push({ kind: 'local', req, bytes, done: undo && ((ok) => ok || this.undo.push(undo)) });
  }

  failLocally(code: string, message: string): void {
    this.queue.failLocally(errorResponse({ severity: 'ERROR', code, message }));
  }

  pushUndo(step: () => void): void {
    this.undo.push(step);
  }

  catalogChangedError(): boolean {
    switch (this.lastServerErrorCode) {
      case '0A000': // cached plan must not change result type
      case '42P01': // undefined table
      case '42703': // undefined column
      case '42883': // undefined function
      case '42704': // undefined object
        return true;
      case 'XX000':
        return this.lastServerErrorMessage?.startsWith('cache lookup failed') === true;
      default:
        return false;
    }
  }

  loneMessage(): boolean {
    return this.pending.length === 0 && this.pair.clientFramer.endsChunk;
  }

  /** The message being handled waits, first in line, until `resume`. */
  private hold(msg: Buffer): void {
    this.pending.unshift(msg);
    this.held = true;
  }

  flushServer(): void {
    this.pair.toServer.push(FLUSH);
  }

  resume(): void {
    if (!this.held) return;
    this.held = false;
    const b = this.backend_;
    if (b === null || this.closed) return;
    this.sendPending(b);
    this.pair.flush();
  }

  get knownStatements(): KnownStatements {
    return this.ctx.knownStatements;
  }

  searchPath(): string {
    return this.settings.searchPath;
  }

  judgeBytes(msg: Buffer, start: number, end: number, execute: boolean): Classification {
    return this.judge(this.ctx.classifier.classifyBytes(msg, start, end, this.txStatus !== 'I'), execute, () => msg.toString('utf8', start, end));
  }

  judgeText(sql: string, execute: boolean): Classification {
    return this.judge(this.ctx.classifier.classify(sql, this.txStatus !== 'I'), execute, () => sql);
  }

  private runUndo(): void {
    while (this.undo.length > 0) this.undo.pop()!();
  }

  // ---- what the SQL does to the session ----

  /**
   * Pins for what the text does, and tracks its SETs. For the extended protocol the SETs take
   * effect when the statement runs, so they are tracked at Bind (`execute`), not at Parse.
   */
  private judge(c: Classification, execute: boolean, text: () => string): Classification {
    if (c.pins.length === 0 && c.settings.length === 0 && !c.discardAll && !c.ddl && !c.ddlTemp && c.releasesDatabase === null) return c;
    if (execute && (c.ddl || c.ddlTemp)) this.catalogChanging(c.ddl ? 1 : 2);
    if (execute && c.releasesDatabase !== null) this.releaseDatabase(c.releasesDatabase);
    const digest = (): string => this.ctx.classifier.digest(text());
    if (!execute) {
      for (const reason of c.pins) if (reason !== 'set' || !this.ctx.config.session.trackSettings) this.pin(reason, digest);
      return c;
    }
    const tracked = c.settings.length > 0 && this.settings.track(c.settings, this.backend_?.appliedParams);
    for (const reason of c.pins) {
      if (reason === 'set' && tracked) continue;
      this.pin(reason, digest);
    }
    if (c.discardAll) {
      this.statements.clear();
      this.backend_?.statements.clear();
    }
    return c;
  }

  /**
   * Directly, a database no client is connected to can be dropped; through the proxy its idle
   * pooled connections would make PostgreSQL refuse (55006, "being accessed by other users").
   * They go first; the server waits up to 5 s for their processes to exit.
   */
  private releaseDatabase(database: string): void {
    const closed = this.ctx.closeIdleConnections?.(database) ?? 0;
    if (closed > 0) this.ctx.log.info({ database, closed, user: this.key.user }, 'closed idle server connections to a database a client is about to drop, rename or copy');
  }

  private pin(reason: PinReason, digest: () => string): void {
    if (this.pins.pin(reason, digest) && this.backend_) this.ctx.pool.markPinned(this.backend_);
    if (reason === 'sql_prepare') this.statements.enterPassthrough(this.backend_, this.extendedPending);
  }

  /**
   * DDL is about to run (1: on shared objects, 2: creating temporary ones): statements Parsed
   * from now on are analysed afresh (not shared with ones analysed before), and again once its
   * transaction ends, committed or rolled back.
   */
  private catalogChanging(kind: 1 | 2): void {
    if (kind === 1) this.ctx.knownStatements.bump(this.key.database);
    else this.statements.catalogChangedLocally();
    this.catalogChange |= kind;
  }

  /** FunctionCall carries no SQL: its effect comes from the function's OID. */
  private onFunctionCall(msg: Buffer): void {
    const call = readFunctionCall(msg);
    if (!call) return;
    const effect = functionCallEffect(call, this.txStatus !== 'I');
    const tracked = effect.settings.length > 0 && this.settings.track(effect.settings, this.backend_?.appliedParams);
    for (const reason of effect.pins) if (reason !== 'set' || !tracked) this.pin(reason, () => `FunctionCall ${call.oid}`);
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
      const values = this.settings.startupValuesReset(r.names);
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
      const values = this.settings.startupValuesReset(r.names);
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

  // ---- getting, keeping and returning a backend ----

  /** An idle backend now if there is one (no Promise, no pause), else wait in line for one. */
  private getBackend(): void {
    const b = this.ctx.pool.tryBorrow(this.key, this);
    if (b) {
      this.attach(b);
      return;
    }
    this.borrowBacklog = 0;
    const handle = this.ctx.pool.borrow(this.key, this);
    this.borrowing = handle;
    this.borrowStartedAt = this.ctx.clock.now();
    handle.promise.then(
      (granted) => {
        if (this.borrowing !== handle) return;
        this.borrowing = null;
        this.counters.waitTimeUs += (this.ctx.clock.now() - this.borrowStartedAt) * 1000;
        this.borrowStartedAt = 0;
        if (this.closed) {
          this.ctx.pool.release(granted);
          return;
        }
        this.pair.unpauseClient(PAUSE_BORROW);
        this.attach(granted);
        this.pair.flush();
      },
      (err: Error) => {
        if (this.borrowing !== handle) return;
        this.borrowing = null;
        this.counters.waitTimeUs += (this.ctx.clock.now() - this.borrowStartedAt) * 1000;
        this.borrowStartedAt = 0;
        this.pair.unpauseClient(PAUSE_BORROW);
        if (!this.closed) this.failPending(err);
      },
    );
  }

  /** Takes a backend the pool lent to this session (the pool made it this session's). */
  private attach(b: BackendConnection): void {
    this.counters.serverAssignments++;
    this.backend_ = b;
    b.lastClientPid = this.cancelPid;
    b.statements.capacity = this.ctx.config.session.maxPreparedStatements;
    b.framer ??= new Framer(SERVER_INSPECT, 1 << 30);
    this.pair.attach(b.socket, b.framer);
    if (this.pins.pinned) this.ctx.pool.markPinned(b);
    this.statements.attached(b);
    // The client's messages wait until the backend has its settings: if that fails, they must not
    // run with the previous client's.
    if (this.syncParams(b)) return;
    this.sendPending(b);
  }

  /** Sends what the client said while it had no backend (or while the backend was being synced). */
  private sendPending(b: BackendConnection): void {
    try {
      while (this.pending.length > 0 && this.backend_ === b && !this.closed && !this.held) {
        const m = this.pending.shift()!;
        // A message may be CopyData bytes rather than a whole message; those have no type of their own.
        if (m.length >= 5 && m.readUInt32BE(1) + 1 === m.length && this.pair.clientFramer.inspect[m[0]!]) this.process(m[0]!, m);
        else this.pair.toServer.push(m);
      }
    } catch (e) {
      if (!(e instanceof ProtocolViolation)) throw e;
      this.ctx.metrics.protocolErrors.inc();
      this.terminate({ code: SQLSTATE.protocolViolation, message: e.message });
      return;
    }
    if (this.undo.length > 0) this.runUndo();
  }

  /**
   * Brings the backend's session parameters to the client's, in one round trip, unseen; true when
   * one was sent (the client's messages then wait for its answer). Several statements in one
   * Query run in one implicit transaction, so a failure leaves the backend as it was.
   */
  private syncParams(b: BackendConnection): boolean {
    const sql = this.settings.syncSql(b.appliedParams);
    if (!sql) return false;
    const wanted = new Map(this.settings.wanted);
    this.syncing = true;
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
        if (this.backend_ !== b || this.closed) return;
        if (ok) this.sendPending(b);
        else this.failPending(new ServerError(this.lastServerErrorCode ?? SQLSTATE.connectionFailure, this.lastServerErrorMessage ?? 'could not apply session parameters', 'ERROR'));
      },
    });
    return true;
  }

  /** Reads back the values of parameters this session changed, so they can follow it to other backends. */
  private readBackSettings(b: BackendConnection): void {
    const rb = this.settings.readBack();
    const rows: Buffer[] = [];
    this.hidden(serialize.query(rb.sql), {
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
        rb.apply(values, b.appliedParams);
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
      const t = m[0]!;
      if (t === Q || t === F) {
        this.pair.toClient.push(errorResponse({ severity: 'ERROR', ...fields }));
        this.pair.toClient.push(readyForQuery('I'));
      } else if (t === S) {
        if (!errored) this.pair.toClient.push(errorResponse({ severity: 'ERROR', ...fields }));
        this.pair.toClient.push(readyForQuery('I'));
        errored = false;
      } else if (t === P || t === B || t === D || t === E || t === C) {
        if (!errored) this.pair.toClient.push(errorResponse({ severity: 'ERROR', ...fields }));
        errored = true;
      }
    }
    // Messages of the same batch still to come belong to the failed request: skip them to Sync.
    this.extendedPending = errored;
    this.skipToSync = errored;
    this.requestStartedAt = 0;
    this.xactStartedAt = 0;
    this.pair.flush();
    if (this.closeAfterTransaction) this.drain();
  }

  // ---- server -> client ----

  onBackendData(b: BackendConnection, chunk: Buffer): void {
    if (b !== this.backend_) return;
    this.counters.bytesOut += chunk.length;
    this.firstServerRead = this.awaitingServer;
    this.awaitingServer = false;
    b.framer!.inspect = this.serverWatch();
    this.pair.serverData(chunk);
    if (this.firstServerRead) {
      // The answer goes on beyond its first read: that read's time is when the database answered.
      // (An answer complete in one read was observed at its ReadyForQuery, with no clock read of its own.)
      this.firstServerRead = false;
      if (this.requestStartedAt > 0) this.ctx.metrics.databaseResponseLatency.observe((this.ctx.clock.now() - this.requestStartedAt) / 1000);
    }
  }

  onBackendDrain(b: BackendConnection): void {
    if (b === this.backend_) this.pair.backendDrained();
  }

  /** Which server messages to look at next, for the request now at the head of the queue. */
  private serverWatch(): Uint8Array {
    const head = this.queue.headSlot;
    if (head === null) return SERVER_INSPECT;
    if (head.kind !== 'client' || head.swallow !== undefined) return SERVER_INSPECT_ALL;
    return SERVER_WATCH[head.req];
  }

  readonly fromServer: FrameSink = {
    raw: (bytes) => {
      if (!this.queue.headIsHidden) this.pair.toClient.push(bytes);
    },
    message: (type, msg) => this.serverMessage(type, msg),
  };

  private serverMessage(type: number, msg: Buffer): void {
    if (type === ERROR_RESPONSE) {
      const f = readErrorFields(msg);
      this.lastServerErrorCode = f.get('C');
      this.lastServerErrorMessage = f.get('M');
      const severity = f.get('V') ?? f.get('S');
      if (severity === 'FATAL' || severity === 'PANIC') {
        // The server ends this connection (pg_terminate_backend, shutdown, ...): the client is told
        // once, when the close arrives, with the server's SQLSTATE and message (loseBackend).
        this.serverFatal = { code: f.get('C') ?? SQLSTATE.connectionFailure, message: f.get('M') ?? 'the database server closed the connection' };
        return;
      }
    } else if (type === NOTIFICATION) {
      // A notification carries the pid of the server process that raised it; clients know each
      // other (and themselves) by the pids the proxy gave them (BackendKeyData), which drivers
      // compare: the pid of the client whose transaction ran there, when the proxy knows it.
      const b = this.backend_;
      const sender = msg.readInt32BE(5);
      const pid = b !== null && sender === b.pid ? this.cancelPid : b !== null ? this.ctx.clientPidOf?.(b.endpoint, sender) : undefined;
      if (pid !== undefined && pid !== 0) msg.writeUInt32BE(pid >>> 0, 5);
    } else if (type === PARAMETER_STATUS && this.queue.waiting > 0 && !this.queue.headIsHidden) {
      this.settings.reported(msg.toString('utf8', 5, msg.indexOf(0, 5)).toLowerCase());
    }
    const completed = this.queue.onServer(type, msg);
    if (this.undo.length > 0) this.runUndo();
    if ((type === COPY_IN || type === COPY_BOTH) && !this.queue.headIsHidden) this.pair.clientFramer.inspect = CLIENT_INSPECT_COPY;
    if (type === Z) {
      this.pair.clientFramer.inspect = CLIENT_INSPECT;
      this.txStatus = String.fromCharCode(msg[5]!) as TxStatus;
      if (this.catalogChange !== 0 && this.txStatus === 'I') {
        if ((this.catalogChange & 1) !== 0) this.ctx.knownStatements.bump(this.key.database);
        if ((this.catalogChange & 2) !== 0) this.statements.catalogChangedLocally();
        this.catalogChange = 0;
      }
      if (completed?.kind === 'client' && this.queue.waiting === 0 && this.requestStartedAt > 0) {
        const now = this.ctx.clock.now();
        const ms = now - this.requestStartedAt;
        this.ctx.metrics.queryLatency.observe(ms / 1000);
        if (this.firstServerRead) {
          this.firstServerRead = false;
          this.ctx.metrics.databaseResponseLatency.observe(ms / 1000);
        }
        const c = this.counters;
        c.queryTimeUs += ms * 1000;
        if (msg[5] === 0x49 /* I */) {
          c.xactCount++;
          c.xactTimeUs += (now - this.xactStartedAt) * 1000;
          this.xactStartedAt = 0;
        }
        this.requestStartedAt = 0;
      }
    }
    const b = this.backend_;
    if (b?.framer) b.framer.inspect = this.serverWatch();
  }

  afterClientRead(): void {
    if (this.backend_ && !this.pair.clientFramer.inRawMessage) this.maybeRelease();
  }

  afterServerRead(): void {
    this.maybeRelease();
  }

  framingError(err: Error, fromClient: boolean): void {
    if (fromClient) {
      if (err instanceof FramingError || err instanceof ProtocolViolation) {
        this.ctx.metrics.protocolErrors.inc();
        this.ctx.log.warn({ client: this.id, err: err.message }, 'protocol violation from client');
        this.terminate({ code: SQLSTATE.protocolViolation, message: err.message });
        return;
      }
      this.ctx.log.error({ client: this.id, err: err.stack ?? err.message }, 'internal error in a client session');
      this.terminate({ code: SQLSTATE.internalError, message: 'internal error in dbproxy; the session is closed' });
      return;
    }
    if (!(err instanceof FramingError)) {
      this.ctx.log.error({ client: this.id, err: err.stack ?? err.message }, 'internal error in a client session');
      this.terminate({ code: SQLSTATE.internalError, message: 'internal error in dbproxy; the session is closed' });
      return;
    }
    this.ctx.log.error({ backend: this.backend_?.label, err: err.message }, 'malformed data from server');
    this.pair.toClient.clear();
    this.loseBackend('malformed data from the database server');
  }

  private maybeRelease(): void {
    const b = this.backend_;
    if (!b || this.queue.waiting > 0 || this.extendedPending || this.txStatus !== 'I' || this.pending.length > 0) return;
    if (this.pins.pinned) {
      if (this.closeAfterTransaction && this.isIdle) this.drain();
      return;
    }
    if (!this.pair.serverAtBoundary) return;
    // Half of a passed-through client message went to this backend: the rest must follow it.
    if (this.pair.clientFramer.inRawMessage) return;
    if (this.settings.needsReadBack) {
      this.readBackSettings(b);
      this.pair.flush();
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

  /** Stops using the backend; the caller gives it back to the pool at once (release, discard...). */
  private detachBackend(): void {
    this.backend_ = null;
    this.pair.detach();
  }

  onBackendClose(b: BackendConnection, err: Error | undefined): void {
    if (b !== this.backend_) return;
    this.ctx.log.warn({ client: this.id, backend: b.label, err: err?.message }, 'backend connection lost during a session');
    this.loseBackend('the database server closed the connection');
  }

  /**
   * The backend died or misbehaved. What the client sees, exactly once (README, "A server process
   * ends under a client"): a pinned session had state only that server process held, so it gets
   * the server's FATAL (or 08006) and is closed, as PostgreSQL would close it; any other client
   * loses only what was in flight on it, and keeps its connection: a request waiting for an
   * answer gets the server's error (its SQLSTATE and message, as an ERROR) now, a client idle
   * inside a transaction gets it as the answer to its next request, and a client between
   * transactions notices nothing.
   */
  private loseBackend(why: string): void {
    const b = this.backend_;
    if (!b) return;
    const fatal = this.serverFatal;
    this.serverFatal = null;
    const held = this.held;
    this.held = false;
    this.detachBackend();
    this.pair.clientFramer.inspect = CLIENT_INSPECT;
    this.ctx.pool.discard(b);
    if (this.syncing) {
      // Lost before the client's messages were sent: they go to another backend.
      this.syncing = false;
      this.queue.abandon();
      if (!this.pins.pinned && !this.closed) {
        this.getBackend();
        this.pair.flush();
        return;
      }
    }
    const waiting = this.queue.clientWaiting || held;
    const inTransaction = this.txStatus !== 'I' || this.extendedPending;
    this.queue.abandon();
    if (this.pins.pinned) {
      // Session state (temp tables, locks, ...) is gone with the server connection: say so and close.
      const detail = `this session held state on that server connection (pinned: ${this.pinnedReasons.join(', ')})`;
      this.terminate(fatal ? { ...fatal, detail } : { code: SQLSTATE.connectionFailure, message: `${why}; ${detail}` });
      return;
    }
    const lost: Omit<ErrorFields, 'severity'> = fatal
      ? { ...fatal, detail: 'The server connection running this transaction ended; the transaction was lost. This connection stays usable: retry the transaction.' }
      : { code: SQLSTATE.connectionFailure, message: `${why} during the transaction; the transaction was lost, retry it` };
    if (held) {
      // Its messages still waiting here get the answers a failed batch gets.
      this.txStatus = 'I';
      this.failPending(new Error(lost.message), lost);
    } else if (waiting) {
      // The client is waiting for an answer: it gets the error now, and a ReadyForQuery or a skip to its Sync.
      this.pair.toClient.push(errorResponse({ severity: 'ERROR', ...lost }));
      if (this.extendedPending) this.skipToSync = true;
      else this.pair.toClient.push(readyForQuery('I'));
      this.pair.flush();
    } else if (inTransaction) {
      // Idle inside a transaction: nothing to answer yet. Its next request fails, then it starts afresh.
      this.transactionLost = lost;
    }
    this.extendedPending = false;
    this.txStatus = 'I';
    this.requestStartedAt = 0;
    this.xactStartedAt = 0;
  }

  // ---- end of session ----

  private onClientClosed(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.borrowing) {
      this.borrowing.cancel();
      this.borrowing = null;
    }
    const b = this.backend_;
    if (b) {
      const clean = this.queue.waiting === 0 && !this.extendedPending && this.txStatus === 'I' && this.pair.serverAtBoundary && !this.pair.clientFramer.inRawMessage;
      this.detachBackend();
      this.queue.abandon();
      if (!clean) {
        // Mid-transaction or mid-result: nobody can vouch for this connection's state.
        this.ctx.pool.discard(b);
      } else if (this.pins.pinned) {
        if (this.pins.has('load')) this.ctx.pool.discard(b);
        else this.ctx.pool.resetAndRelease(b);
      } else {
        this.ctx.pool.release(b);
      }
    }
    this.onClosed();
  }
}
