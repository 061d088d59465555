// Shared pieces for integration tests: a real PostgreSQL cluster per test file, password files
// like mounted Secrets, a proxy started in-process, and real clients (node-postgres, psql, pgbench).
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { freePort } from '../../hack/dbproxyProcess.js';
import { type PgCluster, type PgUser, pgBindir, startPostgres } from '../../hack/postgres.js';
import { parseConfig, type ProxyConfigInput } from '../../proxy/contract/config.js';
import { ProxyServer } from '../../proxy/proxyServer.js';

export const USERS: PgUser[] = [
  { name: 'app', password: 'app-secret', auth: 'scram-sha-256' },
  { name: 'legacy', password: 'legacy-secret', auth: 'md5' },
  { name: 'boss', password: 'boss-secret', auth: 'scram-sha-256', superuser: true },
];

// One port finder for tests, benchmarks and hack/ (which must not import test/).
export { freePort };

export async function startCluster(opts: { maxConnections?: number; users?: PgUser[] } = {}): Promise<PgCluster> {
  return startPostgres({ port: await freePort(), users: opts.users ?? USERS, maxConnections: opts.maxConnections ?? 40 });
}

/** Password files laid out like a mounted Kubernetes Secret, one file per user. */
export function writePasswordFiles(users: PgUser[] = USERS): { dir: string; users: Array<{ name: string; passwordFile: string }> } {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-secrets-'));
  return {
    dir,
    users: users.map((u) => {
      const file = join(dir, u.name);
      writeFileSync(file, u.password + '\n');
      return { name: u.name, passwordFile: file };
    }),
  };
}

export interface RunningProxy {
  server: ProxyServer;
  port: number;
  adminPort: number;
  /** The read-only endpoint's port, when the config has readers. */
  readersPort?: number;
  logs: string[];
  stop(): Promise<void>;
}

export async function startProxy(cluster: PgCluster, overrides: Partial<ProxyConfigInput> = {}): Promise<RunningProxy> {
  const files = writePasswordFiles();
  const config = parseConfig({
    listen: '127.0.0.1:0',
    adminListen: '127.0.0.1:0',
    targets: [`127.0.0.1:${cluster.port}`],
    users: files.users,
    clientAuth: { failureDelay: '50ms' },
    healthCheck: { interval: '200ms' },
    adminUsers: ['boss'],
    ...overrides,
  });
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
  const server = await ProxyServer.create({ config, log });
  const { port, adminPort, readersPort } = await server.start();
  try {
    await server.whenReady();
  } catch (e) {
    // A proxy that never found its writer still holds listeners and timers: close it, or the test
    // run never exits. The error says why (with the proxy's own log lines).
    await server.shutdown(0);
    throw new Error(`${(e as Error).message}\n${logs.slice(-5).join('')}`);
  }
  return { server, port, adminPort, ...(readersPort !== undefined ? { readersPort } : {}), logs, stop: () => server.shutdown(2000) };
}

export function client(port: number, user = 'app', extra: Partial<pg.ClientConfig> = {}): pg.Client {
  const password = USERS.find((u) => u.name === user)?.password ?? 'nope';
  return new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres', ...extra });
}

export async function connected(port: number, user = 'app', extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = client(port, user, extra);
  await c.connect();
  return c;
}

/** Backend connections the proxy holds on the server, excluding its health check. */
export function proxyBackendCount(cluster: PgCluster): number {
  return Number(
    cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename <> 'postgres' AND application_name <> 'dbproxy health check'"),
  );
}

/** Every connection the proxy holds on the server, its health check included. */
export function allProxyConnections(cluster: PgCluster): number {
  return Number(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename <> 'postgres'"));
}

export function pgBin(name: string): string {
  return join(pgBindir(), name);
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking the event loop (the proxy under test lives in this process). */
export function run(cmd: string, args: string[], env: Record<string, string> = {}, input?: string): Promise<CommandResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** psql through the proxy, asynchronously: the proxy under test shares this process's event loop. */
export function psql(
  port: number,
  sql: string,
  opts: { user?: string; password?: string; database?: string; args?: string[]; input?: string; env?: Record<string, string> } = {},
): Promise<CommandResult> {
  const user = opts.user ?? 'app';
  const args = ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', user, '-d', opts.database ?? 'postgres', ...(opts.args ?? [])];
  if (sql) args.push('-c', sql);
  return run(pgBin('psql'), args, { PGPASSWORD: opts.password ?? USERS.find((u) => u.name === user)?.password ?? '', PGCONNECT_TIMEOUT: '10', ...opts.env }, opts.input);
}

/** Polls until `check` returns a truthy value; fails with `what` after `timeoutMs`. */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function adminQuery(port: number, sql: string, user = 'boss'): Promise<pg.QueryResult> {
  const c = await connected(port, user, { database: 'dbproxy' });
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}
