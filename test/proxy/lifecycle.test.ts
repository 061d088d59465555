// Issue 2, behaviour 8 against real PostgreSQL 15: the idle client timeout, the maximum number of
// client connections, and graceful shutdown (stop accepting, finish transactions, close idle
// clients, close everything when the grace period is over).
import type pg from 'pg';
import type { PgCluster } from '../../hack/postgres.js';
import { type RunningProxy, adminQuery, client, connected, eventually, startCluster, startProxy } from '../support/harness.js';

let cluster: PgCluster;
const proxies: RunningProxy[] = [];
const open: pg.Client[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  cluster.psql('CREATE TABLE lifecycle (id int PRIMARY KEY, note text); GRANT ALL ON lifecycle TO app');
});

afterAll(async () => {
  for (const c of open) await c.end().catch(() => undefined);
  for (const p of proxies) await p.stop();
  cluster?.destroy();
});

async function proxyWith(overrides: Parameters<typeof startProxy>[1]): Promise<RunningProxy> {
  const p = await startProxy(cluster, overrides);
  proxies.push(p);
  return p;
}

interface Watched {
  c: pg.Client;
  /** Errors the client emitted outside a query (a FATAL from the proxy, a lost connection). */
  errors: Array<Error & { code?: string }>;
  ended: () => boolean;
}

async function watched(port: number, user = 'app', extra: Partial<pg.ClientConfig> = {}): Promise<Watched> {
  const c = await connected(port, user, extra);
  open.push(c);
  const errors: Watched['errors'] = [];
  let ended = false;
  c.on('error', (e) => errors.push(e));
  c.on('end', () => (ended = true));
  return { c, errors, ended: () => ended };
}

/** PostgreSQL pids of the backend connections this proxy holds (its health check excluded). */
function backendPids(p: RunningProxy): string[] {
  const servers = p.server.show('servers');
  const pid = servers.columns.findIndex((c) => c.name === 'remote_pid');
  return servers.rows.map((r) => String(r[pid]));
}

/** Which of these pids are still connected to the server. */
function stillOnServer(pids: string[]): string[] {
  if (pids.length === 0) return [];
  const live = cluster.psql(`SELECT pid FROM pg_stat_activity WHERE pid IN (${pids.join(',')})`);
  return live === '' ? [] : live.split('\n');
}

function codeOf(e: unknown): string | undefined {
  return (e as { code?: string } | undefined)?.code;
}

async function connectError(port: number, user = 'app'): Promise<unknown> {
  const c = client(port, user);
  c.on('error', () => undefined);
  const e = await c.connect().then(
    () => undefined,
    (err: unknown) => err,
  );
  if (e === undefined) open.push(c);
  return e;
}

