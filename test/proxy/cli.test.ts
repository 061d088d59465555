// Issue 2: the `dbproxy` CLI as a real child process (built output, `npm run build` first):
// config validation that names the bad field, usage errors, and a good config that serves
// psql, reloads, logs pino JSON without secrets, and exits 0 promptly on SIGTERM.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PgCluster } from '../../hack/postgres.js';
import { USERS, connected, eventually, freePort, psql, run, startCluster, writePasswordFiles } from '../support/harness.js';
import { RawClient, serialize } from '../support/rawClient.js';

const DBPROXY = resolve('dist/proxy/cli/dbproxy.js');
const dir = mkdtempSync(join(tmpdir(), 'dbproxy-cli-'));

function cli(args: string[]): ReturnType<typeof run> {
  return run(process.execPath, [DBPROXY, ...args]);
}

function configFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

beforeAll(() => {
  if (!existsSync(DBPROXY)) throw new Error(`${DBPROXY} is missing: run \`npm run build\` (make test does) before this test`);
});

describe('usage', () => {
  test('no command exits 2 with usage on stderr', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command \(none\)/);
    expect(r.stderr).toMatch(/usage:/);
    expect(r.stderr).toMatch(/dbproxy proxy --config FILE/);
    expect(r.stdout).toBe('');
  });

  test('an unknown command exits 2 with usage', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command frobnicate/);
    expect(r.stderr).toMatch(/usage:/);
  });

  test('help prints usage on stdout and exits 0', async () => {
    const r = await cli(['help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/usage:/);
  });

  test('proxy without --config exits 2 and says so', async () => {
    const r = await cli(['proxy']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--config FILE is required/);
  });

  test('an unknown option is refused', async () => {
    const r = await cli(['proxy', '--config', '/dev/null', '--bogus']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/bogus/);
  });

  test('--version and version print the package version and exit 0', async () => {
    const { version } = JSON.parse(readFileSync(resolve('package.json'), 'utf8')) as { version: string };
    for (const args of [['--version'], ['-V'], ['version']]) {
      const r = await cli(args);
      expect([args, r.code, r.stdout, r.stderr]).toEqual([args, 0, `dbproxy ${version}\n`, '']);
    }
  });

  // Every command's --help: its own usage on stdout, exit 0, nothing on stderr.
  test.each<[string[], RegExp]>([
    [['--help'], /^usage:\n  dbproxy proxy --config FILE/],
    [['-h'], /^usage:\n  dbproxy proxy --config FILE/],
    [['help'], /^usage:\n  dbproxy proxy --config FILE/],
    [['proxy', '--help'], /^usage: dbproxy proxy --config FILE\n[\s\S]*-c, --config FILE/],
    [['proxy', '-h'], /^usage: dbproxy proxy --config FILE/],
    [['token', '--help'], /^usage: dbproxy token --proxy-id ID[\s\S]*--endpoint URL/],
    [['token', '-h'], /^usage: dbproxy token --proxy-id ID/],
    [['operator', '--help'], /^usage: dbproxy operator \[flags\][\s\S]*--default-image IMAGE/],
    [['help', 'proxy'], /^usage: dbproxy proxy --config FILE/],
    [['help', 'token'], /^usage: dbproxy token --proxy-id ID/],
    [['help', 'operator'], /^usage: dbproxy operator \[flags\]/],
  ])('dbproxy %j prints help and exits 0', async (args, usage) => {
    const r = await cli(args);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(usage);
    expect(r.stdout).toContain('--help');
  });

  // Usage errors: the message and the command's own usage on stderr, exit 2, nothing on stdout.
  test.each<[string[], RegExp, RegExp]>([
    [['token', '--bogus'], /^dbproxy token: Unknown option '--bogus'/, /usage: dbproxy token --proxy-id ID/],
    [['token'], /^dbproxy token: --proxy-id ID is required/, /usage: dbproxy token --proxy-id ID/],
    [['token', '--proxy-id', 'a/b', 'extra'], /^dbproxy token: Unexpected argument 'extra'/, /usage: dbproxy token/],
    [['proxy', '--bogus'], /^dbproxy proxy: Unknown option '--bogus'/, /usage: dbproxy proxy --config FILE/],
    [['proxy', '--config', '/dev/null', 'extra'], /^dbproxy proxy: Unexpected argument 'extra'/, /usage: dbproxy proxy/],
    [['operator', '--bogus'], /^dbproxy operator: Unknown option '--bogus'/, /usage: dbproxy operator \[flags\]/],
    [['--bogus'], /^dbproxy: unknown option --bogus/, /^usage:\n  dbproxy proxy/m],
    [['help', 'frobnicate'], /^dbproxy help: unknown command frobnicate/, /^usage:\n  dbproxy proxy/m],
    [['--version', 'extra'], /^dbproxy --version: unexpected argument extra/, /^usage:/m],
  ])('dbproxy %j is a usage error: exit 2, message and usage on stderr', async (args, message, usage) => {
    const r = await cli(args);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(usage);
  });
});

