// The hot-path benchmark: pgbench -S through dbproxy and PgBouncer 1.24 (transaction mode), the same
// pool, in one run and interleaved, for -M simple / extended / prepared at 10, 100 and 1,000
// clients. Per cell: TPS, mean latency, and each proxy's CPU per transaction (user and sys from
// /proc/PID/stat). CPU is taken around a fixed transaction count (pgbench -t) and by difference
// between a short and a long run with the same clients, so logins and connection setup cancel out:
// (CPU(long) - CPU(short)) / (transactions(long) - transactions(short)).
//
// `make bench` runs it in full; `make bench-quick` (BENCH_QUICK=1) runs a smaller version in about a
// minute for iterating. Environment: BENCH_CLIENTS ("10,100,1000"), BENCH_MODES
// ("simple,extended,prepared"), BENCH_POOL (20), BENCH_TXNS (transactions measured per cell,
// default 60000; quick 12000), BENCH_ROUNDS (1; more repeats each cell and keeps the median),
// BENCH_TARGETS ("dbproxy,pgbouncer"; add "pipe" for a bare Node socket pipe, one server
// connection per client, at up to 100 clients: the floor for any Node proxy), BENCH_BASELINE_CLI (a
// dist/proxy/cli/dbproxy.js of another build, e.g. a worktree of an older commit, measured as a
// further target "dbproxy <BENCH_BASELINE_NAME or 'before'>": a before/after table in one run).
// Writes .tmp/cpu-bench.md and .tmp/cpu-bench.json.
import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type PgBouncer, pgBouncer124, startPgBouncer } from '../../hack/pgbouncer.js';
import { type PgCluster, pgBindir, startPostgres } from '../../hack/postgres.js';
import { repoRoot } from '../../hack/repoRoot.js';
import { type Dbproxy, freePort, startDbproxy } from './dbproxyProcess.js';
import { type PgbenchResult, type QueryMode, runPgbench, totalErrors } from './pgbench.js';

