// `make bench` (npm run bench): pgbench -S through PostgreSQL directly, dbproxy (its CLI, as a child
// process) and PgBouncer in transaction mode with the same pool size, at several client counts, for
// -M simple / extended, and -M prepared against PgBouncer 1.24; then idle client connections held
// on one dbproxy process and its resident memory. Prints a Markdown table and writes it to
// .tmp/bench-results.md (and the raw figures to .tmp/bench-results.json).
//
// Environment: BENCH_SECONDS (per run, default 10), BENCH_WARMUP_SECONDS (2), BENCH_SCALE (10),
// BENCH_CLIENTS ("10,100,1000"), BENCH_THREADS (2), BENCH_POOL (10), BENCH_POOL_1000 (pool for
// 1,000 clients and more, 20), BENCH_IDLE_CLIENTS (10000; 0 skips), BENCH_IDLE_TIMEOUT (s, 300),
// BENCH_PREPARED=0 skips the prepared-statement runs, BENCH_CONNECT_MS_PER_CLIENT (15) adds to -T
// per client so that the initial logins do not eat the measured window.
//
// Needs: hack/install-bench-deps.sh (PgBouncer 1.18, and 1.24 unpacked in a cache folder),
// PostgreSQL 15 binaries, `npm run build`, and an open-files limit above the idle client count.
import type { ChildProcess } from 'node:child_process';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PgCluster, pgBindir, startPostgres } from '../../hack/postgres.js';
import { type PgBouncer, type PgBouncerBinary, pgBouncer124, startPgBouncer, systemPgBouncer } from '../../hack/pgbouncer.js';
import { type Dbproxy, freePort, StatsSampler, startDbproxy } from './dbproxyProcess.js';
import { openIdleClients } from './idleClients.js';
import { type PgbenchResult, type QueryMode, runPgbench, totalErrors } from './pgbench.js';
import { type Cell, machineInfo, mib, Report, type Setup, type Target } from './report.js';

const USER = { name: 'bench', password: 'bench-secret-1' };
const DATABASE = 'postgres';

function envInt(name: string, def: number, min = 0): number {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  return n;
}

const cfg = {
  seconds: envInt('BENCH_SECONDS', 10, 1),
  warmupSeconds: envInt('BENCH_WARMUP_SECONDS', 2, 0),
  scale: envInt('BENCH_SCALE', 10, 1),
  threads: envInt('BENCH_THREADS', 2, 1),
  clientCounts: (process.env.BENCH_CLIENTS ?? '10,100,1000').split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`BENCH_CLIENTS: bad client count ${JSON.stringify(s)}`);
    return n;
  }),
  pool: envInt('BENCH_POOL', 10, 1),
  pool1000: envInt('BENCH_POOL_1000', 20, 1),
  idleClients: envInt('BENCH_IDLE_CLIENTS', 10_000, 0),
  idleTimeoutMs: envInt('BENCH_IDLE_TIMEOUT', 300, 10) * 1000,
  prepared: process.env.BENCH_PREPARED !== '0',
  /** Extra -T per client for the initial connections (pgbench does not count them in its TPS). */
  connectAllowanceMsPerClient: envInt('BENCH_CONNECT_MS_PER_CLIENT', 15, 0),
};
const poolFor = (clients: number): number => (clients >= 1000 ? cfg.pool1000 : cfg.pool);
const maxClients = Math.max(...cfg.clientCounts);
// Direct runs need a slot per client; pooled runs use a small max_connections so the pool budgets
// come out at the intended sizes: floor(100 × (pool + 1) / 100) − 1 health-check connection = pool.
const DIRECT_MAX_CONNECTIONS = maxClients + 100;
const POOLED_MAX_CONNECTIONS = 100;

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const started = Date.now();
const log = (msg: string): void => {
  const t = ((Date.now() - started) / 1000).toFixed(0).padStart(4);
  process.stderr.write(`[bench ${t}s] ${msg}\n`);
};

