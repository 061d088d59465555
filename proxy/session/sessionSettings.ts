// A client's session parameters, carried from backend to backend instead of pinning it: what it
// asked for at startup, what it SET since (read back from the server after the transaction that
// changed it, so a rolled-back SET or a SET inside a DO block is known exactly as the server has
// it), and what each backend it borrows must be brought to. Pure bookkeeping: the session sends
// the SQL this produces.
import type { SessionSetting } from '../classify/classifier.js';
import { paramSyncSql, readBackSql } from './sessionParams.js';

export interface SettingsConfig {
  trackSettings: boolean;
  untrackedParameters: readonly string[];
}

/**
 * Reported parameters that follow the server or the role, not a SET: a change of any other one
 * (ParameterStatus) during a client's request is read back, even when no SQL the proxy saw made it
 * (a function that calls set_config, for one).
 */
const NOT_SESSION_SETTINGS: ReadonlySet<string> = new Set(['in_hot_standby', 'is_superuser', 'session_authorization', 'server_version', 'server_encoding', 'integer_datetimes']);

/** A read-back the session sent: apply its one row with `apply`. */
export interface ReadBack {
  sql: string;
  apply(values: ReadonlyArray<string | null>, applied: Map<string, string>): void;
}

export class SessionSettings {
  /** The client's parameters: its startup values plus what it changed since. */
  readonly wanted: Map<string, string>;
  /** Parameters changed in this session whose values must be read back before the backend goes. */
  private readonly toRead = new Set<string>();
  /** When each parameter (or, under '*', all of them) last changed, so a late read-back loses to a newer change. */
  private readonly changedAt = new Map<string, number>();
  private version = 0;

  constructor(
    /** What the client gave at startup (names lowercased). */
    readonly startup: ReadonlyMap<string, string>,
    private readonly config: () => SettingsConfig,
  ) {
    this.wanted = new Map(startup);
  }

  get searchPath(): string {
    return this.wanted.get('search_path') ?? '';
  }

  /** Something was changed that must be read back before the backend is returned. */
  get needsReadBack(): boolean {
    return this.toRead.size > 0;
  }

  /**
   * Records SET/RESET for replay; false when they cannot be tracked and the session must pin.
   * `applied`: what the backend in use has applied, for RESET ALL to know what it touched.
   */
  track(settings: readonly SessionSetting[], applied: ReadonlyMap<string, string> | undefined): boolean {
    const cfg = this.config();
    if (!cfg.trackSettings) return false;
    for (const s of settings) {
      if (s.kind === 'opaque') return false;
      if (s.kind !== 'reset_all' && cfg.untrackedParameters.includes(s.name)) return false;
    }
    this.version++;
    for (const s of settings) {
      if (s.kind === 'opaque') continue;
      // Whatever the statement did, the values are read back once the transaction ends: a RESET
      // that a later error rolled back, or one whose startup value was put back, is then known
      // exactly as the server has it.
      this.changedAt.set(s.kind === 'reset_all' ? '*' : s.name, this.version);
      if (s.kind === 'reset_all') {
        for (const k of this.wanted.keys()) this.toRead.add(k);
        for (const k of this.startup.keys()) this.toRead.add(k);
        for (const k of applied?.keys() ?? []) this.toRead.add(k);
      } else {
        this.toRead.add(s.name);
      }
    }
    return true;
  }

  /** The server reported a parameter change (ParameterStatus) during one of the client's requests. */
  reported(name: string): void {
    if (!NOT_SESSION_SETTINGS.has(name)) this.toRead.add(name);
  }

  /** SQL that brings a backend with `applied` to the client's parameters, or null. */
  syncSql(applied: ReadonlyMap<string, string>): string | null {
    return paramSyncSql(this.wanted, applied);
  }

  /** The read-back to run now (clears what it covers). */
  readBack(): ReadBack {
    const names = [...this.toRead];
    this.toRead.clear();
    const askedAt = this.version;
    return {
      sql: readBackSql(names),
      apply: (values, applied) => {
        const resetSince = (this.changedAt.get('*') ?? 0) > askedAt;
        names.forEach((name, i) => {
          if (resetSince || (this.changedAt.get(name) ?? 0) > askedAt) return;
          const v = values[i];
          if (v === null || v === undefined) {
            this.wanted.delete(name);
            applied.delete(name);
          } else {
            this.wanted.set(name, v);
            applied.set(name, v);
          }
        });
      },
    };
  }

  /** The startup values a statement's resets take away, which PostgreSQL would have put back. */
  startupValuesReset(names: readonly string[] | null): Map<string, string> {
    const out = new Map<string, string>();
    if (names === null) for (const [k, v] of this.startup) out.set(k, v);
    else for (const n of names) if (this.startup.has(n)) out.set(n, this.startup.get(n)!);
    return out;
  }
}
