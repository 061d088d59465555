// One authenticated client on the pooled data path. It borrows a backend when the client starts
// talking, forwards bytes both ways, and returns the backend when the server's ReadyForQuery says
// the session is idle and nothing the client sent is still unanswered. Transaction boundaries
// come from the protocol, never from the SQL text; the SQL is looked at only to decide pinning.
import type net from 'node:net';
import type { PinReason } from '../classify/pinReasons.js';
import { describePinReason } from '../classify/pinReasons.js';
import type { PoolKey, BorrowHandle } from '../pool/backendPool.js';
import { BorrowTimeoutError } from '../pool/backendPool.js';
import { Framer, FramingError, inspectTable, type FrameSink } from '../protocol/framer.js';
import { ProtocolViolation, readErrorFields, readParse, readQuery } from '../protocol/clientMessages.js';
import { errorResponse, readyForQuery, type ErrorFields } from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import { ServerError, type BackendConnection, type BackendOwner } from '../server/backendConnection.js';
import { paramSyncSql } from '../session/sessionParams.js';
import type { ProxyContext } from '../proxyContext.js';

/** Client messages the session looks at: all but CopyData, which streams through untouched. */
const CLIENT_INSPECT = inspectTable('d', true).map((v, i) => (i === 'd'.charCodeAt(0) ? 0 : v));
/** Server messages the data path looks at. */
const SERVER_INSPECT = inspectTable('ZSE');
/** While consuming the proxy's own parameter-sync replies: everything. */
const SERVER_INSPECT_ALL = inspectTable('', true);

const Z = 'Z'.charCodeAt(0);
const E = 'E'.charCodeAt(0);

type TxStatus = 'I' | 'T' | 'E';

export class ClientSession implements BackendOwner, FrameSink {
  readonly id: number;
  readonly connectedAt: number;
  lastActivity: number;
  cancelPid = 0;
  private backend: BackendConnection | null = null;
  private borrowing: BorrowHandle | null = null;
  private readonly framer: Framer;
  private readonly pending: Buffer[] = [];
  /** Query/Sync/FunctionCall messages forwarded and not yet answered by ReadyForQuery. */
  private outstanding = 0;
  /** Extended-protocol messages forwarded since the last Sync: the backend must stay. */
  private extendedPending = false;
  private txStatus: TxStatus = 'I';
  private readonly pinReasons = new Set<PinReason>();
  /** Proxy-issued queries whose replies the client must not see. */
  private swallowing = 0;
  /** After a failed borrow in the extended protocol: drop messages until Sync, like the server. */
  private skipUntilSync = false;
  private closed = false;
  private closeAfterTransaction = false;
  private clientBlocked = false;
  private backendBlocked = false;
  private requestStartedAt = 0;
  private readonly out: Buffer[] = [];
  private readonly backendSink: FrameSink;

  constructor(
    private readonly socket: net.Socket,
    readonly key: PoolKey,
    private readonly wantedParams: ReadonlyMap<string, string>,
    private readonly ctx: ProxyContext,
    id: number,
  ) {
    this.id = id;
    this.connectedAt = ctx.clock.now();
    this.lastActivity = this.connectedAt;
    this.framer = new Framer(CLIENT_INSPECT, ctx.config.maxMessageBytes);
    this.backendSink = {
      raw: (bytes) => {
        if (this.swallowing === 0) this.out.push(bytes);
      },
      message: (type, msg) => this.onServerMessage(type, msg),
    };
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
    if (!this.backend && !this.borrowing) this.terminate({ code: SQLSTATE.adminShutdown, message: 'terminating connection due to administrator command' });
    else this.closeAfterTransaction = true;
  }

  get isIdle(): boolean {
    return !this.backend && !this.borrowing;
  }

  // ---- client -> server ----

