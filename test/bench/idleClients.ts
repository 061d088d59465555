// Opens many idle client connections with a minimal protocol client: StartupMessage, SCRAM-SHA-256
// (or md5 / cleartext, whatever the server asks for), then wait for the first ReadyForQuery and
// keep the socket open without sending anything. Cheaper than a driver per connection: the PBKDF2
// result is cached per (salt, iterations), as the proxy uses one salt per password.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';

export interface LoginOptions {
  host?: string;
  port: number;
  user: string;
  password: string;
  database: string;
  timeoutMs?: number;
}

const saltedCache = new Map<string, Buffer>();

function salted(password: string, salt: string, iterations: number): Buffer {
  const key = `${salt}:${iterations}:${password}`;
  let v = saltedCache.get(key);
  if (!v) {
    v = pbkdf2Sync(password, Buffer.from(salt, 'base64'), iterations, 32, 'sha256');
    saltedCache.set(key, v);
  }
  return v;
}

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function startup(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeInt32BE(body.length + 8, 0);
  head.writeInt32BE(196608, 4);
  return Buffer.concat([head, body]);
}

function errorText(body: Buffer): string {
  const fields: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    fields[code] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return `${fields.S ?? 'ERROR'} ${fields.C ?? ''}: ${fields.M ?? ''}`;
}

/** Logs in and resolves with the open socket at the first ReadyForQuery; afterwards it only drains. */
export function loginIdle(o: LoginOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: o.host ?? '127.0.0.1', port: o.port });
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    let nonce = '';
    let clientFirstBare = '';
    let serverSignature: Buffer | undefined;
    const fail = (e: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error('login timed out')), o.timeoutMs ?? 30_000);
    socket.once('error', fail);
    socket.once('close', () => fail(new Error('connection closed during login')));
    socket.once('connect', () => socket.write(startup({ user: o.user, database: o.database, application_name: 'bench-idle' })));
    const onData = (chunk: Buffer): void => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 5) {
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        const type = String.fromCharCode(buf[0]!);
        const body = buf.subarray(5, len + 1);
        buf = buf.subarray(len + 1);
        if (type === 'R') {
          const code = body.readInt32BE(0);
          if (code === 0) continue; // AuthenticationOk
          if (code === 3) {
            socket.write(message('p', Buffer.from(`${o.password}\0`)));
          } else if (code === 5) {
            const inner = createHash('md5').update(o.password + o.user).digest('hex');
            const outer = createHash('md5').update(inner).update(body.subarray(4, 8)).digest('hex');
            socket.write(message('p', Buffer.from(`md5${outer}\0`)));
          } else if (code === 10) {
            nonce = randomBytes(18).toString('base64');
            clientFirstBare = `n=,r=${nonce}`;
            const first = Buffer.from(`n,,${clientFirstBare}`);
            const len4 = Buffer.alloc(4);
            len4.writeInt32BE(first.length, 0);
            socket.write(message('p', Buffer.concat([Buffer.from('SCRAM-SHA-256\0'), len4, first])));
          } else if (code === 11) {
            const serverFirst = body.toString('utf8', 4);
            const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
            if (!attrs.r?.startsWith(nonce)) return fail(new Error('SCRAM: bad server nonce'));
            const saltedPassword = salted(o.password, attrs.s ?? '', Number(attrs.i));
            const clientKey = hmac(saltedPassword, 'Client Key');
            const storedKey = createHash('sha256').update(clientKey).digest();
            const withoutProof = `c=biws,r=${attrs.r}`;
            const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
            const signature = hmac(storedKey, authMessage);
            const proof = Buffer.alloc(32);
            for (let i = 0; i < 32; i++) proof[i] = clientKey[i]! ^ signature[i]!;
            serverSignature = hmac(hmac(saltedPassword, 'Server Key'), authMessage);
            socket.write(message('p', Buffer.from(`${withoutProof},p=${proof.toString('base64')}`)));
          } else if (code === 12) {
            const v = /v=([^,]+)/.exec(body.toString('utf8', 4))?.[1];
            if (!serverSignature || v !== serverSignature.toString('base64')) return fail(new Error('SCRAM: bad server signature'));
          } else {
            return fail(new Error(`unsupported authentication request ${code}`));
          }
        } else if (type === 'E') {
          return fail(new Error(errorText(body)));
        } else if (type === 'Z') {
          done = true;
          clearTimeout(timer);
          socket.removeListener('data', onData);
          socket.removeAllListeners('error');
          socket.removeAllListeners('close');
          socket.on('data', () => undefined);
          socket.on('error', () => undefined);
          return resolve(socket);
        }
        // ParameterStatus, BackendKeyData, NoticeResponse: nothing to do.
      }
    };
    socket.on('data', onData);
  });
}

export interface IdleResult {
  sockets: net.Socket[];
  failed: number;
  firstError?: string;
  elapsedMs: number;
  /** Connections closed by the far side after login, counted while they were held. */
  closedWhileIdle: () => number;
}

/** Opens `count` idle connections, `concurrency` logins at a time, giving up at `deadline`. */
export async function openIdleClients(o: LoginOptions & { count: number; concurrency: number; deadline: number; onProgress?: (n: number) => void }): Promise<IdleResult> {
  const started = Date.now();
  const sockets: net.Socket[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let closed = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.count && Date.now() < o.deadline && failed < Math.max(10, o.count / 100)) {
      next++;
      try {
        const s = await loginIdle({ ...o, timeoutMs: Math.max(1000, Math.min(o.timeoutMs ?? 30_000, o.deadline - Date.now())) });
        s.once('close', () => closed++);
        sockets.push(s);
        if (sockets.length % 1000 === 0) o.onProgress?.(sockets.length);
      } catch (e) {
        failed++;
        firstError ??= (e as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return { sockets, failed, firstError, elapsedMs: Date.now() - started, closedWhileIdle: () => closed };
}
