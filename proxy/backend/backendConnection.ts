// One connection from the proxy to a PostgreSQL server. Opening it (TCP, startup, SCRAM or md5,
// init query) and running the proxy's own queries happen off the hot path, with pg-protocol's
// serializer and parser. Once lent to a client, bytes flow through the owner's framer instead.
import net from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { ScramClientExchange } from '../auth/scramClient.js';
import { md5PasswordHash } from '../auth/md5.js';
import type { Framer } from '../protocol/framer.js';
import { type BackendTlsSettings, negotiateBackendTls } from '../tls/backendTls.js';
import { BackendStatementCache } from '../session/preparedStatements.js';

/** Receives a lent backend's bytes. Exactly one owner at a time: a client session or the pool. */
export interface BackendOwner {
  onBackendData(backend: BackendConnection, chunk: Buffer): void;
  onBackendClose(backend: BackendConnection, err: Error | undefined): void;
  /** The connection's write buffer emptied (after a write returned false). */
  onBackendDrain?(backend: BackendConnection): void;
}

/** An error the server sent (ErrorResponse), with its SQLSTATE. */
export class ServerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly severity: string,
    readonly detail?: string,
  ) {
    super(message);
    this.name = 'ServerError';
  }
  /** Authentication and authorization failures: retrying will not help. */
  get isLoginRefusal(): boolean {
    return this.code.startsWith('28') || this.code === '3D000';
  }
}

export interface BackendEndpoint {
  /** The address connected to. */
  host: string;
  port: number;
  /**
   * The host name the target was configured by, when it was a name that resolved to `host`. TLS
   * (SNI and verify-full) uses it: a database's certificate names the host (RDS's, cert-manager's),
   * rarely the address one resolution returned.
   */
  name?: string;
}

export interface OpenBackendOptions {
  endpoint: BackendEndpoint;
  user: string;
  database: string;
  /** The password, or an IAM token; called when the server asks for it. */
  password: () => string | Promise<string>;
  connectTimeoutMs: number;
  /** TLS to the server (SSLRequest, then a handshake on the same socket). Default: plaintext. */
  tls?: BackendTlsSettings;
  applicationName?: string;
  initQuery?: string;
  /** Labels the connection in logs and SHOW SERVERS. */
  id: number;
  now: () => number;
}

type AnyMessage = BackendMessage & {
  status?: string;
  parameterName?: string;
  parameterValue?: string;
  processID?: number;
  secretKey?: number;
  salt?: Buffer;
  data?: string;
  mechanisms?: string[];
  code?: string;
  message?: string;
  severity?: string;
  detail?: string;
  fields?: Array<string | null>;
  text?: string;
};

export interface QueryResult {
  rows: Array<Array<string | null>>;
  commandTags: string[];
}

export class BackendConnection {
  owner: BackendOwner | null = null;
  /** Server-reported parameters (ParameterStatus), kept current. */
  readonly serverParams = new Map<string, string>();
  /** Session parameters the proxy has SET on this connection beyond its startup defaults. */
  readonly appliedParams = new Map<string, string>();
  /** Proxy-owned prepared statements on this connection. */
  readonly statements = new BackendStatementCache(200);
  /** Whose unnamed statement this connection holds: a Bind("") from anyone else needs a re-Parse. */
  unnamedOwner: { session: object; generation: number } | null = null;
  /** The data path's framer for this connection's byte stream, made on first lend. */
  framer: Framer | undefined;
  pid = 0;
  secretKey = 0;
  readonly createdAt: number;
  lastUsedAt: number;
  closed = false;
  /** Whether the connection runs over TLS. */
  encrypted = false;
  /**
   * The pid (BackendKeyData) of the client session that had this connection last: a notification
   * this server process raised is that client's, and other clients know it by that pid.
   */
  lastClientPid = 0;
  private closeError: Error | undefined;

  constructor(
    readonly id: number,
    readonly socket: net.Socket,
    readonly endpoint: BackendEndpoint,
    readonly user: string,
    readonly database: string,
    now: number,
  ) {
    this.createdAt = now;
    this.lastUsedAt = now;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    socket.on('data', (chunk: Buffer) => {
      if (this.owner) this.owner.onBackendData(this, chunk);
    });
    // One listener for the connection's life, passed to whoever owns it: no listener added and
    // removed per transaction.
    socket.on('drain', () => this.owner?.onBackendDrain?.(this));
    socket.on('error', (err) => {
      this.closeError = err;
    });
    socket.on('close', () => {
      this.closed = true;
      const owner = this.owner;
      this.owner = null;
      owner?.onBackendClose(this, this.closeError);
    });
  }

  get label(): string {
    return `${this.endpoint.host}:${this.endpoint.port}#${this.id}`;
  }

  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  /** Sends Terminate and closes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.socket.writable) this.socket.end(serialize.end());
    this.socket.destroySoon();
  }

  /** Runs the proxy's own simple query while nobody else owns the connection. */
  query(sql: string, timeoutMs = 30_000): Promise<QueryResult> {
    // A simple query drops the session's unnamed statement.
    this.unnamedOwner = null;
    return exchange(this, serialize.query(sql), timeoutMs);
  }
}

