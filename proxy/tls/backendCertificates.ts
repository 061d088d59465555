// Client certificates the proxy presents to the database, per user (backendAuth method cert):
// PostgreSQL's cert method, or clientcert=verify-full next to a password method. Each pair of
// files is re-read when it changes (a cert-manager renewal), like every other mounted secret.
import tls from 'node:tls';
import type { UserConfig } from '../contract/config.js';
import { WatchedFiles } from './watchedFiles.js';

export interface ClientCertificate {
  cert: Buffer;
  key: Buffer;
}

export class BackendCertificates {
  private readonly byUser = new Map<string, WatchedFiles<ClientCertificate>>();

  /**
   * Loads every user's pair now, so an unusable file stops a start or a reload (naming the user)
   * instead of failing each backend login later.
   */
  constructor(users: readonly UserConfig[], opts: { recheckMs: number; onError?: (user: string, e: Error) => void }) {
    for (const u of users) {
      const a = u.backendAuth;
      if (a.method !== 'cert') continue;
      const files = new WatchedFiles<ClientCertificate>({
        files: [a.certFile!, a.keyFile!],
        // createSecureContext refuses a key that does not match the certificate, or an encrypted one.
        build: ([cert, key]) => {
          tls.createSecureContext({ cert, key });
          return { cert: cert!, key: key! };
        },
        recheckMs: opts.recheckMs,
        onError: (e) => opts.onError?.(u.name, e),
      });
      try {
        files.load();
      } catch (e) {
        throw new Error(`users ${u.name}: backendAuth certFile ${a.certFile} / keyFile ${a.keyFile} unusable: ${(e as Error).message}`);
      }
      this.byUser.set(u.name, files);
    }
  }

  /** The user's certificate and key as of now, or undefined when it logs in without one. */
  get(user: string): (() => ClientCertificate) | undefined {
    const files = this.byUser.get(user);
    return files ? () => files.current() : undefined;
  }
}
