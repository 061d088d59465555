// Runs the test suite of asyncpg, the Python asyncio driver (its source distribution's tests/,
// downloaded by hack/conformance/asyncpg.sh from PyPI into the cache, never part of this
// repository), once against PostgreSQL 15 directly and once through dbproxy (pool of 20, the CLI
// as a child process), each on a fresh cluster, and compares the two as the pgx run does.
// asyncpg's test base uses a running server when PGHOST is set, so the suite needs no change.
//
//   node dist/hack/conformance/asyncpg.js --tests-dir DIR --python PYTHON [--out DIR]
//        [--modes direct,proxy] [-k EXPR] [--asyncpg-version V]
//
// Exit status: 0 when every test that fails only through dbproxy is listed in
// hack/conformance/asyncpg-known-differences.txt, 1 otherwise (or when the run broke).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startPostgres } from '../postgres.js';
import { repoRoot } from '../repoRoot.js';
import { freePort, startDbproxyProcess, type DbproxyProcess } from '../dbproxyProcess.js';
import { knownFor, readKnown } from './common.js';

type Mode = 'direct' | 'proxy';
type Outcome = 'pass' | 'fail' | 'skip';

interface Args {
  testsDir: string;
  python: string;
  out: string;
  modes: Mode[];
  k?: string;
  version: string;
  timeoutS: number;
}

const USER = 'apg';
const PASSWORD = 'apg-secret';
const log = (msg: string): void => void process.stderr.write(`[conformance-asyncpg] ${msg}\n`);

function parseArgs(argv: string[]): Args {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const testsDir = get('--tests-dir');
  const python = get('--python');
  if (!testsDir || !python) throw new Error('usage: asyncpg.js --tests-dir DIR --python PYTHON [--out DIR] [--modes direct,proxy] [-k EXPR]');
  return {
    testsDir: resolve(testsDir),
    python,
    out: resolve(get('--out') ?? join(repoRoot(), '.tmp', 'conformance-asyncpg')),
    modes: (get('--modes') ?? 'direct,proxy').split(',').map((m) => {
      if (m !== 'direct' && m !== 'proxy') throw new Error(`unknown mode ${m}`);
      return m;
    }),
    k: get('-k'),
    version: get('--asyncpg-version') ?? 'unknown',
    timeoutS: Number(get('--timeout') ?? 1200),
  };
}

interface TestResult {
  outcome: Outcome;
  /** The failure or error text (the first lines), or the skip reason. */
  output: string[];
}

const unescape = (s: string): string =>
  s.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-fA-F]+));/g, (_m, name: string, dec?: string, hex?: string) =>
    dec ? String.fromCodePoint(Number(dec)) : hex ? String.fromCodePoint(parseInt(hex, 16)) : ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' } as Record<string, string>)[name]!,
  );

/**
 * pytest's JUnit XML: one <testcase classname="tests.test_x.TestY" name="test_z"> each, with a
 * <failure>, <error> or <skipped> child when it did not simply pass. A test whose teardown failed
 * appears twice (pass, then error): the worse outcome counts.
 */
export function parseJunit(xml: string): Map<string, TestResult> {
  const results = new Map<string, TestResult>();
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const attrs = m[1]!;
    const body = m[3] ?? '';
    const attr = (n: string): string => unescape(new RegExp(`\\b${n}="([^"]*)"`).exec(attrs)?.[1] ?? '');
    const name = `${attr('classname')}.${attr('name')}`;
    let outcome: Outcome = 'pass';
    let output: string[] = [];
    const child = /<(failure|error|skipped)\b([^>]*?)(?:\/>|>([\s\S]*?)<\/\1>)/.exec(body);
    if (child) {
      outcome = child[1] === 'skipped' ? 'skip' : 'fail';
      const message = unescape(/\bmessage="([^"]*)"/.exec(child[2]!)?.[1] ?? '');
      output = [message, ...unescape(child[3] ?? '').split('\n').filter((l) => /Error|assert|Exception/.test(l)).slice(-3)].filter(Boolean);
    }
    const prev = results.get(name);
    if (!prev || rank(outcome) > rank(prev.outcome)) results.set(name, { outcome, output });
  }
  return results;
}

const rank = (o: Outcome): number => (o === 'fail' ? 2 : o === 'skip' ? 1 : 0);

interface ModeResult {
  mode: Mode;
  results: Map<string, TestResult>;
  seconds: number;
}