const quick = process.env.BENCH_QUICK === '1';
const list = (name: string, def: string): string[] => (process.env[name] ?? def).split(',').map((s) => s.trim()).filter(Boolean);
const int = (name: string, def: number): number => {
  const v = Number(process.env[name] ?? def);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer`);
  return v;
};
const cfg = {
  clients: list('BENCH_CLIENTS', quick ? '10,100' : '10,100,1000').map(Number),
  modes: list('BENCH_MODES', 'simple,extended,prepared') as QueryMode[],
  pool: int('BENCH_POOL', 20),
  txns: int('BENCH_TXNS', quick ? 12_000 : 60_000),
  rounds: int('BENCH_ROUNDS', 1),
  targets: list('BENCH_TARGETS', 'dbproxy,pgbouncer'),
  threads: 2,
  scale: 10,
};
const USER = { name: 'bench', password: 'bench-secret-1' };
const started = Date.now();
const log = (m: string): void => void process.stderr.write(`[cpu-bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${m}\n`);

/**
 * User and system CPU of a process so far, in microseconds. /proc/PID/stat counts in clock ticks
 * (10 ms), too coarse for a few hundred milliseconds of work; /proc/PID/schedstat has the total in
 * nanoseconds. The total comes from schedstat, split by the ticks' user/system shares.
 */
function cpuOf(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may contain spaces.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const userTicks = Number(f[11]);
  const sysTicks = Number(f[12]);
  // Every thread's (Node runs garbage collection and I/O helpers in threads of their own).
  let totalNs = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      totalNs += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended meanwhile: its time is in the process's ticks, not worth more.
    }
  }
  const totalUs = totalNs / 1000;
  const userShare = userTicks + sysTicks > 0 ? userTicks / (userTicks + sysTicks) : 0.5;
  return { user: totalUs * userShare, sys: totalUs * (1 - userShare) };
}

interface Target {
  name: string;
  port: number;
  pid: number;
  /** Most clients it can take (the bare pipe opens a server connection per client). */
  maxClients?: number;
  stop(): Promise<void>;
}

interface Measure {
  tps: number;
  latencyMs: number;
  cpuUser: number;
  cpuSys: number;
  errors: number;
  note?: string;
}

const running = new Set<ChildProcess>();

async function pgbench(port: number, mode: QueryMode, clients: number, perClient: number): Promise<PgbenchResult> {
  return runPgbench({
    bindir: pgBindir(),
    port,
    user: USER.name,
    password: USER.password,
    database: 'postgres',
    mode,
    clients,
    threads: cfg.threads,
    seconds: 120,
    transactions: perClient,
    running,
  });
}

/** One cell for one target: a short and a long run with the same clients; CPU per transaction by difference. */
async function measure(t: Target, mode: QueryMode, clients: number): Promise<Measure> {
  const longPer = Math.max(4, Math.ceil(cfg.txns / clients));
  // Logins only, near enough: what they cost is taken out of the long run.
  const shortPer = 1;
  const a0 = cpuOf(t.pid);
  const short = await pgbench(t.port, mode, clients, shortPer);
  const a1 = cpuOf(t.pid);
  const long = await pgbench(t.port, mode, clients, longPer);
  const a2 = cpuOf(t.pid);
  const errors = totalErrors(short) + totalErrors(long);
  const dTx = (long.processed ?? 0) - (short.processed ?? 0);
  const user = (a2.user - a1.user - (a1.user - a0.user)) / dTx;
  const sys = (a2.sys - a1.sys - (a1.sys - a0.sys)) / dTx;
  return {
    tps: long.tps ?? 0,
    latencyMs: long.latencyMs ?? 0,
    cpuUser: user,
    cpuSys: sys,
    errors,
    ...(errors > 0 ? { note: long.firstError ?? short.firstError } : {}),
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  const bin = pgBouncer124();
  if (cfg.targets.includes('pgbouncer') && !bin) throw new Error('PgBouncer 1.24 not found: run bash hack/install-bench-deps.sh (make bench does)');
  // 100 connections for the poolers' budgets (pool + 1 of 100 %); the bare pipe needs one per client.
  const pg: PgCluster = startPostgres({ port: await freePort(), users: [{ ...USER, auth: 'scram-sha-256' }], maxConnections: 100, settings: { shared_buffers: "'256MB'", superuser_reserved_connections: 0 } });
  const targets: Target[] = [];
  try {
    execFileSync(join(pgBindir(), 'pgbench'), ['-i', '-q', '-s', String(cfg.scale), '-h', '127.0.0.1', '-p', String(pg.port), '-U', USER.name, 'postgres'], {
      env: { ...process.env, PGPASSWORD: USER.password },
      stdio: 'pipe',
    });
    pg.psql('VACUUM ANALYZE; CHECKPOINT;');
    if (cfg.targets.includes('dbproxy')) {
      const p: Dbproxy = await startDbproxy({
        cli: join(repoRoot(), 'dist/proxy/cli/dbproxy.js'),
        targetPort: pg.port,
        users: [USER],
        maxConnectionsPercent: cfg.pool + 1,
        expectPool: cfg.pool,
        maxClientConnections: 5000,
      });
      targets.push({ name: 'dbproxy', port: p.port, pid: p.pid, stop: () => p.stop() });
    }
    if (cfg.targets.includes('pgbouncer') && bin) {
      const secret = pg.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${USER.name}'`);
      const b: PgBouncer = await startPgBouncer({ bin, listenPort: await freePort(), targetPort: pg.port, poolSize: cfg.pool, users: [{ name: USER.name, password: secret }], maxClientConn: 5000, maxPreparedStatements: 200 });
      targets.push({ name: b.version, port: b.port, pid: b.pid, stop: () => b.stop() });
    }
    const baselineCli = process.env.BENCH_BASELINE_CLI;
    if (baselineCli) {
      const p: Dbproxy = await startDbproxy({
        cli: baselineCli,
        targetPort: pg.port,
        users: [USER],
        maxConnectionsPercent: cfg.pool + 1,
        expectPool: cfg.pool,
        maxClientConnections: 5000,
      });
      targets.push({ name: `dbproxy ${process.env.BENCH_BASELINE_NAME ?? 'before'}`, port: p.port, pid: p.pid, stop: () => p.stop() });
    }
    if (cfg.targets.includes('pipe')) {
      const port = await freePort();
      const child = spawn(process.execPath, [join(repoRoot(), 'dist/test/bench/barePipe.js'), String(port), String(pg.port)], { stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        child.stdout!.once('data', () => resolve());
        child.once('exit', (code) => reject(new Error(`bare pipe exited (${code})`)));
      });
      targets.push({
        name: 'bare Node pipe',
        port,
        pid: child.pid!,
        maxClients: 100 - cfg.pool - 2,
        stop: async () => {
          child.kill('SIGTERM');
        },
      });
    }
    log(`${os.cpus()[0]?.model}, ${os.availableParallelism()} CPUs; pool ${cfg.pool}; ${cfg.txns} transactions per cell; targets ${targets.map((t) => `${t.name} (pid ${t.pid})`).join(', ')}`);
    // Warm-up: JIT and caches.
    for (const t of targets) for (const mode of cfg.modes) await pgbench(t.port, mode, 10, 200);
    const results = new Map<string, Measure>();
    for (const mode of cfg.modes) {
      for (const clients of cfg.clients) {
        const rounds = new Map<string, Measure[]>();
        for (let r = 0; r < cfg.rounds; r++) {
          // Interleaved, and in alternating order, so drift in the machine hits both alike.
          const order = r % 2 === 0 ? targets : [...targets].reverse();
          for (const t of order) {
            if (t.maxClients !== undefined && clients > t.maxClients) continue;
            const m = await measure(t, mode, clients);
            rounds.set(t.name, [...(rounds.get(t.name) ?? []), m]);
            log(`${mode} ${clients} clients ${t.name}: ${Math.round(m.tps)} TPS, ${m.latencyMs.toFixed(2)} ms, CPU ${m.cpuUser.toFixed(1)} + ${m.cpuSys.toFixed(1)} µs/txn${m.errors ? `, ${m.errors} errors (${m.note})` : ''}`);
          }
        }
        for (const [name, ms] of rounds) {
          results.set(`${name}|${mode}|${clients}`, {
            tps: median(ms.map((m) => m.tps)),
            latencyMs: median(ms.map((m) => m.latencyMs)),
            cpuUser: median(ms.map((m) => m.cpuUser)),
            cpuSys: median(ms.map((m) => m.cpuSys)),
            errors: ms.reduce((n, m) => n + m.errors, 0),
          });
        }
      }
    }
    const md = render(targets.map((t) => t.name), results);
    const out = join(repoRoot(), '.tmp');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'cpu-bench.md'), md);
    writeFileSync(join(out, 'cpu-bench.json'), JSON.stringify({ config: cfg, results: Object.fromEntries(results) }, null, 2));
    process.stdout.write(`\n${md}\n`);
  } finally {
    for (const c of running) c.kill('SIGKILL');
    for (const t of targets) await t.stop();
    pg.destroy();
  }
}

