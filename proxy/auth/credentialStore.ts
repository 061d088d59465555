// Per-user passwords read from mounted files and re-read when the file changes, so a rotated
// Kubernetes Secret takes effect without a restart. Kubernetes swaps the `..data` symlink
// atomically; stat() follows symlinks, so the swap shows up as a new inode.
//
// Error messages name the user and file but never include file content: a parse error message
// from JSON.parse can quote the input, which could be the password.
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { SCRAM_DEFAULT_ITERATIONS, SCRAM_SALT_LEN } from './scramCommon.js';
import { makeScramVerifier } from './scramServer.js';
import type { ScramVerifier } from './scramServer.js';

export interface CredentialUser {
  name: string;
  /** File holding the password alone; one trailing newline is ignored. */
  passwordFile?: string;
  /** RDS-style JSON: {"username": "...", "password": "..."}. */
  secretFile?: string;
}

export interface FileStat {
  mtimeMs: number;
  size: number;
  ino: number;
}

export interface CredentialStoreOptions {
  statFs?: (path: string) => FileStat;
  readFile?: (path: string) => string;
  /** Minimum interval between stat() calls for one file. */
  recheckMs?: number;
  now?: () => number;
  scramIterations?: number;
}

export class CredentialError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CredentialError';
  }
}

interface Entry {
  readonly name: string;
  readonly path: string;
  readonly kind: 'password' | 'secret';
  checkedAt: number | null;
  stat: FileStat | null;
  value: { password: string } | { error: CredentialError } | null;
  verifier: { password: string; verifier: ScramVerifier } | null;
}

function defaultStat(path: string): FileStat {
  const st = statSync(path);
  return { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
}

function defaultReadFile(path: string): string {
  return readFileSync(path, 'utf8');
}

function sameStat(a: FileStat, b: FileStat): boolean {
  return a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino;
}

function describeFsError(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  return err instanceof Error ? err.message : String(err);
}

export class CredentialStore {
  private readonly entries = new Map<string, Entry>();
  private readonly statFs: (path: string) => FileStat;
  private readonly readFile: (path: string) => string;
  private readonly recheckMs: number;
  private readonly now: () => number;
  private readonly scramIterations: number;

  constructor(users: readonly CredentialUser[], opts: CredentialStoreOptions = {}) {
    this.statFs = opts.statFs ?? defaultStat;
    this.readFile = opts.readFile ?? defaultReadFile;
    this.recheckMs = opts.recheckMs ?? 1000;
    this.now = opts.now ?? Date.now;
    this.scramIterations = opts.scramIterations ?? SCRAM_DEFAULT_ITERATIONS;
    if (!Number.isFinite(this.recheckMs) || this.recheckMs < 0) {
      throw new CredentialError('recheckMs must be a non-negative number');
    }
    if (!Number.isSafeInteger(this.scramIterations) || this.scramIterations < 1) {
      throw new CredentialError('scramIterations must be a positive integer');
    }

    for (const u of users) {
      if (u.name.length === 0) throw new CredentialError('credential user with an empty name');
      if (this.entries.has(u.name)) throw new CredentialError(`user "${u.name}" is configured twice`);
      const hasPw = u.passwordFile !== undefined;
      const hasSecret = u.secretFile !== undefined;
      if (hasPw === hasSecret) {
        throw new CredentialError(`user "${u.name}" needs exactly one of passwordFile or secretFile`);
      }
      const path = (hasPw ? u.passwordFile : u.secretFile)!;
      if (path.length === 0) throw new CredentialError(`user "${u.name}" has an empty file path`);
      this.entries.set(u.name, {
        name: u.name,
        path,
        kind: hasPw ? 'password' : 'secret',
        checkedAt: null,
        stat: null,
        value: null,
        verifier: null,
      });
    }
  }

  has(user: string): boolean {
    return this.entries.has(user);
  }

  /** The user's current password; throws CredentialError if unknown or its file is unusable. */
  password(user: string): string {
    const entry = this.entries.get(user);
    if (entry === undefined) throw new CredentialError(`no credentials configured for user "${user}"`);
    this.refresh(entry);
    const value = entry.value!;
    if ('error' in value) throw value.error;
    return value.password;
  }

  /**
   * A SCRAM verifier for the user's current password. The salt is random per password value, and
   * the PBKDF2 work is done once per value, not per login.
   */
  scramVerifier(user: string): ScramVerifier {
    const password = this.password(user);
    const entry = this.entries.get(user)!;
    if (entry.verifier === null || entry.verifier.password !== password) {
      const verifier = makeScramVerifier(password, randomBytes(SCRAM_SALT_LEN), this.scramIterations);
      entry.verifier = { password, verifier };
    }
    return entry.verifier.verifier;
  }

  private refresh(entry: Entry): void {
    const now = this.now();
    if (entry.checkedAt !== null && entry.value !== null && now - entry.checkedAt < this.recheckMs) return;
    entry.checkedAt = now;

    let st: FileStat;
    try {
      st = this.statFs(entry.path);
    } catch (err) {
      this.setError(entry, `cannot stat ${this.describe(entry)}: ${describeFsError(err)}`);
      return;
    }
    if (entry.stat !== null && entry.value !== null && sameStat(entry.stat, st)) return;

    let text: string;
    try {
      text = this.readFile(entry.path);
    } catch (err) {
      this.setError(entry, `cannot read ${this.describe(entry)}: ${describeFsError(err)}`);
      return;
    }
    const parsed = entry.kind === 'password' ? this.parsePasswordFile(entry, text) : this.parseSecretFile(entry, text);
    entry.value = typeof parsed === 'string' ? { password: parsed } : { error: parsed };
    // A broken file keeps its stat too, so it is not re-read and re-parsed until it changes.
    entry.stat = st;
  }

  private setError(entry: Entry, message: string): void {
    entry.value = { error: new CredentialError(message) };
    entry.stat = null;
  }

  private describe(entry: Entry): string {
    return `${entry.kind === 'password' ? 'passwordFile' : 'secretFile'} ${entry.path} for user "${entry.name}"`;
  }

  private parsePasswordFile(entry: Entry, text: string): string | CredentialError {
    const password = text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
    if (password.length === 0) return new CredentialError(`${this.describe(entry)} is empty`);
    return password;
  }

  private parseSecretFile(entry: Entry, text: string): string | CredentialError {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return new CredentialError(`${this.describe(entry)} is not valid JSON`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      return new CredentialError(`${this.describe(entry)} must hold a JSON object`);
    }
    const fields = doc as Record<string, unknown>;
    if ('username' in fields) {
      if (typeof fields.username !== 'string') {
        return new CredentialError(`${this.describe(entry)} has a non-string "username"`);
      }
      if (fields.username !== entry.name) {
        return new CredentialError(
          `${this.describe(entry)} is for username "${fields.username}", not "${entry.name}"`,
        );
      }
    }
    const password = fields.password;
    if (typeof password !== 'string') {
      return new CredentialError(`${this.describe(entry)} has no string "password" field`);
    }
    if (password.length === 0) return new CredentialError(`${this.describe(entry)} has an empty "password"`);
    return password;
  }
}