/** Collects a simple-query round trip with pg-protocol's parser; the caller must own `backend`. */
function exchange(backend: BackendConnection, request: Buffer, timeoutMs: number): Promise<QueryResult> {
  return new Promise((resolve, reject) => {
    const parser = new Parser();
    const result: QueryResult = { rows: [], commandTags: [] };
    let error: ServerError | undefined;
    const previous = backend.owner;
    const finish = (err?: Error): void => {
      clearTimeout(timer);
      backend.owner = previous;
      if (err) reject(err);
      else resolve(result);
    };
    const timer = setTimeout(() => {
      backend.close();
      finish(new Error(`query timed out after ${timeoutMs} ms on ${backend.label}`));
    }, timeoutMs);
    backend.owner = {
      onBackendData(_b, chunk) {
        try {
          parser.parse(chunk, (m) => {
            const msg = m as AnyMessage;
            switch (msg.name) {
              case 'dataRow':
                result.rows.push((msg.fields ?? []) as Array<string | null>);
                break;
              case 'commandComplete':
                result.commandTags.push(msg.text ?? '');
                break;
              case 'parameterStatus':
                backend.serverParams.set(msg.parameterName!, msg.parameterValue!);
                break;
              case 'error':
                error = new ServerError(msg.code ?? 'XX000', msg.message ?? 'unknown error', msg.severity ?? 'ERROR', msg.detail);
                break;
              case 'readyForQuery':
                finish(error);
                break;
              default:
                break;
            }
          });
        } catch (e) {
          backend.close();
          finish(e as Error);
        }
      },
      onBackendClose(_b, err) {
        finish(err ?? error ?? new Error(`server closed the connection ${backend.label}`));
      },
    };
    backend.write(request);
  });
}

/** Opens and authenticates a backend connection; resolves once the server is ReadyForQuery. */
export function openBackend(opts: OpenBackendOptions): Promise<BackendConnection> {
  return new Promise((resolve, reject) => {
    const target = `${opts.endpoint.host}:${opts.endpoint.port}`;
    const raw = net.connect({ host: opts.endpoint.host, port: opts.endpoint.port });
    let backend: BackendConnection | undefined;
    const parser = new Parser();
    let scram: ScramClientExchange | undefined;
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (backend) {
        backend.owner = null;
        backend.close();
        backend.socket.destroy();
      }
      raw.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`timed out after ${opts.connectTimeoutMs} ms connecting to ${target}`)), opts.connectTimeoutMs);
    const ready = async (): Promise<void> => {
      if (opts.initQuery) await backend!.query(opts.initQuery, opts.connectTimeoutMs);
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      backend!.owner = null;
      resolve(backend!);
    };
    /** The password (or IAM token), which may take a round trip to produce. */
    const withPassword = (send: (password: string) => Buffer): void => {
      Promise.resolve()
        .then(() => opts.password())
        .then((pw) => {
          if (!settled) backend!.socket.write(send(pw));
        })
        .catch((e: Error) => fail(e));
    };
    const onMessage = (m: BackendMessage): void => {
      const msg = m as AnyMessage;
      switch (msg.name) {
        case 'authenticationCleartextPassword':
          withPassword((pw) => serialize.password(pw));
          break;
        case 'authenticationMD5Password':
          withPassword((pw) => serialize.password(md5PasswordHash(opts.user, pw, msg.salt!)));
          break;
        case 'authenticationSASL':
          if (!msg.mechanisms?.includes('SCRAM-SHA-256')) {
            fail(new Error(`server offers no supported SASL mechanism (${(msg.mechanisms ?? []).join(', ')})`));
            return;
          }
          withPassword((pw) => {
            scram = new ScramClientExchange(pw);
            return serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst());
          });
          break;
        case 'authenticationSASLContinue':
          if (!scram) return fail(new Error('unexpected SASLContinue'));
          backend!.socket.write(serialize.sendSCRAMClientFinalMessage(scram.handleServerFirst(msg.data ?? '')));
          break;
        case 'authenticationSASLFinal':
          if (!scram) return fail(new Error('unexpected SASLFinal'));
          scram.verifyServerFinal(msg.data ?? '');
          break;
        case 'parameterStatus':
          backend!.serverParams.set(msg.parameterName!, msg.parameterValue!);
          break;
        case 'backendKeyData':
          backend!.pid = msg.processID!;
          backend!.secretKey = msg.secretKey!;
          break;
        case 'error':
          fail(new ServerError(msg.code ?? 'XX000', msg.message ?? 'unknown error', msg.severity ?? 'FATAL', msg.detail));
          break;
        case 'readyForQuery':
          ready().catch(fail);
          break;
        default:
          break;
      }
    };
    const startup = (socket: net.Socket): void => {
      if (settled) {
        socket.destroy();
        return;
      }
      backend = new BackendConnection(opts.id, socket, opts.endpoint, opts.user, opts.database, opts.now());
      backend.encrypted = socket !== raw;
      backend.owner = {
        onBackendData(_b, chunk) {
          try {
            parser.parse(chunk, onMessage);
          } catch (e) {
            fail(e as Error);
          }
        },
        onBackendClose(_b, err) {
          fail(err ?? new Error(`server ${target} closed the connection during startup`));
        },
      };
      const params: Record<string, string> = { user: opts.user, database: opts.database, client_encoding: 'UTF8' };
      if (opts.applicationName) params.application_name = opts.applicationName;
      socket.write(serialize.startup(params));
    };
    const onConnectError = (e: Error): void => fail(e);
    raw.once('error', onConnectError);
    raw.once('connect', () => {
      raw.off('error', onConnectError);
      if (!opts.tls) {
        startup(raw);
        return;
      }
      negotiateBackendTls(raw, opts.endpoint.name ?? opts.endpoint.host, opts.tls).then((secure) => {
        // Errors now surface on the TLS socket, which the connection watches.
        raw.on('error', () => {});
        startup(secure);
      }, fail);
    });
  });
}

/** Sends a CancelRequest for (pid, secret) to a server on a fresh connection. */
export function sendCancel(endpoint: BackendEndpoint, pid: number, secretKey: number, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: endpoint.host, port: endpoint.port });
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    socket.once('connect', () => socket.end(serialize.cancel(pid, secretKey)));
    socket.once('close', done);
    socket.once('error', done);
  });
}