// ---------------------------------------------------------------------------------------------
// Everything started here, so that an error or Ctrl-C leaves nothing running.
const live = {
  pg: undefined as PgCluster | undefined,
  proxies: new Set<Dbproxy>(),
  bouncers: new Set<PgBouncer>(),
  children: new Set<ChildProcess>(),
  sockets: [] as net.Socket[],
};

function killEverythingSync(): void {
  for (const s of live.sockets) s.destroy();
  live.sockets = [];
  for (const c of live.children) c.kill('SIGKILL');
  live.children.clear();
  for (const p of live.proxies) {
    p.kill();
    rmSync(p.dir, { recursive: true, force: true });
  }
  live.proxies.clear();
  for (const b of live.bouncers) {
    b.kill();
    rmSync(b.dir, { recursive: true, force: true });
  }
  live.bouncers.clear();
  if (live.pg) {
    const pg = live.pg;
    live.pg = undefined;
    try {
      pg.destroy();
    } catch (e) {
      process.stderr.write(`could not stop PostgreSQL: ${(e as Error).message}\n`);
    }
  }
}

for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping everything the benchmark started\n`);
    killEverythingSync();
    process.exit(code);
  });
}
process.on('exit', killEverythingSync);

// ---------------------------------------------------------------------------------------------

function checkOpenFilesLimit(): void {
  // Node raises its own soft limit to the hard limit at startup and children inherit it; ask a
  // shell what they get.
  const raw = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  const limit = raw === 'unlimited' ? Infinity : Number(raw);
  // This process holds the idle clients; the proxy holds as many plus its backends.
  const needed = Math.max(maxClients + 256, cfg.idleClients + 512);
  if (!(limit >= needed)) {
    throw new Error(
      `open files limit (ulimit -n) is ${raw}; the benchmark needs at least ${needed} ` +
        `(${cfg.idleClients} idle client connections held by this process and by the proxy, ${maxClients} pgbench clients). ` +
        `Raise the hard limit before \`make bench\` (as root: \`ulimit -n 20000\`, or nofile in /etc/security/limits.conf), ` +
        `or lower BENCH_IDLE_CLIENTS / BENCH_CLIENTS.`,
    );
  }
}

