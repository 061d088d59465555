// A bare protocol client for tests that need what drivers will not send: pipelined batches,
// malformed messages, cancel requests, reads paused on purpose. Messages are built with
// pg-protocol's serializer and read back with its parser.
import net from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { ScramClientExchange } from '../../proxy/auth/scramClient.js';
import { md5PasswordHash } from '../../proxy/auth/md5.js';

export type Msg = BackendMessage & Record<string, unknown>;

export class RawClient {
  readonly messages: Msg[] = [];
  private readonly parser = new Parser();
  private waiters: Array<() => void> = [];
  closed = false;
  pid = 0;
  secret = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.parser.parse(chunk, (m) => {
        this.messages.push(m as Msg);
        if ((m as Msg).name === 'backendKeyData') {
          this.pid = (m as Msg).processID as number;
          this.secret = (m as Msg).secretKey as number;
        }
      });
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  /** Connects and logs in (SCRAM or md5, whichever the proxy asks for); resolves at ReadyForQuery. */
  static async login(port: number, user: string, password: string, database = 'postgres', params: Record<string, string> = {}): Promise<RawClient> {
    const c = await RawClient.connect(port);
    c.send(serialize.startup({ user, database, ...params }));
    let scram: ScramClientExchange | undefined;
    for (;;) {
      const m = await c.next();
      if (m.name === 'authenticationSASL') {
        scram = new ScramClientExchange(password);
        c.send(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
      } else if (m.name === 'authenticationSASLContinue') {
        c.send(serialize.sendSCRAMClientFinalMessage(scram!.handleServerFirst(m.data as string)));
      } else if (m.name === 'authenticationSASLFinal') {
        scram!.verifyServerFinal(m.data as string);
      } else if (m.name === 'authenticationMD5Password') {
        c.send(serialize.password(md5PasswordHash(user, password, m.salt as Buffer)));
      } else if (m.name === 'error') {
        throw Object.assign(new Error(String(m.message)), { code: m.code });
      } else if (m.name === 'readyForQuery') {
        c.messages.length = 0;
        c.cursor = 0;
        return c;
      }
    }
  }

  send(buf: Buffer | Buffer[]): void {
    this.socket.write(Array.isArray(buf) ? Buffer.concat(buf) : buf);
  }

  cursor = 0;

  /** The next message not yet consumed. */
  async next(timeoutMs = 10_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    while (this.cursor >= this.messages.length) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a message');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.messages[this.cursor++]!;
  }

  /** Messages up to and including the next ReadyForQuery. */
  async untilReady(timeoutMs = 10_000): Promise<Msg[]> {
    const out: Msg[] = [];
    for (;;) {
      const m = await this.next(timeoutMs);
      out.push(m);
      if (m.name === 'readyForQuery') return out;
    }
  }

  /** Resolves when the server closes the connection. */
  async whenClosed(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export { serialize };