async function runMode(a: Args, mode: Mode): Promise<ModeResult> {
  log(`${mode}: starting PostgreSQL`);
  // max_connections 100, as for pgx: 21 % of it less the health check is a pool of 20.
  const cluster = startPostgres({ port: await freePort(), users: [{ name: USER, password: PASSWORD, superuser: true }], maxConnections: 100 });
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-conformance-asyncpg-'));
  let proxy: DbproxyProcess | undefined;
  try {
    let port = cluster.port;
    if (mode === 'proxy') {
      const passwordFile = join(dir, `${USER}.password`);
      writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
      proxy = await startDbproxyProcess(
        {
          targets: [`127.0.0.1:${cluster.port}`],
          users: [{ name: USER, passwordFile }],
          pool: { maxConnectionsPercent: 21 },
          healthCheck: { interval: '1s', database: 'postgres' },
          shutdownGracePeriod: '3s',
        },
        { dir, expectPool: 20 },
      );
      port = proxy.port;
      log(`proxy: dbproxy on 127.0.0.1:${port} (pool 20) in front of PostgreSQL on ${cluster.port}`);
    }
    const junit = join(a.out, `${mode}.xml`);
    const started = Date.now();
    const code = await pytest(a, port, junit, join(a.out, `${mode}.log`));
    const seconds = (Date.now() - started) / 1000;
    let xml = '';
    try {
      xml = readFileSync(junit, 'utf8');
    } catch {
      throw new Error(`${mode}: pytest wrote no report (exit ${code}); see ${join(a.out, `${mode}.log`)}`);
    }
    return { mode, results: parseJunit(xml), seconds };
  } finally {
    await proxy?.stop();
    if (proxy) writeFileSync(join(a.out, 'dbproxy.log'), readFileSync(proxy.logFile));
    cluster.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function pytest(a: Args, port: number, junit: string, logFile: string): Promise<number | null> {
  // From the source tree's root without its asyncpg/ package (asyncpg.sh moves it aside): the
  // tests import the installed wheel, with its compiled extensions.
  const args = ['-m', 'pytest', '-q', '-p', 'no:cacheprovider', `--junitxml=${junit}`, ...(a.k ? ['-k', a.k] : []), 'tests'];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^PG/.test(k)) env[k] = v;
  Object.assign(env, { PGHOST: '127.0.0.1', PGPORT: String(port), PGUSER: USER, PGPASSWORD: PASSWORD, PGDATABASE: 'postgres' });
  return new Promise((res) => {
    const child = spawn(a.python, args, { cwd: a.testsDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => chunks.push(b));
    child.stderr.on('data', (b: Buffer) => chunks.push(b));
    const timer = setTimeout(() => child.kill('SIGKILL'), a.timeoutS * 1000);
    child.once('close', (code) => {
      clearTimeout(timer);
      writeFileSync(logFile, Buffer.concat(chunks));
      res(code);
    });
  });
}

function counts(m: ModeResult): Record<Outcome, number> & { total: number } {
  const c = { pass: 0, fail: 0, skip: 0, total: 0 };
  for (const r of m.results.values()) {
    c.total++;
    c[r.outcome]++;
  }
  return c;
}

function report(a: Args, modes: ModeResult[]): { text: string; ok: boolean } {
  const lines: string[] = [];
  const w = (s = ''): void => void lines.push(s);
  w(`asyncpg ${a.version} test suite (pytest; unittest subtests are counted in their test), PostgreSQL 15`);
  w();
  w(`${'target'.padEnd(28)} ${'passed'.padStart(7)} ${'failed'.padStart(7)} ${'skipped'.padStart(8)} ${'total'.padStart(7)}   time`);
  for (const m of modes) {
    const c = counts(m);
    const name = m.mode === 'direct' ? 'PostgreSQL 15 directly' : 'through dbproxy (pool 20)';
    w(`${name.padEnd(28)} ${String(c.pass).padStart(7)} ${String(c.fail).padStart(7)} ${String(c.skip).padStart(8)} ${String(c.total).padStart(7)}   ${(m.seconds / 60).toFixed(1)} min`);
  }
  const direct = modes.find((m) => m.mode === 'direct');
  const proxied = modes.find((m) => m.mode === 'proxy');
  let ok = modes.every((m) => m.results.size > 0);
  if (direct && proxied) {
    const known = readKnown('asyncpg-known-differences.txt');
    const only = [...proxied.results].filter(([name, r]) => r.outcome === 'fail' && direct.results.get(name)?.outcome === 'pass');
    w();
    w(`Fail only through dbproxy: ${only.length}`);
    for (const [name, r] of only) {
      const k = knownFor(known, name, r.output);
      if (!k) ok = false;
      w(`  ${name}  (${k ? `${k.klass}: ${k.cause}` : 'NEW: not in asyncpg-known-differences.txt'})`);
      for (const l of r.output.slice(0, 2)) w(`      ${l.replace(/\s+/g, ' ').slice(0, 200)}`);
    }
    const stale = known.filter((k) => !only.some(([name]) => k.pattern.test(name)));
    if (stale.length > 0) {
      w();
      w('Known differences that passed this time (timing-dependent ones may; a fixed one should leave the list):');
      for (const k of stale) w(`  ${k.text}  (${k.klass}: ${k.cause})`);
    }
    const both = [...proxied.results].filter(([name, r]) => r.outcome === 'fail' && direct.results.get(name)?.outcome === 'fail');
    if (both.length > 0) {
      w();
      w(`Fail on both sides (this environment's, not dbproxy's): ${both.length}`);
      for (const [name] of both) w(`  ${name}`);
    }
  }
  w();
  w(ok ? 'every proxy-only failure is a known, documented difference (docs/conformance.md)' : 'NEW proxy-only failures (or a run without results): see above');
  return { text: lines.join('\n'), ok };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  mkdirSync(a.out, { recursive: true });
  const modes: ModeResult[] = [];
  for (const mode of a.modes) {
    const m = await runMode(a, mode);
    modes.push(m);
    const c = counts(m);
    log(`${mode}: ${c.pass} passed, ${c.fail} failed, ${c.skip} skipped in ${(m.seconds / 60).toFixed(1)} min`);
  }
  const r = report(a, modes);
  writeFileSync(join(a.out, 'report.txt'), r.text + '\n');
  process.stdout.write(r.text + '\n');
  process.exitCode = r.ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e: unknown) => {
    process.stderr.write(`[conformance-asyncpg] ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 2;
  });
}