describe('idle client timeout', () => {
  test('an idle client is closed with 57P05; a client inside a transaction is not', async () => {
    const p = await proxyWith({ pool: { idleClientTimeout: '1s' } });
    const idle = await watched(p.port);
    await idle.c.query('SELECT 1');
    const busy = await watched(p.port);
    await busy.c.query('BEGIN');
    await busy.c.query("INSERT INTO lifecycle VALUES (1, 'idle-timeout')");
    // Connected after `busy` went quiet: once the sweep closes this one, it has had its chance at `busy`.
    const later = await watched(p.port);

    await eventually(() => idle.errors.length > 0 && idle.ended(), 'the idle client to be closed', 15_000);
    expect(idle.errors.map(codeOf)).toEqual(['57P05']);
    expect(idle.errors[0]!.message).toMatch(/idle/);
    await eventually(() => later.errors.length > 0 && later.ended(), 'the later idle client to be closed', 15_000);
    expect(later.errors.map(codeOf)).toEqual(['57P05']);

    // The client inside a transaction was left alone, and can finish its work.
    expect(busy.errors).toEqual([]);
    expect(busy.ended()).toBe(false);
    await busy.c.query("UPDATE lifecycle SET note = 'committed' WHERE id = 1");
    await busy.c.query('COMMIT');
    expect(cluster.psql('SELECT note FROM lifecycle WHERE id = 1')).toBe('committed');

    // Once its transaction is over, it is idle like any other and times out too.
    await eventually(() => busy.errors.length > 0 && busy.ended(), 'the client to be closed after its transaction', 15_000);
    expect(busy.errors.map(codeOf)).toEqual(['57P05']);
    await eventually(() => p.server.stats().clientConnections === 0, 'the proxy to count no clients');
    const rejected = await p.server.metrics.clientRejections.get();
    expect(rejected.values.find((v) => v.labels.reason === 'idle_timeout')?.value).toBe(3);
    // The backend it used went back to the pool, not closed with the client.
    expect(p.server.stats().borrowed).toBe(0);
  });

  test('a client that keeps sending queries is not idle', async () => {
    const p = await proxyWith({ pool: { idleClientTimeout: '1s' } });
    const active = await watched(p.port);
    const idle = await watched(p.port);
    // Keep `active` busy with short statements until the idle one has been closed.
    const deadline = Date.now() + 15_000;
    while (!idle.ended() && Date.now() < deadline) await active.c.query('SELECT pg_sleep(0.05)');
    expect(idle.errors.map(codeOf)).toEqual(['57P05']);
    expect(active.errors).toEqual([]);
    expect((await active.c.query('SELECT 2 AS two')).rows).toEqual([{ two: 2 }]);
  });

  test('a pinned client sitting idle between transactions times out too, and its backend is reset', async () => {
    const p = await proxyWith({ pool: { idleClientTimeout: '1s' } });
    const pinned = await watched(p.port);
    await pinned.c.query('CREATE TEMP TABLE idle_pinned (x int)');
    expect(p.server.stats().pinned).toBe(1);
    await eventually(() => pinned.errors.length > 0 && pinned.ended(), 'the idle pinned client to be closed', 15_000);
    expect(pinned.errors.map(codeOf)).toEqual(['57P05']);
    await eventually(() => p.server.stats().pinned === 0 && p.server.stats().borrowed === 0, 'its backend to be given back');
    // Nobody inherits the temp table.
    const next = await watched(p.port);
    await next.c.query('BEGIN');
    const r = await next.c.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'idle_pinned'");
    await next.c.query('COMMIT');
    expect(r.rows).toEqual([{ n: 0 }]);
  });
});

