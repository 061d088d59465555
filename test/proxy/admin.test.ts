// Issue 2, behaviours 7 and 9 against real PostgreSQL 15: the HTTP admin endpoints (/healthz,
// /readyz, /metrics, /stats), the admin database "dbproxy" (SHOW ..., PAUSE, RESUME, RELOAD), and
// logs that never carry a password.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { pino } from 'pino';
import { stringify } from 'yaml';
import type { PgCluster } from '../../hack/postgres.js';
import { parseConfigYaml } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { ProxyServer } from '../../proxy/proxyServer.js';
import {
  type RunningProxy,
  USERS,
  adminQuery,
  client,
  connected,
  eventually,
  proxyBackendCount,
  startCluster,
  startProxy,
  writePasswordFiles,
} from '../support/harness.js';

const MAX_CONNECTIONS = 40;

let cluster: PgCluster;
let proxy: RunningProxy;
const open: pg.Client[] = [];

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: MAX_CONNECTIONS });
  // boss may do everything (adminUsers, from the harness), legacy may look (statsUsers), app neither.
  proxy = await startProxy(cluster, { statsUsers: ['legacy'] });
});

afterAll(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await proxy?.stop();
  cluster?.destroy();
});

async function newClient(user = 'app', extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
  const c = await connected(proxy.port, user, extra);
  // A FATAL from the proxy must not become an unhandled 'error' event in the test process.
  c.on('error', () => undefined);
  open.push(c);
  return c;
}

async function closeClient(c: pg.Client): Promise<void> {
  await c.end();
  open.splice(open.indexOf(c), 1);
}

function http(path: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${proxy.adminPort}${path}`);
}

async function stats(): Promise<ProxyStats> {
  const res = await http('/stats');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as ProxyStats;
}

async function metricsText(): Promise<string> {
  const res = await http('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  return res.text();
}

/** The value of one sample line, e.g. metricValue(text, 'dbproxy_client_connections'). */
function metricValue(text: string, sample: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    if (sp > 0 && line.slice(0, sp) === sample) return Number(line.slice(sp + 1));
  }
  return undefined;
}

function metricType(text: string, name: string): string | undefined {
  return new RegExp(`^# TYPE ${name} (\\w+)$`, 'm').exec(text)?.[1];
}

function sqlstate(e: unknown): string | undefined {
  return (e as { code?: string }).code;
}

/** Runs a query on a pg client and also reports whether it has settled yet. */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = p.finally(() => {
    done = true;
  });
  promise.catch(() => undefined);
  return { promise, settled: () => done };
}

