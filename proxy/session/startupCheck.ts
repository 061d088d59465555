// A client's startup parameters are applied with SET on whichever backend it borrows, long after
// it logged in. PostgreSQL refuses a connection whose startup parameters it refuses (FATAL
// 22023 invalid value, 42704 unrecognized parameter, 42501 permission denied): the proxy asks
// the server the same question once, at login, so the client gets the same answer at the same
// step, and no backend ever receives a SET that fails mid-session. Answers are remembered per
// (user, database, name, value), so a fleet of identical clients costs one round trip.
import type { PoolKey } from '../pool/backendPool.js';
import { ServerError } from '../backend/backendConnection.js';
import { literal } from './sessionParams.js';

/** Runs one query for `key` on some backend; rejects with the server's ServerError. */
export type RunQuery = (key: PoolKey, sql: string) => Promise<void>;

/** SQLSTATE for "parameter cannot be set after connection start" (PGC_BACKEND parameters). */
const CANT_CHANGE_NOW = '55P02';

export class StartupParamsCheck {
  private readonly accepted = new Set<string>();

  constructor(private readonly capacity = 2000) {}

  /**
   * Resolves when the server accepts every parameter; rejects with the error a client should see.
   * `run` asks a server of the client's own endpoint (a standby, for the read-only endpoint).
   */
  async check(key: PoolKey, params: ReadonlyMap<string, string>, run: RunQuery): Promise<void> {
    const entry = (k: string, v: string): string => `${key.user}\0${key.database}\0${k}\0${v}`;
    const unknown = [...params].filter(([k, v]) => !this.accepted.has(entry(k, v)));
    if (unknown.length === 0) return;
    // is_local true: the values last only for this statement's own transaction.
    const sql = `SELECT ${unknown.map(([k, v]) => `pg_catalog.set_config(${literal(k)}, ${literal(v)}, true)`).join(', ')}`;
    try {
      await run(key, sql);
    } catch (e) {
      if (e instanceof ServerError && e.code === CANT_CHANGE_NOW) {
        throw new ServerError(e.code, `${e.message}: dbproxy shares server connections between clients, so it can only apply parameters that may change during a session`, 'FATAL');
      }
      throw e;
    }
    for (const [k, v] of unknown) {
      if (this.accepted.size >= this.capacity) this.accepted.delete(this.accepted.values().next().value as string);
      this.accepted.add(entry(k, v));
    }
  }
}