describe('maximum client connections', () => {
  test('with maxClientConnections 2, a third client gets 53300; a slot frees when one leaves', async () => {
    const p = await proxyWith({ pool: { maxClientConnections: 2 } });
    const a = await watched(p.port);
    const b = await watched(p.port, 'legacy');

    const e = await connectError(p.port);
    expect(codeOf(e)).toBe('53300');
    expect((e as Error).message).toMatch(/too many clients/);
    // The admin console counts too: it is a client connection of this process.
    expect(codeOf(await connectError(p.port, 'boss'))).toBe('53300');

    // The two admitted clients are undisturbed.
    expect((await a.c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect((await b.c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);

    await a.c.end();
    await eventually(() => p.server.stats().clientConnections === 1, 'the proxy to see one client leave');
    const c = await watched(p.port);
    expect((await c.c.query('SELECT 3 AS three')).rows).toEqual([{ three: 3 }]);
    const rejected = await p.server.metrics.clientRejections.get();
    expect(rejected.values.find((v) => v.labels.reason === 'too_many_clients')?.value).toBe(2);
  });
});

describe('graceful shutdown', () => {
  test('refuses new clients, closes idle ones (57P01), lets a transaction COMMIT, then closes it', async () => {
    const p = await proxyWith({});
    const idle = await watched(p.port);
    await idle.c.query('SELECT 1');
    const busy = await watched(p.port);
    await busy.c.query('BEGIN');
    await busy.c.query("INSERT INTO lifecycle VALUES (2, 'during shutdown')");
    // Pinned, but between transactions: as idle as `idle` for a shutdown.
    const pinned = await watched(p.port);
    await pinned.c.query('CREATE TEMP TABLE shutdown_pinned (x int)');

    const pids = backendPids(p);
    expect(pids.length).toBeGreaterThanOrEqual(1);
    const grace = 20_000;
    const started = Date.now();
    let finished = 0;
    const done = p.server.shutdown(grace).then(() => {
      finished = Date.now();
    });

    await eventually(() => idle.errors.length > 0 && idle.ended(), 'the idle client to be closed');
    expect(idle.errors.map(codeOf)).toEqual(['57P01']);
    await eventually(() => pinned.errors.length > 0 && pinned.ended(), 'the pinned client, idle between transactions, to be closed');
    expect(pinned.errors.map(codeOf)).toEqual(['57P01']);

    // Not ready any more, and no new clients.
    const ready = await fetch(`http://127.0.0.1:${p.adminPort}/readyz`);
    expect(ready.status).toBe(503);
    const refused = await connectError(p.port);
    expect(refused).toBeDefined();
    expect(['ECONNREFUSED', '57P03']).toContain(codeOf(refused));

    // The transaction goes on and commits.
    expect(busy.errors).toEqual([]);
    await busy.c.query("UPDATE lifecycle SET note = 'committed during shutdown' WHERE id = 2");
    expect(finished).toBe(0);
    await busy.c.query('COMMIT');
    expect(cluster.psql('SELECT note FROM lifecycle WHERE id = 2')).toBe('committed during shutdown');

    // ... and then its client is closed, and shutdown completes well before the grace period.
    await eventually(() => busy.errors.length > 0 && busy.ended(), 'the client to be closed after COMMIT');
    expect(busy.errors.map(codeOf)).toEqual(['57P01']);
    await done;
    expect(finished - started).toBeLessThan(grace / 2);
    await eventually(() => stillOnServer(pids).length === 0, 'the proxy to close its backend connections');
  });

  test('after the grace period every connection is closed and open transactions roll back', async () => {
    const p = await proxyWith({});
    const busy = await watched(p.port);
    await busy.c.query('BEGIN');
    await busy.c.query("INSERT INTO lifecycle VALUES (3, 'never committed')");
    const pinned = await watched(p.port);
    await pinned.c.query('CREATE TEMP TABLE scratch (x int)');
    const admin = await watched(p.port, 'boss', { database: 'dbproxy' });
    expect((await admin.c.query('SHOW STATS')).rows.length).toBeGreaterThan(0);

    const pids = backendPids(p);
    expect(pids.length).toBeGreaterThanOrEqual(1);
    const grace = 1000;
    const started = Date.now();
    await p.server.shutdown(grace);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(grace - 50);
    expect(took).toBeLessThan(grace + 5000);

    await eventually(() => busy.ended() && pinned.ended() && admin.ended(), 'every client to be closed');
    expect(busy.errors.map(codeOf)).toEqual(['57P01']);
    expect(busy.errors[0]!.message).toMatch(/grace period/);
    expect(pinned.errors.map(codeOf)).toContain('57P01');
    await eventually(() => stillOnServer(pids).length === 0, 'no backend of this proxy left on the server');
    expect(cluster.psql('SELECT count(*) FROM lifecycle WHERE id = 3')).toBe('0');
    // The HTTP admin endpoint is gone too.
    await expect(fetch(`http://127.0.0.1:${p.adminPort}/healthz`)).rejects.toThrow();
  });

  test('a shutdown with no clients completes at once', async () => {
    const p = await proxyWith({});
    await adminQuery(p.port, 'SHOW POOLS');
    const started = Date.now();
    await p.server.shutdown(10_000);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(codeOf(await connectError(p.port))).toBe('ECONNREFUSED');
  });
});