describe('HTTP admin endpoints', () => {
  test('GET /healthz answers 200', async () => {
    const res = await http('/healthz');
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok\n');
  });

  test('GET /readyz answers 200 when a writer is known', async () => {
    const res = await http('/readyz');
    expect(res.status).toBe(200);
  });

  test('an unknown path is 404, and a POST is refused', async () => {
    expect((await http('/nope')).status).toBe(404);
    const post = await fetch(`http://127.0.0.1:${proxy.adminPort}/stats`, { method: 'POST' });
    expect(post.status).toBe(405);
  });

  test('/stats has the ProxyStats shape, and the budget is floor(max_connections * pct / 100)', async () => {
    const s = await stats();
    const targetMax = Number(cluster.psql('SHOW max_connections'));
    expect(targetMax).toBe(MAX_CONNECTIONS);
    expect(s).toEqual({
      version: 1,
      replicaId: 0,
      ready: true,
      paused: false,
      pause: { config: false, admin: false },
      shuttingDown: false,
      clientConnections: expect.any(Number),
      databaseConnections: expect.any(Number),
      borrowed: expect.any(Number),
      pinned: expect.any(Number),
      idle: expect.any(Number),
      waiting: expect.any(Number),
      borrowTimeouts: 0,
      pinsByReason: expect.any(Object),
      pool: {
        budget: Math.floor((targetMax * 90) / 100),
        maxDatabaseConnections: Math.floor((targetMax * 90) / 100) - 1,
        targetMaxConnections: targetMax,
        maxConnectionsPercent: 90,
        maxIdleConnectionsPercent: 45,
        replicas: 1,
        users: expect.any(Array),
      },
      writer: `127.0.0.1:${cluster.port}`,
      targets: [{ endpoint: `127.0.0.1:${cluster.port}`, state: 'AVAILABLE', role: 'writer', maxConnections: targetMax }],
      failovers: 0,
      lastFailover: null,
    });
    expect(s.pool.budget).toBe(36);
  });

  test('/stats counts agree with reality: clients, borrowed in a transaction, pinned by a temp table', async () => {
    const inTx = await newClient();
    const withTemp = await newClient();
    const plain = await newClient('legacy');

    await inTx.query('BEGIN');
    await inTx.query('SELECT 1');
    await withTemp.query('CREATE TEMP TABLE scratch (id int)');
    await withTemp.query('INSERT INTO scratch VALUES (1)');
    await plain.query('SELECT 1');

    const s = await stats();
    expect(s.clientConnections).toBe(3);
    expect(s.borrowed).toBe(2); // the transaction and the pinned session; `plain` gave its backend back
    expect(s.pinned).toBe(1);
    expect(s.pinsByReason).toEqual({ temporary_object: 1 });
    expect(s.waiting).toBe(0);
    expect(s.databaseConnections).toBe(s.borrowed + s.idle);
    // What the server sees: as many proxy backends as the proxy says it holds.
    await eventually(() => proxyBackendCount(cluster) === s.databaseConnections, `server to show ${s.databaseConnections} proxy backends`);
    // The backend lent to the transaction really is inside one on the server.
    const inTxOnServer = Number(cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND state = 'idle in transaction'"));
    expect(inTxOnServer).toBe(1);

    await inTx.query('COMMIT');
    const after = await stats();
    expect(after.borrowed).toBe(1);
    expect(after.pinned).toBe(1);

    await closeClient(withTemp);
    await eventually(async () => (await stats()).pinned === 0, 'the pinned backend to be returned after its client left');
    const last = await stats();
    expect(last.pinsByReason).toEqual({});
    expect(last.borrowed).toBe(0);
    await closeClient(inTx);
    await closeClient(plain);
    await eventually(async () => (await stats()).clientConnections === 0, 'client count to drop to 0');
  });

  test('/metrics has the RDS-Proxy-style names, with values that follow the clients', async () => {
    const a = await newClient();
    const b = await newClient();
    await a.query('BEGIN');
    await a.query('SELECT 1');
    await b.query('CREATE TEMP TABLE t_metrics (x int)');

    const text = await metricsText();
    for (const [name, type] of [
      ['dbproxy_client_connections', 'gauge'],
      ['dbproxy_database_connections', 'gauge'],
      ['dbproxy_database_connections_currently_borrowed', 'gauge'],
      ['dbproxy_database_connections_currently_session_pinned', 'gauge'],
      ['dbproxy_database_connections_borrow_latency_seconds', 'histogram'],
      ['dbproxy_database_connections_borrow_timeouts_total', 'counter'],
      ['dbproxy_session_pins_total', 'counter'],
    ] as const) {
      expect([name, metricType(text, name)]).toEqual([name, type]);
    }
    expect(metricValue(text, 'dbproxy_client_connections')).toBe(2);
    expect(metricValue(text, 'dbproxy_database_connections_currently_borrowed')).toBe(2);
    expect(metricValue(text, 'dbproxy_database_connections_currently_session_pinned')).toBe(1);
    const s = await stats();
    expect(metricValue(text, 'dbproxy_database_connections')).toBe(s.databaseConnections);
    expect(metricValue(text, 'dbproxy_database_connections_borrow_timeouts_total')).toBe(0);
    // Two temp-table sessions so far in this file (the /stats test and this one).
    expect(metricValue(text, 'dbproxy_session_pins_total{reason="temporary_object"}')).toBe(2);
    // Every borrow so far was observed by the histogram.
    const count = metricValue(text, 'dbproxy_database_connections_borrow_latency_seconds_count');
    expect(count).toBeGreaterThanOrEqual(5);
    expect(metricValue(text, 'dbproxy_database_connections_borrow_latency_seconds_bucket{le="+Inf"}')).toBe(count);

    await a.query('COMMIT');
    await closeClient(a);
    await closeClient(b);
    await eventually(async () => metricValue(await metricsText(), 'dbproxy_client_connections') === 0, 'dbproxy_client_connections to drop to 0');
    // The pinned backend is reset (DISCARD ALL) before it counts as unpinned.
    await eventually(async () => metricValue(await metricsText(), 'dbproxy_database_connections_currently_session_pinned') === 0, 'the pinned gauge to drop to 0');
    const later = await metricsText();
    expect(metricValue(later, 'dbproxy_database_connections_currently_borrowed')).toBe(0);
    // A counter: pins stay counted after the pinned client has gone.
    expect(metricValue(later, 'dbproxy_session_pins_total{reason="temporary_object"}')).toBe(2);
  });
});

describe('RDS-named connection metrics', () => {
  test('client logins that succeed, fail and close, and cancel requests (neither), are counted as RDS Proxy counts them', async () => {
    const m = async (sample: string): Promise<number> => metricValue(await metricsText(), sample) ?? 0;
    const before = {
      received: await m('dbproxy_client_connections_received_total'),
      ok: await m('dbproxy_client_connections_setup_succeeded_total'),
      failed: await m('dbproxy_client_connections_setup_failed_total'),
      closed: await m('dbproxy_client_connections_closed_total'),
    };
    const good = await newClient();
    expect(await m('dbproxy_client_connections_no_tls')).toBe(1);
    expect(await m('dbproxy_client_connections_tls')).toBe(0);
    // (Another database than the log test below counts failed logins for.)
    const bad = client(proxy.port, 'app', { password: 'wrong', database: 'metrics_test' });
    bad.on('error', () => undefined);
    await expect(bad.connect()).rejects.toMatchObject({ code: '28P01' });
    // A CancelRequest connection: neither a login nor a failed one.
    await new Promise<void>((resolve, reject) => {
      const s = netConnect({ host: '127.0.0.1', port: proxy.port }, () => {
        const pkt = Buffer.alloc(16);
        pkt.writeInt32BE(16, 0);
        pkt.writeInt32BE(80877102, 4);
        pkt.writeInt32BE(12345, 8);
        pkt.writeInt32BE(678, 12);
        s.end(pkt);
      });
      s.on('close', () => resolve());
      s.on('error', reject);
    });
    await closeClient(good);
    await eventually(async () => (await m('dbproxy_client_connections_closed_total')) === before.closed + 3, 'three connections to be counted as closed');
    expect(await m('dbproxy_client_connections_received_total')).toBe(before.received + 3);
    expect(await m('dbproxy_client_connections_setup_succeeded_total')).toBe(before.ok + 1);
    expect(await m('dbproxy_client_connections_setup_failed_total')).toBe(before.failed + 1);
  });

  test('backend connection requests and setups are counted per endpoint, and each request observes the database response latency', async () => {
    const endpoint = `{endpoint="127.0.0.1:${cluster.port}"}`;
    const text = await metricsText();
    const requests = metricValue(text, `dbproxy_database_connection_requests_total${endpoint}`) ?? 0;
    expect(requests).toBeGreaterThan(0);
    expect(metricValue(text, `dbproxy_database_connections_setup_succeeded_total${endpoint}`)).toBe(requests);
    expect(metricType(text, 'dbproxy_database_connections_setup_failed_total')).toBe('counter');
    const latencyBefore = metricValue(text, 'dbproxy_query_database_response_latency_seconds_count') ?? 0;
    const c = await newClient();
    for (let i = 0; i < 5; i++) await c.query('SELECT 1');
    // An answer of many reads is observed once too, at its first read.
    const big = await c.query("SELECT repeat('x', 4000000) AS big");
    expect(big.rows[0].big).toHaveLength(4_000_000);
    await closeClient(c);
    expect(metricValue(await metricsText(), 'dbproxy_query_database_response_latency_seconds_count')).toBe(latencyBefore + 6);
  });
});

describe('admin database "dbproxy"', () => {
  const columns = (r: pg.QueryResult): string[] => r.fields.map((f) => f.name);

  test('SHOW POOLS, CLIENTS, SERVERS, STATE and TARGETS describe the clients, backends and pins', async () => {
    const busy = await newClient();
    const pinned = await newClient();
    await busy.query('BEGIN');
    await busy.query('SELECT 1');
    await pinned.query('CREATE TEMP TABLE t_show (x int)');

    const pools = await adminQuery(proxy.port, 'SHOW POOLS');
    // PgBouncer's columns first (test/observability compares them with PgBouncer 1.24), dbproxy's after.
    expect(columns(pools).slice(0, 3)).toEqual(['database', 'user', 'cl_active']);
    expect(columns(pools).slice(-5)).toEqual(['sv_pinned', 'pool_size', 'pin_reasons', 'target', 'target_role']);
    const appPool = pools.rows.find((r) => r.user === 'app' && r.database === 'postgres');
    expect(appPool).toMatchObject({
      cl_active: 2,
      cl_waiting: 0,
      sv_active: 2,
      sv_pinned: 1,
      pool_size: 35,
      pool_mode: 'transaction',
      pin_reasons: 'temporary_object',
      target: `127.0.0.1:${cluster.port}`,
      target_role: 'writer',
    });

    const clients = await adminQuery(proxy.port, 'SHOW CLIENTS;');
    expect(columns(clients).slice(-4)).toEqual(['session_state', 'pinned_reasons', 'connect_seconds', 'idle_seconds']);
    expect(clients.rows).toHaveLength(2);
    const states = clients.rows.map((r) => [r.type, r.user, r.state, r.session_state, r.pinned_reasons]).sort();
    expect(states).toEqual([
      ['C', 'app', 'active', 'active', null],
      ['C', 'app', 'active', 'pinned', 'temporary_object'],
    ]);
    // Each client's link names the server it holds, and its addr/port are the client's own end.
    const clientPorts = [busy, pinned].map((c) => (c as unknown as { connection: { stream: { localPort: number } } }).connection.stream.localPort).sort();
    expect(clients.rows.map((r) => r.port).sort()).toEqual(clientPorts);

    const servers = await adminQuery(proxy.port, 'show servers');
    expect(columns(servers).slice(-5)).toEqual(['pool_state', 'pinned_reasons', 'target_role', 'age_seconds', 'idle_seconds']);
    expect(servers.rows.map((r) => r.pool_state).filter((s) => s !== 'idle').sort()).toEqual(['borrowed', 'pinned']);
    // Each server row is a real PostgreSQL backend, linked to the client that holds it.
    const serverPids = new Set(cluster.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'").split('\n'));
    for (const r of servers.rows) {
      expect([r.type, r.addr, r.port, r.target_role]).toEqual(['S', '127.0.0.1', cluster.port, 'writer']);
      expect(serverPids.has(String(r.remote_pid))).toBe(true);
    }
    const held = servers.rows.filter((r) => r.pool_state !== 'idle');
    expect(held.map((r) => r.link).sort()).toEqual(clients.rows.map((r) => r.ptr).sort());
    expect(clients.rows.map((r) => r.link).sort()).toEqual(held.map((r) => r.ptr).sort());
    expect(held.find((r) => r.pool_state === 'pinned')?.pinned_reasons).toBe('temporary_object');

    const st = await adminQuery(proxy.port, 'SHOW STATE');
    expect(columns(st)).toEqual(['key', 'value']);
    expect(st.rows.slice(0, 3)).toEqual([
      { key: 'active', value: 'yes' },
      { key: 'paused', value: 'no' },
      { key: 'suspended', value: 'no' },
    ]);
    const byName = new Map(st.rows.map((r) => [r.key as string, r.value as string | null]));
    expect(byName.get('client_connections')).toBe('2');
    expect(byName.get('borrowed')).toBe('2');
    expect(byName.get('pinned')).toBe('1');
    expect(byName.get('budget')).toBe('36');
    expect(byName.get('target_max_connections')).toBe(String(MAX_CONNECTIONS));
    expect(byName.get('pins_temporary_object')).toBe('1');
    expect(byName.get('writer')).toBe(`127.0.0.1:${cluster.port}`);

    const targets = await adminQuery(proxy.port, 'SHOW TARGETS');
    expect(columns(targets)).toEqual(['endpoint', 'state', 'reason', 'role', 'max_connections', 'reader_state', 'reader_reason', 'lag_ms', 'lag_bytes', 'replay_paused']);
    expect(targets.rows).toEqual([
      { endpoint: `127.0.0.1:${cluster.port}`, state: 'AVAILABLE', reason: null, role: 'writer', max_connections: MAX_CONNECTIONS, reader_state: null, reader_reason: null, lag_ms: null, lag_bytes: null, replay_paused: null },
    ]);

    await busy.query('COMMIT');
    await closeClient(busy);
    await closeClient(pinned);
    await eventually(async () => (await stats()).clientConnections === 0, 'clients to be gone');
  });

  test('a stats user may run every SHOW', async () => {
    for (const what of ['POOLS', 'CLIENTS', 'SERVERS', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'TOTALS', 'DATABASES', 'USERS', 'LISTS', 'STATE', 'TARGETS', 'CONFIG', 'VERSION']) {
      const r = await adminQuery(proxy.port, `SHOW ${what}`, 'legacy');
      expect([what, r.command]).toEqual([what, 'SHOW']);
    }
  });

  test('a user in neither adminUsers nor statsUsers is refused at login to the admin database (28000), after authenticating', async () => {
    const before = (await proxy.server.metrics.clientRejections.get()).values.find((v) => v.labels.reason === 'admin_not_allowed')?.value ?? 0;
    const e = await adminQuery(proxy.port, 'SHOW CLIENTS', 'app').then(
      () => undefined,
      (err: unknown) => err as { code?: string; message?: string; severity?: string },
    );
    expect(e).toMatchObject({ code: '28000', severity: 'FATAL', message: 'user "app" is not allowed to use the admin database "dbproxy" (not in adminUsers or statsUsers)' });
    const after = (await proxy.server.metrics.clientRejections.get()).values.find((v) => v.labels.reason === 'admin_not_allowed')?.value ?? 0;
    expect(after).toBe(before + 1);
    // The password is checked first: a wrong one says nothing about adminUsers.
    const c = client(proxy.port, 'app', { database: 'dbproxy', password: 'wrong' });
    await expect(c.connect()).rejects.toMatchObject({ code: '28P01' });
    // The same user still logs in to real databases.
    const ok = await newClient('app');
    await closeClient(ok);
  });

  test('PAUSE (as boss) holds new transactions; RESUME lets them run', async () => {
    const admin = await newClient('boss', { database: 'dbproxy' });
    const worker = await newClient();
    await worker.query('SELECT 1'); // logged in and served once before the pause

    await admin.query('PAUSE');
    expect(await stats()).toMatchObject({ paused: true, pause: { config: false, admin: true } });

    const q = tracked(worker.query("SELECT 'ran' AS r"));
    await eventually(async () => (await stats()).waiting === 1, 'the client to queue for a backend while paused');
    const clients = await adminQuery(proxy.port, 'SHOW CLIENTS');
    expect(clients.rows.map((r) => r.state)).toContain('waiting');
    expect(q.settled()).toBe(false);

    await admin.query('RESUME');
    const r = await q.promise;
    expect(r.rows).toEqual([{ r: 'ran' }]);
    const s = await stats();
    expect(s.paused).toBe(false);
    expect(s.waiting).toBe(0);
    await closeClient(worker);
    await closeClient(admin);
  });

  test('PAUSE, RESUME and RELOAD as a stats user are refused with 42501', async () => {
    for (const cmd of ['PAUSE', 'RESUME', 'RELOAD']) {
      const e = await adminQuery(proxy.port, cmd, 'legacy').then(
        () => undefined,
        (err: unknown) => err,
      );
      expect([cmd, sqlstate(e)]).toEqual([cmd, '42501']);
    }
    expect((await stats()).paused).toBe(false);
  });

  test('a user dropped from statsUsers by a reload loses SHOW in a session already open (42501)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbproxy-admin-'));
    const configPath = join(dir, 'config.yaml');
    const base = {
      listen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      targets: [`127.0.0.1:${cluster.port}`],
      users: writePasswordFiles().users,
      healthCheck: { interval: '200ms' },
      adminUsers: ['boss'],
      statsUsers: ['legacy'],
    };
    writeFileSync(configPath, stringify(base));
    const server = await ProxyServer.create({ config: parseConfigYaml(stringify(base)), configPath, configRecheckMs: 60_000, log: pino({ level: 'silent' }) });
    const { port } = await server.start();
    try {
      await server.whenReady();
      const watcher = await connected(port, 'legacy', { database: 'dbproxy' });
      watcher.on('error', () => undefined);
      expect((await watcher.query('SHOW CLIENTS')).command).toBe('SHOW');
      writeFileSync(configPath, stringify({ ...base, statsUsers: [] }));
      expect((await adminQuery(port, 'RELOAD', 'boss')).command).toBe('RELOAD');
      await expect(watcher.query('SHOW CLIENTS')).rejects.toMatchObject({
        code: '42501',
        message: 'permission denied: SHOW needs a user listed in adminUsers or statsUsers',
      });
      await expect(watcher.query('PAUSE')).rejects.toMatchObject({ code: '42501' });
      await watcher.end();
      await expect(adminQuery(port, 'SHOW CLIENTS', 'legacy')).rejects.toMatchObject({ code: '28000' });
    } finally {
      await server.shutdown(1000);
    }
  });

  test('an unknown admin command gives 42601 and the console stays usable', async () => {
    const admin = await newClient('boss', { database: 'dbproxy' });
    await expect(admin.query('SHOW ME EVERYTHING')).rejects.toMatchObject({ code: '42601' });
    await expect(admin.query('DROP TABLE x')).rejects.toMatchObject({ code: '42601' });
    const r = await admin.query('SHOW STATS');
    expect(r.rows.length).toBeGreaterThan(0);
    await closeClient(admin);
  });

  test('RELOAD without a config file succeeds with a notice', async () => {
    const admin = await newClient('boss', { database: 'dbproxy' });
    const notices: string[] = [];
    admin.on('notice', (n) => notices.push(n.message ?? ''));
    const r = await admin.query('RELOAD');
    expect(r.command).toBe('RELOAD');
    expect(notices).toEqual(['no config file to reload']);
    await closeClient(admin);
    // Still serving after the reload.
    const c = await newClient();
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await closeClient(c);
  });
});

