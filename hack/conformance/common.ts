// What the drivers' conformance runs (pgx's Go suite, asyncpg's Python suite) share: loopback
// ports, the known-differences files, and dbproxy started as in a pod.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProxyConfigInput } from '../../proxy/contract/config.js';
import { repoRoot } from '../repoRoot.js';

/** A free loopback port below the ephemeral range (the harness's rule: 32768+ may be a client's source port). */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 300; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((res) => {
      const s = net.createServer();
      s.once('error', () => res(false));
      s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
    });
    if (free) return port;
  }
  throw new Error('no free loopback port below 32768');
}

export interface Known {
  /** `package:Test/sub`; `*` matches any run of characters. */
  pattern: RegExp;
  text: string;
  klass: string;
  cause: string;
  /** When set, the failure matches only if the test's output contains this. */
  output?: string;
}

/**
 * A known-differences file of hack/conformance/, one line each:
 * `name  class  cause  [| text the failure output must contain]`, # comments.
 */
export function readKnown(file: string): Known[] {
  const f = join(repoRoot(), 'hack', 'conformance', file);
  if (!existsSync(f)) return [];
  return readFileSync(f, 'utf8')
    .split('\n')
    .map((l) => l.replace(/(^|\s)#.*/, '').trim())
    .filter(Boolean)
    .map((l) => {
      const [head, output] = l.split(/\s+\|\s+/, 2);
      const [text, klass, cause] = head!.split(/\s+/);
      const pattern = new RegExp(`^${text!.replace(/[.+?^${}()[\]\\]/g, '\\$&').replaceAll('*', '.*')}$`);
      return { pattern, text: text!, klass: klass ?? '', cause: cause ?? '', output: output?.trim() };
    });
}

/** The line of `known` that explains a failure of `name` with this output, if any. */
export function knownFor(known: Known[], name: string, output: readonly string[]): Known | undefined {
  return known.find((k) => k.pattern.test(name) && (k.output === undefined || output.some((l) => l.includes(k.output!))));
}

export interface ProxyProcess {
  port: number;
  dir: string;
  logFile: string;
  stop(): Promise<void>;
  /** SIGKILL, for an emergency exit. */
  kill(): void;
}

/**
 * dbproxy as it runs in a pod: `node dist/proxy/cli/dbproxy.js proxy --config FILE`, with the
 * given config (listen and adminListen filled in); resolves once /stats says it is ready with a
 * pool of `expectPool` server connections.
 */
export async function startProxyProcess(config: Omit<ProxyConfigInput, 'listen' | 'adminListen'>, opts: { dir?: string; expectPool: number }): Promise<ProxyProcess> {
  const cli = join(repoRoot(), 'dist', 'proxy', 'cli', 'dbproxy.js');
  if (!existsSync(cli)) throw new Error(`${cli} missing: run npm run build`);
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'dbproxy-conformance-proxy-'));
  const port = await freePort();
  const adminPort = await freePort();
  const configFile = join(dir, 'dbproxy.yaml');
  writeFileSync(configFile, JSON.stringify({ listen: `127.0.0.1:${port}`, adminListen: `127.0.0.1:${adminPort}`, ...config }, null, 2));
  const logFile = join(dir, 'dbproxy.log');
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = spawn(process.execPath, [cli, 'proxy', '--config', configFile], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  closeSync(fd);
  let exited: string | undefined;
  const done = new Promise<void>((res) =>
    child.once('exit', (code, signal) => {
      exited = `dbproxy exited (code ${code}, signal ${signal})`;
      res();
    }),
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`${exited} while starting:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`dbproxy not ready in 30 s:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
    }
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/stats`, { signal: AbortSignal.timeout(3000) });
      const s = (await r.json()) as { ready: boolean; pool: { maxDatabaseConnections: number | null } };
      if (s.ready && s.pool.maxDatabaseConnections !== null) {
        if (s.pool.maxDatabaseConnections !== opts.expectPool) throw new Error(`dbproxy pool is ${s.pool.maxDatabaseConnections}, expected ${opts.expectPool}`);
        break;
      }
    } catch (e) {
      if ((e as Error).message.startsWith('dbproxy pool is')) {
        child.kill('SIGKILL');
        throw e;
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    port,
    dir,
    logFile,
    kill: () => void (exited || child.kill('SIGKILL')),
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await done;
        clearTimeout(t);
      }
    },
  };
}
