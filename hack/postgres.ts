// Starts throwaway PostgreSQL 15 clusters on loopback for tests, benchmarks and local runs.
// Real Debian binaries (initdb, pg_ctl); when run as root the server runs as the `postgres` user,
// because PostgreSQL refuses to run as root.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, chownSync, rmSync, appendFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PgUser {
  name: string;
  password: string;
  /** How the server authenticates this user over TCP; cert: a client certificate over TLS only (hostssl). */
  auth?: 'scram-sha-256' | 'md5' | 'cert';
  superuser?: boolean;
}

export interface PgClusterOptions {
  port: number;
  users: PgUser[];
  maxConnections?: number;
  /** Extra postgresql.conf lines. */
  settings?: Record<string, string | number>;
  /** Where to keep the data directory; a new temp dir by default. */
  baseDir?: string;
}

export interface PgCluster {
  port: number;
  host: string;
  dataDir: string;
  socketDir: string;
  bindir: string;
  /** Runs SQL as the postgres superuser over the Unix socket and returns psql's unaligned output. */
  psql(sql: string, database?: string): string;
  stop(mode?: 'fast' | 'immediate'): void;
  start(): void;
  destroy(): void;
}

export function pgBindir(): string {
  const fromEnv = process.env.PG_BINDIR;
  if (fromEnv) return fromEnv;
  for (const v of ['15', '16', '17']) {
    const dir = `/usr/lib/postgresql/${v}/bin`;
    if (existsSync(join(dir, 'initdb'))) return dir;
  }
  throw new Error('PostgreSQL server binaries not found: install postgresql-15 (apt-get install postgresql-15) or set PG_BINDIR');
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

function pgIds(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

function run(bin: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
  const ids = pgIds();
  const r = spawnSync(bin, args, {
    input: opts.input,
    uid: ids?.uid,
    gid: ids?.gid,
    env: { ...process.env, LC_ALL: 'C', PGTZ: 'UTC' },
    cwd: '/',
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${bin} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

/** Like run(), without blocking the event loop: for timing-sensitive steps (stop, promote). */
export function runAsync(bin: string, args: string[]): Promise<void> {
  const ids = pgIds();
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { uid: ids?.uid, gid: ids?.gid, cwd: '/', env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${bin} ${args.join(' ')} failed (${code}): ${stderr}`))));
  });
}

function chownTree(path: string): void {
  const ids = pgIds();
  if (ids) execFileSync('chown', ['-R', `${ids.uid}:${ids.gid}`, path]);
}

const quoteIdent = (s: string): string => `"${s.replaceAll('"', '""')}"`;
const quoteLiteral = (s: string): string => `'${s.replaceAll("'", "''")}'`;

export function startPostgres(opts: PgClusterOptions): PgCluster {
  const bindir = pgBindir();
  const base = opts.baseDir ?? mkdtempSync(join(tmpdir(), 'dbproxy-pg-'));
  const dataDir = join(base, 'data');
  const socketDir = base;
  chownTree(base);
  run(join(bindir, 'initdb'), ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C']);

  const settings: Record<string, string | number> = {
    listen_addresses: "'127.0.0.1'",
    port: opts.port,
    unix_socket_directories: quoteLiteral(socketDir),
    max_connections: opts.maxConnections ?? 100,
    password_encryption: "'scram-sha-256'",
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    shared_buffers: "'64MB'",
    log_min_messages: "'warning'",
    logging_collector: 'off',
    ...opts.settings,
  };
  appendFileSync(join(dataDir, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(''));
  const hba = [
    'local all all trust',
    'local replication all trust',
    'host replication all 127.0.0.1/32 trust',
    ...opts.users.map((u) => `${u.auth === 'cert' ? 'hostssl' : 'host'} all ${quoteIdent(u.name)} 127.0.0.1/32 ${u.auth ?? 'scram-sha-256'}`),
    'host all all 127.0.0.1/32 reject',
  ];
  writeFileSync(join(dataDir, 'pg_hba.conf'), hba.join('\n') + '\n');
  chownTree(base);

  const cluster: PgCluster = {
    port: opts.port,
    host: '127.0.0.1',
    dataDir,
    socketDir,
    bindir,
    psql(sql: string, database = 'postgres'): string {
      return run(join(bindir, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', socketDir, '-p', String(opts.port), '-U', 'postgres', '-d', database], {
        input: sql,
      }).trim();
    },
    start(): void {
      run(join(bindir, 'pg_ctl'), ['-D', dataDir, '-l', join(base, 'server.log'), '-w', '-t', '60', 'start']);
    },
    stop(mode: 'fast' | 'immediate' = 'fast'): void {
      run(join(bindir, 'pg_ctl'), ['-D', dataDir, '-m', mode, '-w', 'stop'], { allowFail: true });
    },
    destroy(): void {
      cluster.stop('immediate');
      if (!opts.baseDir) rmSync(base, { recursive: true, force: true });
    },
  };
  cluster.start();
  for (const u of opts.users) {
    // md5 users need an md5-hashed password stored, SCRAM users a SCRAM verifier.
    const enc = u.auth === 'md5' ? 'md5' : 'scram-sha-256';
    cluster.psql(
      `SET password_encryption = '${enc}'; CREATE ROLE ${quoteIdent(u.name)} LOGIN ${u.superuser ? 'SUPERUSER' : ''} PASSWORD ${quoteLiteral(u.password)};` +
        ` GRANT ALL ON SCHEMA public TO ${quoteIdent(u.name)};`,
    );
  }
  return cluster;
}

export interface StandbyOptions {
  port: number;
  /** Extra postgresql.conf lines for the standby. */
  settings?: Record<string, string | number>;
}

/**
 * A streaming-replication standby of `primary` (pg_basebackup -R), started and following.
 * The returned cluster's promote() turns it into a primary.
 */
export function startStandby(primary: PgCluster, opts: StandbyOptions): PgCluster & { promote(): void } {
  const base = mkdtempSync(join(tmpdir(), 'dbproxy-pg-standby-'));
  const dataDir = join(base, 'data');
  chownTree(base);
  run(join(primary.bindir, 'pg_basebackup'), ['-h', primary.socketDir, '-p', String(primary.port), '-U', 'postgres', '-D', dataDir, '-R', '-X', 'stream', '--no-sync', '-c', 'fast']);
  const settings: Record<string, string | number> = {
    port: opts.port,
    unix_socket_directories: quoteLiteral(base),
    hot_standby: 'on',
    ...opts.settings,
  };
  appendFileSync(join(dataDir, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(''));
  chownTree(base);
  const cluster = {
    port: opts.port,
    host: '127.0.0.1',
    dataDir,
    socketDir: base,
    bindir: primary.bindir,
    psql(sql: string, database = 'postgres'): string {
      return run(join(primary.bindir, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', base, '-p', String(opts.port), '-U', 'postgres', '-d', database], { input: sql }).trim();
    },
    start(): void {
      run(join(primary.bindir, 'pg_ctl'), ['-D', dataDir, '-l', join(base, 'server.log'), '-w', '-t', '60', 'start']);
    },
    stop(mode: 'fast' | 'immediate' = 'fast'): void {
      run(join(primary.bindir, 'pg_ctl'), ['-D', dataDir, '-m', mode, '-w', 'stop'], { allowFail: true });
    },
    destroy(): void {
      cluster.stop('immediate');
      rmSync(base, { recursive: true, force: true });
    },
    promote(): void {
      run(join(primary.bindir, 'pg_ctl'), ['-D', dataDir, '-w', 'promote']);
    },
  };
  cluster.start();
  return cluster;
}

export function serverLog(cluster: PgCluster): string {
  const p = join(cluster.socketDir, 'server.log');
  return existsSync(p) ? readFileSync(p, 'utf8') : '';
}

// CLI for local use: `npx node dist/hack/postgres.js start PORT [user:password ...]`, and
// `... stop DATADIR` (pg_ctl refuses to run as root; this runs it as the server's user).
if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  const [command, arg, ...rest] = process.argv.slice(2);
  if (command === 'start') {
    const users = rest.map((s) => {
      const [name, password] = s.split(':');
      return { name: name!, password: password ?? name! };
    });
    const c = startPostgres({ port: Number(arg ?? 15432), users: users.length ? users : [{ name: 'app', password: 'app' }] });
    process.stdout.write(`PostgreSQL on 127.0.0.1:${c.port}, data in ${c.dataDir}\nstop with: npx node ${process.argv[1]} stop ${c.dataDir}\n`);
  } else if (command === 'stop' && arg) {
    run(join(pgBindir(), 'pg_ctl'), ['-D', arg, '-m', 'fast', '-w', 'stop']);
  } else {
    process.stderr.write('usage: postgres.js start PORT [user:password ...] | stop DATADIR\n');
    process.exitCode = 2;
  }
}