describe('logs', () => {
  test('no log line ever contains a password, after failed logins and normal traffic', async () => {
    const wrong = 'not-the-right-password-xyzzy';
    for (const user of ['app', 'legacy', 'nobody']) {
      const c = client(proxy.port, user, { password: wrong });
      c.on('error', () => undefined);
      const e = await c.connect().then(
        () => undefined,
        (err: unknown) => err,
      );
      expect([user, sqlstate(e)]).toEqual([user, '28P01']);
      await c.end().catch(() => undefined);
    }
    const a = await newClient();
    const l = await newClient('legacy');
    await a.query('SELECT $1::text AS v', ['hello']);
    await a.query('CREATE TEMP TABLE t_logs (secret text)');
    await a.query("INSERT INTO t_logs VALUES ('app-secret')");
    await l.query('BEGIN');
    await l.query('SELECT 1');
    await l.query('COMMIT');
    await adminQuery(proxy.port, 'SHOW CLIENTS');
    await closeClient(a);
    await closeClient(l);

    // The logs were captured: the failed logins and the pin are there.
    expect(proxy.logs.filter((line) => line.includes('client authentication failed') && line.includes('"database":"postgres"'))).toHaveLength(3);
    expect(proxy.logs.some((line) => line.includes('"reason":"temporary_object"'))).toBe(true);
    for (const line of proxy.logs) JSON.parse(line);
    const secrets = [...USERS.map((u) => u.password), wrong];
    const leaks = proxy.logs.filter((line) => secrets.some((s) => line.includes(s)));
    expect(leaks).toEqual([]);
  });
});

