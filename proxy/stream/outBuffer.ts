// Bytes on their way to one socket during one read of the other: collected, then written once.
// Pieces that are neighbouring slices of the same incoming chunk (the usual case: a query, or a
// whole result, forwarded unchanged) merge back into one slice, so a read that is forwarded as
// it came costs one write of that slice: no copy, no writev, no cork. Pieces that are not
// neighbours (proxy-made messages between forwarded ones) go out as one concatenated write when
// small, or as several writes under one cork when large.

/** What an OutBuffer writes to: a socket, or a fake one in tests. */
export interface ByteSink {
  write(chunk: Buffer): boolean;
  cork(): void;
  uncork(): void;
}

/** Above this, pieces are written one by one (corked) instead of copied into one buffer. */
const CONCAT_LIMIT = 64 * 1024;

export class OutBuffer {
  private readonly pieces: Buffer[] = [];
  /** The last piece, still being extended, as (buffer, start, end) until it is cut. */
  private openBuffer: ArrayBufferLike | null = null;
  private openStart = 0;
  private openEnd = 0;
  private openSource: Buffer | null = null;
  private bytes = 0;
  /**
   * The read being forwarded: a piece that turns out to be all of it is written as that very
   * buffer (no new view).
   */
  source: Buffer | null = null;

  constructor(public sink: ByteSink | null = null) {}

  /** Bytes collected and not yet written. */
  get size(): number {
    return this.bytes;
  }

  push(buf: Buffer): void {
    const n = buf.length;
    if (n === 0) return;
    this.bytes += n;
    if (this.openBuffer === buf.buffer && this.openEnd === buf.byteOffset) {
      this.openEnd += n;
      return;
    }
    this.cut();
    this.openBuffer = buf.buffer;
    this.openStart = buf.byteOffset;
    this.openEnd = buf.byteOffset + n;
    this.openSource = buf;
  }

  /** Drops what was collected (the connection it was for is gone). */
  clear(): void {
    this.pieces.length = 0;
    this.openBuffer = null;
    this.openSource = null;
    this.source = null;
    this.bytes = 0;
  }

  /**
   * Writes what was collected to the sink in one write where it can. Returns false when the
   * sink's buffer is full (the caller should stop reading from the other side until 'drain').
   */
  flush(): boolean {
    if (this.bytes === 0) return true;
    const sink = this.sink;
    if (sink === null) throw new Error('OutBuffer has no sink');
    this.cut();
    const pieces = this.pieces;
    let ok: boolean;
    if (pieces.length === 1) {
      ok = sink.write(pieces[0]!);
    } else if (this.bytes <= CONCAT_LIMIT) {
      ok = sink.write(Buffer.concat(pieces, this.bytes));
    } else {
      sink.cork();
      ok = true;
      for (const p of pieces) ok = sink.write(p);
      sink.uncork();
    }
    pieces.length = 0;
    this.bytes = 0;
    this.source = null;
    return ok;
  }

  /** Ends the open piece: the next push starts a new one. */
  private cut(): void {
    if (this.openBuffer === null) return;
    const src = this.openSource!;
    const len = this.openEnd - this.openStart;
    const whole = this.source;
    // The whole of the first slice pushed, or of the read it came from: keep it as is, no new view.
    if (src.byteOffset === this.openStart && src.length === len) this.pieces.push(src);
    else if (whole !== null && whole.buffer === this.openBuffer && whole.byteOffset === this.openStart && whole.length === len) this.pieces.push(whole);
    else this.pieces.push(Buffer.from(this.openBuffer as ArrayBuffer, this.openStart, len));
    this.openBuffer = null;
    this.openSource = null;
  }
}
