// The read-only endpoint's benchmark: pgbench -S through dbproxy's readers listener over one
// streaming standby and over two, and through its writer listener for reference. Per cell: TPS,
// mean latency, errors, and where the transactions ran: each cluster's pg_stat_database.xact_commit
// delta for the benchmark's database. The split between the standbys is the evidence that reads
// spread a transaction at a time; TPS is reported as measured, and on a machine where every
// PostgreSQL, the proxy and pgbench share the same few CPUs a second standby adds no CPU, so TPS
// need not rise with it (the table carries the machine's CPU use during each run to show it).
//
// Setup: a primary and two standbys streaming from it (started before the data exists, so the
// pgbench tables reach them by replication), pgbench -i at scale 10 on the primary, each standby
// caught up to the primary's WAL position before anything is measured. Two dbproxy processes run
// side by side for the whole benchmark, each with a readers listener: one whose targets are the
// primary and the first standby, one with both standbys. Cells are interleaved, in alternating
// order per round, so drift in the machine hits every setup alike.
//
// `make bench` runs it in full (npm run bench); BENCH_QUICK=1 runs a shorter version (about two
// and a half minutes; in full about eleven). Environment: BENCH_CLIENTS ("10,100"), BENCH_MODES ("simple"; also extended, prepared),
// BENCH_SECONDS (measured seconds per cell, default 20; quick 6), BENCH_ROUNDS (default 3; quick 1;
// TPS and latency are the median over rounds, transaction counts their sum), BENCH_POOL (server
// connections per pool, default 20). Writes .tmp/readers-bench.md and .tmp/readers-bench.json.
import type { ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type PgCluster, pgBindir, startPostgres, startStandby } from '../../hack/postgres.js';
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
  clients: list('BENCH_CLIENTS', '10,100').map(Number),
  modes: list('BENCH_MODES', 'simple') as QueryMode[],
  seconds: int('BENCH_SECONDS', quick ? 6 : 20),
  rounds: int('BENCH_ROUNDS', quick ? 1 : 3),
  pool: int('BENCH_POOL', 20),
  threads: 2,
  scale: 10,
  /** The clusters' max_connections: room for both proxies' pools and health checks on each. */
  maxConnections: 100,
  /**
   * After a run, how long to wait before reading pg_stat_database. A backend flushes its counters
   * at most once a second while busy, and one that goes idle within a second of its last flush
   * waits PGSTAT_IDLE_INTERVAL (10 s in PostgreSQL 15) before flushing again; the proxies' pooled
   * backends stay connected and idle, so their last transactions can show up that late, and would
   * otherwise be counted in the next cell.
   */
  statsSettleMs: 11_000,
};
const USER = { name: 'bench', password: 'bench-secret-1' };
/** The database pgbench uses; the counters are read while connected to another, so reading them adds nothing. */
const DB = 'postgres';
const started = Date.now();
const log = (m: string): void => void process.stderr.write(`[readers-bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${m}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const running = new Set<ChildProcess>();

type ClusterName = 'primary' | 'standby A' | 'standby B';
const CLUSTERS: ClusterName[] = ['primary', 'standby A', 'standby B'];

interface Setup {
  name: string;
  endpoint: 'writer' | 'read-only';
  standbys: number;
  port: number;
  proxy: Dbproxy;
}

interface Cell {
  tps: number;
  latencyMs: number;
  errors: number;
  processed: number;
  /** xact_commit deltas per cluster during the run. */
  commits: Record<ClusterName, number>;
  /** Share of all CPUs busy during the run (from /proc/stat), 0..1. */
  cpuBusy: number;
  /**
   * CPU seconds spent during the run by the proxy serving it, by all three PostgreSQL clusters and
   * by pgbench: with the machine's CPUs saturated, TPS is their sum's inverse, so this says where a
   * transaction's cost went.
   */
  cpu: { proxy: number; postgres: number; pgbench: number };
  /** Read-only runs: /stats samples (every 500 ms) in which a standby was out of rotation, by endpoint and reason. */
  outOfRotation: Record<string, number>;
  note?: string;
}

/**
 * While a read-only run goes on, whether every standby stays in rotation: a standby left out (a
 * lag spike, a failed health check) would explain a skewed split.
 */
function watchRotation(s: Setup): { stop: boolean; out: Record<string, number>; done: Promise<void> } {
  const w = { stop: s.endpoint !== 'read-only', out: {} as Record<string, number>, done: Promise.resolve() };
  w.done = (async () => {
    while (!w.stop) {
      try {
        for (const p of (await s.proxy.stats()).readers?.pools ?? []) {
          const key = `${p.endpoint} ${p.reason ?? 'unusable'}`;
          if (!p.usable) w.out[key] = (w.out[key] ?? 0) + 1;
        }
      } catch {
        // /stats did not answer in time under load: no sample.
      }
      await sleep(500);
    }
  })();
  return w;
}

/** Committed transactions in the benchmark's database so far, on each cluster. */
function commitCounts(clusters: Record<ClusterName, PgCluster>): Record<ClusterName, number> {
  const out = {} as Record<ClusterName, number>;
  for (const name of CLUSTERS) {
    // A fresh psql session each time, so its statistics snapshot is current; connected to
    // template1 so that this query's own transaction is not counted in the benchmark's database.
    out[name] = Number(clusters[name].psql(`SELECT xact_commit FROM pg_stat_database WHERE datname = '${DB}'`, 'template1'));
  }
  return out;
}

/** Busy and total jiffies over all CPUs so far. */
function cpuJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...: idle and iowait are the unused time.
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** Fields of /proc/PID/stat after the command name (which is in parentheses and may hold spaces). */
function statFields(pid: number | 'self'): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    // The process ended meanwhile.
    return undefined;
  }
}

/** A process's user + system CPU seconds; with children, also its exited and waited-for children's. */
function cpuSeconds(pid: number | 'self', children: boolean): number {
  const f = statFields(pid);
  if (!f) return 0;
  // utime stime cutime cstime are fields 14-17 of stat, 11-14 here.
  const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
  return ticks / TICKS_PER_SECOND;
}

/**
 * All CPU one cluster has used: the postmaster's, its exited backends' (counted in the postmaster's
 * children's time) and its live backends' and background processes'.
 */
function clusterCpuSeconds(c: PgCluster): number {
  const pm = Number(readFileSync(join(c.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let total = cpuSeconds(pm, true);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    // ppid is field 4 of stat, 1 here.
    if (f && Number(f[1]) === pm) total += cpuSeconds(Number(entry), false);
  }
  return total;
}

interface CpuSnapshot {
  proxy: number;
  postgres: number;
  pgbench: number;
}

function cpuSnapshot(clusters: Record<ClusterName, PgCluster>, proxyPid: number): CpuSnapshot {
  return {
    proxy: cpuSeconds(proxyPid, false),
    postgres: CLUSTERS.reduce((n, c) => n + clusterCpuSeconds(clusters[c]), 0),
    // pgbench is this process's child: its time is in our children's once it has been waited for.
    pgbench: cpuSeconds('self', true) - cpuSeconds('self', false),
  };
}

async function pgbench(port: number, mode: QueryMode, clients: number, seconds: number): Promise<PgbenchResult> {
  return runPgbench({
    bindir: pgBindir(),
    port,
    user: USER.name,
    password: USER.password,
    database: DB,
    mode,
    clients,
    threads: cfg.threads,
    seconds,
    // pgbench's -T clock includes its logins, its TPS leaves them out: a second per 100 clients.
    connectAllowanceSeconds: Math.ceil(clients / 100),
    running,
  });
}

async function measure(clusters: Record<ClusterName, PgCluster>, s: Setup, mode: QueryMode, clients: number): Promise<Cell> {
  const before = commitCounts(clusters);
  const rotation = watchRotation(s);
  const p0 = cpuSnapshot(clusters, s.proxy.pid);
  const c0 = cpuJiffies();
  const r = await pgbench(s.port, mode, clients, cfg.seconds);
  const c1 = cpuJiffies();
  const p1 = cpuSnapshot(clusters, s.proxy.pid);
  rotation.stop = true;
  await rotation.done;
  await sleep(cfg.statsSettleMs);
  // Then, should the counts still fall short of what pgbench made, a little longer: the table
  // shows any shortfall that remains.
  const deadline = Date.now() + 10_000;
  const commits = {} as Record<ClusterName, number>;
  for (;;) {
    const after = commitCounts(clusters);
    for (const name of CLUSTERS) commits[name] = after[name] - before[name];
    if (CLUSTERS.reduce((n, c) => n + commits[c], 0) >= (r.processed ?? 0) || Date.now() > deadline) break;
    await sleep(500);
  }
  const errors = totalErrors(r);
  return {
    tps: r.tps ?? 0,
    latencyMs: r.latencyMs ?? 0,
    errors,
    processed: r.processed ?? 0,
    commits,
    cpuBusy: (c1.busy - c0.busy) / Math.max(1, c1.total - c0.total),
    cpu: { proxy: p1.proxy - p0.proxy, postgres: p1.postgres - p0.postgres, pgbench: p1.pgbench - p0.pgbench },
    outOfRotation: rotation.out,
    ...(errors > 0 || r.tps === null ? { note: r.firstError ?? 'no summary from pgbench' } : {}),
  };
}

/** Waits until the standby has replayed everything the primary had written when this was called. */
async function caughtUp(primary: PgCluster, standby: PgCluster, name: string): Promise<void> {
  const target = primary.psql('SELECT pg_current_wal_lsn()');
  const deadline = Date.now() + 300_000;
  for (;;) {
    const behind = Number(standby.psql(`SELECT pg_wal_lsn_diff('${target}', pg_last_wal_replay_lsn())`));
    if (behind <= 0) return;
    if (Date.now() > deadline) throw new Error(`${name} still ${behind} bytes behind the primary after 5 minutes`);
    await sleep(200);
  }
}

/** Until the proxy has `n` standbys in rotation on its read-only endpoint. */
async function readersInRotation(p: Dbproxy, n: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const s = await p.stats();
    const usable = s.readers?.pools.filter((r) => r.usable && r.maxDatabaseConnections !== null).length ?? 0;
    if (usable === n) return;
    if (Date.now() > deadline) throw new Error(`the read-only endpoint has ${usable} usable standbys, expected ${n}: ${JSON.stringify(s.readers)}\n${p.logTail()}`);
    await sleep(200);
  }
}

/** CPU µs per transaction: proxy / PostgreSQL / pgbench. */
const perTxn = (m: Cell): string => {
  const us = (sec: number): string => (m.processed > 0 ? ((sec * 1e6) / m.processed).toFixed(0) : '—');
  return `${us(m.cpu.proxy)} / ${us(m.cpu.postgres)} / ${us(m.cpu.pgbench)}`;
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  const settings = { shared_buffers: "'256MB'", superuser_reserved_connections: 0, wal_level: 'replica', max_wal_senders: 10 };
  const primary = startPostgres({ port: await freePort(), users: [{ ...USER, auth: 'scram-sha-256' }], maxConnections: cfg.maxConnections, settings });
  const standbys: PgCluster[] = [];
  const proxies: Dbproxy[] = [];
  try {
    // The standbys first, so that the data reaches them by streaming replication, as it would.
    standbys.push(startStandby(primary, { port: await freePort() }), startStandby(primary, { port: await freePort() }));
    const [a, b] = standbys as [PgCluster, PgCluster];
    const clusters: Record<ClusterName, PgCluster> = { primary, 'standby A': a, 'standby B': b };
    log(`primary :${primary.port}, standby A :${a.port}, standby B :${b.port}; pgbench -i -s ${cfg.scale} on the primary`);
    execFileSync(join(pgBindir(), 'pgbench'), ['-i', '-q', '-s', String(cfg.scale), '-h', '127.0.0.1', '-p', String(primary.port), '-U', USER.name, DB], {
      env: { ...process.env, PGPASSWORD: USER.password },
      stdio: 'pipe',
    });
    primary.psql('VACUUM ANALYZE; CHECKPOINT;');
    await caughtUp(primary, a, 'standby A');
    await caughtUp(primary, b, 'standby B');
    const rows = (c: PgCluster): number => Number(c.psql('SELECT count(*) FROM pgbench_accounts'));
    const expected = cfg.scale * 100_000;
    for (const [name, c] of [['standby A', a], ['standby B', b]] as const) {
      if (rows(c) !== expected) throw new Error(`${name} has ${rows(c)} pgbench_accounts rows, expected ${expected}`);
    }
    log(`both standbys caught up (${expected.toLocaleString('en-US')} accounts each)`);

    const start = (standbyPorts: number[]): Promise<Dbproxy> =>
      startDbproxy({
        cli: join(repoRoot(), 'dist/proxy/cli/dbproxy.js'),
        targetPort: primary.port,
        standbyPorts,
        readers: {},
        users: [USER],
        // The budget is max_connections × percent, less the health-check connection: pool + 1 of 100.
        maxConnectionsPercent: cfg.pool + 1,
        expectPool: cfg.pool,
        maxClientConnections: 5000,
      });
    const one = await start([a.port]);
    proxies.push(one);
    const two = await start([a.port, b.port]);
    proxies.push(two);
    await readersInRotation(one, 1);
    await readersInRotation(two, 2);
    const readerPools = (await two.stats()).readers!.pools.map((r) => `${r.endpoint} ${r.maxDatabaseConnections}`);
    log(`proxies ready (pid ${one.pid}: primary + standby A; pid ${two.pid}: primary + both); reader pools ${readerPools.join(', ')}`);

    const setups: Setup[] = [
      { name: 'writer listener (primary)', endpoint: 'writer', standbys: 0, port: two.port, proxy: two },
      { name: 'read-only listener, 1 standby', endpoint: 'read-only', standbys: 1, port: one.readersPort!, proxy: one },
      { name: 'read-only listener, 2 standbys', endpoint: 'read-only', standbys: 2, port: two.readersPort!, proxy: two },
    ];
    // Warm-up: the proxies' JIT, every cluster's cache of pgbench_accounts (about 130 MB at scale 10).
    for (const s of setups) for (const mode of cfg.modes) await pgbench(s.port, mode, 10, quick ? 3 : 5);
    // The warm-up's last transactions may not be counted yet (see statsSettleMs): not in the first cell.
    await sleep(11_000);
    const loadStart = os.loadavg()[0]!;
    log(`${os.cpus()[0]?.model}, ${os.availableParallelism()} CPUs; ${cfg.seconds} s per cell, ${cfg.rounds} round(s)`);

    const cells = new Map<string, Cell[]>();
    for (let r = 0; r < cfg.rounds; r++) {
      const order = r % 2 === 0 ? setups : [...setups].reverse();
      for (const mode of cfg.modes) {
        for (const clients of cfg.clients) {
          for (const s of order) {
            const m = await measure(clusters, s, mode, clients);
            const key = `${s.name}|${mode}|${clients}`;
            cells.set(key, [...(cells.get(key) ?? []), m]);
            log(
              `${s.name}, ${mode}, ${clients} clients: ${Math.round(m.tps)} TPS, ${m.latencyMs.toFixed(2)} ms, ${m.errors} errors; commits ${CLUSTERS.map((c) => `${c} ${m.commits[c]}`).join(', ')}; CPU ${(m.cpuBusy * 100).toFixed(0)}% busy, per transaction ${perTxn(m)}${Object.keys(m.outOfRotation).length ? `; out of rotation (samples): ${JSON.stringify(m.outOfRotation)}` : ''}${m.note ? ` (${m.note})` : ''}`,
            );
          }
        }
      }
    }
    const loadEnd = os.loadavg()[0]!;
    for (const p of proxies) {
      const st = p.exitStatus();
      if (st) throw new Error(`${st}:\n${p.logTail()}`);
    }
    const md = render(setups, cells, loadStart, loadEnd);
    const out = join(repoRoot(), '.tmp');
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'readers-bench.md'), md);
    writeFileSync(
      join(out, 'readers-bench.json'),
      JSON.stringify({ config: { ...cfg, quick }, ports: { primary: primary.port, 'standby A': a.port, 'standby B': b.port }, cells: Object.fromEntries(cells) }, null, 2),
    );
    process.stdout.write(`\n${md}\n`);
  } finally {
    for (const c of running) c.kill('SIGKILL');
    for (const p of proxies) await p.stop();
    for (const s of standbys) s.destroy();
    primary.destroy();
  }
}

function version(bin: string): string {
  try {
    return execFileSync(join(pgBindir(), bin), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return `${bin} ?`;
  }
}

function render(setups: Setup[], cells: Map<string, Cell[]>, loadStart: number, loadEnd: number): string {
  const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
  const pct = (x: number, total: number): string => (total > 0 ? `${((100 * x) / total).toFixed(1)}%` : '—');
  const lines = [
    `pgbench -S -n -j ${cfg.threads} -T ${cfg.seconds} (plus a second per 100 clients for the logins), scale ${cfg.scale}, SCRAM-SHA-256; ` +
      `${cfg.rounds > 1 ? `median TPS and latency of ${cfg.rounds} interleaved rounds, transaction counts summed over them` : 'one round'}${quick ? ' (BENCH_QUICK)' : ''}. ` +
      `Pools: ${cfg.pool} server connections to the writer, and ${cfg.pool} to each standby in the read-only endpoint (each standby's own max_connections ${cfg.maxConnections} × maxConnectionsPercent ${cfg.pool + 1} %, less the health check).`,
    '',
    `Machine: ${os.cpus()[0]?.model ?? '?'}, ${os.availableParallelism()} CPUs, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${os.release()}; ${version('postgres')}; Node ${process.version}. ` +
      `The primary, both standbys, both dbproxy processes and pgbench all run on it over 127.0.0.1; 1-minute load average ${loadStart.toFixed(1)} at the start, ${loadEnd.toFixed(1)} at the end (other work on the machine shows here too); ${new Date().toISOString().slice(0, 16)}Z.`,
    '',
    '| endpoint | standbys | mode | clients | TPS | mean latency ms | errors | pgbench transactions | counted on primary / standby A / standby B | standby A / B share | machine CPU busy | CPU µs per transaction: proxy / PostgreSQL (all 3) / pgbench |',
    '|---|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|',
  ];
  for (const mode of cfg.modes) {
    for (const clients of cfg.clients) {
      for (const s of setups) {
        const ms = cells.get(`${s.name}|${mode}|${clients}`) ?? [];
        if (ms.length === 0) continue;
        const sum = (name: ClusterName): number => ms.reduce((n, m) => n + m.commits[name], 0);
        const [p, a, b] = CLUSTERS.map(sum) as [number, number, number];
        lines.push(
          `| ${[
            s.endpoint,
            s.standbys || '—',
            mode,
            clients,
            fmt(median(ms.map((m) => m.tps))),
            median(ms.map((m) => m.latencyMs)).toFixed(2),
            ms.reduce((n, m) => n + m.errors, 0),
            fmt(ms.reduce((n, m) => n + m.processed, 0)),
            `${fmt(p)} / ${fmt(a)} / ${fmt(b)}`,
            s.endpoint === 'writer' ? '—' : `${pct(a, a + b)} / ${pct(b, a + b)}`,
            `${(median(ms.map((m) => m.cpuBusy)) * 100).toFixed(0)}%`,
            // Over all rounds together: CPU time summed, divided by the transactions summed.
            perTxn({
              ...ms[0]!,
              processed: ms.reduce((n, m) => n + m.processed, 0),
              cpu: {
                proxy: ms.reduce((n, m) => n + m.cpu.proxy, 0),
                postgres: ms.reduce((n, m) => n + m.cpu.postgres, 0),
                pgbench: ms.reduce((n, m) => n + m.cpu.pgbench, 0),
              },
            }),
          ].join(' | ')} |`,
        );
      }
      const tpsOf = (standbys: number): number | undefined => {
        const s = setups.find((x) => x.endpoint === 'read-only' && x.standbys === standbys);
        const ms = s ? cells.get(`${s.name}|${mode}|${clients}`) : undefined;
        return ms?.length ? median(ms.map((m) => m.tps)) : undefined;
      };
      const t1 = tpsOf(1);
      const t2 = tpsOf(2);
      if (t1 && t2) lines.push(`| | | | | two standbys / one: **${(t2 / t1).toFixed(2)}×** | | | | | | | |`);
    }
  }
  const notes: string[] = [];
  for (const [key, ms] of cells) {
    ms.forEach((m, i) => {
      if (Object.keys(m.outOfRotation).length) notes.push(`${key.replaceAll('|', ', ')} clients, round ${i + 1}: out of rotation in /stats samples ${JSON.stringify(m.outOfRotation)}.`);
    });
  }
  if (notes.length) lines.push('', ...notes.map((n) => `- ${n}`));
  lines.push(
    '',
    'Counted: each cluster\'s pg_stat_database.xact_commit delta for the benchmark database over the run, against pgbench\'s own count (pgbench\'s start-up query and the proxies\' health checks can add a few). ' +
      'The split between the standbys shows each read-only transaction going to one standby or the other; the primary\'s count during the read-only runs shows reads not reaching it. ' +
      'TPS is what pgbench measured: every process here shares the same CPUs, so a second standby adds a second server to spread over but no CPU, and the TPS ratio says little about a deployment where each standby has machines of its own.',
  );
  return lines.join('\n');
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    for (const c of running) c.kill('SIGKILL');
    process.exit(130);
  });
}

main().catch((e: unknown) => {
  process.stderr.write(`readers bench failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