describe('readiness follows the target', () => {
  test('/readyz is 503 after the target stops and 200 again once it is back', async () => {
    for (const c of open.splice(0)) await c.end().catch(() => undefined);
    cluster.stop('fast');
    await eventually(async () => (await http('/readyz')).status === 503, '/readyz to turn 503 with the target stopped');
    const s = await stats();
    expect(s.ready).toBe(false);
    expect(s.writer).toBeNull();
    expect(s.targets).toEqual([expect.objectContaining({ endpoint: `127.0.0.1:${cluster.port}`, state: 'UNAVAILABLE', role: 'unknown' })]);
    // The first failed check sees its connection dropped; the next ones find the port refusing.
    await eventually(async () => (await stats()).targets[0]?.reason === 'UNREACHABLE', 'the target to be reported UNREACHABLE');
    const targets = await adminQuery(proxy.port, 'SHOW TARGETS');
    expect(targets.rows).toEqual([expect.objectContaining({ state: 'UNAVAILABLE', reason: 'UNREACHABLE', role: 'unknown' })]);
    // New clients can still log in to the admin console (no backend needed) while the target is down.
    expect((await adminQuery(proxy.port, 'SHOW STATE')).rows).toContainEqual({ key: 'writer', value: null });
    // /healthz is about the process, not the target.
    expect((await http('/healthz')).status).toBe(200);

    cluster.start();
    await eventually(async () => (await http('/readyz')).status === 200, '/readyz to turn 200 with the target back', 20_000);
    const c = await newClient();
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    await closeClient(c);
  });
});
