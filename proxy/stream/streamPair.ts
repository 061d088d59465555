// The byte-moving core of a pooled session, shaped like PgBouncer's sbuf: a client socket and,
// while one is lent, a backend socket. Each read is walked by a framer that hands the owner only
// the messages it watches; what the owner forwards is collected per direction and written once
// per read (OutBuffer). It knows nothing of PostgreSQL beyond message framing: what to forward,
// hold back or answer is the owner's decision.
//
// Backpressure both ways: when a write to one side reports a full socket buffer, reading from
// the other side stops until that socket drains, so a slow client holds at most a socket buffer
// of its result in the proxy, whatever the result's size.
import { Framer, type FrameSink } from '../protocol/framer.js';
import { type ByteSink, OutBuffer } from './outBuffer.js';

/** The socket operations the core uses: net.Socket has them, a test's fake has them too. */
export interface DuplexLike extends ByteSink {
  on(event: 'drain', listener: () => void): unknown;
  pause(): unknown;
  resume(): unknown;
}

export interface StreamOwner {
  /** Messages and passed-through bytes from the client (through the client framer). */
  readonly fromClient: FrameSink;
  /** Messages and passed-through bytes from the lent backend. */
  readonly fromServer: FrameSink;
  /** After one client read was walked and its output written. */
  afterClientRead(): void;
  /** After one backend read was walked and its output written. */
  afterServerRead(): void;
  /** A framer refused the stream (bad length); `fromClient` says which side. */
  framingError(err: Error, fromClient: boolean): void;
}

type PauseReason = 1 | 2;
/** Waiting for a backend to be lent. */
export const PAUSE_BORROW: PauseReason = 1;
/** The other side's socket buffer is full. */
export const PAUSE_BACKPRESSURE: PauseReason = 2;

export class StreamPair {
  readonly toClient: OutBuffer;
  readonly toServer = new OutBuffer();
  private backend: DuplexLike | null = null;
  private serverFramer: Framer | null = null;
  /** Why client reads are paused (bits of PauseReason); 0: reading. */
  private clientPaused = 0;
  private backendPaused = false;

  constructor(
    private readonly client: DuplexLike,
    readonly clientFramer: Framer,
    private readonly owner: StreamOwner,
  ) {
    this.toClient = new OutBuffer(client);
    client.on('drain', () => {
      if (this.backendPaused) {
        this.backendPaused = false;
        this.backend?.resume();
      }
    });
  }

  get hasBackend(): boolean {
    return this.backend !== null;
  }

  /**
   * Starts writing to a lent backend: its bytes arrive through `serverData`, its 'drain' through
   * `backendDrained` (the backend's owner forwards both; no listener is added per lend).
   */
  attach(backend: DuplexLike, framer: Framer): void {
    this.backend = backend;
    this.serverFramer = framer;
    this.toServer.sink = backend;
  }

  /** The backend's socket buffer emptied: the client may be read again. */
  backendDrained(): void {
    this.unpauseClient(PAUSE_BACKPRESSURE);
  }

  /** Stops using the backend: what was not written to it is dropped, its reads are resumed. */
  detach(): void {
    const b = this.backend;
    if (!b) return;
    if (this.backendPaused) {
      this.backendPaused = false;
      b.resume();
    }
    this.backend = null;
    this.serverFramer = null;
    this.toServer.clear();
    this.toServer.sink = null;
    // It was waiting for this backend to drain, which it never will.
    this.unpauseClient(PAUSE_BACKPRESSURE);
  }

  get serverAtBoundary(): boolean {
    return this.serverFramer?.atBoundary !== false;
  }

  /** One client read. */
  clientData(chunk: Buffer): void {
    this.toServer.source = chunk;
    try {
      this.clientFramer.push(chunk, this.owner.fromClient);
    } catch (e) {
      this.owner.framingError(e as Error, true);
      return;
    }
    this.flush();
    this.owner.afterClientRead();
  }

  /** One read from the lent backend. */
  serverData(chunk: Buffer): void {
    this.toClient.source = chunk;
    try {
      this.serverFramer!.push(chunk, this.owner.fromServer);
    } catch (e) {
      this.owner.framingError(e as Error, false);
      return;
    }
    this.flush();
    this.owner.afterServerRead();
  }

  /** Writes what both directions collected; stops reading a side whose peer is full. */
  flush(): void {
    if (this.toServer.size > 0 && !this.toServer.flush()) this.pauseClient(PAUSE_BACKPRESSURE);
    if (this.toClient.size > 0 && !this.toClient.flush() && this.backend && !this.backendPaused) {
      this.backendPaused = true;
      this.backend.pause();
    }
  }

  pauseClient(reason: PauseReason): void {
    if (this.clientPaused === 0) this.client.pause();
    this.clientPaused |= reason;
  }

  unpauseClient(reason: PauseReason): void {
    if ((this.clientPaused & reason) === 0) return;
    this.clientPaused &= ~reason;
    if (this.clientPaused === 0) this.client.resume();
  }
}
