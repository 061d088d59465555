// The dbproxy CLI as a benchmark runs it (hack/dbproxyProcess.ts starts it, as in a pod): the
// config for a target and its standbys, password files beside it, and its resident memory.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startDbproxyProcess, type DbproxyProcess } from '../../hack/dbproxyProcess.js';
import type { ProxyConfigInput } from '../../proxy/contract/config.js';

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

/** The process, its folder (config, password files, log) removed by stop(). */
export interface Dbproxy extends DbproxyProcess {
  /** The read-only listener's port, with DbproxyOptions.readers. */
  readersPort?: number;
  /** VmRSS from /proc/PID/status, in bytes. */
  rss(): number;
}

export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export async function startDbproxy(o: DbproxyOptions): Promise<Dbproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-bench-'));
  const readersPort = o.readers ? await freePort() : undefined;
  const users = o.users.map((u) => {
    const passwordFile = join(dir, `${u.name}.password`);
    writeFileSync(passwordFile, `${u.password}\n`, { mode: 0o600 });
    return { name: u.name, passwordFile };
  });
  const config: Omit<ProxyConfigInput, 'listen' | 'adminListen'> = {
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
  let proxy: DbproxyProcess;
  try {
    proxy = await startDbproxyProcess(config, {
      dir,
      cli: o.cli,
      ...(o.expectPool !== undefined ? { expectPool: o.expectPool } : {}),
      ...(o.startTimeoutMs !== undefined ? { startTimeoutMs: o.startTimeoutMs } : {}),
      // BENCH_PROXY_NODE_ARGS: Node flags for the proxy process only, e.g. "--cpu-prof
      // --cpu-prof-dir=DIR" to profile it under load.
      nodeArgs: (process.env.BENCH_PROXY_NODE_ARGS ?? '').split(' ').filter(Boolean),
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    ...proxy,
    ...(readersPort !== undefined ? { readersPort } : {}),
    rss: () => rssOf(proxy.pid),
    async stop(timeoutMs = 10_000): Promise<void> {
      await proxy.stop(timeoutMs);
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
