// dbproxy as it runs in a pod, `node dist/proxy/cli/dbproxy.js proxy --config FILE`, as a child
// process of a benchmark or a conformance run: the config written to a folder of its own, the
// log beside it, started once /stats says it is ready with the pool size the caller expects.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { ProxyConfigInput } from '../proxy/contract/config.js';
import type { ProxyStats } from '../proxy/contract/stats.js';
import { repoRoot } from './repoRoot.js';

/**
 * A free loopback port below the ephemeral range (32768+ on Linux): a port the kernel hands out
 * there could be taken meanwhile as the source port of some client's connection.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
    if (attempt > 200) throw new Error('no free loopback port below 32768');
  }
}

export interface DbproxyProcessOptions {
  /** Where the config and the log go; the caller owns (and removes) it. */
  dir: string;
  /** The pool size the config must give: start fails when /stats disagrees. */
  expectPool?: number;
  startTimeoutMs?: number;
  /** Node flags for the proxy process only (e.g. --cpu-prof, which Node refuses in NODE_OPTIONS). */
  nodeArgs?: string[];
  /** The CLI to run. Default: this checkout's dist/proxy/cli/dbproxy.js. */
  cli?: string;
}

export interface DbproxyProcess {
  port: number;
  adminPort: number;
  pid: number;
  /** DbproxyProcessOptions.dir: the config and the log. */
  dir: string;
  /** The config as written (listen and adminListen filled in). */
  config: ProxyConfigInput;
  logFile: string;
  stats(): Promise<ProxyStats>;
  logTail(bytes?: number): string;
  /** Why the process ended; undefined while it runs. */
  exitStatus(): string | undefined;
  /** SIGTERM, then SIGKILL after timeoutMs. */
  stop(timeoutMs?: number): Promise<void>;
  /** SIGKILL, for an emergency exit. */
  kill(): void;
}

/** Starts the CLI with `config` (listen and adminListen on free loopback ports) and waits until it is ready. */
export async function startDbproxyProcess(config: Omit<ProxyConfigInput, 'listen' | 'adminListen'>, o: DbproxyProcessOptions): Promise<DbproxyProcess> {
  const cli = o.cli ?? join(repoRoot(), 'dist', 'proxy', 'cli', 'dbproxy.js');
  if (!existsSync(cli)) throw new Error(`${cli} missing: run npm run build`);
  const port = await freePort();
  const adminPort = await freePort();
  const written: ProxyConfigInput = { listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${adminPort}`, ...config };
  const configFile = join(o.dir, 'dbproxy.yaml');
  // JSON is YAML.
  writeFileSync(configFile, JSON.stringify(written, null, 2));
  const logFile = join(o.dir, 'dbproxy.log');
  const logFd = openSync(logFile, 'a');
  const child: ChildProcess = spawn(process.execPath, [...(o.nodeArgs ?? []), cli, 'proxy', '--config', configFile], {
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
    if (exitInfo) throw new Error(`${exitInfo} while starting:\n${logTail()}`);
    if (Date.now() > deadline) {
      kill();
      throw new Error(`dbproxy not ready in time (${last}):\n${logTail()}`);
    }
    let s: ProxyStats | undefined;
    try {
      s = await stats();
    } catch (e) {
      last = (e as Error).message;
    }
    if (s?.ready && s.pool.maxDatabaseConnections !== null) {
      if (o.expectPool !== undefined && s.pool.maxDatabaseConnections !== o.expectPool) {
        kill();
        throw new Error(
          `dbproxy pool is ${s.pool.maxDatabaseConnections}, expected ${o.expectPool} (max_connections ${s.pool.targetMaxConnections}, maxConnectionsPercent ${config.pool?.maxConnectionsPercent ?? 'default'})`,
        );
      }
      break;
    }
    if (s) last = `ready=${s.ready}`;
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    port,
    adminPort,
    pid: child.pid!,
    dir: o.dir,
    config: written,
    logFile,
    stats,
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
    },
  };
}
