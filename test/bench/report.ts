// The benchmark's Markdown: the machine it ran on, the pgbench tables, the idle-connection figures.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { type PgbenchResult, type QueryMode, totalErrors } from './pgbench.js';

export type Target = 'direct' | 'dbproxy' | 'pgbouncer' | 'pgbouncer124';

export interface Cell {
  result?: PgbenchResult;
  /** Why it did not run (e.g. "pins (issue 4)", "n/a"). */
  skipped?: string;
  pool?: number;
  /** dbproxy only: /stats seen during the run. */
  proxy?: { maxDatabaseConnections: number; maxPinned: number; pins: number; borrowTimeouts: number; pinsByReason: Record<string, number> };
}

export interface IdleFigures {
  requested: number;
  opened: number;
  failed: number;
  firstError?: string;
  openSeconds: number;
  closedWhileIdle: number;
  clientConnectionsInStats: number | null;
  rssBefore: number;
  rssHeld: number;
  /** VmRSS after the pgbench run with the idle clients still held. */
  rssAfterBusy: number;
  /** pgbench through the same proxy while the idle clients are held. */
  busy?: PgbenchResult;
  busyClients: number;
}

export interface Machine {
  cpu: string;
  nproc: number;
  memory: string;
  kernel: string;
  postgres: string;
  pgbouncer: string;
  pgbouncer124: string;
  node: string;
  date: string;
  /** 1-minute load average when the run started and when it ended (other work on the machine skews the figures). */
  loadStart: number;
  loadEnd?: number;
}

export interface Setup {
  seconds: number;
  warmupSeconds: number;
  scale: number;
  threads: number;
  clientCounts: number[];
  poolFor: (clients: number) => number;
  connectAllowanceMsPerClient: number;
  directMaxConnections: number;
  pooledMaxConnections: number;
}