  private onClientData(chunk: Buffer): void {
    if (this.closed) return;
    this.lastActivity = this.ctx.clock.now();
    try {
      this.framer.push(chunk, this);
    } catch (e) {
      if (e instanceof FramingError || e instanceof ProtocolViolation) {
        this.ctx.metrics.protocolErrors.inc();
        this.ctx.log.warn({ client: this.id, err: e.message }, 'protocol violation from client');
        this.terminate({ code: SQLSTATE.protocolViolation, message: e.message });
        return;
      }
      throw e;
    }
  }

  /** FrameSink: CopyData bytes from the client. */
  raw(bytes: Buffer): void {
    this.toBackend(bytes);
  }

  /** FrameSink: a whole client message. */
  message(type: number, msg: Buffer): void {
    if (this.closed) return;
    const t = String.fromCharCode(type);
    if (this.skipUntilSync) {
      if (t === 'S') {
        this.skipUntilSync = false;
        this.socket.write(readyForQuery('I'));
      } else if (t === 'X') {
        this.onClientClosed();
      }
      return;
    }
    switch (t) {
      case 'X':
        this.onClientClosed();
        this.socket.end();
        return;
      case 'Q':
        this.classify(readQuery(msg));
        this.outstanding++;
        break;
      case 'P': {
        const parse = readParse(msg);
        if (parse.name !== '') this.pin('protocol_named_statement', parse.query);
        this.classify(parse.query);
        this.extendedPending = true;
        break;
      }
      case 'B':
      case 'E':
      case 'D':
      case 'C':
      case 'H':
        this.extendedPending = true;
        break;
      case 'S':
        this.extendedPending = false;
        this.outstanding++;
        break;
      case 'F':
        this.outstanding++;
        break;
      case 'c':
      case 'f':
        break;
      default:
        throw new ProtocolViolation(`invalid frontend message type ${type}`);
    }
    if (this.outstanding > 0 && this.requestStartedAt === 0) this.requestStartedAt = this.ctx.clock.now();
    this.toBackend(msg);
  }

