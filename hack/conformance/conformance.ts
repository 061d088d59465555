// Runs the test suite of github.com/jackc/pgx/v5 (a module downloaded by hack/conformance/run.sh
// into the cache, never part of this repository) once against PostgreSQL 15 directly and once
// through dbproxy (pool of 20, the CLI as a child process), each time on a fresh cluster set up
// as pgx's own CI sets up its database, and compares the two: passed / failed / skipped for
// each, and the tests that fail only through dbproxy.
//
//   node dist/hack/conformance/conformance.js --pgx-dir DIR --certs DIR [--out DIR]
//        [--modes direct,proxy] [--run REGEX] [--packages a,b] [--idle-timeout 180]
//
// Exit status: 0 when every test that fails only through dbproxy is listed in
// hack/conformance/known-differences.txt, 1 when another one fails (or the run broke), so CI
// notices a new difference; entries that pass now are reported as stale.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ProxyConfigInput } from '../../proxy/contract/config.js';
import { type PgCluster, startPostgres } from '../postgres.js';
import { repoRoot } from '../repoRoot.js';
import { freePort, startDbproxyProcess, type DbproxyProcess } from '../dbproxyProcess.js';
import { knownFor, readKnown, type Known } from './common.js';
import { failureDigest, GoTestJson, skipReason, type TestResult } from './goTestJson.js';

type Mode = 'direct' | 'proxy';

interface Args {
  pgxDir: string;
  certs: string;
  out: string;
  modes: Mode[];
  run?: string;
  packages?: string[];
  idleTimeoutS: number;
  parallel: number;
  /** Start PostgreSQL and dbproxy, write the test environment to OUT/env.sh, wait for Ctrl-C. */
  serve: boolean;
  pgxVersion: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const pgxDir = get('pgx-dir');
  const certs = get('certs');
  if (!pgxDir || !certs) throw new Error('usage: conformance.js --pgx-dir DIR --certs DIR [--out DIR] [--modes direct,proxy] [--run REGEX] [--packages a,b]');
  return {
    pgxDir: resolve(pgxDir),
    certs: resolve(certs),
    out: resolve(get('out') ?? join(repoRoot(), '.tmp', 'conformance')),
    modes: (get('modes') ?? 'direct,proxy').split(',').map((m) => {
      if (m !== 'direct' && m !== 'proxy') throw new Error(`unknown mode ${m}`);
      return m;
    }),
    run: get('run'),
    packages: get('packages')?.split(',').filter(Boolean),
    idleTimeoutS: Number(get('idle-timeout') ?? 180),
    parallel: Number(get('parallel') ?? 2),
    pgxVersion: get('pgx-version') ?? 'unknown',
    serve: argv.includes('--serve'),
  };
}

const log = (msg: string): void => void process.stderr.write(`[conformance] ${msg}\n`);

const PASSWORD = 'secret';
/** The users pgx's testsetup/postgresql_setup.sql creates and its pg_hba.conf admits over TCP. */
const PGX_USERS = ['pgx_md5', 'pgx_scram', 'pgx_pw', 'pgx_ssl', 'pgx_sslcert'];
/** The one that logs in with a client certificate (pg_hba.conf method cert). */
const CERT_USER = 'pgx_sslcert';

/**
 * A client certificate for `user` signed by pgx's test CA, for dbproxy's own login to PostgreSQL
 * (pgx's pgx_sslcert.key is the client's, encrypted, with a PEM label only pgx reads).
 */
function proxyClientCertificate(a: Args, dir: string, user: string): { certFile: string; keyFile: string } {
  const keyFile = join(dir, `${user}.key`);
  const certFile = join(dir, `${user}.crt`);
  const csr = join(dir, `${user}.csr`);
  const ext = join(dir, `${user}.ext`);
  writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n');
  const openssl = (args: string[]): void => void execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${user}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', join(a.certs, 'ca.pem'), '-CAkey', join(a.certs, 'ca.key'), '-CAcreateserial', '-CAserial', join(dir, 'ca.srl'), '-out', certFile, '-days', '2', '-extfile', ext]);
  return { certFile, keyFile };
}