function runCommand(cmd: string, args: string[], env: Record<string, string>, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.children.add(child);
    let output = '';
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => {
      output += `\n(killed after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      live.children.delete(child);
      resolvePromise({ code, output });
    });
  });
}

function bench(port: number, mode: QueryMode, clients: number, seconds = cfg.seconds): Promise<PgbenchResult> {
  // pgbench's -T clock includes the initial connections (a fork per client for PostgreSQL direct,
  // a SCRAM exchange each everywhere), which take seconds for 1,000 clients on 2 CPUs.
  return runPgbench({
    bindir: pgBindir(),
    port,
    user: USER.name,
    password: USER.password,
    database: DATABASE,
    mode,
    clients,
    threads: cfg.threads,
    seconds,
    connectAllowanceSeconds: Math.ceil((clients * cfg.connectAllowanceMsPerClient) / 1000),
    running: live.children,
  });
}

function summary(r: PgbenchResult): string {
  const tps = r.tps == null ? 'no result' : `${Math.round(r.tps)} tps, ${r.latencyMs?.toFixed(2)} ms, connections ${((r.connectMs ?? 0) / 1000).toFixed(1)} s of -T ${r.durationSeconds}`;
  const errs = totalErrors(r);
  return `${tps}${errs ? `, ${errs} errors (${r.firstError ?? ''})` : ''}${r.aborted ? ', aborted' : ''}`;
}

const report = new Report();

async function measure(target: Target, port: number, mode: QueryMode, clients: number, proxy?: Dbproxy): Promise<Cell> {
  const pool = target === 'direct' ? undefined : poolFor(clients);
  const sampler = proxy ? new StatsSampler(proxy) : undefined;
  await sampler?.start();
  const result = await bench(port, mode, clients);
  await sampler?.stop();
  const cell: Cell = { result, pool };
  if (sampler) {
    cell.proxy = {
      maxDatabaseConnections: sampler.maxDatabaseConnections,
      maxPinned: sampler.maxPinned,
      pins: sampler.pins,
      borrowTimeouts: sampler.borrowTimeouts,
      pinsByReason: sampler.pinsByReason,
    };
  }
  report.set(target, mode, clients, cell);
  const extra = cell.proxy ? ` [backends max ${cell.proxy.maxDatabaseConnections}, pinned max ${cell.proxy.maxPinned}, borrow timeouts ${cell.proxy.borrowTimeouts}]` : '';
  log(`${target.padEnd(12)} -M ${mode.padEnd(8)} ${String(clients).padStart(5)} clients${pool ? ` pool ${pool}` : ''}: ${summary(result)}${extra}`);
  return cell;
}

async function warmup(what: string, port: number, mode: QueryMode = 'simple'): Promise<void> {
  if (cfg.warmupSeconds === 0) return;
  const r = await bench(port, mode, Math.min(10, maxClients), cfg.warmupSeconds);
  log(`warm-up ${what}: ${summary(r)}`);
}

async function stopProxy(p: Dbproxy): Promise<void> {
  await p.stop();
  live.proxies.delete(p);
}

async function stopBouncer(b: PgBouncer): Promise<void> {
  await b.stop();
  live.bouncers.delete(b);
}

/**
 * PgBouncer's userlist.txt holds the user's SCRAM secret from pg_authid, as a userlist generated
 * from the server usually does: PgBouncer then verifies client logins without PBKDF2 work and logs
 * in to the server with the client's SCRAM keys. (With a plain password it derives the keys on
 * every login, which made 1,000 logins several times slower.) dbproxy does the equivalent: it
 * derives a verifier once per password.
 */
let bouncerSecret = '';

async function startBouncer(bin: PgBouncerBinary, pgPort: number, pool: number, maxPreparedStatements?: number): Promise<PgBouncer> {
  const b = await startPgBouncer({
    bin,
    listenPort: await freePort(),
    targetPort: pgPort,
    poolSize: pool,
    users: [{ name: USER.name, password: bouncerSecret || USER.password }],
    maxClientConn: Math.max(maxClients, cfg.idleClients) + 1000,
    maxPreparedStatements,
  });
  live.bouncers.add(b);
  return b;
}

async function startProxy(cli: string, pgPort: number, pool: number, maxClientConnections?: number): Promise<Dbproxy> {
  const p = await startDbproxy({
    cli,
    targetPort: pgPort,
    users: [USER],
    maxConnectionsPercent: pool + 1,
    maxClientConnections: maxClientConnections ?? maxClients + 1000,
    expectPool: pool,
  });
  live.proxies.add(p);
  return p;
}

async function idlePhase(cli: string, pgPort: number): Promise<void> {
  const count = cfg.idleClients;
  const pool = cfg.pool;
  const proxy = await startProxy(cli, pgPort, pool, count + 1000);
  await new Promise((r) => setTimeout(r, 1000));
  const rssBefore = proxy.rss();
  log(`idle: opening ${count} client connections on dbproxy (pid ${proxy.pid}, VmRSS ${mib(rssBefore)})`);
  const res = await openIdleClients({
    port: proxy.port,
    user: USER.name,
    password: USER.password,
    database: DATABASE,
    count,
    concurrency: 64,
    deadline: Date.now() + cfg.idleTimeoutMs,
    timeoutMs: 30_000,
    onProgress: (n) => {
      if (n % 2000 === 0) log(`idle: ${n} open, dbproxy VmRSS ${mib(proxy.rss())}`);
    },
  });
  live.sockets = res.sockets;
  log(`idle: ${res.sockets.length} open in ${(res.elapsedMs / 1000).toFixed(1)} s, ${res.failed} failed${res.firstError ? ` (${res.firstError})` : ''}`);
  await new Promise((r) => setTimeout(r, 2000));
  const rssHeld = proxy.rss();
  let inStats: number | null = null;
  try {
    inStats = (await proxy.stats()).clientConnections;
  } catch {
    /* reported as unknown */
  }
  log(`idle: dbproxy VmRSS ${mib(rssHeld)} holding ${res.sockets.length} clients (/stats clientConnections ${inStats})`);
  // The proxy still serves traffic with them held.
  const busyClients = Math.min(10, maxClients);
  const busy = await bench(proxy.port, 'simple', busyClients, Math.min(cfg.seconds, 5));
  log(`idle: pgbench -S with them held: ${summary(busy)}`);
  const closedWhileIdle = res.closedWhileIdle();
  const rssAfterBusy = proxy.rss();
  report.idle = {
    requested: count,
    opened: res.sockets.length,
    failed: res.failed,
    firstError: res.firstError,
    openSeconds: res.elapsedMs / 1000,
    closedWhileIdle,
    clientConnectionsInStats: inStats,
    rssBefore,
    rssHeld,
    rssAfterBusy,
    busy,
    busyClients,
  };
  for (const s of res.sockets) s.destroy();
  live.sockets = [];
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await proxy.stats()).clientConnections === 0) break;
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stopProxy(proxy);
}

async function main(): Promise<number> {
  checkOpenFilesLimit();
  const cli = join(repoRoot, 'dist/proxy/cli/dbproxy.js');
  if (!existsSync(cli)) throw new Error(`${cli} not found: run \`npm run build\` (make bench does)`);
  const bindir = pgBindir();
  const pgb118 = systemPgBouncer();
  if (!pgb118) throw new Error('PgBouncer not installed: run `bash hack/install-bench-deps.sh` (make bench does)');
  const pgb124 = cfg.prepared ? pgBouncer124() : undefined;
  if (cfg.prepared && !pgb124) log('PgBouncer 1.24 not found (hack/install-bench-deps.sh unpacks it): prepared-statement runs against it are skipped');
  const machine = machineInfo(bindir, pgb118.version, pgb124?.version ?? 'PgBouncer 1.24 not available');
  log(`${machine.cpu}, ${machine.nproc} CPUs, ${machine.memory}; ${machine.postgres}; ${machine.pgbouncer}; ${machine.pgbouncer124}; Node ${machine.node}`);
  log(`config: ${JSON.stringify(cfg)}`);

  const pgPort = await freePort();
  const pg = startPostgres({
    port: pgPort,
    users: [{ ...USER, auth: 'scram-sha-256' }],
    maxConnections: DIRECT_MAX_CONNECTIONS,
    settings: { shared_buffers: "'256MB'" },
  });
  live.pg = pg;
  log(`PostgreSQL on 127.0.0.1:${pgPort}, max_connections ${pg.psql('SHOW max_connections')}`);
  bouncerSecret = pg.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${USER.name}'`);
  if (!bouncerSecret.startsWith('SCRAM-SHA-256$')) throw new Error(`unexpected password hash for ${USER.name}: not SCRAM`);
  const init = await runCommand(
    join(bindir, 'pgbench'),
    ['-i', '-q', '-s', String(cfg.scale), '-h', '127.0.0.1', '-p', String(pgPort), '-U', USER.name, DATABASE],
    { PGPASSWORD: USER.password },
    900_000,
  );
  if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.output}`);
  pg.psql('VACUUM ANALYZE; CHECKPOINT;');
  log(`pgbench -i -s ${cfg.scale} done`);

  const modes: QueryMode[] = cfg.prepared ? ['simple', 'extended', 'prepared'] : ['simple', 'extended'];

  // Phase 1: PostgreSQL directly, with a slot for every client.
  await warmup('direct', pgPort);
  for (const mode of modes) for (const c of cfg.clientCounts) await measure('direct', pgPort, mode, c);

  // Phase 2: the poolers, on the same cluster restarted with a small max_connections.
  pg.psql(`ALTER SYSTEM SET max_connections = ${POOLED_MAX_CONNECTIONS}`);
  pg.stop('fast');
  pg.start();
  log(`PostgreSQL restarted with max_connections ${pg.psql('SHOW max_connections')}`);

  let dbproxyPins: boolean | undefined;
  const pools = [...new Set(cfg.clientCounts.map(poolFor))];
  for (const pool of pools) {
    const counts = cfg.clientCounts.filter((c) => poolFor(c) === pool);
    const proxy = await startProxy(cli, pgPort, pool);
    const b118 = await startBouncer(pgb118, pgPort, pool);
    const b124 = pgb124 ? await startBouncer(pgb124, pgPort, pool, 200) : undefined;
    log(`pool ${pool}: dbproxy on ${proxy.port} (pid ${proxy.pid}), ${b118.version} on ${b118.port}${b124 ? `, ${b124.version} on ${b124.port}` : ''}`);
    await warmup(`dbproxy pool ${pool}`, proxy.port);
    await warmup(`${b118.version} pool ${pool}`, b118.port);
    for (const mode of ['simple', 'extended'] as const) {
      for (const c of counts) {
        await measure('dbproxy', proxy.port, mode, c, proxy);
        await measure('pgbouncer', b118.port, mode, c);
      }
    }
    if (cfg.prepared) {
      if (b124) await warmup(`${b124.version} pool ${pool}`, b124.port, 'prepared');
      for (const c of counts) {
        if (b124) await measure('pgbouncer124', b124.port, 'prepared', c);
        else report.set('pgbouncer124', 'prepared', c, { skipped: 'not available' });
        // dbproxy pins clients with named prepared statements (until issue 4): run where the pool
        // holds every client, skip where pinned clients would queue for a backend.
        const first = dbproxyPins === undefined;
        if (dbproxyPins === false || (first && c <= pool)) {
          const cell = await measure('dbproxy', proxy.port, 'prepared', c, proxy);
          const pinned = (cell.proxy?.maxPinned ?? 0) > 0 || (cell.proxy?.pins ?? 0) > 0;
          if (pinned) log(`dbproxy pinned ${cell.proxy?.maxPinned} clients under -M prepared: ${JSON.stringify(cell.proxy?.pinsByReason)}`);
          dbproxyPins = pinned;
        } else {
          report.set('dbproxy', 'prepared', c, { skipped: dbproxyPins ? 'pins (issue 4)' : 'n/a (pool < clients)' });
        }
      }
    }
    const rss = proxy.rss();
    report.proxyRssAfterRuns.set(pool, { rss, clients: counts });
    log(`pool ${pool}: dbproxy VmRSS ${mib(rss)} after its runs`);
    await stopProxy(proxy);
    await stopBouncer(b118);
    if (b124) await stopBouncer(b124);
  }

  // Phase 3: idle client connections on one proxy process.
  if (cfg.idleClients > 0) await idlePhase(cli, pgPort);
  else report.idleSkipped = 'BENCH_IDLE_CLIENTS=0';

  live.pg = undefined;
  pg.destroy();

  const setup: Setup = {
    seconds: cfg.seconds,
    warmupSeconds: cfg.warmupSeconds,
    scale: cfg.scale,
    threads: cfg.threads,
    clientCounts: cfg.clientCounts,
    poolFor,
    connectAllowanceMsPerClient: cfg.connectAllowanceMsPerClient,
    directMaxConnections: DIRECT_MAX_CONNECTIONS,
    pooledMaxConnections: POOLED_MAX_CONNECTIONS,
  };
  machine.loadEnd = os.loadavg()[0]!;
  const md = report.markdown(machine, setup);
  const outDir = join(repoRoot, '.tmp');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'bench-results.md'), md);
  writeFileSync(
    join(outDir, 'bench-results.json'),
    JSON.stringify({ machine, config: cfg, cells: Object.fromEntries(report.cells), idle: report.idle }, null, 2),
  );
  process.stdout.write(`\n${md}\n`);
  log(`written to ${join(outDir, 'bench-results.md')} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`bench failed: ${e.stack ?? e.message}\n`);
    killEverythingSync();
    process.exit(1);
  },
);