export function machineInfo(pgBindir: string, pgbouncer: string, pgbouncer124: string): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  const memKb = Number(/^MemTotal:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0);
  let postgres = 'unknown';
  try {
    postgres = execFileSync(join(pgBindir, 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    /* keep unknown */
  }
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    /* keep availableParallelism */
  }
  return {
    cpu: model,
    nproc,
    memory: `${(memKb / 1024 / 1024).toFixed(1)} GiB`,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    postgres,
    pgbouncer,
    pgbouncer124,
    node: process.version,
    loadStart: os.loadavg()[0]!,
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
}

const fmtTps = (r?: PgbenchResult): string => (r?.tps == null ? '—' : Math.round(r.tps).toLocaleString('en-US'));
const fmtMs = (r?: PgbenchResult): string => (r?.latencyMs == null ? '—' : r.latencyMs.toFixed(2));
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

export class Report {
  readonly cells = new Map<string, Cell>();
  readonly notes: string[] = [];
  idle?: IdleFigures;
  /** dbproxy's VmRSS after the pgbench runs of each pool size, in bytes. */
  readonly proxyRssAfterRuns = new Map<number, { rss: number; clients: number[] }>();
  idleSkipped?: string;

  static key(target: Target, mode: QueryMode, clients: number): string {
    return `${target}/${mode}/${clients}`;
  }

  set(target: Target, mode: QueryMode, clients: number, cell: Cell): void {
    this.cells.set(Report.key(target, mode, clients), cell);
  }

  get(target: Target, mode: QueryMode, clients: number): Cell | undefined {
    return this.cells.get(Report.key(target, mode, clients));
  }

  /** A note for a run that had errors or did not finish; returns the marker to put in the table. */
  private footnote(label: string, cell: Cell | undefined): string {
    const r = cell?.result;
    if (!r) return '';
    const errs = totalErrors(r);
    const shortWindow = r.connectMs !== null && r.durationSeconds - r.connectMs / 1000 < r.durationSeconds / 3;
    if (errs === 0 && r.tps !== null && !r.aborted && !shortWindow) return '';
    const parts: string[] = [];
    if (r.failed) parts.push(`${r.failed} failed transactions`);
    if (r.connectionErrors) parts.push(`${r.connectionErrors} connection errors`);
    if (r.otherErrors) parts.push(`${r.otherErrors} other errors`);
    if (r.timedOut) parts.push('killed at its time limit');
    if (r.aborted) parts.push('run aborted by pgbench');
    if (r.tps === null) parts.push(`no result (exit ${r.exitCode})`);
    else if (r.connectMs !== null && r.durationSeconds - r.connectMs / 1000 < r.durationSeconds / 3) {
      parts.push(`initial connections took ${(r.connectMs / 1000).toFixed(1)} s of -T ${r.durationSeconds}: short measured window`);
    }
    if (cell?.proxy?.borrowTimeouts) parts.push(`${cell.proxy.borrowTimeouts} borrow timeouts`);
    this.notes.push(`${label}: ${parts.join(', ')}${r.firstError ? `; first: \`${r.firstError.replaceAll('`', "'").slice(0, 300)}\`` : ''}`);
    return ` [${this.notes.length}]`;
  }

  private tpsCell(cell: Cell | undefined): string {
    if (!cell) return '—';
    if (cell.skipped) return cell.skipped;
    return fmtTps(cell.result);
  }

  private msCell(cell: Cell | undefined): string {
    if (!cell || cell.skipped) return '—';
    return fmtMs(cell.result);
  }

  private errCell(target: Target, mode: QueryMode, clients: number, cell: Cell | undefined): string {
    if (!cell || cell.skipped || !cell.result) return '—';
    return `${totalErrors(cell.result)}${this.footnote(`${target} -M ${mode}, ${clients} clients`, cell)}`;
  }

  private ratio(a: Cell | undefined, b: Cell | undefined): string {
    const x = a?.result?.tps;
    const y = b?.result?.tps;
    if (x == null || y == null || y === 0 || a?.skipped || b?.skipped) return '—';
    return `${(x / y).toFixed(2)}×`;
  }

  markdown(machine: Machine, setup: Setup): string {
    this.notes.length = 0;
    const out: string[] = [];
    out.push(`## Benchmark: pgbench -S (select-only) through PostgreSQL, dbproxy and PgBouncer`, '');
    out.push(
      `Machine: ${machine.cpu}, ${machine.nproc} CPUs (nproc), ${machine.memory} memory, ${machine.kernel}. ` +
        `${machine.postgres}; ${machine.pgbouncer}; ${machine.pgbouncer124}; Node ${machine.node}. ` +
        `Everything on one machine over 127.0.0.1 (pgbench, the poolers and PostgreSQL share the CPUs). ` +
        `Run ${machine.date}; 1-minute load average ${machine.loadStart.toFixed(1)} at the start, ${machine.loadEnd?.toFixed(1) ?? '?'} at the end` +
        `${Math.max(machine.loadStart, machine.loadEnd ?? 0) > machine.nproc ? ' (other work was running on the machine: treat the figures as indicative)' : ''}.`,
      '',
    );
    const pools = [...new Set(setup.clientCounts.map(setup.poolFor))];
    out.push(
      `Setup: \`pgbench -S -n -j ${setup.threads} -T ${setup.seconds}\` plus ${setup.connectAllowanceMsPerClient} ms per client for the initial connections ` +
        `(pgbench's -T clock includes them, its TPS leaves them out), scale ${setup.scale}, SCRAM-SHA-256 everywhere ` +
        `(PgBouncer's userlist.txt holds the server's SCRAM secret; dbproxy reads the plain password from a file), ` +
        `${setup.warmupSeconds} s warm-up per target. Pool: ` +
        pools.map((p) => `${p} server connections for ${setup.clientCounts.filter((c) => setup.poolFor(c) === p).join(', ')} clients`).join('; ') +
        ` (dbproxy: max_connections ${setup.pooledMaxConnections} × maxConnectionsPercent less its health-check connection; PgBouncer: default_pool_size = max_db_connections). ` +
        `"PostgreSQL direct" ran on the same cluster restarted with max_connections = ${setup.directMaxConnections}, so that it can take every client count; ` +
        `the pooled runs used max_connections = ${setup.pooledMaxConnections}. Errors = failed transactions + connection errors + other pgbench errors.`,
      '',
    );

    out.push('### Simple and extended query protocol', '');
    out.push(
      '| mode | clients | pool | direct TPS | direct ms | dbproxy TPS | dbproxy ms | PgBouncer 1.18 TPS | PgBouncer ms | dbproxy / PgBouncer | errors direct / dbproxy / PgBouncer | dbproxy backends (max) |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
    );
    for (const mode of ['simple', 'extended'] as const) {
      for (const c of setup.clientCounts) {
        const d = this.get('direct', mode, c);
        const p = this.get('dbproxy', mode, c);
        const b = this.get('pgbouncer', mode, c);
        out.push(
          `| ${mode} | ${c.toLocaleString('en-US')} | ${setup.poolFor(c)} | ${this.tpsCell(d)} | ${this.msCell(d)} | ${this.tpsCell(p)} | ${this.msCell(p)} | ${this.tpsCell(b)} | ${this.msCell(b)} | ${this.ratio(p, b)} | ` +
            `${this.errCell('direct', mode, c, d)} / ${this.errCell('dbproxy', mode, c, p)} / ${this.errCell('pgbouncer', mode, c, b)} | ${p?.proxy ? p.proxy.maxDatabaseConnections : '—'} |`,
        );
      }
    }
    out.push('');

    out.push('### Prepared statements (`-M prepared`)', '');
    const preparedCells = setup.clientCounts.map((c) => this.get('dbproxy', 'prepared', c)).filter((c) => c?.proxy);
    const pinned = preparedCells.some((c) => (c!.proxy!.maxPinned ?? 0) > 0);
    out.push(
      `PgBouncer 1.18 cannot run \`-M prepared\` in transaction mode (prepared statement "P_0" already exists), so this table compares against PgBouncer 1.24 ` +
        '(Debian trixie, `max_prepared_statements = 200`). ' +
        (preparedCells.length === 0
          ? 'dbproxy was not run in this mode.'
          : pinned
            ? 'dbproxy pinned each client that used named prepared statements (protocol-level statement multiplexing is issue 4); ' +
              'it ran where the pool holds every client and is marked "pins (issue 4)" where pinned clients would queue for a backend.'
            : 'dbproxy multiplexed the named prepared statements: /stats showed no pinned connection during these runs.'),
      '',
    );
    out.push(
      '| clients | pool | direct TPS | direct ms | dbproxy TPS | dbproxy ms | PgBouncer 1.24 TPS | PgBouncer 1.24 ms | dbproxy / PgBouncer 1.24 | errors direct / dbproxy / PgBouncer 1.24 | dbproxy pinned (max) |',
      '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
    );
    for (const c of setup.clientCounts) {
      const d = this.get('direct', 'prepared', c);
      const p = this.get('dbproxy', 'prepared', c);
      const b = this.get('pgbouncer124', 'prepared', c);
      out.push(
        `| ${c.toLocaleString('en-US')} | ${setup.poolFor(c)} | ${this.tpsCell(d)} | ${this.msCell(d)} | ${this.tpsCell(p)} | ${this.msCell(p)} | ${this.tpsCell(b)} | ${this.msCell(b)} | ${this.ratio(p, b)} | ` +
          `${this.errCell('direct', 'prepared', c, d)} / ${this.errCell('dbproxy', 'prepared', c, p)} / ${this.errCell('pgbouncer124', 'prepared', c, b)} | ${p?.proxy ? p.proxy.maxPinned : '—'} |`,
      );
    }
    out.push('');

    out.push('### Idle client connections on one dbproxy process', '');
    if (this.idle) {
      const i = this.idle;
      const per = i.opened > 0 ? `${(((i.rssHeld - i.rssBefore) / i.opened) / 1024).toFixed(1)} KiB` : '—';
      const ok = i.opened === i.requested && i.rssHeld < 300 * 1024 * 1024;
      out.push(
        '| idle clients held | logins failed | opened in | closed while held | dbproxy VmRSS before | VmRSS holding them | per client | target < 300 MiB | pgbench -S while held | VmRSS after that |',
        '|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|',
        `| ${i.opened.toLocaleString('en-US')} of ${i.requested.toLocaleString('en-US')} | ${i.failed} | ${i.openSeconds.toFixed(1)} s | ${i.closedWhileIdle} | ${mib(i.rssBefore)} | **${mib(i.rssHeld)}** | ${per} | ${ok ? 'met' : 'NOT met'} | ` +
          `${i.busy?.tps != null ? `${fmtTps(i.busy)} TPS (${i.busyClients} clients, ${totalErrors(i.busy)} errors)` : '—'} | ${mib(i.rssAfterBusy)} |`,
        '',
        (this.proxyRssAfterRuns.size
          ? `For comparison, dbproxy's VmRSS right after its pgbench runs: ${[...this.proxyRssAfterRuns]
              .map(([pool, v]) => `${mib(v.rss)} (pool ${pool}, up to ${Math.max(...v.clients).toLocaleString('en-US')} clients)`)
              .join(', ')}. `
          : '') +
          `Each idle client completed a full SCRAM-SHA-256 login (StartupMessage to ReadyForQuery) from a minimal client in the benchmark process, 64 logins at a time; /stats counted ${i.clientConnectionsInStats ?? '—'} client connections while they were held. VmRSS from /proc/PID/status of the proxy process.` +
          (i.firstError ? ` First login error: \`${i.firstError}\`.` : ''),
        '',
      );
    } else {
      out.push(`Not measured: ${this.idleSkipped ?? 'skipped'}.`, '');
    }

    const notes = [...this.notes];
    if (notes.length) {
      out.push('Notes:', '', ...notes.map((n, i) => `${i + 1}. ${n}`), '');
    }
    return out.join('\n');
  }
}
