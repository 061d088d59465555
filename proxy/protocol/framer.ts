// The hot-path framer: PostgreSQL v3 messages are a type byte and a 4-byte length. This walks
// the headers of a byte stream and, per message type, either hands the caller the whole message
// (types it inspects) or passes the bytes through untouched as slices of the incoming chunk, so
// a result set of a million DataRows costs a header walk, not an object per row.
// Hand-written on purpose: pg-protocol's parser materializes every message, which is right for a
// client library and wrong for a proxy's data path.

export interface FrameSink {
  /** Bytes of messages the caller does not inspect, in stream order. Slices of the pushed chunk. */
  raw(bytes: Buffer): void;
  /** A whole message, header included, of an inspected type. */
  message(type: number, msg: Buffer): void;
}

export class FramingError extends Error {
  constructor(
    message: string,
    readonly messageType: number,
  ) {
    super(message);
    this.name = 'FramingError';
  }
}

const HEADER = 5;

export class Framer {
  private readonly header = Buffer.alloc(HEADER);
  private headerLen = 0;
  /** Bytes of a passed-through message still to come. */
  private skip = 0;
  /** A whole message being assembled across chunks. */
  private whole: Buffer | null = null;
  private wholeLen = 0;
  private wholeType = 0;
  /** Whether the message just delivered was the last byte of its chunk: nothing else of the peer's has arrived yet. */
  endsChunk = false;

  /**
   * @param inspect 256 flags: non-zero for message types to deliver whole. The caller may swap
   *   the table between pushes (e.g. to look at everything while it consumes its own replies).
   * @param maxLength largest accepted length field; larger is a FramingError, never an allocation.
   */
  constructor(
    public inspect: Uint8Array,
    private readonly maxLength: number,
  ) {}

  /** True while the rest of a passed-through (raw) message is still to come. */
  get inRawMessage(): boolean {
    return this.skip > 0;
  }

  /** True when the stream sits exactly on a message boundary. */
  get atBoundary(): boolean {
    return this.headerLen === 0 && this.skip === 0 && this.whole === null;
  }

  push(chunk: Buffer, sink: FrameSink): void {
    const n = chunk.length;
    let i = 0;
    let rawStart = 0;
    while (i < n) {
      if (this.skip > 0) {
        const take = Math.min(this.skip, n - i);
        i += take;
        this.skip -= take;
        continue;
      }
      if (this.whole !== null) {
        const take = Math.min(this.whole.length - this.wholeLen, n - i);
        chunk.copy(this.whole, this.wholeLen, i, i + take);
        this.wholeLen += take;
        i += take;
        // These bytes belong to the message being assembled, never to the raw stream, whether or
        // not the message completes in this chunk.
        rawStart = i;
        if (this.wholeLen === this.whole.length) {
          const msg = this.whole;
          this.whole = null;
          this.endsChunk = i === n;
          sink.message(this.wholeType, msg);
        }
        continue;
      }
      if (this.headerLen === 0 && n - i >= HEADER) {
        const type = chunk[i]!;
        const len = chunk.readUInt32BE(i + 1);
        if (!this.validLength(len)) {
          // What came before the bad header is delivered, so the outcome never depends on chunking.
          if (i > rawStart) sink.raw(chunk.subarray(rawStart, i));
          throw this.lengthError(type, len);
        }
        const total = len + 1;
        if (this.inspect[type]) {
          if (i > rawStart) sink.raw(chunk.subarray(rawStart, i));
          if (n - i >= total) {
            this.endsChunk = n - i === total;
            sink.message(type, chunk.subarray(i, i + total));
            i += total;
            rawStart = i;
          } else {
            this.startWhole(type, total, chunk.subarray(i, n));
            i = n;
            rawStart = n;
          }
        } else {
          const take = Math.min(total, n - i);
          i += take;
          this.skip = total - take;
        }
        continue;
      }
      // A header split across chunks: hold its bytes until it is complete.
      if (this.headerLen === 0 && i > rawStart) sink.raw(chunk.subarray(rawStart, i));
      const take = Math.min(HEADER - this.headerLen, n - i);
      chunk.copy(this.header, this.headerLen, i, i + take);
      this.headerLen += take;
      i += take;
      rawStart = i;
      if (this.headerLen < HEADER) break;
      this.headerLen = 0;
      const type = this.header[0]!;
      const len = this.header.readUInt32BE(1);
      if (!this.validLength(len)) throw this.lengthError(type, len);
      const total = len + 1;
      if (this.inspect[type]) {
        this.startWhole(type, total, this.header);
        if (this.wholeLen === total) {
          const msg = this.whole!;
          this.whole = null;
          this.endsChunk = i === n;
          sink.message(type, msg);
        }
      } else {
        sink.raw(Buffer.from(this.header));
        this.skip = total - HEADER;
      }
    }
    if (i > rawStart) sink.raw(chunk.subarray(rawStart, i));
  }

  private startWhole(type: number, total: number, first: Buffer): void {
    this.whole = Buffer.allocUnsafe(total);
    first.copy(this.whole, 0, 0, Math.min(first.length, total));
    this.wholeLen = Math.min(first.length, total);
    this.wholeType = type;
  }

  private validLength(len: number): boolean {
    return len >= 4 && len <= this.maxLength;
  }

  private lengthError(type: number, len: number): FramingError {
    return new FramingError(`invalid message length ${len} for message type ${JSON.stringify(String.fromCharCode(type))}`, type);
  }
}

/** Builds an inspect table from message type characters. */
export function inspectTable(types: string, all = false): Uint8Array {
  const t = new Uint8Array(256);
  if (all) t.fill(1);
  for (const c of types) t[c.charCodeAt(0)] = 1;
  return t;
}
