// Runs the dbproxy CLI (`dbproxy proxy --config FILE`) as a child process, the way it runs in a
// pod, and reads its /stats and its resident memory.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProxyConfigInput } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';

import { freePort } from '../support/harness.js';

export { freePort };

export interface DbproxyOptions {
  /** dist/proxy/cli/dbproxy.js */
  cli: string;
  targetPort: number;
  /** Further targets after the writer (standbys): the health check tells their roles apart. */
  standbyPorts?: number[];
  /**
   * A read-only listener on a port of its own (config readers): reads from the healthy standbys
   * among the targets, a transaction at a time.
   */
  readers?: { maxReplicationLag?: string; fallbackToWriter?: boolean };
  users: Array<{ name: string; password: string }>;
  maxConnectionsPercent: number;
  maxClientConnections?: number;
  /** The pool size the config must give; start() fails when /stats disagrees. */
  expectPool?: number;
  startTimeoutMs?: number;
}

export interface Dbproxy {
  port: number;
  adminPort: number;
  /** The read-only listener's port, with DbproxyOptions.readers. */
  readersPort?: number;
  pid: number;
  /** Its config, password files and log. */
  dir: string;
  config: ProxyConfigInput;
  stats(): Promise<ProxyStats>;
  /** VmRSS from /proc/PID/status, in bytes. */
  rss(): number;
  logTail(bytes?: number): string;
  /** Why the process ended, while it runs undefined. */
  exitStatus(): string | undefined;
  stop(timeoutMs?: number): Promise<void>;
  kill(): void;
}

export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export async function startDbproxy(o: DbproxyOptions): Promise<Dbproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-bench-'));
  const port = await freePort();
  const adminPort = await freePort();
  const readersPort = o.readers ? await freePort() : undefined;
  const users = o.users.map((u) => {
    const passwordFile = join(dir, `${u.name}.password`);
    writeFileSync(passwordFile, `${u.password}\n`, { mode: 0o600 });
    return { name: u.name, passwordFile };
  });
  const config: ProxyConfigInput = {
    listen: `127.0.0.1:${port}`,
    adminListen: `127.0.0.1:${adminPort}`,
    targets: [`127.0.0.1:${o.targetPort}`, ...(o.standbyPorts ?? []).map((p) => `127.0.0.1:${p}`)],
    ...(o.readers ? { readers: { listen: `127.0.0.1:${readersPort}`, ...o.readers } } : {}),
    users,
    pool: {
      maxConnectionsPercent: o.maxConnectionsPercent,
      maxClientConnections: o.maxClientConnections ?? 12_000,
    },
    healthCheck: { interval: '1s' },
    shutdownGracePeriod: '3s',
    logLevel: 'warn',
  };
  const configFile = join(dir, 'dbproxy.yaml');
  // JSON is YAML.
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const logFile = join(dir, 'dbproxy.log');
  const logFd = openSync(logFile, 'a');
  // BENCH_PROXY_NODE_ARGS: Node flags for the proxy process only, e.g. "--cpu-prof --cpu-prof-dir=DIR"
  // to profile it under load (Node refuses --cpu-prof in NODE_OPTIONS).
  const nodeArgs = (process.env.BENCH_PROXY_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, o.cli, 'proxy', '--config', configFile], {
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  closeSync(logFd);
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitInfo = `dbproxy exited (code ${code}, signal ${signal})`;
      resolve();
    }),
  );
  const logTail = (bytes = 3000): string => (existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-bytes) : '');
  const kill = (): void => {
    if (exitInfo === undefined) child.kill('SIGKILL');
  };
  const stats = async (): Promise<ProxyStats> => {
    const r = await fetch(`http://127.0.0.1:${adminPort}/stats`, { signal: AbortSignal.timeout(5000) });
    if (!r.ok) throw new Error(`/stats: HTTP ${r.status}`);
    return (await r.json()) as ProxyStats;
  };

  const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
  let last = '';
  for (;;) {
    if (exitInfo) {
      const tail = logTail();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`${exitInfo} while starting:\n${tail}`);
    }
    if (Date.now() > deadline) {
      kill();
      const tail = logTail();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`dbproxy not ready in time (${last}):\n${tail}`);
    }
    try {
      const s = await stats();
      if (s.ready && s.pool.maxDatabaseConnections !== null) {
        if (o.expectPool !== undefined && s.pool.maxDatabaseConnections !== o.expectPool) {
          kill();
          rmSync(dir, { recursive: true, force: true });
          throw new Error(
            `dbproxy pool is ${s.pool.maxDatabaseConnections}, expected ${o.expectPool} (max_connections ${s.pool.targetMaxConnections}, maxConnectionsPercent ${o.maxConnectionsPercent})`,
          );
        }
        break;
      }
      last = `ready=${s.ready}`;
    } catch (e) {
      if ((e as Error).message.startsWith('dbproxy pool is')) throw e;
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    port,
    adminPort,
    ...(readersPort !== undefined ? { readersPort } : {}),
    pid: child.pid!,
    dir,
    config,
    stats,
    rss: () => rssOf(child.pid!),
    logTail,
    exitStatus: () => exitInfo,
    kill,
    async stop(timeoutMs = 10_000): Promise<void> {
      if (exitInfo === undefined) {
        child.kill('SIGTERM');
        const t = setTimeout(kill, timeoutMs);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Samples /stats while a run goes on: the most backends, pinned and waiting clients seen. */
export class StatsSampler {
  maxDatabaseConnections = 0;
  maxPinned = 0;
  maxWaiting = 0;
  maxBorrowed = 0;
  borrowTimeoutsAtStart: number | undefined;
  borrowTimeouts = 0;
  /** Most sessions seen pinned at once, by reason (/stats pinsByReason is a gauge). */
  pinsByReason: Record<string, number> = {};
  errors = 0;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = false;

  constructor(private readonly proxy: Dbproxy, private readonly everyMs = 250) {}

  private async sample(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      const s = await this.proxy.stats();
      this.maxDatabaseConnections = Math.max(this.maxDatabaseConnections, s.databaseConnections);
      this.maxPinned = Math.max(this.maxPinned, s.pinned);
      this.maxWaiting = Math.max(this.maxWaiting, s.waiting);
      this.maxBorrowed = Math.max(this.maxBorrowed, s.borrowed);
      this.borrowTimeoutsAtStart ??= s.borrowTimeouts;
      this.borrowTimeouts = s.borrowTimeouts - this.borrowTimeoutsAtStart;
      for (const [reason, n] of Object.entries(s.pinsByReason)) {
        this.pinsByReason[reason] = Math.max(this.pinsByReason[reason] ?? 0, n);
      }
    } catch {
      this.errors++;
    } finally {
      this.inFlight = false;
    }
  }

  async start(): Promise<void> {
    await this.sample();
    this.timer = setInterval(() => void this.sample(), this.everyMs);
  }

  get pins(): number {
    return Object.values(this.pinsByReason).reduce((a, b) => a + b, 0);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inFlight) await new Promise((r) => setTimeout(r, 10));
    await this.sample();
  }
}
