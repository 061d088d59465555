// Runs pgbench as a child process with a hard time limit and reads its summary: TPS, mean latency,
// failed transactions, and the errors it printed (connection failures, aborted clients).
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

export type QueryMode = 'simple' | 'extended' | 'prepared';

export interface PgbenchOptions {
  bindir: string;
  port: number;
  user: string;
  password: string;
  database: string;
  mode: QueryMode;
  clients: number;
  threads: number;
  /** Measured seconds; -T is this plus connectAllowanceSeconds. */
  seconds: number;
  /**
   * pgbench's -T clock starts before its clients have connected, and its TPS leaves the initial
   * connection time out: -T gets this much more, so that the measured window stays about `seconds`
   * even when 1,000 logins take a while.
   */
  connectAllowanceSeconds?: number;
  /**
   * Transactions per client (-t) instead of a duration: a fixed count, so the CPU a process
   * spent on them can be divided by it. `seconds` then only sizes the time limit.
   */
  transactions?: number;
  /** Killed (SIGKILL) after this long; default: seconds + 60 s + 60 ms per client. */
  timeoutMs?: number;
  /** Children are registered here while they run, so an interrupted benchmark can kill them. */
  running?: Set<ChildProcess>;
}

export interface PgbenchResult {
  tps: number | null;
  latencyMs: number | null;
  processed: number | null;
  /** pgbench's "initial connection time". */
  connectMs: number | null;
  /** The -T given to pgbench. */
  durationSeconds: number;
  /** pgbench's "number of failed transactions". */
  failed: number;
  /** Connections that could not be made or were lost. */
  connectionErrors: number;
  /** Other errors pgbench printed (a client aborted by an SQL error, ...). */
  otherErrors: number;
  /** pgbench said the run was aborted, its numbers incomplete. */
  aborted: boolean;
  timedOut: boolean;
  exitCode: number | null;
  /** The first error line, for the notes. */
  firstError?: string;
  wallMs: number;
}

const num = (re: RegExp, text: string): number | null => {
  const m = re.exec(text);
  return m ? Number(m[1]) : null;
};

export function totalErrors(r: PgbenchResult): number {
  return r.failed + r.connectionErrors + r.otherErrors + (r.timedOut ? 1 : 0);
}

export function parsePgbench(stdout: string, stderr: string): Omit<PgbenchResult, 'timedOut' | 'exitCode' | 'wallMs' | 'durationSeconds'> {
  // pgbench prefixes each error it reports with "pgbench: error:" (libpq may continue it on the
  // next lines). A failed initial connection prints the libpq error, then "could not create
  // connection for client N" for the same failure, and pgbench exits without a summary.
  const lines = stderr.split('\n').map((l) => l.trim());
  const errors = lines.filter(
    (l) => /^pgbench: (error|fatal):/.test(l) && !/Run was aborted|could not create connection for client/.test(l),
  );
  const isConn = (l: string): boolean =>
    /connection to server|could not connect|server closed the connection|no connection to the server|terminating connection|too many clients|remaining connection slots|timeout expired/i.test(l);
  const connectionErrors = errors.filter(isConn).length;
  return {
    tps: num(/^tps = ([\d.]+) \(without initial connection time\)/m, stdout),
    latencyMs: num(/^latency average = ([\d.]+) ms/m, stdout),
    processed: num(/^number of transactions actually processed: (\d+)/m, stdout),
    connectMs: num(/^initial connection time = ([\d.]+) ms/m, stdout),
    failed: num(/^number of failed transactions: (\d+)/m, stdout) ?? 0,
    connectionErrors,
    otherErrors: errors.length - connectionErrors,
    aborted: /Run was aborted/.test(stderr),
    firstError: errors[0] ?? lines.find((l) => /error|fatal/i.test(l)),
  };
}

export function runPgbench(o: PgbenchOptions): Promise<PgbenchResult> {
  const args = [
    '-h', '127.0.0.1',
    '-p', String(o.port),
    '-U', o.user,
    '-n', // no vacuum: select-only
    '-S',
    '-M', o.mode,
    '-c', String(o.clients),
    '-j', String(Math.min(o.threads, o.clients)),
    ...(o.transactions !== undefined ? ['-t', String(o.transactions)] : ['-T', String(o.seconds + (o.connectAllowanceSeconds ?? 0))]),
    o.database,
  ];
  const durationSeconds = o.seconds + (o.connectAllowanceSeconds ?? 0);
  const timeoutMs = o.timeoutMs ?? durationSeconds * 1000 + 60_000 + o.clients * 60;
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(join(o.bindir, 'pgbench'), args, {
      env: { ...process.env, PGPASSWORD: o.password, PGCONNECT_TIMEOUT: '60', PGAPPNAME: 'pgbench' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    o.running?.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => {
      // Bounded: a run where every client fails prints one line per client.
      if (stderr.length < 1_000_000) stderr += d.toString();
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      o.running?.delete(child);
      const parsed = parsePgbench(stdout, stderr);
      let firstError = parsed.firstError ?? (timedOut ? `timed out after ${timeoutMs} ms` : undefined);
      if (!firstError && parsed.tps === null && parsed.processed === 0) {
        firstError = `no transaction completed within -T ${durationSeconds}: the initial connections took longer`;
      }
      resolve({ ...parsed, durationSeconds, timedOut, exitCode: code, wallMs: Date.now() - started, firstError });
    });
  });
}
