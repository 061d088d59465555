// Failover with real PostgreSQL 15 streaming replication: the primary dies, the standby is
// promoted, clients keep their connections and nothing acknowledged is lost; two writers are
// never both used; a flapping endpoint and a total outage are survived.
import { connected, eventually, startCluster, startProxy, type RunningProxy } from '../support/harness.js';
import { runFailover, startReplicatedPair, type ReplicatedPair } from '../support/failoverScenario.js';

describe('primary dies, standby promoted', () => {
  let pair: ReplicatedPair;
  let proxy: RunningProxy;

  beforeAll(async () => {
    pair = await startReplicatedPair();
    proxy = await startProxy(pair.primary, {
      targets: [`127.0.0.1:${pair.primary.port}`, `127.0.0.1:${pair.standby.port}`],
      pool: { maxConnectionsPercent: 30, borrowTimeout: '5s' },
      healthCheck: { interval: '1s' },
    });
  });

  afterAll(async () => {
    await proxy?.stop();
    pair?.destroy();
  });

  test('no client reconnects, no acknowledged commit is lost, service resumes on the new writer', async () => {
    expect(proxy.server.stats().writer).toBe(`127.0.0.1:${pair.primary.port}`);
    const idle = await connected(proxy.port);
    let idleErrors = 0;
    idle.on('error', () => idleErrors++);
    await idle.query('SELECT 1');
    await idle.query({ name: 'kept', text: 'SELECT $1::int AS v', values: [1] });
    await idle.query("SET application_name = 'survivor'");

    const outcome = await runFailover({ proxyPort: proxy.port, pair, clients: 6, commitsAfter: 5 });
    expect(outcome.reconnects).toBe(0);
    expect(outcome.missing).toEqual([]);
    expect(outcome.acknowledged).toBeGreaterThan(0);
    expect(outcome.committedAfterPromotion).toBeGreaterThanOrEqual(30);
    // Only transactions in flight failed, with connection errors the client can retry after.
    for (const code of Object.keys(outcome.errorCodes)) expect(['08006', '57P01']).toContain(code);

    const stats = proxy.server.stats();
    expect(stats.writer).toBe(`127.0.0.1:${pair.standby.port}`);
    expect(stats.failovers).toBe(1);
    expect(stats.lastFailover).toMatchObject({ from: `127.0.0.1:${pair.primary.port}`, to: `127.0.0.1:${pair.standby.port}` });
    expect(stats.targets.find((t) => t.endpoint === `127.0.0.1:${pair.primary.port}`)).toMatchObject({ state: 'UNAVAILABLE', reason: 'UNREACHABLE' });

    // The idle client never noticed: its next transaction succeeds on the new writer, with its
    // prepared statement and its session settings carried over.
    expect((await idle.query({ name: 'kept', text: 'SELECT $1::int AS v', values: [2] })).rows[0].v).toBe(2);
    expect((await idle.query("SELECT current_setting('application_name') AS a, pg_is_in_recovery() AS r")).rows[0]).toEqual({ a: 'survivor', r: false });
    expect(idleErrors).toBe(0);
    await idle.end();

    const metrics = await proxy.server.metrics.registry.metrics();
    expect(metrics).toMatch(/dbproxy_failovers_total 1/);
    expect(metrics).toContain(`dbproxy_current_writer{endpoint="127.0.0.1:${pair.standby.port}"} 1`);
    expect(proxy.logs.some((l) => l.includes('failover: new writer'))).toBe(true);
  }, 90_000);

  test('the old primary comes back still a writer: the proxy uses neither, then recovers when it goes', async () => {
    pair.primary.start();
    await eventually(() => proxy.server.stats().writerProblem?.startsWith('MULTIPLE_WRITERS'), 'two writers to be reported', 15_000);
    expect(proxy.server.stats().writer).toBeNull();
    expect(proxy.server.isReady()).toBe(false);
    const c = await connected(proxy.port);
    const err = await c.query('SELECT 1').catch((e: { code: string; message: string }) => e);
    expect(err).toMatchObject({ code: '53300' });
    expect((err as { message: string }).message).toMatch(/no writable target is available \(MULTIPLE_WRITERS/);
    pair.primary.stop('fast');
    await eventually(() => proxy.server.stats().writer === `127.0.0.1:${pair.standby.port}`, 'the promoted standby to be the writer again', 15_000);
    expect((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
    await c.end();
  }, 60_000);

});

describe('one target that flaps or goes away', () => {
  test('a flapping writer: idle clients survive, work resumes after every bounce', async () => {
    const cluster = await startCluster();
    const proxy = await startProxy(cluster, { pool: { borrowTimeout: '15s' }, healthCheck: { interval: '200ms' } });
    const c = await connected(proxy.port);
    let clientErrors = 0;
    c.on('error', () => clientErrors++);
    try {
      for (let bounce = 0; bounce < 3; bounce++) {
        expect((await c.query('SELECT $1::int AS n', [bounce])).rows[0].n).toBe(bounce);
        cluster.stop('fast');
        cluster.start();
      }
      // Whatever the health checks saw, the next query waits for the writer and succeeds.
      expect((await c.query('SELECT 42 AS n')).rows[0].n).toBe(42);
      expect(clientErrors).toBe(0);
    } finally {
      await c.end();
      await proxy.stop();
      cluster.destroy();
    }
  }, 60_000);

  test('all targets down: borrowers time out with a clear error; the proxy recovers when one returns', async () => {
    const cluster = await startCluster();
    const proxy = await startProxy(cluster, { pool: { borrowTimeout: '800ms' }, healthCheck: { interval: '200ms' } });
    const c = await connected(proxy.port);
    try {
      cluster.stop('fast');
      await eventually(() => proxy.server.stats().writer === null, 'the writer to be lost');
      const err = await c.query('SELECT 1').catch((e: { code: string; message: string }) => e);
      expect(err).toMatchObject({ code: '53300' });
      expect((err as { message: string }).message).toMatch(/no writable target is available \(NO_WRITER/);
      expect(proxy.server.isReady()).toBe(false);
      cluster.start();
      await eventually(() => proxy.server.isReady(), 'the proxy to be ready again', 15_000);
      expect((await c.query('SELECT 7 AS n')).rows[0].n).toBe(7);
    } finally {
      await c.end();
      await proxy.stop();
      cluster.destroy();
    }
  }, 60_000);
});

describe('a writer change closes a backend under a client', () => {
  test('a request sent before the close lands gets 08006, and the connection keeps working', async () => {
    const { RawClient, serialize } = await import('../support/rawClient.js');
    const { USERS } = await import('../support/harness.js');
    const cluster = await startCluster();
    const proxy = await startProxy(cluster);
    try {
      const c = await RawClient.login(proxy.port, 'app', USERS[0]!.password);
      c.send(serialize.query('BEGIN'));
      await c.untilReady();
      const writer = proxy.server.pool.writer!;
      // What the monitor does on a writer change: the session's backend is closed under it...
      proxy.server.pool.setEndpoint(null);
      // ...and the client's next request races the close event.
      c.send(serialize.query('SELECT 1'));
      const failed = await c.untilReady();
      expect(failed.find((m) => m.name === 'error')?.code).toBe('08006');
      proxy.server.pool.setEndpoint(writer);
      for (let i = 0; i < 3; i++) {
        c.send(serialize.query(`SELECT ${i}`));
        const ok = await c.untilReady(5000);
        expect(ok.filter((m) => m.name === 'dataRow')).toHaveLength(1);
      }
      c.close();
    } finally {
      await proxy.stop();
      cluster.destroy();
    }
  });
});

describe('a server in recovery', () => {
  test('is never lent as the writer, even when the pool is pointed at it', async () => {
    const pair = await startReplicatedPair();
    const proxy = await startProxy(pair.primary, {
      targets: [`127.0.0.1:${pair.primary.port}`, `127.0.0.1:${pair.standby.port}`],
      pool: { borrowTimeout: '1s' },
    });
    try {
      const c = await connected(proxy.port);
      expect((await c.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(false);
      // Behind the health checks' back: the next connections would go to the standby.
      proxy.server.pool.setEndpoint({ host: '127.0.0.1', port: pair.standby.port });
      const err = await c.query('SELECT pg_is_in_recovery() AS r').catch((e: { code: string; message: string }) => e);
      expect(err).toMatchObject({ code: '53300' });
      expect((err as { message: string }).message).toMatch(/is in recovery \(read-only\); not lending it as the writer/);
      await c.end();
    } finally {
      await proxy.stop();
      pair.destroy();
    }
  }, 60_000);
});
