// The PgBouncer-compatible admin database: connect to database "dbproxy" and run the SHOW commands
// of PgBouncer 1.24 (same columns and types; see showCommands.ts), SHOW TARGETS, PAUSE, RESUME,
// RELOAD. Simple protocol only. Commands are a handful of fixed words, so they are matched as
// words, not parsed as SQL. statsUsers may SHOW, adminUsers may do everything; nobody else gets
// past the login. PgBouncer commands that make no sense here get an error saying why.
import type net from 'node:net';
import { Framer, FramingError, inspectTable, type FrameSink } from '../protocol/framer.js';
import { readQuery } from '../protocol/clientMessages.js';
import { commandComplete, dataRow, emptyQueryResponse, errorResponse, frame, noticeResponse, parameterStatus, readyForQuery } from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import { type Column, NOT_APPLICABLE, type ResultSet, SHOW_SUBJECTS, type ShowSubject, TYPE_OID } from './showCommands.js';

export type { ResultSet } from './showCommands.js';

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
  show(what: ShowSubject): ResultSet;
  pause(): Promise<void>;
  /** Lifts this console's PAUSE; resolves to a note when the pool stays paused for another reason. */
  resume(): string;
  /** Re-reads the config file; resolves to a note on what could not be applied without a restart. */
  reload(): Promise<string>;
  /** This user's rights, read from the current config on every command (a RELOAD may change them). */
  access(user: string): AdminAccess;
}

/** RowDescription with each column's declared type, as PgBouncer declares them (text format). */
export function typedRowDescription(columns: readonly Column[]): Buffer {
  const parts: Buffer[] = [Buffer.from([(columns.length >> 8) & 0xff, columns.length & 0xff])];
  for (const c of columns) {
    const meta = Buffer.alloc(18);
    meta.writeInt32BE(0, 0);
    meta.writeInt16BE(0, 4);
    meta.writeInt32BE(TYPE_OID[c.type], 6);
    meta.writeInt16BE(c.type === 'int4' ? 4 : c.type === 'int8' ? 8 : -1, 10);
    meta.writeInt32BE(-1, 12);
    meta.writeInt16BE(0, 16);
    parts.push(Buffer.from(`${c.name}\0`, 'utf8'), meta);
  }
  return frame('T', Buffer.concat(parts));
}

/**
 * PgBouncer admin commands dbproxy does not carry out, and why. The SQLSTATE is 0A000
 * (feature_not_supported): the command is understood, and refused on purpose.
 */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  reconnect: 'dbproxy closes backends by lifetime (pool.maxConnectionLifetime) and on failover; RECONNECT is not supported',
  suspend: 'dbproxy has no online restart to suspend for; rolling updates replace pods',
  shutdown: 'stop dbproxy with SIGTERM (graceful: transactions finish, within shutdownGracePeriod)',
  kill: 'dbproxy does not kill the clients of one database; remove the user from the config and RELOAD, or PAUSE',
  kill_client: 'dbproxy does not kill single clients from the console',
  disable: 'dbproxy does not disable single databases; remove the user from the config and RELOAD',
  enable: 'dbproxy does not disable single databases; remove the user from the config and RELOAD',
  wait_close: 'dbproxy closes backends by lifetime (pool.maxConnectionLifetime); WAIT_CLOSE is not supported',
  set: 'dbproxy settings come from its config file (or the DatabaseProxy resource); change it there and RELOAD',
};

const HELP = `DBPROXY (PgBouncer-compatible) admin console
\tSHOW HELP|POOLS|STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|DATABASES|USERS|LISTS|CLIENTS|SERVERS|CONFIG|VERSION|STATE|TARGETS
\tPAUSE
\tRESUME
\tRELOAD`;

const SHOWABLE = new Set<string>(SHOW_SUBJECTS);

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

  private show(words: string[]): void {
    const s = this.socket;
    const subject = words[1];
    if (this.ops.access(this.user) === 'none') {
      s.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.insufficientPrivilege, message: 'permission denied: SHOW needs a user listed in adminUsers or statsUsers' }));
      return;
    }
    if (words.length === 2 && subject === 'help') {
      s.write(noticeResponse({ severity: 'NOTICE', code: '00000', message: HELP }));
      s.write(commandComplete('SHOW'));
      return;
    }
    if (words.length === 2 && subject !== undefined && NOT_APPLICABLE[subject] !== undefined) {
      s.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.featureNotSupported, message: `SHOW ${subject.toUpperCase()} is not supported: ${NOT_APPLICABLE[subject]}` }));
      return;
    }
    if (words.length !== 2 || subject === undefined || !SHOWABLE.has(subject)) {
      s.write(errorResponse({ severity: 'ERROR', code: SQLSTATE.syntaxError, message: `invalid command '${words.join(' ').toUpperCase()}', use SHOW HELP;` }));
      return;
    }
    const rs = this.ops.show(subject as ShowSubject);
    s.cork();
    s.write(typedRowDescription(rs.columns));
    for (const row of rs.rows) s.write(dataRow(row.map((v) => (v === null ? null : typeof v === 'boolean' ? (v ? '1' : '0') : String(v)))));
    s.write(commandComplete('SHOW'));
    s.uncork();
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
      } else if (words[0] === 'show') {
        this.show(words);
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
      } else if ((words[0] === 'pause' || words[0] === 'resume') && words.length === 2) {
        error(SQLSTATE.featureNotSupported, `${words[0].toUpperCase()} of one database is not supported by dbproxy; ${words[0].toUpperCase()} without a name applies to every pool`);
      } else if (UNSUPPORTED[words[0]!] !== undefined) {
        error(SQLSTATE.featureNotSupported, `${words[0]!.toUpperCase()} is not supported: ${UNSUPPORTED[words[0]!]}`);
      } else {
        error(SQLSTATE.syntaxError, `invalid command '${sql.trim().replace(/;\s*$/, '')}', use SHOW HELP;`);
      }
    } catch (e) {
      error(SQLSTATE.internalError, (e as Error).message);
    }
    s.write(readyForQuery('I'));
  }
}
