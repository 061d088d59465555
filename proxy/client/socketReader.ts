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

export class SocketReader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private gone = false;
  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.notify();
  };
  private readonly onEnd = (): void => {
    this.gone = true;
    this.notify();
  };

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('close', this.onEnd);
    socket.on('end', this.onEnd);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buf.length < n) {
      if (this.gone) throw new ClientGone();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** An untyped startup-phase packet (length, code, body). */
  async readStartupPacket(): Promise<Buffer> {
    await this.need(4);
    const len = this.buf.readUInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_PACKET_LENGTH) throw new ProtocolViolation('invalid length of startup packet');
    await this.need(len);
    return this.take(len);
  }

  /** A typed message (type byte, length, body), header included. */
  async readMessage(): Promise<{ type: string; msg: Buffer }> {
    await this.need(5);
    const len = this.buf.readUInt32BE(1);
    if (len < 4 || len > MAX_AUTH_MESSAGE) throw new ProtocolViolation(`invalid message length ${len}`);
    await this.need(len + 1);
    const msg = this.take(len + 1);
    return { type: String.fromCharCode(msg[0]!), msg };
  }

  /** Stops reading and hands back whatever arrived beyond the last message read. */
  detach(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onEnd);
    this.socket.off('end', this.onEnd);
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
