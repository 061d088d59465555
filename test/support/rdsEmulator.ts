// Stands in for an RDS instance with IAM database authentication, in front of a real local
// PostgreSQL: it insists on TLS (like rds.force_ssl=1), asks for a cleartext password, checks
// that the password is an RDS IAM token for this host, port, user and region by recomputing its
// SigV4 signature with the test's keys, and only then connects to PostgreSQL (over its Unix
// socket, where the test cluster trusts local connections) and relays bytes both ways.
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import type { PgCluster } from '../../hack/postgres.js';
import { type Keys, verifyPresigned } from './sigv4.js';

export interface RdsEmulatorOptions {
  cluster: PgCluster;
  tls: { cert: string; key: string };
  region: string;
  /** The host the tokens must be signed for. Default 127.0.0.1. */
  hostname?: string;
  lookup: (accessKeyId: string) => Keys | undefined;
}

export interface RdsEmulator {
  port: number;
  /** Tokens accepted, in order. */
  accepted: Array<{ user: string; token: string }>;
  /** Why tokens were refused. */
  refused: Array<{ user: string; reason: string }>;
  close(): Promise<void>;
}

function errorMessage(code: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`, 'utf8');
  const out = Buffer.alloc(5 + fields.length);
  out[0] = 0x45;
  out.writeUInt32BE(4 + fields.length, 1);
  fields.copy(out, 5);
  return out;
}

/** Reads exactly what it is asked for from a socket that is still being negotiated. */
class Reader {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended = false;
  constructor(private readonly sock: net.Socket) {
    sock.on('data', this.onData);
    sock.on('close', this.onEnd);
  }
  private readonly onData = (d: Buffer): void => {
    this.buf = Buffer.concat([this.buf, d]);
    this.waiter?.();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.waiter?.();
  };
  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new Error('closed');
      await new Promise<void>((r) => (this.waiter = r));
      this.waiter = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  detach(): Buffer {
    this.sock.off('data', this.onData);
    this.sock.off('close', this.onEnd);
    return this.buf;
  }
}

export async function startRdsEmulator(opts: RdsEmulatorOptions): Promise<RdsEmulator> {
  const accepted: RdsEmulator['accepted'] = [];
  const refused: RdsEmulator['refused'] = [];
  const server = net.createServer((raw) => {
    raw.on('error', () => {});
    void (async () => {
      const r0 = new Reader(raw);
      const first = await r0.take(8);
      if (first.readUInt32BE(0) !== 8 || first.readUInt32BE(4) !== 80877103) {
        raw.end(errorMessage('28000', 'no pg_hba.conf entry for host "127.0.0.1", SSL off'));
        return;
      }
      r0.detach();
      raw.write('S');
      const sock = new tls.TLSSocket(raw, { isServer: true, secureContext: tls.createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) });
      sock.on('error', () => {});
      const r = new Reader(sock);
      const len = (await r.take(4)).readUInt32BE(0);
      const body = await r.take(len - 4);
      const startup = Buffer.concat([Buffer.alloc(4), body]);
      startup.writeUInt32BE(len, 0);
      const parts = body.subarray(4).toString('utf8').split('\0');
      const params = new Map<string, string>();
      for (let i = 0; i + 1 < parts.length && parts[i]; i += 2) params.set(parts[i]!, parts[i + 1]!);
      const user = params.get('user') ?? '';
      // AuthenticationCleartextPassword, as RDS asks IAM users.
      sock.write(Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 3]));
      const head = await r.take(5);
      if (head[0] !== 0x70) throw new Error('expected a password message');
      const pw = (await r.take(head.readUInt32BE(1) - 4)).toString('utf8').replace(/\0$/, '');
      const reason = checkToken(pw, user);
      if (reason) {
        refused.push({ user, reason });
        sock.end(errorMessage('28P01', `PAM authentication failed for user "${user}"`));
        return;
      }
      accepted.push({ user, token: pw });
      const rest = r.detach();
      const pg = net.connect({ path: join(opts.cluster.socketDir, `.s.PGSQL.${opts.cluster.port}`) });
      pg.on('error', () => sock.destroy());
      sock.on('close', () => pg.destroy());
      pg.on('close', () => sock.destroy());
      pg.write(startup);
      if (rest.length) pg.write(rest);
      pg.pipe(sock);
      sock.pipe(pg);
    })().catch(() => raw.destroy());
  });

  const checkToken = (token: string, user: string): string | undefined => {
    const slash = token.indexOf('/');
    if (slash < 0) return 'not a token';
    const hostPort = token.slice(0, slash);
    const expected = `${opts.hostname ?? '127.0.0.1'}:${port}`;
    if (hostPort !== expected) return `signed for ${hostPort}, not ${expected}`;
    const check = verifyPresigned('GET', token.slice(slash), { host: hostPort }, opts.lookup, { service: 'rds-db', region: opts.region });
    if (!check.ok) return `${check.code}: ${check.message}`;
    const q = new URLSearchParams(token.slice(token.indexOf('?') + 1));
    if (q.get('Action') !== 'connect') return 'Action is not connect';
    if (q.get('DBUser') !== user) return `token is for DBUser ${q.get('DBUser')}, not ${user}`;
    if (!check.signedHeaders!.includes('host')) return 'host not signed';
    return undefined;
  };

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    accepted,
    refused,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