const isRoot = (): boolean => process.getuid?.() === 0;

function postgresIds(): { uid: number; gid: number } | undefined {
  if (!isRoot()) return undefined;
  return {
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  };
}

interface Database {
  cluster: PgCluster;
  sslDir: string;
  version: string;
  destroy(): void;
}

/**
 * A fresh PostgreSQL 15 cluster set up as pgx's ci/setup_test.bash sets up its server: TLS with
 * the test CA's localhost certificate, pgx's pg_hba.conf rules (md5, scram, password, hostssl,
 * cert), database pgx_test with testsetup/postgresql_setup.sql (hstore, ltree, uint64 domain,
 * the pgx_* users). max_connections stays at 100, as in pgx's CI.
 */
async function startDatabase(a: Args): Promise<Database> {
  const sslDir = mkdtempSync(join(tmpdir(), 'dbproxy-conformance-ssl-'));
  for (const f of ['localhost.crt', 'localhost.key', 'ca.pem']) copyFileSync(join(a.certs, f), join(sslDir, f));
  execFileSync('chmod', ['600', join(sslDir, 'localhost.key')]);
  const ids = postgresIds();
  if (ids) for (const f of [sslDir, join(sslDir, 'localhost.crt'), join(sslDir, 'localhost.key'), join(sslDir, 'ca.pem')]) chownSync(f, ids.uid, ids.gid);
  const lit = (s: string): string => `'${s.replaceAll("'", "''")}'`;
  const cluster = startPostgres({
    port: await freePort(),
    users: [],
    maxConnections: 100,
    settings: {
      ssl: 'on',
      ssl_cert_file: lit(join(sslDir, 'localhost.crt')),
      ssl_key_file: lit(join(sslDir, 'localhost.key')),
      ssl_ca_file: lit(join(sslDir, 'ca.pem')),
    },
  });
  try {
    return setUpDatabase(a, cluster, sslDir, ids);
  } catch (e) {
    cluster.destroy();
    rmSync(sslDir, { recursive: true, force: true });
    throw e;
  }
}

function setUpDatabase(a: Args, cluster: PgCluster, sslDir: string, ids: { uid: number; gid: number } | undefined): Database {
  // pgx's testsetup/pg_hba.conf, for 127.0.0.1.
  const hba = [
    'local all all trust',
    'host all pgx_md5 127.0.0.1/32 md5',
    'host all pgx_scram 127.0.0.1/32 scram-sha-256',
    'host all pgx_pw 127.0.0.1/32 password',
    'hostssl all pgx_ssl 127.0.0.1/32 scram-sha-256',
    'hostssl all pgx_sslcert 127.0.0.1/32 cert',
  ];
  writeFileSync(join(cluster.dataDir, 'pg_hba.conf'), hba.join('\n') + '\n');
  if (ids) chownSync(join(cluster.dataDir, 'pg_hba.conf'), ids.uid, ids.gid);
  cluster.psql('SELECT pg_reload_conf()');
  cluster.psql('CREATE DATABASE pgx_test');
  cluster.psql(readFileSync(join(a.pgxDir, 'testsetup', 'postgresql_setup.sql'), 'utf8'), 'pgx_test');
  // The same role again with the single backslash pgx's aclitem test looks for (psql keeps the
  // setup file's two backslashes as two characters, so that test would skip).
  cluster.psql(`CREATE ROLE " tricky, ' } "" \\ test user " SUPERUSER PASSWORD 'secret'`, 'pgx_test');
  const version = cluster.psql('SHOW server_version');
  return {
    cluster,
    sslDir,
    version,
    destroy() {
      cluster.destroy();
      rmSync(sslDir, { recursive: true, force: true });
    },
  };
}

/**
 * dbproxy as it runs in a pod: `node dist/proxy/cli/dbproxy.js proxy --config FILE`. Pool of 20
 * (max_connections 100 × 21 % less the health-check connection), TLS to clients with the test
 * CA's localhost certificate, verify-full TLS to PostgreSQL (so pgx_ssl's hostssl rule admits
 * the proxy's backends and pg_stat_ssl shows TLS for them), every pgx_* user with its password
 * but pgx_sslcert, which logs in with a client certificate on both hops (tls.clientCaFile;
 * backendAuth cert with a certificate of dbproxy's own from pgx's CA).
 */
