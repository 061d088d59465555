// Promise-based reads for the startup and authentication phase only, where the proxy talks to a
// client in strict turns. Once the session starts, the framer takes over the socket.
import type net from 'node:net';
import { MAX_STARTUP_PACKET_LENGTH, ProtocolViolation } from '../protocol/clientMessages.js';

export class ClientGone extends Error {
  constructor() {
    super('client closed the connection');
    this.name = 'ClientGone';
  }
}

/** Largest message accepted during authentication (SASL responses are a few hundred bytes). */
const MAX_AUTH_MESSAGE = 64 * 1024;

/**
 * Most bytes held for a client that has not authenticated yet. A client in turn never has more
 * than one message outstanding (a startup packet or a password message, both bounded above), so
 * anything beyond this is a client sending ahead of the protocol: it is refused instead of being
 * buffered, because nobody has proven who they are yet.
 */
export const MAX_PREAUTH_BUFFER = 256 * 1024;

export class SocketReader {
  // Chunks, not one growing Buffer: appending by concatenation copies everything received so far
  // on every read, which a client sending megabytes turns into seconds of blocked event loop.
  private chunks: Buffer[] = [];
  private buffered = 0;
  private wake: (() => void) | null = null;
  private gone = false;
  private overflowed = false;
  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered > this.limit) {
      // Stop reading: the kernel's buffers and TCP flow control hold the rest, not our memory.
      this.overflowed = true;
      this.socket.pause();
    }
    this.notify();
  };
  private readonly onEnd = (): void => {
    this.gone = true;
    this.notify();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly limit: number = MAX_PREAUTH_BUFFER,
  ) {
    socket.on('data', this.onData);
    socket.on('close', this.onEnd);
    socket.on('end', this.onEnd);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private overflowError(): ProtocolViolation {
    return new ProtocolViolation(`client sent more than ${this.limit} bytes before authentication completed`);
  }

  private async need(n: number): Promise<void> {
    while (this.buffered < n) {
      if (this.overflowed) throw this.overflowError();
      if (this.gone) throw new ClientGone();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    // What was asked for is here, but more came than any client in turn sends.
    if (this.overflowed) throw this.overflowError();
  }

  /** The first n bytes (n <= buffered), copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - filled);
        c.copy(out, filled, 0, k);
        filled += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }

  /** Reads a big-endian uint32 at `offset` without assembling the bytes around it. */
  private peekUInt32(offset: number): number {
    if (this.chunks[0]!.length >= offset + 4) return this.chunks[0]!.readUInt32BE(offset);
    const head = Buffer.concat(this.chunks, offset + 4);
    return head.readUInt32BE(offset);
  }

  /** An untyped startup-phase packet (length, code, body). */
  async readStartupPacket(): Promise<Buffer> {
    await this.need(4);
    const len = this.peekUInt32(0);
    if (len < 8 || len > MAX_STARTUP_PACKET_LENGTH) throw new ProtocolViolation('invalid length of startup packet');
    await this.need(len);
    return this.take(len);
  }

  /** A typed message (type byte, length, body), header included. */
  async readMessage(): Promise<{ type: string; msg: Buffer }> {
    await this.need(5);
    const len = this.peekUInt32(1);
    if (len < 4 || len > MAX_AUTH_MESSAGE) throw new ProtocolViolation(`invalid message length ${len}`);
    await this.need(len + 1);
    const msg = this.take(len + 1);
    return { type: String.fromCharCode(msg[0]!), msg };
  }

  /**
   * Stops reading and hands back whatever arrived beyond the last message read. Throws when the
   * client sent more than the limit, so that nothing over it is ever handed on.
   */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onEnd);
    this.socket.off('end', this.onEnd);
    const rest = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks = [];
    this.buffered = 0;
    if (this.overflowed) throw this.overflowError();
    return rest;
  }
}
