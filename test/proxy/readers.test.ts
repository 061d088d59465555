// Issue 12: the read-only endpoint against a real primary and two streaming standbys. Reads spread
// over the standbys a transaction at a time and never reach the primary; a stopped standby leaves
// the rotation, a lagging one too until it catches up, a promoted one at once; writes get
// PostgreSQL's own 25006.
import pg from 'pg';
import { type PgCluster, startPostgres, startStandby } from '../../hack/postgres.js';
import { type RunningProxy, USERS, eventually, freePort, startProxy } from '../support/harness.js';

type Standby = PgCluster & { promote(): void };

let primary: PgCluster;
let standbys: Standby[] = [];
const running: RunningProxy[] = [];
const app = USERS[0]!;

async function freshCluster(): Promise<void> {
  primary = startPostgres({ port: await freePort(), users: USERS, maxConnections: 60, settings: { wal_level: 'replica', max_wal_senders: 10 } });
  primary.psql('CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO public.t SELECT g, md5(g::text) FROM generate_series(1, 100) g; GRANT ALL ON public.t TO app;');
  standbys = [startStandby(primary, { port: await freePort() }), startStandby(primary, { port: await freePort() })];
}

function destroyClusters(): void {
  for (const s of standbys) s.destroy();
  primary?.destroy();
  standbys = [];
}

afterEach(async () => {
  for (const p of running.splice(0)) await p.stop();
  destroyClusters();
});

