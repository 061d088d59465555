// Starts throwaway PgBouncer instances on loopback for the benchmark: transaction pooling in front
// of one PostgreSQL, auth from a userlist.txt holding the plain password or the server's SCRAM
// secret (either lets PgBouncer do SCRAM both to its clients and to the server). PgBouncer refuses to run as root, so as root it
// runs as the `postgres` user, like hack/postgres.ts does for the server.
//
// Two builds are used: Debian bookworm's /usr/sbin/pgbouncer (1.18), and Debian trixie's 1.24,
// which hack/install-bench-deps.sh unpacks with its own libc into a cache folder and which runs
// through that folder's ld-linux loader with --library-path (see pgBouncer124()).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/** How to run one PgBouncer build: the binary, and for an unpacked build its loader and libraries. */
export interface PgBouncerBinary {
  binary: string;
  /** ld-linux loader to run the binary through (an unpacked build with its own libc). */
  loader?: string;
  /** --library-path for the loader. */
  libraryPath?: string;
  /** `pgbouncer --version`'s first line, e.g. "PgBouncer 1.24.1". */
  version: string;
}

export interface PgBouncerUser {
  name: string;
  /**
   * The plain password, or the SCRAM secret from pg_authid ("SCRAM-SHA-256$4096:..."): with the
   * secret PgBouncer verifies clients without PBKDF2 work and logs in to the server with the
   * client's SCRAM keys, which needs the server to hold the same secret.
   */
  password: string;
}

export interface PgBouncerOptions {
  bin: PgBouncerBinary;
  listenPort: number;
  targetPort: number;
  targetHost?: string;
  /** default_pool_size, and max_db_connections: the server connections PgBouncer may open. */
  poolSize: number;
  users: PgBouncerUser[];
  /** max_client_conn; default 12000. */
  maxClientConn?: number;
  /** max_prepared_statements (PgBouncer 1.21 and later); unset: the build's default. */
  maxPreparedStatements?: number;
  /** Client- and server-side auth_type; default scram-sha-256. */
  authType?: 'scram-sha-256' | 'md5' | 'plain';
  /** Extra [pgbouncer] settings. */
  settings?: Record<string, string | number>;
  /** How long to wait for it to accept connections; default 15 s. */
  startTimeoutMs?: number;
}

export interface PgBouncer {
  port: number;
  pid: number;
  dir: string;
  version: string;
  /** PgBouncer's own log so far. */
  log(): string;
  /** SIGINT (immediate shutdown), SIGKILL after timeoutMs; removes its folder. */
  stop(timeoutMs?: number): Promise<void>;
  /** Synchronous last resort for exit handlers. */
  kill(): void;
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

function postgresIds(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  };
}

/** Where hack/install-bench-deps.sh keeps downloaded builds (the same rule as the script). */
export function benchCacheDir(): string {
  if (process.env.DBPROXY_CACHE_DIR) return process.env.DBPROXY_CACHE_DIR;
  if (isRoot()) return '/var/cache/dbproxy';
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dbproxy');
}

function versionOf(bin: Omit<PgBouncerBinary, 'version'>): string | undefined {
  try {
    const [cmd, args] = commandLine(bin, ['--version']);
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 10_000 }).split('\n')[0]!.trim();
  } catch {
    return undefined;
  }
}

function commandLine(bin: Omit<PgBouncerBinary, 'version'>, args: string[]): [string, string[]] {
  if (!bin.loader) return [bin.binary, args];
  return [bin.loader, ['--library-path', bin.libraryPath ?? '', bin.binary, ...args]];
}

/** Debian's installed PgBouncer (bookworm: 1.18), or undefined. */
export function systemPgBouncer(path = '/usr/sbin/pgbouncer'): PgBouncerBinary | undefined {
  if (!existsSync(path)) return undefined;
  const version = versionOf({ binary: path });
  return version ? { binary: path, version } : undefined;
}

