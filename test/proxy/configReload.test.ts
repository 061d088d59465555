// The config file is a mounted ConfigMap: Kubernetes updates it in place (a symlink swap), and the
// operator changes pool.divisor that way when it scales, without rolling the pods. The proxy must
// pick the change up by itself, and keep its last good config when the new file is invalid.
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { stringify } from 'yaml';
import type { PgCluster } from '../../hack/postgres.js';
import { parseConfigYaml } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { ProxyServer } from '../../proxy/proxyServer.js';
import { connected, eventually, startCluster, writePasswordFiles } from '../support/harness.js';

let cluster: PgCluster;

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
});

afterAll(() => cluster?.destroy());

test('a changed config file is reloaded without a restart; an invalid one is refused and the old config kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-configmap-'));
  let version = 0;
  // Like a ConfigMap volume: config.yaml -> ..data/config.yaml, ..data -> ..<version>
  const publish = (text: string): void => {
    const v = join(dir, `..v${++version}`);
    mkdirSync(v);
    writeFileSync(join(v, 'config.yaml'), text);
    symlinkSync(`..v${version}`, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  const base = {
    listen: '127.0.0.1:0',
    adminListen: '127.0.0.1:0',
    targets: [`127.0.0.1:${cluster.port}`],
    users: writePasswordFiles().users,
    healthCheck: { interval: '200ms' },
    pool: { maxConnectionsPercent: 50, divisor: 1 },
  };
  publish(stringify(base));
  symlinkSync('..data/config.yaml', join(dir, 'config.yaml'));
  const configPath = join(dir, 'config.yaml');
  const logs: string[] = [];
  const server = await ProxyServer.create({
    config: parseConfigYaml(stringify(base)),
    configPath,
    configRecheckMs: 100,
    log: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }),
  });
  const { port } = await server.start();
  try {
    await server.whenReady();
    expect(server.stats().pool).toMatchObject({ replicas: 1, budget: 20 });
    const c = await connected(port);
    publish(stringify({ ...base, pool: { ...base.pool, divisor: 2 } }));
    await eventually(() => server.stats().pool.replicas === 2, 'the new divisor to be applied', 10_000);
    expect(server.stats().pool.budget).toBe(10);
    // A file written for an older proxy: the old key still works, and the log says to rename it.
    publish(stringify({ ...base, pool: { maxConnectionsPercent: 50, replicas: 4 } }));
    await eventually(() => server.stats().pool.replicas === 4, 'the divisor under its old name to be applied', 10_000);
    expect(server.stats().pool.budget).toBe(5);
    expect(logs.some((l) => l.includes('"level":40') && l.includes('pool.replicas is deprecated'))).toBe(true);
    publish(stringify({ ...base, pool: { ...base.pool, divisor: 2 } }));
    await eventually(() => server.stats().pool.replicas === 2, 'the divisor to be applied again', 10_000);
    // Clients are untouched by the reload.
    expect((await c.query('SELECT 1 AS x')).rows[0].x).toBe(1);
    publish('pool: [this is not a config');
    await eventually(() => logs.some((l) => l.includes('not valid; keeping the previous config')), 'the invalid file to be refused', 10_000);
    expect(server.stats().pool.replicas).toBe(2);
    expect((await c.query('SELECT 2 AS x')).rows[0].x).toBe(2);
    await c.end();
  } finally {
    await server.shutdown(1000);
  }
});

test('paused in the config file: new transactions wait, the one in flight finishes, and paused: false lets the waiting ones run; the console cannot RESUME it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-configmap-'));
  const configPath = join(dir, 'config.yaml');
  const secrets = writePasswordFiles();
  const base = {
    listen: '127.0.0.1:0',
    adminListen: '127.0.0.1:0',
    targets: [`127.0.0.1:${cluster.port}`],
    users: secrets.users,
    adminUsers: ['boss'],
    clientAuth: { failureDelay: '50ms' },
    healthCheck: { interval: '200ms' },
    pool: { maxConnectionsPercent: 50 },
  };
  writeFileSync(configPath, stringify(base));
  const logs: string[] = [];
  const server = await ProxyServer.create({ config: parseConfigYaml(stringify(base)), configPath, configRecheckMs: 100, log: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }) });
  const { port, adminPort } = await server.start();
  const stats = async () => (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as ProxyStats;
  try {
    await server.whenReady();
    const inFlight = await connected(port);
    const waiter = await connected(port);
    await inFlight.query('BEGIN');
    await inFlight.query('SELECT 1');

    writeFileSync(configPath, stringify({ ...base, paused: true }));
    await eventually(async () => (await stats()).paused, '/stats to say paused', 10_000);
    expect((await stats()).pause).toEqual({ config: true, admin: false });
    // Connections stay open; a new transaction waits; the one in flight goes on to its end.
    let answered = false;
    const waiting = waiter.query('SELECT 42 AS answer').then((r) => {
      answered = true;
      return r.rows[0].answer as number;
    });
    await eventually(async () => (await stats()).waiting === 1, 'the new transaction to wait', 10_000);
    await inFlight.query('COMMIT');
    expect(answered).toBe(false);

    // RESUME on the admin console lifts only its own PAUSE, and says why nothing happened.
    const boss = await connected(port, 'boss', { database: 'dbproxy' });
    const notices: string[] = [];
    boss.on('notice', (n) => notices.push(n.message ?? ''));
    await boss.query('RESUME');
    await eventually(() => notices.length > 0, 'the RESUME notice');
    expect(notices[0]).toContain('still paused: the config file says paused: true');
    expect((await stats()).paused).toBe(true);
    expect(answered).toBe(false);

    writeFileSync(configPath, stringify({ ...base, paused: false }));
    expect(await waiting).toBe(42);
    expect(await stats()).toMatchObject({ paused: false, pause: { config: false, admin: false }, waiting: 0 });
    expect(logs.some((l) => l.includes('"msg":"paused: new transactions wait"') && l.includes('"by":["config"]'))).toBe(true);
    expect(logs.some((l) => l.includes('"msg":"resumed"'))).toBe(true);
    await boss.end();
    await inFlight.end();
    await waiter.end();
  } finally {
    await server.shutdown(1000);
  }
});

test('a proxy started from a file that says paused starts paused', async () => {
  const config = parseConfigYaml(
    stringify({ listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', targets: [`127.0.0.1:${cluster.port}`], users: writePasswordFiles().users, healthCheck: { interval: '200ms' }, paused: true }),
  );
  const server = await ProxyServer.create({ config, log: pino({ level: 'silent' }) });
  await server.start();
  try {
    await server.whenReady();
    expect(server.stats()).toMatchObject({ ready: true, paused: true, pause: { config: true, admin: false } });
  } finally {
    await server.shutdown(1000);
  }
});
