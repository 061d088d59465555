// Client-facing TLS: the certificate and key come from files (a mounted Secret, e.g. written by
// cert-manager) and are re-read when they change, so a renewed certificate is served to the next
// handshake without a restart. Connections already upgraded keep the context they started with.
import tls from 'node:tls';
import type net from 'node:net';
import { WatchedFiles } from './watchedFiles.js';

export interface ServerTlsOptions {
  certFile: string;
  keyFile: string;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  recheckMs: number;
  now?: () => number;
  onError?: (err: Error) => void;
  onReload?: () => void;
}

export class ServerTls {
  private readonly files: WatchedFiles<tls.SecureContext>;

  constructor(private readonly opts: ServerTlsOptions) {
    this.files = new WatchedFiles({
      files: [opts.certFile, opts.keyFile],
      build: ([cert, key]) => tls.createSecureContext({ cert, key, minVersion: opts.minVersion }),
      recheckMs: opts.recheckMs,
      now: opts.now,
      onError: opts.onError,
      onReload: opts.onReload,
    });
  }

  /** Loads the certificate and key now; throws if they are unusable. */
  load(): void {
    this.files.load();
  }

  get reloads(): number {
    return this.files.reloads;
  }

  /**
   * Answers an SSLRequest: 'S', then the handshake on the same socket. The caller must not have
   * read anything past the SSLRequest: bytes sent before the handshake are not trusted. Throws
   * (before writing anything) if no certificate was ever loadable, so the caller can answer 'N'.
   */
  accept(socket: net.Socket): tls.TLSSocket {
    const secureContext = this.files.current();
    socket.write('S');
    return new tls.TLSSocket(socket, { isServer: true, secureContext, requestCert: false });
  }
}
