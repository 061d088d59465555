// A value built from one or more files (certificate and key, a CA bundle), rebuilt when any of
// them changes. Like the credential store: stat() at most once per recheck interval, compare
// (mtime, size, inode) — a Kubernetes Secret update swaps the `..data` symlink, which stat()
// follows, so it shows up as a new inode. A rebuild that fails keeps the last good value, so a
// half-written rotation never takes the proxy down; the failure is reported once per change.
import { readFileSync, statSync } from 'node:fs';

export interface FileState {
  mtimeMs: number;
  size: number;
  ino: number;
}

export interface WatchedFilesOptions<T> {
  files: readonly string[];
  /** Builds the value from the files' contents, in the order of `files`; throws if they are unusable. */
  build: (contents: Buffer[]) => T;
  recheckMs: number;
  now?: () => number;
  /** Told about a change that could not be used (the old value stays). */
  onError?: (err: Error) => void;
  /** Told after a successful rebuild caused by a change (not the first load). */
  onReload?: () => void;
}

function fsCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

export class WatchedFiles<T> {
  private value: T | undefined;
  private states: FileState[] | null = null;
  private checkedAt = -Infinity;
  private readonly now: () => number;
  /** Counts rebuilds after the first load. */
  reloads = 0;

  constructor(private readonly opts: WatchedFilesOptions<T>) {
    this.now = opts.now ?? Date.now;
  }

  /** Loads now; throws if the files are unusable (for a fail-fast start). */
  load(): T {
    this.checkedAt = this.now();
    const { states, value } = this.read();
    this.states = states;
    this.value = value;
    return value;
  }

  /** The current value, rebuilt first if a file changed since the last check. */
  current(): T {
    if (this.value === undefined) return this.load();
    const now = this.now();
    if (now - this.checkedAt < this.opts.recheckMs) return this.value;
    this.checkedAt = now;
    let states: FileState[];
    try {
      states = this.opts.files.map((f) => {
        const st = statSync(f);
        return { mtimeMs: st.mtimeMs, size: st.size, ino: st.ino };
      });
    } catch (e) {
      this.opts.onError?.(new Error(`cannot stat ${this.opts.files.join(', ')}: ${fsCode(e)}; keeping the previous version`));
      return this.value;
    }
    if (this.states && states.every((s, i) => same(s, this.states![i]!))) return this.value;
    try {
      const next = this.read();
      this.value = next.value;
      this.states = next.states;
      this.reloads++;
      this.opts.onReload?.();
    } catch (e) {
      // Remember the broken state so it is not rebuilt (and reported) on every check.
      this.states = states;
      this.opts.onError?.(new Error(`${(e as Error).message}; keeping the previous version`));
    }
    return this.value;
  }

  private read(): { states: FileState[]; value: T } {
    const states: FileState[] = [];
    const contents: Buffer[] = [];
    for (const f of this.opts.files) {
      try {
        const st = statSync(f);
        states.push({ mtimeMs: st.mtimeMs, size: st.size, ino: st.ino });
        contents.push(readFileSync(f));
      } catch (e) {
        throw new Error(`cannot read ${f}: ${fsCode(e)}`);
      }
    }
    let value: T;
    try {
      value = this.opts.build(contents);
    } catch (e) {
      // Messages from the TLS layer name the problem, never the key material.
      throw new Error(`cannot use ${this.opts.files.join(', ')}: ${(e as Error).message}`);
    }
    return { states, value };
  }
}

function same(a: FileState, b: FileState): boolean {
  return a.mtimeMs === b.mtimeMs && a.size === b.size && a.ino === b.ino;
}