function render(names: string[], results: Map<string, Measure>): string {
  // Ratios are dbproxy's over PgBouncer's (the first two targets).
  const [a, b] = names;
  const cpu = (m?: Measure): string => (m ? `${(m.cpuUser + m.cpuSys).toFixed(1)} (${m.cpuUser.toFixed(1)}+${m.cpuSys.toFixed(1)})` : '—');
  const ratio = (p?: number, q?: number): string => (p !== undefined && q ? (p / q).toFixed(2) : '—');
  const header = ['mode', 'clients', ...names.map((n) => `TPS ${n}`), 'TPS ratio', ...names.map((n) => `latency ms ${n}`), ...names.map((n) => `CPU µs/txn ${n} (user+sys)`), 'CPU ratio'];
  const lines = [
    `pgbench -S, pool ${cfg.pool}, ${cfg.txns.toLocaleString('en-US')} transactions per cell${cfg.rounds > 1 ? `, median of ${cfg.rounds} rounds` : ''}; ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} CPUs, load ${os.loadavg()[0]!.toFixed(1)}; ${new Date().toISOString().slice(0, 16)}Z`,
    '',
    `| ${header.join(' | ')} |`,
    `|---|${header.slice(1).map(() => '---:').join('|')}|`,
  ];
  for (const mode of cfg.modes) {
    for (const clients of cfg.clients) {
      const row = names.map((n) => results.get(`${n}|${mode}|${clients}`));
      const x = a ? results.get(`${a}|${mode}|${clients}`) : undefined;
      const y = b ? results.get(`${b}|${mode}|${clients}`) : undefined;
      lines.push(
        `| ${[
          mode,
          clients,
          ...row.map((m) => (m ? Math.round(m.tps) : '—')),
          ratio(x?.tps, y?.tps),
          ...row.map((m) => m?.latencyMs.toFixed(2) ?? '—'),
          ...row.map(cpu),
          ratio(x ? x.cpuUser + x.cpuSys : undefined, y ? y.cpuUser + y.cpuSys : undefined),
        ].join(' | ')} |`,
      );
    }
  }
  return lines.join('\n');
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    for (const c of running) c.kill('SIGKILL');
    process.exit(130);
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`cpu bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
