// What `make demo` started that could outlive it: PostgreSQL servers (pg_ctl detaches them from
// the demo's process group, so neither Ctrl-C nor the demo's death stops them) and the folders it
// made. They are written to a state file as they start, so a later demo can clean up after one
// that was killed outright (SIGKILL, a closed VM console), and stopped here by data folder, not by
// what the demo thinks they are: after the suggested failover the standby is the primary, and the
// old primary may be stopped, restarted or gone.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { pgBindir } from '../postgres.js';

export interface DemoState {
  /** The demo process. */
  pid: number;
  /** PostgreSQL data folders. */
  dataDirs: string[];
  /** Folders to remove (the data folders' parents, the control plane's, the pod runner's). */
  dirs: string[];
}

export function defaultStateFile(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dbproxy', 'demo', 'state.json');
}

export function writeState(file: string, state: DemoState): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(state, null, 2));
}

export function readState(file: string): DemoState | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as DemoState;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The postmaster's pid from postmaster.pid, if the server it names still runs. */
export function runningPostmaster(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Stops whatever PostgreSQL runs on `dataDir`, whichever role it has now: pg_ctl's immediate
 * shutdown as the folder's owner (pg_ctl refuses root), then SIGKILL if the postmaster is still
 * there. Synchronous, so it also works from an exit hook.
 */
export function stopPostgresAt(dataDir: string): void {
  if (!runningPostmaster(dataDir)) return;
  const asPostgres = process.getuid?.() === 0 ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {};
  spawnSync(join(pgBindir(), 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', '-t', '20', 'stop'], { ...asPostgres, cwd: '/', stdio: 'ignore' });
  const pid = runningPostmaster(dataDir);
  if (pid) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
}

/** Stops every server and removes every folder of `state`. Synchronous; errors of one step do not skip the others. */
export function cleanUp(state: DemoState, log: (m: string) => void = () => {}): void {
  for (const d of state.dataDirs) {
    try {
      stopPostgresAt(d);
    } catch (e) {
      log(`could not stop PostgreSQL in ${d}: ${(e as Error).message}`);
    }
  }
  for (const d of [...state.dataDirs, ...state.dirs]) {
    try {
      if (existsSync(d)) rmSync(d, { recursive: true, force: true });
    } catch (e) {
      log(`could not remove ${d}: ${(e as Error).message}`);
    }
  }
}

/** Cleans up after an earlier demo that did not get to (its process is gone); removes the state file. */
export function sweepLeftovers(file: string, log: (m: string) => void): void {
  const state = readState(file);
  if (!state) return;
  if (alive(state.pid) && state.pid !== process.pid) throw new Error(`another demo (pid ${state.pid}) is running; stop it first (Ctrl-C in its terminal)`);
  if (state.dataDirs.some((d) => existsSync(d)) || state.dirs.some((d) => existsSync(d))) {
    log(`cleaning up after an earlier demo that did not exit cleanly (pid ${state.pid})`);
    cleanUp(state, log);
  }
  rmSync(file, { force: true });
}
