// Client-facing TLS: the certificate and key come from files (a mounted Secret, e.g. written by
// cert-manager) and are re-read when they change, so a renewed certificate is served to the next
// handshake without a restart. Connections already upgraded keep the context they started with.
// With a client CA (tls.clientCaFile, PostgreSQL's ssl_ca_file) clients are asked for a
// certificate; it stays optional in the handshake, and the login checks what came.
//
// The handshake runs in a tls.Server that never listens: connections are handed to it after the
// SSLRequest. A bare server-side TLSSocket would do the handshake too, but Node only works out
// whether a client certificate chains to the CA (`authorized`) for sockets a tls.Server accepted.
import tls from 'node:tls';
import type net from 'node:net';
import { WatchedFiles } from './watchedFiles.js';

export interface ServerTlsOptions {
  certFile: string;
  keyFile: string;
  /** PEM CA bundle client certificates must chain to; asks clients for one. Default: none asked. */
  clientCaFile?: string;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  recheckMs: number;
  now?: () => number;
  onError?: (err: Error) => void;
  onReload?: () => void;
}

/** The handshake did not complete (a client that is not TLS, a protocol error, a close). */
export class TlsHandshakeFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsHandshakeFailed';
  }
}

/** The four addresses of a TCP connection: the same for a socket and the TLS socket wrapping it. */
const connectionKey = (s: net.Socket): string => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

export class ServerTls {
  private readonly files: WatchedFiles<tls.Server>;
  /** Handshakes under way, by connection; shared by the servers of every reload. */
  private readonly pending = new Map<string, { resolve: (s: tls.TLSSocket) => void; reject: (e: Error) => void }>();

  constructor(private readonly opts: ServerTlsOptions) {
    this.files = new WatchedFiles({
      files: [opts.certFile, opts.keyFile, ...(opts.clientCaFile !== undefined ? [opts.clientCaFile] : [])],
      build: ([cert, key, ca]) => this.server(cert!, key!, ca),
      recheckMs: opts.recheckMs,
      now: opts.now,
      onError: opts.onError,
      onReload: opts.onReload,
    });
  }

  private server(cert: Buffer, key: Buffer, ca: Buffer | undefined): tls.Server {
    if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`no PEM certificate in ${this.opts.clientCaFile}`);
    const server = new tls.Server({
      cert,
      key,
      minVersion: this.opts.minVersion,
      ...(ca !== undefined ? { ca } : {}),
      requestCert: ca !== undefined,
      // A client without a certificate may still log in with a password (as on PostgreSQL); one
      // whose certificate does not chain to the CA is refused at login, where it can be told why.
      rejectUnauthorized: false,
    });
    server.on('secureConnection', (s: tls.TLSSocket) => {
      const key = connectionKey(s);
      const waiter = this.pending.get(key);
      this.pending.delete(key);
      if (waiter) waiter.resolve(s);
      else s.destroy();
    });
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => {
      const key = connectionKey(s);
      const waiter = this.pending.get(key);
      this.pending.delete(key);
      waiter?.reject(new TlsHandshakeFailed(err.message));
      s.destroy();
    });
    return server;
  }

  /** Loads the certificate and key now; throws if they are unusable. */
  load(): void {
    this.files.load();
  }

  get reloads(): number {
    return this.files.reloads;
  }

  /**
   * Answers an SSLRequest: 'S', then the handshake on the same socket; resolves with the TLS socket
   * once the handshake is done, rejects with TlsHandshakeFailed. The caller must not have read
   * anything past the SSLRequest: bytes sent before the handshake are not trusted. Throws (before
   * writing anything) if no certificate was ever loadable, so the caller can answer 'N'.
   */
  accept(socket: net.Socket): Promise<tls.TLSSocket> {
    const server = this.files.current();
    socket.write('S');
    const key = connectionKey(socket);
    return new Promise((resolve, reject) => {
      const onClose = (): void => {
        this.pending.delete(key);
        reject(new TlsHandshakeFailed('the client closed the connection during the TLS handshake'));
      };
      socket.once('close', onClose);
      const done = (): void => void socket.off('close', onClose);
      this.pending.set(key, {
        resolve: (s) => {
          done();
          resolve(s);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      server.emit('connection', socket);
    });
  }
}