describe('bad config', () => {
  // A config that is valid except where a test breaks it.
  const secrets = writePasswordFiles();
  const base = (extra: string): string =>
    [
      'listen: 127.0.0.1:0',
      'adminListen: 127.0.0.1:0',
      'targets: ["127.0.0.1:1"]',
      'users:',
      ...secrets.users.map((u) => `  - {name: ${u.name}, passwordFile: ${JSON.stringify(u.passwordFile)}}`),
      extra,
    ].join('\n');

  test('a missing file exits non-zero with a clear message', async () => {
    const missing = join(dir, 'does-not-exist.yaml');
    const r = await cli(['proxy', '--config', missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot read config file ${missing}`);
    expect(r.stderr).toMatch(/ENOENT|no such file/);
  });

  test.each([
    ['pool.maxConnectionsPercent out of range', 'pool:\n  maxConnectionsPercent: 150', ['pool.maxConnectionsPercent']],
    ['pool.maxConnectionsPercent not a number', 'pool:\n  maxConnectionsPercent: lots', ['pool.maxConnectionsPercent']],
    ['an unknown top-level field', 'bogusField: 1', ['bogusField']],
    ['an unknown pool field (a typo)', 'pool:\n  maxConnectionPercent: 50', ['pool', 'maxConnectionPercent']],
    ['a bad duration', 'pool:\n  borrowTimeout: soon', ['pool.borrowTimeout', 'invalid duration']],
    ['maxIdle above max', 'pool:\n  maxConnectionsPercent: 50\n  maxIdleConnectionsPercent: 60', ['pool.maxIdleConnectionsPercent']],
    ['a bad log level', 'shutdownGracePeriod: 1s\nlogLevel: loud', ['logLevel']],
  ])('%s exits 2 and names the field', async (_what, extra, mentions) => {
    const file = configFile(`bad-${Math.random().toString(36).slice(2)}.yaml`, base(extra));
    const r = await cli(['proxy', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid config');
    for (const m of mentions) expect(r.stderr).toContain(m);
    expect(r.stdout).toBe('');
  });

  test('missing targets exits 2 and names targets', async () => {
    const text = base('').replace('targets: ["127.0.0.1:1"]\n', '');
    const r = await cli(['proxy', '--config', configFile('no-targets.yaml', text)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^\s*targets: /m);
  });

  test('a target that is not host:port names targets[0]', async () => {
    const text = base('').replace('targets: ["127.0.0.1:1"]', 'targets: ["db.example.com"]');
    const r = await cli(['proxy', '--config', configFile('bad-target.yaml', text)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('targets[0]');
    expect(r.stderr).toContain('host:port');
  });

  test('a user with both passwordFile and secretFile names the user entry', async () => {
    const text = base('').replace(/passwordFile: ("[^"]*")\}/, 'passwordFile: $1, secretFile: "/x"}');
    const r = await cli(['proxy', '--config', configFile('both.yaml', text)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('users[0]');
    expect(r.stderr).toContain('exactly one of passwordFile or secretFile');
  });

  test('YAML that does not parse exits 2', async () => {
    const r = await cli(['proxy', '--config', configFile('broken.yaml', 'listen: [unclosed\n')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('(yaml)');
  });

  test('every problem is reported, not just the first', async () => {
    const r = await cli(['proxy', '--config', configFile('many.yaml', 'pool:\n  maxConnectionsPercent: 0\n  replicas: 0\n')]);
    expect(r.code).toBe(2);
    for (const f of ['targets', 'users', 'pool.maxConnectionsPercent', 'pool.replicas']) expect(r.stderr).toContain(f);
  });
});

/** A `dbproxy proxy --config FILE` child process. */
class Dbproxy {
  stdout = '';
  stderr = '';
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly file: string,
    readonly port: number,
    readonly adminPort: number,
  ) {
    this.child = spawn(process.execPath, [DBPROXY, 'proxy', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((res) => this.child.on('exit', (code, signal) => res({ code, signal })));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async whenReady(): Promise<void> {
    await eventually(
      async () => {
        if (!this.running) throw new Error(`dbproxy exited early (${this.child.exitCode}): ${this.stderr}`);
        return (await fetch(`http://127.0.0.1:${this.adminPort}/readyz`)).status === 200;
      },
      'dbproxy to be ready',
      20_000,
    );
  }

  async kill(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

describe('an old config key', () => {
  test('pool.replicas (now pool.divisor) still starts the proxy, and the log says to rename it', async () => {
    const secrets = writePasswordFiles();
    const [port, adminPort] = [await freePort(), await freePort()];
    const text = [
      `listen: 127.0.0.1:${port}`,
      `adminListen: 127.0.0.1:${adminPort}`,
      'targets: ["127.0.0.1:1"]',
      'users:',
      ...secrets.users.map((u) => `  - {name: ${u.name}, passwordFile: ${JSON.stringify(u.passwordFile)}}`),
      'pool:',
      '  replicas: 2',
      '',
    ].join('\n');
    const d = new Dbproxy(configFile('old-key.yaml', text), port, adminPort);
    try {
      const line = await eventually(() => {
        if (!d.running) throw new Error(`dbproxy exited (${d.child.exitCode}): ${d.stderr}`);
        return d.stdout.split('\n').find((l) => l.includes('pool.replicas is deprecated'));
      }, 'the deprecation warning', 20_000);
      expect(JSON.parse(line ?? '')).toMatchObject({ level: 40, msg: 'config key pool.replicas is deprecated: it is now pool.divisor (same meaning); rename it' });
      const stats = (await eventually(async () => (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json(), '/stats', 20_000)) as { pool: { replicas: number } };
      expect(stats.pool.replicas).toBe(2);
    } finally {
      await d.kill();
    }
  });
});

describe('a good config', () => {
  let cluster: PgCluster;
  const secrets = writePasswordFiles();
  const procs: Dbproxy[] = [];
  let main: Dbproxy;

  const configText = (port: number, adminPort: number, idleClientTimeout: string): string => {
    // One user through an RDS-style JSON secret, the others through plain password files.
    const legacy = USERS.find((u) => u.name === 'legacy')!;
    const legacySecret = join(secrets.dir, 'legacy.json');
    writeFileSync(legacySecret, JSON.stringify({ username: 'legacy', password: legacy.password, engine: 'postgres' }));
    return [
      `listen: 127.0.0.1:${port}`,
      `adminListen: 127.0.0.1:${adminPort}`,
      `targets: ["127.0.0.1:${cluster.port}"]`,
      'users:',
      ...secrets.users.map((u) => (u.name === 'legacy' ? `  - name: legacy\n    secretFile: ${JSON.stringify(legacySecret)}` : `  - name: ${u.name}\n    passwordFile: ${JSON.stringify(u.passwordFile)}`)),
      'adminUsers: [boss]',
      'clientAuth: {failureDelay: 50ms}',
      'healthCheck: {interval: 200ms}',
      'shutdownGracePeriod: 10s',
      'pool:',
      '  maxConnectionsPercent: 50',
      `  idleClientTimeout: ${idleClientTimeout}`,
      '',
    ].join('\n');
  };

  async function startDbproxy(name: string): Promise<Dbproxy> {
    const port = await freePort();
    const adminPort = await freePort();
    const d = new Dbproxy(configFile(name, configText(port, adminPort, '30m')), port, adminPort);
    procs.push(d);
    await d.whenReady();
    return d;
  }

  beforeAll(async () => {
    cluster = await startCluster();
    main = await startDbproxy('good.yaml');
  });

  afterAll(async () => {
    for (const d of procs) await d.kill();
    cluster?.destroy();
  });

  test('serves SELECT 1 to psql, for a SCRAM user and for an md5 user read from a JSON secret', async () => {
    const r = await psql(main.port, 'SELECT 1');
    expect({ code: r.code, out: r.stdout.trim(), err: r.stderr }).toEqual({ code: 0, out: '1', err: '' });
    const l = await psql(main.port, 'SELECT current_user', { user: 'legacy' });
    expect({ code: l.code, out: l.stdout.trim() }).toEqual({ code: 0, out: 'legacy' });
  });

  test('a wrong password through psql gets 28P01', async () => {
    const r = await psql(main.port, 'SELECT 1', { password: 'definitely-wrong-pw' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/password authentication failed for user "app"/);
  });

  test('/stats shows the budget from the config', async () => {
    const s = (await (await fetch(`http://127.0.0.1:${main.adminPort}/stats`)).json()) as { pool: { budget: number; maxConnectionsPercent: number } };
    expect(s.pool.maxConnectionsPercent).toBe(50);
    expect(s.pool.budget).toBe(Math.floor((Number(cluster.psql('SHOW max_connections')) * 50) / 100));
  });

  test('RELOAD re-reads the config file', async () => {
    const before = await psql(main.port, 'SHOW CONFIG', { user: 'boss', database: 'dbproxy' });
    expect(before.code).toBe(0);
    expect(before.stdout).toContain('idleClientTimeout|1800000');
    writeFileSync(main.file, configText(main.port, main.adminPort, '45m'));
    const r = await psql(main.port, 'RELOAD', { user: 'boss', database: 'dbproxy' });
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: '' });
    const after = await psql(main.port, 'SHOW CONFIG', { user: 'boss', database: 'dbproxy' });
    expect(after.stdout).toContain('idleClientTimeout|2700000');
  });

  test('malformed messages get 08P01 and never take the process down', async () => {
    // A process of its own: if this one dies, the other tests still tell their own story.
    const d = await startDbproxy('malformed.yaml');
    const bad: Array<[string, Buffer]> = [
      ['unknown type', Buffer.from([0x7a, 0, 0, 0, 4])],
      ['length below 4', Buffer.from([0x51, 0, 0, 0, 3])],
      ['absurd length', Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xf0])],
      ['Query without NUL', Buffer.concat([Buffer.from([0x51, 0, 0, 0, 12]), Buffer.from('SELECT 1')])],
    ];
    const fatalCode = async (c: RawClient): Promise<unknown> => {
      for (;;) {
        const m = await c.next().catch((e: Error) => ({ name: 'error', code: `no ErrorResponse (${e.message}); dbproxy stderr: ${d.stderr.slice(0, 400)}` }));
        if (m.name === 'error') return m.code;
      }
    };
    for (const [what, bytes] of bad) {
      // Once as the first message of a transaction, once with a backend already lent.
      const c = await RawClient.login(d.port, 'app', USERS[0]!.password);
      try {
        c.send(bytes);
        expect([what, await fatalCode(c)]).toEqual([what, '08P01']);
        await c.whenClosed();
      } finally {
        c.close();
      }
      const inTx = await RawClient.login(d.port, 'app', USERS[0]!.password);
      try {
        inTx.send(serialize.query('BEGIN'));
        await inTx.untilReady();
        inTx.send(bytes);
        expect([what, 'in a transaction', await fatalCode(inTx)]).toEqual([what, 'in a transaction', '08P01']);
        await inTx.whenClosed();
      } finally {
        inTx.close();
      }
      expect([what, d.running]).toEqual([what, true]);
      const r = await psql(d.port, 'SELECT 1');
      expect([what, r.code, r.stdout.trim()]).toEqual([what, 0, '1']);
    }
  });

  test('SIGTERM lets a transaction finish, then exits 0 promptly; logs are JSON without secrets', async () => {
    const c = await connected(main.port);
    const errors: Array<Error & { code?: string }> = [];
    c.on('error', (e) => errors.push(e));
    await c.query('BEGIN');
    await c.query('SELECT 1');

    main.child.kill('SIGTERM');
    await eventually(() => main.stdout.includes('"msg":"shutting down"'), 'dbproxy to start shutting down');
    expect(main.running).toBe(true);
    // New clients are refused while the transaction finishes.
    const refused = await psql(main.port, 'SELECT 1');
    expect(refused.code).not.toBe(0);
    expect((await c.query("SELECT 'still here' AS s")).rows).toEqual([{ s: 'still here' }]);
    const started = Date.now();
    await c.query('COMMIT');
    const { code, signal } = await main.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(5000);
    await eventually(() => errors.length > 0, 'the client to be told why it was closed');
    expect(errors[0]!.code).toBe('57P01');
    await c.end().catch(() => undefined);

    const lines = main.stdout.split('\n').filter((l) => l.length > 0);
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    const msgs = lines.map((l) => (JSON.parse(l) as { msg?: string }).msg);
    expect(msgs).toContain('dbproxy listening');
    expect(msgs).toContain('client authentication failed');
    expect(msgs).toContain('configuration reloaded');
    expect(msgs).toContain('stopped');
    const all = procs.map((d) => d.stdout + d.stderr).join('\n');
    const secretsSeen = [...USERS.map((u) => u.password), 'definitely-wrong-pw'].filter((s) => all.includes(s));
    expect(secretsSeen).toEqual([]);
    expect(main.stderr).toBe('');
  });
});
