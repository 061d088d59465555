// TLS to the database, the way libpq does it: on the TCP connection, send SSLRequest, read one
// byte ('S' go ahead, 'N' no TLS here), then run the TLS handshake on the same socket. Modes
// follow libpq's sslmode: require (encrypt, trust any certificate), verify-ca (chain checked
// against the CA bundle), verify-full (chain and host name or IP address).
import net from 'node:net';
import tls from 'node:tls';
import type { BackendTlsConfig } from '../contract/config.js';
import type { ClientCertificate } from './backendCertificates.js';
import { WatchedFiles } from './watchedFiles.js';

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

export type BackendTlsMode = BackendTlsConfig['mode'];

export interface BackendTlsSettings {
  mode: Exclude<BackendTlsMode, 'disable'>;
  /** CA bundle (PEM), or undefined for Node's built-in CAs. */
  ca: () => Buffer | undefined;
  /** Checked against the certificate instead of the endpoint host. */
  serverName?: string;
  /** The client certificate presented to the server (backendAuth method cert). Default: none. */
  clientCertificate?: () => ClientCertificate;
}

export class BackendTlsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendTlsError';
  }
}

/** Builds the settings from config, with the CA bundle re-read when its file changes. */
export function backendTlsSettings(config: BackendTlsConfig, opts: { recheckMs?: number; onError?: (e: Error) => void } = {}): BackendTlsSettings | undefined {
  if (config.mode === 'disable') return undefined;
  let ca: () => Buffer | undefined = () => undefined;
  if (config.caFile) {
    const files = new WatchedFiles<Buffer>({ files: [config.caFile], build: ([b]) => checkPemBundle(b!), recheckMs: opts.recheckMs ?? 5000, onError: opts.onError });
    files.load();
    ca = () => files.current();
  }
  return { mode: config.mode, ca, serverName: config.serverName };
}

function checkPemBundle(b: Buffer): Buffer {
  if (!b.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in CA bundle');
  return b;
}

/**
 * Negotiates TLS on a connected socket. Resolves with the TLS socket once the handshake (and,
 * per mode, the certificate checks) succeeded; rejects with a BackendTlsError otherwise.
 */
export function negotiateBackendTls(socket: net.Socket, host: string, settings: BackendTlsSettings): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err: Error | null, s?: tls.TLSSocket): void => {
      if (done) return;
      done = true;
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
      if (err) reject(err);
      else resolve(s!);
    };
    const onError = (e: Error): void => finish(new BackendTlsError(`TLS negotiation with ${host} failed: ${e.message}`));
    const onClose = (): void => finish(new BackendTlsError(`server ${host} closed the connection during TLS negotiation`));
    const onData = (chunk: Buffer): void => {
      socket.off('data', onData);
      socket.pause();
      const answer = String.fromCharCode(chunk[0]!);
      if (answer === 'N') return finish(new BackendTlsError(`server ${host} does not support TLS, but backendTls.mode is ${settings.mode}`));
      if (answer !== 'S') return finish(new BackendTlsError(`server ${host} sent an invalid response to SSLRequest`));
      // Anything after 'S' arrived before the handshake and cannot be trusted (CVE-2021-23222).
      if (chunk.length > 1) return finish(new BackendTlsError(`server ${host} sent unencrypted data after accepting TLS`));
      const name = settings.serverName ?? host;
      const verify = settings.mode !== 'require';
      const own = settings.clientCertificate?.();
      const secure = tls.connect({
        ...(own ? { cert: own.cert, key: own.key } : {}),
        socket,
        servername: net.isIP(name) ? undefined : name,
        ca: verify ? settings.ca() : undefined,
        rejectUnauthorized: verify,
        minVersion: 'TLSv1.2',
        checkServerIdentity: (_servername, cert) => (settings.mode === 'verify-full' ? tls.checkServerIdentity(name, cert) : undefined),
      });
      const onSecureError = (e: Error): void => {
        secure.destroy();
        finish(new BackendTlsError(`TLS handshake with ${host} failed (${settings.mode}): ${e.message}`));
      };
      // Stays attached: after the handshake an error just destroys the socket, whose owner hears 'close'.
      secure.on('error', onSecureError);
      secure.once('secureConnect', () => finish(null, secure));
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onError);
    socket.write(SSL_REQUEST);
  });
}