async function proxyFor(readers: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<RunningProxy> {
  const p = await startProxy(primary, {
    targets: [`127.0.0.1:${primary.port}`, ...standbys.map((s) => `127.0.0.1:${s.port}`)],
    readers: { listen: '127.0.0.1:0', ...readers },
    healthCheck: { interval: '200ms' },
    ...extra,
  } as never);
  running.push(p);
  await eventually(() => (p.server.stats().readers?.pools.filter((r) => r.usable).length ?? 0) === standbys.length, 'the standbys to join the read-only endpoint');
  return p;
}

const readClient = (p: RunningProxy): Promise<pg.Client> => {
  const c = new pg.Client({ host: '127.0.0.1', port: p.readersPort!, user: app.name, password: app.password, database: 'postgres' });
  return c.connect().then(() => c);
};

/** The port of the server that ran this transaction. */
const serverPort = async (c: pg.Client): Promise<number> => Number((await c.query('SELECT inet_server_port() AS p')).rows[0].p);

test('50 read clients land on both standbys, a transaction at a time, never on the primary', async () => {
  await freshCluster();
  const p = await proxyFor();
  const clients = await Promise.all(Array.from({ length: 50 }, () => readClient(p)));
  const seen = new Map<number, number>();
  await Promise.all(
    clients.map(async (c) => {
      for (let i = 0; i < 6; i++) {
        const port = await serverPort(c);
        seen.set(port, (seen.get(port) ?? 0) + 1);
        expect((await c.query('SELECT count(*)::int AS n FROM public.t')).rows[0].n).toBe(100);
      }
    }),
  );
  expect([...seen.keys()].sort()).toEqual(standbys.map((s) => s.port).sort());
  expect(seen.has(primary.port)).toBe(false);
  // Per standby in /stats, SHOW TARGETS and /metrics.
  expect(p.server.stats().readers?.pools.map((r) => r.usable)).toEqual([true, true]);
  const metrics = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  for (const s of standbys) expect(metrics).toContain(`dbproxy_reader_available{endpoint="127.0.0.1:${s.port}",role="reader"} 1`);
  // And the standbys hold the proxy's connections; the primary none but the health check's.
  for (const s of standbys) expect(Number(s.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND application_name <> 'dbproxy health check'"))).toBeGreaterThan(0);
  expect(Number(primary.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND application_name <> 'dbproxy health check'"))).toBe(0);
  await Promise.all(clients.map((c) => c.end()));
});

test('a write through the read-only endpoint gets PostgreSQL\'s own 25006; session state follows the client across standbys', async () => {
  await freshCluster();
  const p = await proxyFor();
  const c = await readClient(p);
  await expect(c.query("INSERT INTO public.t VALUES (1000, 'x')")).rejects.toMatchObject({ code: '25006' });
  await c.query("SET work_mem = '12MB'");
  const ports = new Set<number>();
  // Even one client's transactions spread over the standbys; its settings and statements go along.
  for (let i = 0; i < 12; i++) {
    ports.add(await serverPort(c));
    expect((await c.query({ name: 'by-id', text: 'SELECT v FROM public.t WHERE id = $1', values: [i + 1] })).rows).toHaveLength(1);
    expect((await c.query("SELECT current_setting('work_mem') AS w")).rows[0].w).toBe('12MB');
  }
  expect(ports.size).toBe(2);
  await c.end();
  expect(primary.psql('SELECT count(*) FROM public.t WHERE id = 1000')).toBe('0');
});

test('a stopped standby leaves the rotation; reads go on on the other', async () => {
  await freshCluster();
  const p = await proxyFor();
  const c = await readClient(p);
  await serverPort(c);
  standbys[0]!.stop('immediate');
  await eventually(() => p.server.stats().readers?.pools.length === 1, 'the stopped standby to leave');
  for (let i = 0; i < 10; i++) expect(await serverPort(c)).toBe(standbys[1]!.port);
  await c.end();
});

test('a standby whose replay is paused while the primary writes leaves once over the lag limit, and comes back after resuming', async () => {
  await freshCluster();
  const p = await proxyFor({ maxReplicationLag: '1s' });
  const late = standbys[1]!;
  late.psql('SELECT pg_wal_replay_pause()');
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      primary.psql(`UPDATE public.t SET v = 'w${i}' WHERE id = 1`);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    await eventually(() => p.server.stats().targets.find((t) => t.endpoint === `127.0.0.1:${late.port}`)?.reader?.reason === 'REPLICATION_LAG', 'the paused standby to be reported late', 15_000);
    const c = await readClient(p);
    for (let i = 0; i < 10; i++) expect(await serverPort(c)).toBe(standbys[0]!.port);
    late.psql('SELECT pg_wal_replay_resume()');
    await eventually(() => p.server.stats().readers?.pools.every((r) => r.usable), 'the standby to catch up and come back', 15_000);
    await c.end();
  } finally {
    writing = false;
    await writer;
  }
});

test('a promoted standby stops serving reads at once; the other, re-pointed, keeps serving', async () => {
  await freshCluster();
  const p = await proxyFor();
  const c = await readClient(p);
  const [keeps, promoted] = standbys as [Standby, Standby];
  primary.stop('fast');
  promoted.promote();
  await eventually(() => !p.server.stats().readers?.pools.some((r) => r.endpoint === `127.0.0.1:${promoted.port}`), 'the promoted standby to leave the read-only endpoint');
  keeps.psql(`ALTER SYSTEM SET primary_conninfo = 'host=${promoted.socketDir} port=${promoted.port} user=postgres'; SELECT pg_reload_conf();`);
  for (let i = 0; i < 10; i++) expect(await serverPort(c)).toBe(keeps.port);
  // The new primary takes writes through the writer endpoint, and the re-pointed standby sees them.
  const w = new pg.Client({ host: '127.0.0.1', port: p.port, user: app.name, password: app.password, database: 'postgres' });
  await eventually(async () => {
    try {
      await w.connect();
      return true;
    } catch {
      return false;
    }
  }, 'the writer endpoint to find the new primary');
  await eventually(async () => {
    try {
      await w.query("INSERT INTO public.t VALUES (2000, 'after') ON CONFLICT DO NOTHING");
      return true;
    } catch {
      return false;
    }
  }, 'a write on the new primary');
  await eventually(async () => (await c.query('SELECT count(*)::int AS n FROM public.t WHERE id = 2000')).rows[0].n === 1, 'the write to reach the re-pointed standby');
  await Promise.all([c.end(), w.end()]);
});

test('with no usable standby a read waits, then gets 53300 saying why (the default)', async () => {
  await freshCluster();
  const p = await proxyFor({}, { pool: { borrowTimeout: '1s' } });
  for (const s of standbys) s.stop('immediate');
  await eventually(() => p.server.stats().readers?.pools.length === 0, 'both standbys to leave');
  const c = await readClient(p).catch((e: { code?: string; message: string }) => e);
  // The login itself needs a standby for its greeting when none was seen before; either way: 53300.
  if (c instanceof pg.Client) {
    await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '53300', message: expect.stringContaining('read-only') });
    await c.end();
  } else {
    expect(c).toMatchObject({ code: '53300' });
  }
});

test('fallbackToWriter: reads go to the writer when no standby can serve them, in read-only transactions', async () => {
  await freshCluster();
  const p = await proxyFor({ fallbackToWriter: true });
  for (const s of standbys) s.stop('immediate');
  await eventually(() => p.server.stats().readers?.pools.length === 0, 'both standbys to leave');
  const c = await readClient(p);
  expect(await serverPort(c)).toBe(primary.port);
  await expect(c.query("INSERT INTO public.t VALUES (3000, 'x')")).rejects.toMatchObject({ code: '25006' });
  await expect(c.query('BEGIN READ WRITE')).rejects.toMatchObject({ code: '25006' });
  await c.query('SET default_transaction_read_only = off').catch(() => undefined);
  await expect(c.query("INSERT INTO public.t VALUES (3001, 'x')")).rejects.toMatchObject({ code: '25006' });
  await c.end();
  expect(primary.psql('SELECT count(*) FROM public.t WHERE id >= 3000')).toBe('0');
});