  private classify(sql: string): void {
    const c = this.ctx.classifier.classify(sql, this.txStatus !== 'I');
    for (const reason of c.pins) this.pin(reason, c.digest);
    if (c.discardAll && this.backend) this.backend.appliedParams.clear();
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

  private toBackend(buf: Buffer): void {
    if (this.backend) {
      if (!this.backend.write(buf) && !this.clientBlocked) {
        this.clientBlocked = true;
        this.socket.pause();
        this.backend.socket.once('drain', () => {
          this.clientBlocked = false;
          if (!this.borrowing) this.socket.resume();
        });
      }
      return;
    }
    this.pending.push(buf);
    if (!this.borrowing) this.borrow();
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
    if (this.pinReasons.size > 0) this.ctx.pool.markPinned(b);
    const sync = paramSyncSql(this.wantedParams, b.appliedParams);
    if (sync) {
      this.swallowing++;
      for (const [k, v] of this.wantedParams) b.appliedParams.set(k, v);
      for (const k of [...b.appliedParams.keys()]) if (!this.wantedParams.has(k)) b.appliedParams.delete(k);
      b.write(queryMessage(sync));
    }
    const msgs = this.pending.splice(0);
    for (const m of msgs) this.toBackend(m);
    if (!this.clientBlocked) this.socket.resume();
  }

  /** Answers what the client sent, as the server would have, when no backend could be had. */
  private failPending(err: Error): void {
    const fields: Omit<ErrorFields, 'severity'> =
      err instanceof BorrowTimeoutError
        ? { code: SQLSTATE.tooManyConnections, message: err.message }
        : err instanceof ServerError
          ? { code: err.code, message: err.message, detail: err.detail }
          : { code: SQLSTATE.connectionFailure, message: `could not get a database connection: ${err.message}` };
    if (err instanceof ServerError && err.isLoginRefusal) {
      this.terminate(fields);
      return;
    }
    const msgs = this.pending.splice(0);
    this.outstanding = 0;
    this.extendedPending = false;
    let extendedOpen = false;
    let errored = false;
    for (const m of msgs) {
      const t = String.fromCharCode(m[0]!);
      if (t === 'Q' || t === 'F') {
        this.socket.write(errorResponse({ severity: 'ERROR', ...fields }));
        this.socket.write(readyForQuery('I'));
      } else if (t === 'S') {
        if (!errored) this.socket.write(errorResponse({ severity: 'ERROR', ...fields }));
        this.socket.write(readyForQuery('I'));
        extendedOpen = false;
        errored = false;
      } else if (t !== 'd' && t !== 'c' && t !== 'f') {
        if (!errored) this.socket.write(errorResponse({ severity: 'ERROR', ...fields }));
        errored = true;
        extendedOpen = true;
      }
    }
    this.skipUntilSync = extendedOpen;
    this.requestStartedAt = 0;
    if (this.closeAfterTransaction) this.drain();
    else this.socket.resume();
  }

  // ---- server -> client ----

  onBackendData(b: BackendConnection, chunk: Buffer): void {
    if (b !== this.backend) return;
    try {
      b.framer ??= new Framer(SERVER_INSPECT, 1 << 30);
      b.framer.inspect = this.swallowing > 0 ? SERVER_INSPECT_ALL : SERVER_INSPECT;
      b.framer.push(chunk, this.backendSink);
    } catch (e) {
      this.ctx.log.error({ backend: b.label, err: (e as Error).message }, 'malformed data from server');
      this.out.length = 0;
      this.loseBackend('malformed data from the database server');
      return;
    }
    this.flushOut();
    this.maybeRelease();
  }

  private onServerMessage(type: number, msg: Buffer): void {
    const b = this.backend!;
    if (this.swallowing > 0) {
      if (type === E) {
        const f = readErrorFields(msg);
        this.ctx.log.warn({ client: this.id, code: f.get('C'), err: f.get('M') }, 'could not apply session parameters on a backend connection');
      } else if (type === Z) {
        this.swallowing--;
        if (this.swallowing === 0) b.framer!.inspect = SERVER_INSPECT;
      }
      return;
    }
    if (type === Z) {
      this.txStatus = String.fromCharCode(msg[5]!) as TxStatus;
      if (this.outstanding > 0) this.outstanding--;
      if (this.outstanding === 0 && this.requestStartedAt > 0) {
        this.ctx.metrics.queryLatency.observe((this.ctx.clock.now() - this.requestStartedAt) / 1000);
        this.requestStartedAt = 0;
      }
    }
    this.out.push(msg);
  }

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
    if (!b || this.outstanding > 0 || this.extendedPending || this.txStatus !== 'I' || this.swallowing > 0 || this.pending.length > 0) return;
    if (this.pinReasons.size > 0) return;
    if (!b.framer || !b.framer.atBoundary) return;
    this.detachBackend();
    this.ctx.pool.release(b);
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
    this.ctx.pool.discard(b);
    const wasPinned = this.pinReasons.size > 0;
    if (wasPinned) {
      // Session state (temp tables, locks, ...) is gone with the server connection: say so and close.
      this.terminate({ code: SQLSTATE.connectionFailure, message: `${why}; this session held state on it (pinned: ${this.pinnedReasons.join(', ')})` });
      return;
    }
    const busy = this.outstanding > 0 || this.extendedPending || this.txStatus !== 'I';
    if (busy) {
      this.socket.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.connectionFailure, message: `${why} during the transaction; the transaction was lost, retry it` }));
      if (this.outstanding > 0 || !this.extendedPending) this.socket.write(readyForQuery('I'));
      else this.skipUntilSync = true;
    }
    this.outstanding = 0;
    this.extendedPending = false;
    this.txStatus = 'I';
    this.swallowing = 0;
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
      const clean = this.outstanding === 0 && !this.extendedPending && this.txStatus === 'I' && this.swallowing === 0 && b.framer?.atBoundary !== false;
      this.detachBackend();
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

function queryMessage(sql: string): Buffer {
  const body = Buffer.from(sql + '\0', 'utf8');
  const m = Buffer.allocUnsafe(5 + body.length);
  m[0] = 'Q'.charCodeAt(0);
  m.writeUInt32BE(4 + body.length, 1);
  body.copy(m, 5);
  return m;
}