async function startProxy(a: Args, db: Database): Promise<DbproxyProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-conformance-proxy-'));
  const users: ProxyConfigInput['users'] = PGX_USERS.filter((name) => name !== CERT_USER).map((name) => {
    const passwordFile = join(dir, `${name}.password`);
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    return { name, passwordFile };
  });
  // pgx_sslcert logs in to dbproxy with pgx's client certificate and dbproxy to PostgreSQL with
  // one of its own for the same user, from the same CA (pg_hba.conf: cert on both hops).
  const own = proxyClientCertificate(a, dir, CERT_USER);
  users.push({ name: CERT_USER, clientAuth: 'cert', backendAuth: { method: 'cert', certFile: own.certFile, keyFile: own.keyFile } });
  const config: Omit<ProxyConfigInput, 'listen' | 'adminListen'> = {
    targets: [`127.0.0.1:${db.cluster.port}`],
    users,
    pool: { maxConnectionsPercent: 21 },
    tls: { certFile: join(a.certs, 'localhost.crt'), keyFile: join(a.certs, 'localhost.key'), clientCaFile: join(a.certs, 'ca.pem') },
    backendTls: { mode: 'verify-full', caFile: join(a.certs, 'ca.pem'), serverName: 'localhost' },
    healthCheck: { interval: '1s', user: 'pgx_md5', database: 'postgres' },
    shutdownGracePeriod: '3s',
    logLevel: 'info',
  };
  // max_connections 100 × 21 % less the health-check connection: a pool of 20.
  return startDbproxyProcess(config, { dir, expectPool: 20 });
}

/** The connection strings pgx's CI passes (its .github/workflows/ci.yml, PostgreSQL 15 row). */
function pgxEnv(a: Args, mode: Mode, db: Database, port: number): Record<string, string> {
  const ca = join(a.certs, 'ca.pem');
  const tcp = (user: string, extra = ''): string => `host=127.0.0.1 port=${port} user=${user} password=${PASSWORD} dbname=pgx_test${extra}`;
  const tls = (user: string, extra: string): string => `host=localhost port=${port} user=${user} password=${PASSWORD} sslmode=verify-full sslrootcert=${ca} dbname=pgx_test${extra}`;
  const env: Record<string, string> = {
    PGX_TEST_DATABASE: tcp('pgx_md5'),
    PGX_TEST_TCP_CONN_STRING: tcp('pgx_md5'),
    PGX_TEST_MD5_PASSWORD_CONN_STRING: tcp('pgx_md5'),
    PGX_TEST_SCRAM_PASSWORD_CONN_STRING: tcp('pgx_scram', ' channel_binding=disable'),
    PGX_TEST_PLAIN_PASSWORD_CONN_STRING: tcp('pgx_pw'),
    PGX_TEST_TLS_CONN_STRING: tls('pgx_ssl', ' channel_binding=disable'),
    PGX_TEST_SCRAM_PLUS_CONN_STRING: tls('pgx_ssl', ' channel_binding=require'),
    PGX_SSL_PASSWORD: 'certpw',
    PGX_TEST_TLS_CLIENT_CONN_STRING: `host=localhost port=${port} user=pgx_sslcert sslmode=verify-full sslrootcert=${ca} sslcert=${join(a.certs, 'pgx_sslcert.crt')} sslkey=${join(a.certs, 'pgx_sslcert.key')} dbname=pgx_test`,
    // pgx's pooler tests (TestPgbouncer*, the "pgbouncer" subtest of the cancel test) run against
    // whatever this run targets: PostgreSQL itself directly, dbproxy through it.
    PGX_TEST_PGBOUNCER_CONN_STRING: tcp('pgx_md5'),
  };
  // dbproxy listens on TCP only: no Unix socket to point this at in the proxy run.
  if (mode === 'direct') env.PGX_TEST_UNIX_SOCKET_CONN_STRING = `host=${db.cluster.socketDir} port=${db.cluster.port} user=postgres dbname=pgx_test`;
  return env;
}

function goEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // Nothing from the caller's PG* / PGX_* environment leaks into the tests.
  for (const [k, v] of Object.entries(process.env)) if (!/^PG/.test(k)) env[k] = v;
  env.GOTOOLCHAIN = 'local';
  env.GOFLAGS = '-modcacherw';
  return { ...env, ...extra };
}

function testPackages(a: Args): string[] {
  if (a.packages) return a.packages.map((p) => (p.startsWith('github.com/') ? p : `github.com/jackc/pgx/v5${p === '.' ? '' : `/${p.replace(/^\.\//, '')}`}`));
  const out = execFileSync('go', ['list', '-f', '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}', './...'], {
    cwd: a.pgxDir,
    env: goEnv({}),
    encoding: 'utf8',
  });
  const pkgs = out.split('\n').filter(Boolean);
  // Longest first, so two at a time finish together.
  const weight = (p: string): number => ['github.com/jackc/pgx/v5', '/pgconn', '/pgtype', '/pgxpool', '/stdlib'].findIndex((s) => p === s || p.endsWith(s));
  return pkgs.sort((x, y) => {
    const wx = weight(x) < 0 ? 99 : weight(x);
    const wy = weight(y) < 0 ? 99 : weight(y);
    return wx - wy;
  });
}

const children = new Set<ChildProcess>();
/** What must not outlive this process when it is stopped early (timeout, Ctrl-C): clusters, dbproxy. */
const emergencyCleanups = new Set<() => void>();

function emergencyExit(code: number): never {
  for (const c of children) killGroup(c);
  for (const f of emergencyCleanups) {
    try {
      f();
    } catch {
      /* best effort */
    }
  }
  process.exit(code);
}

function killGroup(c: ChildProcess): void {
  try {
    if (c.pid) process.kill(-c.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

interface PackageRun {
  attempts: number;
  /** Top-level tests killed while running (no event for idleTimeoutS) or running when the binary died. */
  hung: string[];
  crashed: string[];
  seconds: number;
}

/**
 * `go test -json` of one package. When the binary goes silent for idleTimeoutS (a test hangs), it
 * is killed; tests that were running are recorded as hung, and the package runs again without
 * them and without the tests that already finished, until every test has a result.
 */
async function runPackage(a: Args, mode: Mode, pkg: string, env: NodeJS.ProcessEnv, results: GoTestJson, rawFile: string): Promise<PackageRun> {
  const t0 = Date.now();
  const run: PackageRun = { attempts: 0, hung: [], crashed: [], seconds: 0 };
  const excluded = new Set<string>();
  for (;;) {
    run.attempts++;
    const args = ['test', '-json', '-count=1', '-timeout', '30m'];
    if (a.run) args.push('-run', a.run);
    if (excluded.size > 0) args.push('-skip', `^(${[...excluded].join('|')})$`);
    args.push(pkg);
    let killedIdle = false;
    const status = await new Promise<number | null>((res) => {
      const c = spawn('go', args, { cwd: a.pgxDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(c);
      let last = Date.now();
      const timer = setInterval(() => {
        if (Date.now() - last > a.idleTimeoutS * 1000) {
          killedIdle = true;
          killGroup(c);
        }
      }, 1000);
      c.stdout!.setEncoding('utf8');
      c.stdout!.on('data', (d: string) => {
        last = Date.now();
        appendFileSync(rawFile, d);
        results.write(d);
      });
      c.stderr!.setEncoding('utf8');
      c.stderr!.on('data', (d: string) => {
        last = Date.now();
        appendFileSync(rawFile.replace(/\.jsonl$/, '.stderr'), d);
      });
      c.on('close', (code) => {
        clearInterval(timer);
        children.delete(c);
        res(code);
      });
    });
    results.end();
    const finished = results.finishedTopLevel(pkg);
    const unfinished = results.unfinishedTopLevel(pkg);
    if (unfinished.length === 0) break;
    (killedIdle ? run.hung : run.crashed).push(...unfinished);
    log(`${mode}: ${pkg}: ${killedIdle ? `no output for ${a.idleTimeoutS}s, killed` : `exited ${status} with tests unfinished`}: ${unfinished.join(', ')}`);
    if (run.attempts >= 8) break;
    for (const t of [...finished, ...unfinished]) excluded.add(t);
  }
  run.seconds = (Date.now() - t0) / 1000;
  return run;
}

interface ModeResult {
  mode: Mode;
  results: Map<string, TestResult>;
  hung: Array<{ pkg: string; test: string }>;
  crashed: Array<{ pkg: string; test: string }>;
  packageFailures: Array<{ pkg: string; output: string[] }>;
  seconds: number;
}

async function runMode(a: Args, mode: Mode): Promise<ModeResult> {
  const t0 = Date.now();
  log(`${mode}: starting PostgreSQL`);
  const db = await startDatabase(a);
  const destroyDb = (): void => db.destroy();
  emergencyCleanups.add(destroyDb);
  let proxy: DbproxyProcess | undefined;
  let killProxy: (() => void) | undefined;
  try {
    let port = db.cluster.port;
    if (mode === 'proxy') {
      proxy = await startProxy(a, db);
      killProxy = proxy.kill;
      emergencyCleanups.add(killProxy);
      port = proxy.port;
      log(`proxy: dbproxy on 127.0.0.1:${port} (pool 20) in front of PostgreSQL ${db.version} on ${db.cluster.port}`);
    } else {
      log(`direct: PostgreSQL ${db.version} on 127.0.0.1:${port}`);
    }
    const env = goEnv(pgxEnv(a, mode, db, port));
    const rawFile = join(a.out, `${mode}.jsonl`);
    rmSync(rawFile, { force: true });
    rmSync(rawFile.replace(/\.jsonl$/, '.stderr'), { force: true });
    const results = new GoTestJson();
    const pkgs = testPackages(a);
    const hung: ModeResult['hung'] = [];
    const crashed: ModeResult['crashed'] = [];
    const queue = [...pkgs];
    const worker = async (): Promise<void> => {
      for (let pkg = queue.shift(); pkg; pkg = queue.shift()) {
        const r = await runPackage(a, mode, pkg, env, results, rawFile);
        hung.push(...r.hung.map((test) => ({ pkg, test })));
        crashed.push(...r.crashed.map((test) => ({ pkg, test })));
        log(`${mode}: ${pkg.replace('github.com/jackc/pgx/v5', 'pgx') || 'pgx'} done in ${r.seconds.toFixed(0)} s${r.attempts > 1 ? ` (${r.attempts} runs)` : ''}`);
      }
    };
    await Promise.all(Array.from({ length: a.parallel }, worker));
    // A test with no result (killed or crashed) counts as failed.
    for (const r of results.results.values()) if (r.outcome === 'unfinished') r.outcome = 'fail';
    const packageFailures = [...results.packageOutcome.entries()]
      .filter(([pkg, o]) => o === 'fail' && ![...results.results.values()].some((r) => r.pkg === pkg && r.outcome === 'fail'))
      .map(([pkg]) => ({ pkg, output: results.packageOutput.get(pkg) ?? [] }));
    return { mode, results: results.results, hung, crashed, packageFailures, seconds: (Date.now() - t0) / 1000 };
  } finally {
    if (proxy) {
      await proxy.stop();
      if (killProxy) emergencyCleanups.delete(killProxy);
      copyFileSync(proxy.logFile, join(a.out, 'dbproxy.log'));
      rmSync(proxy.dir, { recursive: true, force: true });
    }
    emergencyCleanups.delete(destroyDb);
    db.destroy();
  }
}

const KNOWN_FILE = 'known-differences.txt';
const knownOf = (known: Known[], r: TestResult): Known | undefined => knownFor(known, `${shortPkg(r.pkg)}:${r.test}`, r.output);

const shortPkg = (p: string): string => p.replace(/^github\.com\/jackc\/pgx\/v5\/?/, '') || 'pgx';
const label = (r: { pkg: string; test: string }): string => `${shortPkg(r.pkg)} ${r.test}`;

function counts(m: ModeResult, topLevelOnly = false): { pass: number; fail: number; skip: number; total: number } {
  const c = { pass: 0, fail: 0, skip: 0, total: 0 };
  for (const r of m.results.values()) {
    if (topLevelOnly && r.test.includes('/')) continue;
    c.total++;
    if (r.outcome === 'pass') c.pass++;
    else if (r.outcome === 'skip') c.skip++;
    else c.fail++;
  }
  return c;
}

/** Failed tests whose failure is explained by a failed subtest are left out of the lists (the subtest is listed). */
function leafFailures(keys: string[], res: Map<string, TestResult>): string[] {
  return keys.filter((k) => {
    const r = res.get(k)!;
    return ![...res.values()].some((o) => o.pkg === r.pkg && o.test.startsWith(r.test + '/') && o.outcome === 'fail');
  });
}

function report(a: Args, modes: ModeResult[], pgVersion: string): { text: string; ok: boolean; json: unknown } {
  const lines: string[] = [];
  const w = (s = ''): void => void lines.push(s);
  w(`pgx ${a.pgxVersion} test suite (go test -json; every test and subtest counted), PostgreSQL ${pgVersion}`);
  w();
  w(`${'target'.padEnd(28)} ${'passed'.padStart(7)} ${'failed'.padStart(7)} ${'skipped'.padStart(8)} ${'total'.padStart(7)}   top-level p/f/s   time`);
  for (const m of modes) {
    const c = counts(m);
    const t = counts(m, true);
    const name = m.mode === 'direct' ? 'PostgreSQL 15 directly' : 'through dbproxy (pool 20)';
    w(`${name.padEnd(28)} ${String(c.pass).padStart(7)} ${String(c.fail).padStart(7)} ${String(c.skip).padStart(8)} ${String(c.total).padStart(7)}   ${`${t.pass}/${t.fail}/${t.skip}`.padEnd(15)}   ${(m.seconds / 60).toFixed(1)} min`);
  }
  let ok = true;
  const json: Record<string, unknown> = { pgx: a.pgxVersion, postgres: pgVersion, modes: {} };
  for (const m of modes) {
    (json.modes as Record<string, unknown>)[m.mode] = {
      counts: counts(m),
      topLevel: counts(m, true),
      seconds: m.seconds,
      hung: m.hung.map(label),
      crashed: m.crashed.map(label),
      failed: leafFailures([...m.results.keys()].filter((k) => m.results.get(k)!.outcome === 'fail'), m.results).map((k) => label(m.results.get(k)!)),
    };
    for (const h of m.hung) w(`${m.mode}: HUNG (killed after ${a.idleTimeoutS}s without output): ${label(h)}`);
    for (const h of m.crashed) w(`${m.mode}: test binary died while running: ${label(h)}`);
    for (const p of m.packageFailures) {
      w(`${m.mode}: package ${shortPkg(p.pkg)} failed outside any test:`);
      for (const l of p.output.slice(-15)) w(`    ${l}`);
      ok = false;
    }
  }
  const direct = modes.find((m) => m.mode === 'direct');
  const proxy = modes.find((m) => m.mode === 'proxy');
  const skipReasons = (m: ModeResult): Map<string, string[]> => {
    const by = new Map<string, string[]>();
    for (const r of m.results.values()) {
      if (r.outcome !== 'skip') continue;
      const reason = skipReason(r);
      by.set(reason, [...(by.get(reason) ?? []), label(r)]);
    }
    return by;
  };
  if (direct && proxy) {
    const keys = new Set([...direct.results.keys(), ...proxy.results.keys()]);
    const o = (m: ModeResult, k: string): string => m.results.get(k)?.outcome ?? 'absent';
    const only = (pred: (d: string, p: string) => boolean): string[] => [...keys].filter((k) => pred(o(direct, k), o(proxy, k))).sort();
    const proxyOnlyFail = leafFailures(
      only((d, p) => p === 'fail' && d !== 'fail'),
      proxy.results,
    );
    const bothFail = leafFailures(
      only((d, p) => p === 'fail' && d === 'fail'),
      proxy.results,
    );
    const directOnlyFail = leafFailures(
      only((d, p) => d === 'fail' && p !== 'fail'),
      direct.results,
    );
    const proxyOnlySkip = only((d, p) => p === 'skip' && d !== 'skip');
    const known = readKnown(KNOWN_FILE);
    w();
    w(`Fail only through dbproxy: ${proxyOnlyFail.length}`);
    const newOnes: string[] = [];
    for (const k of proxyOnlyFail) {
      const r = proxy.results.get(k)!;
      const kn = knownOf(known, r);
      if (!kn) newOnes.push(label(r));
      const hung = proxy.hung.some((h) => h.pkg === r.pkg && h.test === r.test) ? ' [HUNG]' : '';
      w(`  ${label(r)}${hung}  (${kn ? `${kn.klass}: ${kn.cause}` : 'NEW'}; directly: ${o(direct, k)})`);
      w(`      ${failureDigest(r) || '(no output)'}`);
    }
    // A test that passes only because a 120 s context timeout ended a wait is a hang in disguise.
    const slow = [...proxy.results.values()]
      .filter((r) => !r.test.includes('/') && r.elapsedS >= 30)
      .map((r) => ({ r, d: direct.results.get(GoTestJson.key(r.pkg, r.test))?.elapsedS ?? 0 }))
      .filter(({ r, d }) => r.elapsedS > 5 * d)
      .sort((x, y) => y.r.elapsedS - x.r.elapsedS);
    if (slow.length) {
      w();
      w(`Slow only through dbproxy (≥ 30 s and > 5× the direct time): ${slow.length}`);
      for (const { r, d } of slow) w(`  ${label(r)}: ${r.elapsedS.toFixed(1)} s (directly ${d.toFixed(1)} s), ${r.outcome}`);
    }
    json.slowThroughProxy = slow.map(({ r, d }) => ({ test: label(r), seconds: r.elapsedS, directSeconds: d, outcome: r.outcome }));
    if (proxyOnlySkip.length) {
      w();
      w(`Skipped only through dbproxy: ${proxyOnlySkip.length}`);
      for (const k of proxyOnlySkip) w(`  ${label(proxy.results.get(k)!)}: ${skipReason(proxy.results.get(k)!)}`);
    }
    if (bothFail.length) {
      w();
      w(`Fail both directly and through dbproxy (environment or pgx itself, not dbproxy): ${bothFail.length}`);
      for (const k of bothFail) w(`  ${label(direct.results.get(k) ?? proxy.results.get(k)!)}: ${failureDigest(direct.results.get(k) ?? proxy.results.get(k)!)}`);
    }
    if (directOnlyFail.length) {
      w();
      w(`Fail only directly (flaky under load?): ${directOnlyFail.length}`);
      for (const k of directOnlyFail) w(`  ${label(direct.results.get(k)!)}: ${failureDigest(direct.results.get(k)!)}`);
    }
    // Exact entries (no wildcard) whose test passes through dbproxy now.
    const stale = known.filter((k) => {
      if (k.text.includes('*')) return false;
      const [pkg, test] = k.text.split(':');
      const key = GoTestJson.key(pkg === 'pgx' ? 'github.com/jackc/pgx/v5' : `github.com/jackc/pgx/v5/${pkg}`, test!);
      return proxy.results.get(key)?.outcome === 'pass';
    });
    if (stale.length) {
      w();
      w(`Listed in hack/conformance/known-differences.txt but passing through dbproxy now (remove them): ${stale.length}`);
      for (const k of stale) w(`  ${k.text.replace(':', ' ')} (${k.klass}: ${k.cause})`);
    }
    if (newOnes.length) ok = false;
    json.proxyOnlyFail = proxyOnlyFail.map((k) => {
      const r = proxy.results.get(k)!;
      const kn = knownOf(known, r);
      return { test: label(r), digest: failureDigest(r), class: kn?.klass ?? null, cause: kn?.cause ?? null };
    });
    json.proxyOnlySkip = proxyOnlySkip.map((k) => label(proxy.results.get(k)!));
    json.bothFail = bothFail.map((k) => label(proxy.results.get(k)!));
    json.directOnlyFail = directOnlyFail.map((k) => label(direct.results.get(k)!));
    json.stale = stale.map((k) => k.text);
    w();
    w(newOnes.length ? `${newOnes.length} proxy-only failure(s) not in hack/conformance/known-differences.txt` : 'every proxy-only failure is a known, documented difference (docs/conformance.md)');
  }
  for (const m of modes) {
    const by = skipReasons(m);
    w();
    w(`Skipped (${m.mode}), by reason:`);
    for (const [reason, tests] of [...by.entries()].sort((x, y) => y[1].length - x[1].length)) {
      w(`  ${String(tests.length).padStart(3)} × ${reason}`);
      if (tests.length <= 4) w(`        ${tests.join(', ')}`);
    }
  }
  return { text: lines.join('\n'), ok, json };
}

/**
 * For working on one difference by hand: one cluster, dbproxy in front of it, and
 * OUT/env.sh with the pgx environment for either (`source env.sh direct|proxy`), until Ctrl-C.
 */
async function serve(a: Args): Promise<void> {
  const db = await startDatabase(a);
  const proxy = await startProxy(a, db);
  const sh = (env: Record<string, string>): string =>
    Object.entries(env)
      .map(([k, v]) => `  export ${k}='${v.replaceAll("'", "'\\''")}'`)
      .join('\n');
  const envFile = join(a.out, 'env.sh');
  writeFileSync(
    envFile,
    [
      '# source this file with "direct" or "proxy"; then e.g. (cd PGX_DIR && go test -count=1 -run TestX ./pgconn)',
      `export PGX_DIR='${a.pgxDir}' GOMODCACHE='${process.env.GOMODCACHE ?? ''}' GOFLAGS=-modcacherw GOTOOLCHAIN=local`,
      `export DBPROXY_LOG='${proxy.logFile}' PG_DIRECT_PORT=${db.cluster.port} DBPROXY_PORT=${proxy.port} PG_SOCKET_DIR='${db.cluster.socketDir}'`,
      'unset PGX_TEST_UNIX_SOCKET_CONN_STRING',
      'if [ "$1" = proxy ]; then',
      sh(pgxEnv(a, 'proxy', db, proxy.port)),
      'else',
      sh(pgxEnv(a, 'direct', db, db.cluster.port)),
      'fi',
      '',
    ].join('\n'),
  );
  log(`PostgreSQL on 127.0.0.1:${db.cluster.port}, dbproxy on 127.0.0.1:${proxy.port} (log ${proxy.logFile})`);
  log(`environment: source ${envFile} direct|proxy; Ctrl-C stops`);
  await new Promise<void>((res) => {
    process.once('SIGINT', res);
    process.once('SIGTERM', res);
  });
  await proxy.stop();
  db.destroy();
  rmSync(proxy.dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  mkdirSync(a.out, { recursive: true });
  if (a.serve) return serve(a);
  process.on('SIGTERM', () => emergencyExit(124));
  process.on('SIGINT', () => emergencyExit(130));
  const modes: ModeResult[] = [];
  let pgVersion = '';
  for (const mode of a.modes) {
    const m = await runMode(a, mode);
    modes.push(m);
    const c = counts(m);
    log(`${mode}: ${c.pass} passed, ${c.fail} failed, ${c.skip} skipped in ${(m.seconds / 60).toFixed(1)} min`);
  }
  try {
    pgVersion = execFileSync(join('/usr/lib/postgresql/15/bin', 'postgres'), ['--version'], { encoding: 'utf8' }).trim().replace(/^postgres \(PostgreSQL\) /, '');
  } catch {
    pgVersion = '15';
  }
  const r = report(a, modes, pgVersion);
  writeFileSync(join(a.out, 'report.txt'), r.text + '\n');
  writeFileSync(join(a.out, 'results.json'), JSON.stringify(r.json, null, 2) + '\n');
  process.stdout.write(r.text + '\n');
  log(`report: ${join(a.out, 'report.txt')}, raw go test -json: ${join(a.out, '{direct,proxy}.jsonl')}`);
  process.exitCode = r.ok ? 0 : 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`[conformance] ${(e as Error).stack ?? String(e)}\n`);
  emergencyExit(2);
});
