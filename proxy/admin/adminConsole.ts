// The PgBouncer-style admin database: connect to database "dbproxy" and run SHOW POOLS, SHOW
// CLIENTS, SHOW SERVERS, SHOW STATS, SHOW TARGETS, PAUSE, RESUME, RELOAD. Simple protocol only.
// Commands are a handful of fixed words, so they are matched as words, not parsed as SQL.
// statsUsers may SHOW, adminUsers may do everything; nobody else gets past the login.
import type net from 'node:net';
import { Framer, FramingError, inspectTable, type FrameSink } from '../protocol/framer.js';
import { readQuery } from '../protocol/clientMessages.js';
import {
  commandComplete,
  dataRow,
  emptyQueryResponse,
  errorResponse,
  noticeResponse,
  parameterStatus,
  readyForQuery,
  rowDescription,
} from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';

export interface ResultSet {
  columns: string[];
  rows: Array<Array<string | number | boolean | null>>;
}

/**
 * What a user may do on the admin database, like PgBouncer's admin_users and stats_users: SHOW
 * tells who is connected from where and how the pool is set up, so it is not for every tenant.
 */
export type AdminAccess = 'admin' | 'stats' | 'none';

export function adminAccess(config: { adminUsers: readonly string[]; statsUsers: readonly string[] }, user: string): AdminAccess {
  if (config.adminUsers.includes(user)) return 'admin';
  if (config.statsUsers.includes(user)) return 'stats';
  return 'none';
}

/** What the console can see and do; implemented by the proxy server. */
export interface AdminOperations {
  show(what: 'pools' | 'clients' | 'servers' | 'stats' | 'targets' | 'config'): ResultSet;
  pause(): Promise<void>;
  /** Lifts this console's PAUSE; resolves to a note when the pool stays paused for another reason. */
  resume(): string;
  /** Re-reads the config file; resolves to a note on what could not be applied without a restart. */
  reload(): Promise<string>;
  /** This user's rights, read from the current config on every command (a RELOAD may change them). */
  access(user: string): AdminAccess;
}

const SHOWABLE = new Set(['pools', 'clients', 'servers', 'stats', 'targets', 'config']);

export class AdminSession implements FrameSink {
  private readonly framer = new Framer(inspectTable('', true), 1024 * 1024);
  private busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly socket: net.Socket,
    private readonly user: string,
    private readonly ops: AdminOperations,
  ) {}

  start(leftover: Buffer): void {
    const s = this.socket;
    s.cork();
    for (const [k, v] of Object.entries({
      server_version: '15.0 (dbproxy admin)',
      server_encoding: 'UTF8',
      client_encoding: 'UTF8',
      DateStyle: 'ISO, MDY',
      integer_datetimes: 'on',
      standard_conforming_strings: 'on',
    })) {
      s.write(parameterStatus(k, v));
    }
    s.write(readyForQuery('I'));
    s.uncork();
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    if (leftover.length) this.onData(leftover);
  }

  private onData(chunk: Buffer): void {
    try {
      this.framer.push(chunk, this);
    } catch (e) {
      if (!(e instanceof FramingError)) throw e;
      this.socket.end(errorResponse({ severity: 'FATAL', code: SQLSTATE.protocolViolation, message: e.message }));
    }
  }

  raw(): void {
    /* every type is inspected */
  }

  message(type: number, msg: Buffer): void {
    const t = String.fromCharCode(type);
    if (t === 'X') {
      this.socket.end();
      return;
    }
    if (t !== 'Q') {
      if (t === 'S') {
        this.socket.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.featureNotSupported, message: 'the dbproxy admin console supports the simple query protocol only' }));
        this.socket.write(readyForQuery('I'));
      }
      return;
    }
    const sql = readQuery(msg);
    // Commands run one after another even if a client pipelines them.
    this.busy = this.busy.then(() => this.run(sql));
  }

  private async run(sql: string): Promise<void> {
    const s = this.socket;
    const words = sql
      .replace(/;\s*$/, '')
      .trim()
      .split(/\s+/)
      .filter((w) => w.length > 0)
      .map((w) => w.toLowerCase());
    const error = (code: string, message: string): void => {
      s.write(errorResponse({ severity: 'ERROR', code, message }));
    };
    try {
      if (words.length === 0) {
        s.write(emptyQueryResponse());
      } else if (words[0] === 'show' && words.length === 2 && SHOWABLE.has(words[1]!)) {
        if (this.ops.access(this.user) === 'none') {
          error(SQLSTATE.insufficientPrivilege, 'permission denied: SHOW needs a user listed in adminUsers or statsUsers');
          s.write(readyForQuery('I'));
          return;
        }
        const rs = this.ops.show(words[1] as 'pools');
        s.cork();
        s.write(rowDescription(rs.columns));
        for (const row of rs.rows) s.write(dataRow(row.map((v) => (v === null ? null : String(v)))));
        s.write(commandComplete('SHOW'));
        s.uncork();
      } else if (words.length === 1 && ['pause', 'resume', 'reload'].includes(words[0]!)) {
        if (this.ops.access(this.user) !== 'admin') {
          error(SQLSTATE.insufficientPrivilege, `permission denied: ${words[0]!.toUpperCase()} needs a user listed in adminUsers`);
        } else if (words[0] === 'pause') {
          await this.ops.pause();
          s.write(commandComplete('PAUSE'));
        } else if (words[0] === 'resume') {
          const note = this.ops.resume();
          if (note) s.write(noticeResponse({ severity: 'NOTICE', code: '00000', message: note }));
          s.write(commandComplete('RESUME'));
        } else {
          const note = await this.ops.reload();
          if (note) s.write(noticeResponse({ severity: 'NOTICE', code: '00000', message: note }));
          s.write(commandComplete('RELOAD'));
        }
      } else {
        error(SQLSTATE.syntaxError, `unknown admin command "${sql.trim()}"; try SHOW POOLS|CLIENTS|SERVERS|STATS|TARGETS|CONFIG, PAUSE, RESUME, RELOAD`);
      }
    } catch (e) {
      error(SQLSTATE.internalError, (e as Error).message);
    }
    s.write(readyForQuery('I'));
  }
}