/** Trixie's PgBouncer 1.24 as unpacked by hack/install-bench-deps.sh, or undefined. */
export function pgBouncer124(): PgBouncerBinary | undefined {
  const file = join(benchCacheDir(), 'pgbouncer-1.24', 'pgbouncer.json');
  if (!existsSync(file)) return undefined;
  const j = JSON.parse(readFileSync(file, 'utf8')) as { binary: string; loader: string; libraryPath: string };
  const bin = { binary: j.binary, loader: j.loader, libraryPath: j.libraryPath };
  const version = versionOf(bin);
  return version?.startsWith('PgBouncer 1.24') ? { ...bin, version } : undefined;
}

/** userlist.txt: "name" "password", with PgBouncer's quoting (a quote is doubled). */
function userlist(users: PgBouncerUser[]): string {
  const q = (s: string): string => `"${s.replaceAll('"', '""')}"`;
  return users.map((u) => `${q(u.name)} ${q(u.password)}\n`).join('');
}

function waitForPort(port: number, deadline: number, exited: () => string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const why = exited();
      if (why) return reject(new Error(why));
      if (Date.now() > deadline) return reject(new Error(`PgBouncer did not listen on 127.0.0.1:${port} in time`));
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

export async function startPgBouncer(opts: PgBouncerOptions): Promise<PgBouncer> {
  const ids = postgresIds();
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-pgbouncer-'));
  const auth = opts.authType ?? 'scram-sha-256';
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: opts.listenPort,
    unix_socket_dir: '',
    auth_type: auth,
    auth_file: join(dir, 'userlist.txt'),
    pool_mode: 'transaction',
    default_pool_size: opts.poolSize,
    max_db_connections: opts.poolSize,
    min_pool_size: 0,
    reserve_pool_size: 0,
    max_client_conn: opts.maxClientConn ?? 12000,
    logfile: join(dir, 'pgbouncer.log'),
    pidfile: join(dir, 'pgbouncer.pid'),
    log_connections: 0,
    log_disconnections: 0,
    log_pooler_errors: 1,
    stats_period: 3600,
    server_login_retry: 1,
    ...(opts.maxPreparedStatements !== undefined ? { max_prepared_statements: opts.maxPreparedStatements } : {}),
    ...opts.settings,
  };
  const ini =
    `[databases]\n* = host=${opts.targetHost ?? '127.0.0.1'} port=${opts.targetPort}\n\n[pgbouncer]\n` +
    Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}\n`)
      .join('');
  writeFileSync(join(dir, 'pgbouncer.ini'), ini);
  writeFileSync(join(dir, 'userlist.txt'), userlist(opts.users), { mode: 0o600 });
  if (ids) {
    for (const f of ['', 'pgbouncer.ini', 'userlist.txt']) chownSync(join(dir, f), ids.uid, ids.gid);
  }

  const [cmd, args] = commandLine(opts.bin, [join(dir, 'pgbouncer.ini')]);
  const child: ChildProcess = spawn(cmd, args, {
    uid: ids?.uid,
    gid: ids?.gid,
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = `PgBouncer exited (code ${code}, signal ${signal})`;
      resolve();
    });
  });
  const readLog = (): string => {
    const f = join(dir, 'pgbouncer.log');
    return output + (existsSync(f) ? readFileSync(f, 'utf8') : '');
  };
  const kill = (): void => {
    if (exitInfo === undefined && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  try {
    await waitForPort(opts.listenPort, Date.now() + (opts.startTimeoutMs ?? 15_000), () =>
      exitInfo ? `${exitInfo} before listening:\n${readLog().slice(-2000)}` : undefined,
    );
  } catch (e) {
    kill();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    port: opts.listenPort,
    pid: child.pid!,
    dir,
    version: opts.bin.version,
    log: readLog,
    kill,
    async stop(timeoutMs = 5000): Promise<void> {
      if (exitInfo === undefined) {
        child.kill('SIGINT');
        const t = setTimeout(kill, timeoutMs);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
