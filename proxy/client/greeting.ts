// After a client's login, before its first query: what PostgreSQL says to a new connection
// (ParameterStatus for each reported parameter, BackendKeyData, ReadyForQuery) and the pooled
// session that takes over. The proxy shows what a server of the client's endpoint reports for its
// user and database, with the client's own startup values spelled as the server would report them,
// and refuses at this step the startup parameters the server would refuse, as PostgreSQL does.
import type net from 'node:net';
import { ServerError } from '../backend/backendConnection.js';
import { keyString, type Lender, type PoolKey } from '../pool/backendPool.js';
import { backendKeyData, errorResponse, parameterStatus, readyForQuery } from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import { literal, startupSessionParams } from '../session/sessionParams.js';
import { StartupParamsCheck } from '../session/startupCheck.js';
import { ClientSession } from './clientSession.js';
import { closeWithError } from './closeWithError.js';
import type { SessionContext } from './sessionContext.js';

/** The key a client cancels its queries with (BackendKeyData). */
export interface CancelKey {
  pid: number;
  secret: number;
}

/** What the process keeps of its sessions: it counts them, and routes cancel requests to them. */
export interface SessionHost {
  /** Takes a new session in (its login succeeded); returns the key its client may cancel with. */
  admit(session: ClientSession, socket: net.Socket): CancelKey;
  /** The session ended: no longer counted, no longer cancellable. */
  closed(session: ClientSession): void;
}

/** One query on a pooled backend of `key`, for the proxy's own purposes. */
async function queryOn(pool: Lender, key: PoolKey, sql: string, timeoutMs: number): Promise<void> {
  const b = await pool.borrow(key).promise;
  try {
    await b.query(sql, timeoutMs);
  } finally {
    if (b.closed) pool.discard(b);
    else pool.release(b);
  }
}

/** One per process, shared by its endpoints: what it learned from servers serves every later login. */
export class Greeting {
  private readonly serverParamsByKey = new Map<string, Map<string, string>>();
  /** How the server reports a startup value (client_encoding utf-8 → UTF8), by (user, database, name, value). */
  private readonly reportedSpelling = new Map<string, string>();
  private readonly startupCheck = new StartupParamsCheck();
  private nextSessionId = 0;

  constructor(private readonly host: SessionHost) {}

  /** After authentication on either endpoint: the greeting, and a session that borrows from `ctx.pool`. */
  async start(ctx: SessionContext, socket: net.Socket, key: PoolKey, startupParams: Map<string, string>, leftover: Buffer): Promise<void> {
    let serverParams: Map<string, string>;
    try {
      serverParams = await this.serverParams(ctx, key);
    } catch (e) {
      const err = e as Error;
      const fields =
        err instanceof ServerError
          ? { code: err.code, message: err.message }
          : { code: err.name === 'BorrowTimeoutError' ? SQLSTATE.tooManyConnections : SQLSTATE.connectionFailure, message: `could not connect to the database: ${err.message}` };
      ctx.metrics.clientRejections.inc({ reason: 'backend_unavailable' });
      closeWithError(socket, errorResponse({ severity: 'FATAL', ...fields }), ctx.clock);
      return;
    }
    if (socket.destroyed) return;
    const wanted = startupSessionParams(startupParams);
    try {
      await this.startupCheck.check(key, wanted, (k, sql) => queryOn(ctx.pool, k, sql, ctx.config.pool.connectTimeout));
      // Served by the writer (the fallback), a read-only client's transactions are read-only all
      // the same: set as if at startup, so RESET ALL and DISCARD ALL keep it.
      if (ctx.readOnly && ctx.config.readers?.fallbackToWriter) wanted.set('default_transaction_read_only', 'on');
    } catch (e) {
      const err = e as Error;
      const fields = err instanceof ServerError ? { code: err.code, message: err.message } : { code: SQLSTATE.connectionFailure, message: `could not check the startup parameters: ${err.message}` };
      ctx.metrics.clientRejections.inc({ reason: 'startup_parameters' });
      socket.end(errorResponse({ severity: 'FATAL', ...fields }));
      return;
    }
    const reported = await this.reportedValues(ctx, key, wanted, serverParams);
    if (socket.destroyed) return;
    const session: ClientSession = new ClientSession(socket, key, wanted, ctx, ++this.nextSessionId, () => this.host.closed(session));
    const ck = this.host.admit(session, socket);
    session.cancelPid = ck.pid;
    socket.cork();
    for (const [name, value] of serverParams) socket.write(parameterStatus(name, reported.get(name) ?? value));
    socket.write(backendKeyData(ck.pid, ck.secret));
    socket.write(readyForQuery('I'));
    socket.uncork();
    session.start(leftover);
  }

  /** The ParameterStatus set a new client is shown: what a server reported for this user and database. */
  private async serverParams(ctx: SessionContext, key: PoolKey): Promise<Map<string, string>> {
    // The read-only endpoint's clients see what a standby reports (in_hot_standby on, ...).
    const cacheKey = `${ctx.readOnly ? 'ro' : 'rw'}\0${keyString(key)}`;
    const cached = this.serverParamsByKey.get(cacheKey);
    if (cached) return cached;
    const pool = ctx.pool;
    const handle = pool.borrow(key);
    const b = await handle.promise;
    const params = new Map(b.serverParams);
    // A value of the proxy's own connection, not of the session a client will see.
    params.set('application_name', '');
    this.serverParamsByKey.set(cacheKey, params);
    pool.release(b);
    return params;
  }

  /**
   * The values of the reported parameters a client set at startup, as the server reports them
   * (PostgreSQL normalises: utf-8 → UTF8, iso, dmy → ISO, DMY, utc → UTC, a long
   * application_name truncated): set_config returns them. Asked once per (user, database, name,
   * value); the client's own spelling if the server cannot be asked.
   */
  private async reportedValues(ctx: SessionContext, key: PoolKey, wanted: ReadonlyMap<string, string>, serverParams: ReadonlyMap<string, string>): Promise<Map<string, string>> {
    const names = [...serverParams.keys()].filter((n) => wanted.has(n.toLowerCase()));
    const cacheKey = (n: string): string => `${keyString(key)}\0${n}\0${wanted.get(n.toLowerCase())}`;
    const missing = names.filter((n) => !this.reportedSpelling.has(cacheKey(n)));
    if (missing.length > 0) {
      const pool = ctx.pool;
      try {
        const b = await pool.borrow(key).promise;
        try {
          // is_local: the values last only for this statement's own transaction.
          const sql = `SELECT ${missing.map((n) => `pg_catalog.set_config(${literal(n)}, ${literal(wanted.get(n.toLowerCase())!)}, true)`).join(', ')}`;
          const row = (await b.query(sql, ctx.config.pool.connectTimeout)).rows[0] ?? [];
          if (this.reportedSpelling.size > 2000) this.reportedSpelling.clear();
          missing.forEach((n, i) => this.reportedSpelling.set(cacheKey(n), row[i] ?? wanted.get(n.toLowerCase())!));
        } finally {
          if (b.closed) pool.discard(b);
          else pool.release(b);
        }
      } catch (e) {
        ctx.log.warn({ err: (e as Error).message }, 'could not ask the server how it reports startup parameters');
      }
    }
    return new Map(names.map((n) => [n, this.reportedSpelling.get(cacheKey(n)) ?? wanted.get(n.toLowerCase())!]));
  }
}
