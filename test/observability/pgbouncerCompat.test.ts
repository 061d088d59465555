// dbproxy's admin console against PgBouncer 1.24's, side by side in front of one PostgreSQL:
//  - every SHOW both answer has PgBouncer's columns, names and type OIDs, in PgBouncer's order,
//    with dbproxy's own columns only after them;
//  - a pgbouncer_exporter-style scrape (hack/pgbouncer-scrape: lib/pq, the exporter's queries and
//    metric names; the exporter's own module is not served by the Go module proxy here) of each
//    succeeds and yields the same series;
//  - under a pgbench load the scraped numbers equal what pgbench did, on both, and equal dbproxy's
//    own /metrics.
import { jest } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type pg from 'pg';
import { pgBouncer124, startPgBouncer, type PgBouncer } from '../../hack/pgbouncer.js';
import type { PgCluster } from '../../hack/postgres.js';
import { repoRoot } from '../../hack/repoRoot.js';
import { type RunningProxy, USERS, connected, eventually, freePort, pgBin, run, startCluster, startProxy } from '../support/harness.js';

jest.setTimeout(300_000);

const PASSWORD = (u: string): string => USERS.find((x) => x.name === u)!.password;
let cluster: PgCluster;
let proxy: RunningProxy;
let bouncer: PgBouncer;
let scrapeBin: string;
const open: pg.Client[] = [];

beforeAll(async () => {
  const bin = pgBouncer124();
  if (!bin) throw new Error('PgBouncer 1.24 is not unpacked: run hack/install-bench-deps.sh (.ci/run does)');
  scrapeBin = execFileSync('bash', [join(repoRoot(), 'hack/pgbouncer-scrape/install.sh'), '--quiet'], { encoding: 'utf8' }).trim().split('\n').pop()!;
  cluster = await startCluster({ maxConnections: 60 });
  proxy = await startProxy(cluster, { statsUsers: ['legacy'] });
  bouncer = await startPgBouncer({
    bin,
    listenPort: await freePort(),
    targetPort: cluster.port,
    poolSize: 10,
    users: USERS.map((u) => ({ name: u.name, password: u.password })),
    // As pgbouncer_exporter's own documentation asks: lib/pq sends extra_float_digits at startup.
    settings: { admin_users: 'boss', stats_users: 'legacy', stats_period: 60, ignore_startup_parameters: 'extra_float_digits' },
  });
  const init = await run(pgBin('pgbench'), ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'app', 'postgres'], { PGPASSWORD: PASSWORD('app') });
  expect(init.code).toBe(0);
});

afterAll(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  await proxy?.stop();
  await bouncer?.stop();
  cluster?.destroy();
});

interface Side {
  name: 'dbproxy' | 'pgbouncer';
  port: number;
  adminDb: string;
}
const sides = (): Side[] => [
  { name: 'dbproxy', port: proxy.port, adminDb: 'dbproxy' },
  { name: 'pgbouncer', port: bouncer.port, adminDb: 'pgbouncer' },
];

async function admin(side: Side, sql: string): Promise<pg.QueryResult<unknown[]>> {
  const c = await connected(side.port, 'boss', { database: side.adminDb });
  try {
    return await c.query<unknown[]>({ text: sql, rowMode: 'array' });
  } finally {
    await c.end();
  }
}

async function client(side: Side): Promise<pg.Client> {
  const c = await connected(side.port, 'app');
  c.on('error', () => undefined);
  open.push(c);
  return c;
}

async function closeAll(): Promise<void> {
  for (const c of open.splice(0)) await c.end().catch(() => undefined);
}

/** Samples of a Prometheus text exposition: "name{labels}" -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** Metric families and their label names, from # TYPE lines and samples. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0];
    const labels = [...line.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)].map((m) => m[1]).sort().join(',');
    out.set(name, labels);
  }
  return out;
}

async function scrape(side: Side): Promise<string> {
  const dsn = `postgres://boss:${PASSWORD('boss')}@127.0.0.1:${side.port}/${side.adminDb}?sslmode=disable`;
  const r = await run(scrapeBin, [dsn]);
  expect([side.name, r.code, r.stderr]).toEqual([side.name, 0, '']);
  return r.stdout;
}

const value = (text: string, sample: string): number | undefined => samples(text).get(sample);

async function dbproxyMetrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`);
  return res.text();
}

describe('the admin console next to PgBouncer 1.24', () => {
  const subjects = ['POOLS', 'STATS', 'STATS_TOTALS', 'STATS_AVERAGES', 'TOTALS', 'DATABASES', 'USERS', 'LISTS', 'CLIENTS', 'SERVERS', 'CONFIG', 'VERSION', 'STATE'];

  test.each(subjects)('SHOW %s has PgBouncer\'s columns, types and order, dbproxy\'s own after them', async (subject) => {
    // Something in every list: a client holding a backend on each side.
    const [a, b] = [await client(sides()[0]!), await client(sides()[1]!)];
    await a.query('BEGIN');
    await b.query('BEGIN');
    await a.query('SELECT 1');
    await b.query('SELECT 1');
    const [ours, theirs] = [await admin(sides()[0]!, `SHOW ${subject}`), await admin(sides()[1]!, `SHOW ${subject}`)];
    const shape = (r: pg.QueryResult<unknown[]>) => r.fields.map((f) => `${f.name}:${f.dataTypeID}`);
    expect(shape(ours).slice(0, theirs.fields.length)).toEqual(shape(theirs));
    expect(ours.command).toBe(theirs.command);
    await closeAll();
  });

  test('SHOW LISTS names the same lists in the same order', async () => {
    const [ours, theirs] = [await admin(sides()[0]!, 'SHOW LISTS'), await admin(sides()[1]!, 'SHOW LISTS')];
    expect(ours.rows.map((r) => r[0])).toEqual(theirs.rows.map((r) => r[0]));
  });

  test.each([
    ['SHOW MEM', 'SHOW MEM is not supported: dbproxy has no slab allocator'],
    ['SHOW FDS', 'SHOW FDS is not supported: dbproxy does not pass file descriptors'],
    ['SHOW DNS_HOSTS', 'SHOW DNS_HOSTS is not supported: dbproxy keeps no DNS cache'],
    ['RECONNECT', 'RECONNECT is not supported'],
    ['SUSPEND', 'SUSPEND is not supported'],
    ['KILL postgres', 'KILL is not supported'],
    ['PAUSE postgres', 'PAUSE of one database is not supported by dbproxy'],
  ])('%s, which PgBouncer answers, is refused with 0A000 and the reason', async (sql, message) => {
    // PgBouncer carries these out (only the harmless ones are run there).
    if (sql.startsWith('SHOW') || sql === 'RECONNECT') await expect(admin(sides()[1]!, sql)).resolves.toBeDefined();
    const e = (await admin(sides()[0]!, sql).then(
      () => undefined,
      (err: unknown) => err,
    )) as { code?: string; message?: string } | undefined;
    expect(e?.code).toBe('0A000');
    expect(e?.message).toContain(message);
  });

  test('an unknown command gets PgBouncer\'s wording', async () => {
    const e = (await admin(sides()[0]!, 'SHOW NONSENSE').catch((err: unknown) => err)) as { code?: string; message?: string };
    const theirs = (await admin(sides()[1]!, 'SHOW NONSENSE').catch((err: unknown) => err)) as { code?: string; message?: string };
    expect(theirs.message).toBe("invalid command 'SHOW NONSENSE', use SHOW HELP;");
    expect(e).toMatchObject({ code: '42601', message: theirs.message });
  });
});

describe('a pgbouncer_exporter scrape', () => {
  test('succeeds on both and yields the same series (names and label names)', async () => {
    for (const side of sides()) await (await client(side)).query('SELECT 1');
    const [ours, theirs] = [await scrape(sides()[0]!), await scrape(sides()[1]!)];
    expect(value(ours, 'pgbouncer_up')).toBe(1);
    expect(value(theirs, 'pgbouncer_up')).toBe(1);
    expect(ours).toContain('pgbouncer_version_info{version="dbproxy ');
    expect(theirs).toContain('pgbouncer_version_info{version="PgBouncer 1.24');
    expect([...families(ours).entries()].sort()).toEqual([...families(theirs).entries()].sort());
    await closeAll();
  });

  test('client and server connection gauges follow the clients on both, and match dbproxy\'s own metrics', async () => {
    for (const side of sides()) {
      const clients = [await client(side), await client(side), await client(side), await client(side)];
      for (const c of clients) await c.query('SELECT 1');
      await clients[0]!.query('BEGIN');
      await clients[0]!.query('SELECT 1');
      const text = await scrape(side);
      const pool = '{database="postgres",user="app"}';
      expect([side.name, value(text, `pgbouncer_pools_client_active_connections${pool}`), value(text, `pgbouncer_pools_server_active_connections${pool}`), value(text, `pgbouncer_pools_client_waiting_connections${pool}`)]).toEqual([side.name, 4, 1, 0]);
      if (side.name === 'dbproxy') {
        const own = samples(await dbproxyMetrics());
        expect(own.get('dbproxy_client_connections')).toBe(4);
        expect(own.get('dbproxy_database_connections_currently_borrowed')).toBe(1);
        expect(own.get('dbproxy_database_connections_currently_in_transaction')).toBe(1);
        expect(own.get('dbproxy_client_connections_no_tls')).toBe(4);
      }
      await closeAll();
    }
  });

  const CLIENTS = 8;
  const TXNS = 150;

  /** Runs pgbench -S through a side and returns the scrape before and after, and dbproxy's own /metrics around it. */
  async function bench(side: Side, mode: 'extended' | 'prepared'): Promise<{ delta(m: string): number; ownDelta(m: string): number }> {
    const stat = (text: string, m: string): number => value(text, `pgbouncer_stats_${m}{database="postgres"}`) ?? 0;
    const before = await scrape(side);
    const ownBefore = samples(await dbproxyMetrics());
    const r = await run(pgBin('pgbench'), ['-n', '-S', '-c', String(CLIENTS), '-j', '2', '-t', String(TXNS), '-M', mode, '-h', '127.0.0.1', '-p', String(side.port), '-U', 'app', 'postgres'], {
      PGPASSWORD: PASSWORD('app'),
    });
    expect([side.name, r.code, r.stderr]).toEqual([side.name, 0, '']);
    // Every client has gone: nothing is left in flight that a later scrape could still add.
    await eventually(async () => value(await scrape(side), 'pgbouncer_pools_client_active_connections{database="postgres",user="app"}') === 0, `${side.name} clients to leave`);
    const after = await scrape(side);
    const own = samples(await dbproxyMetrics());
    const key = (m: string): string => `${m}{user="app",database="postgres"}`;
    return { delta: (m) => stat(after, m) - stat(before, m), ownDelta: (m) => (own.get(key(m)) ?? 0) - (ownBefore.get(key(m)) ?? 0) };
  }

  test('under pgbench -M extended: transactions and queries are what pgbench did and what PgBouncer counts; dbproxy\'s own /metrics agree', async () => {
    const counted: Array<[string, number, number]> = [];
    for (const side of sides()) {
      const { delta, ownDelta } = await bench(side, 'extended');
      // One SELECT per transaction (Parse/Bind/Describe/Execute/Sync), plus pgbench's own few setup queries.
      counted.push([side.name, delta('sql_transactions_pooled_total'), delta('queries_pooled_total')]);
      expect(delta('sql_transactions_pooled_total')).toBeGreaterThanOrEqual(CLIENTS * TXNS);
      expect(delta('sql_transactions_pooled_total')).toBeLessThanOrEqual(CLIENTS * TXNS + 5);
      expect(delta('received_bytes_total')).toBeGreaterThan(CLIENTS * TXNS * 60);
      expect(delta('sent_bytes_total')).toBeGreaterThan(CLIENTS * TXNS * 30);
      expect(delta('queries_duration_seconds_total')).toBeGreaterThan(0);
      expect(delta('server_in_transaction_seconds_total')).toBeGreaterThanOrEqual(delta('queries_duration_seconds_total') - 1e-5);
      if (side.name === 'dbproxy') {
        expect(ownDelta('dbproxy_transactions_total')).toBe(delta('sql_transactions_pooled_total'));
        expect(ownDelta('dbproxy_query_requests_total')).toBe(delta('queries_pooled_total'));
        expect(ownDelta('dbproxy_client_received_bytes_total')).toBe(delta('received_bytes_total'));
        expect(ownDelta('dbproxy_client_sent_bytes_total')).toBe(delta('sent_bytes_total'));
        expect(ownDelta('dbproxy_transaction_seconds_total')).toBeCloseTo(delta('server_in_transaction_seconds_total'), 3);
        expect(ownDelta('dbproxy_query_seconds_total')).toBeCloseTo(delta('queries_duration_seconds_total'), 3);
        expect(ownDelta('dbproxy_client_wait_seconds_total')).toBeCloseTo(delta('client_wait_seconds_total'), 3);
        expect(ownDelta('dbproxy_database_connections_borrows_total')).toBe(delta('server_assignments_total'));
      }
    }
    // What PgBouncer counts for the same run, dbproxy counts.
    expect(counted[0]!.slice(1)).toEqual(counted[1]!.slice(1));
  });

  test('under pgbench -M prepared: binds and client parses are what pgbench did, on both; statements are prepared once per server connection', async () => {
    for (const side of sides()) {
      const { delta } = await bench(side, 'prepared');
      expect([side.name, delta('binds_total'), delta('client_parses_total')]).toEqual([side.name, CLIENTS * TXNS, CLIENTS]);
      expect(delta('server_parses_total')).toBeGreaterThanOrEqual(1);
      expect(delta('server_parses_total')).toBeLessThanOrEqual(CLIENTS);
    }
  });
});
