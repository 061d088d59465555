// The data path's own JavaScript cost per transaction, without sockets or a database: a real
// ClientSession, BackendPool, classifier and metrics, fed recorded pgbench -S traffic through fake
// sockets. What it measures is exactly what the proxy adds on top of a socket pipe, and it does
// not depend on what else the machine is doing (it counts this process's CPU time, one thread).
// `node dist/test/bench/sessionMicro.js [transactions]`; `make bench-quick` prints it too.
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { pino } from 'pino';
import { serialize } from 'pg-protocol';
import { ProxyMetrics } from '../../proxy/admin/metrics.js';
import { PoolCounterRegistry } from '../../proxy/admin/poolCounters.js';
import { StatementClassifier } from '../../proxy/classify/classifier.js';
import type { SessionContext } from '../../proxy/client/sessionContext.js';
import { ClientSession } from '../../proxy/client/clientSession.js';
import { parseConfig } from '../../proxy/contract/config.js';
import { BackendPool } from '../../proxy/pool/backendPool.js';
import { computeBudget } from '../../proxy/pool/budget.js';
import { commandComplete, dataRow, parameterDescription, readyForQuery, rowDescription } from '../../proxy/protocol/serverMessages.js';
import { systemClock } from '../../proxy/runtime/clock.js';
import { BackendConnection } from '../../proxy/backend/backendConnection.js';
import { KnownStatements } from '../../proxy/session/preparedStatements.js';

/** A socket that records writes and lets the test push reads. */
class FakeSocket extends EventEmitter {
  written = 0;
  writes = 0;
  remoteAddress = '127.0.0.1';
  remotePort = 1;
  writable = true;
  destroyed = false;
  onWrite: ((chunk: Buffer) => void) | null = null;
  write(chunk: Buffer): boolean {
    this.writes++;
    this.written += chunk.length;
    this.onWrite?.(chunk);
    return true;
  }
  cork(): void {}
  uncork(): void {}
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  end(): this {
    return this;
  }
  destroySoon(): void {}
  destroy(): this {
    return this;
  }
}

type Mode = 'simple' | 'extended' | 'prepared';

async function main(): Promise<void> {
  const txns = Number(process.argv[2] ?? 200_000);
  const config = parseConfig({ listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', targets: ['127.0.0.1:1'], users: [{ name: 'bench', passwordFile: '/dev/null' }], logLevel: 'warn' });
  const classifier = await StatementClassifier.create();
  const log = pino({ level: 'warn' });
  const backends: Array<{ b: BackendConnection; socket: FakeSocket }> = [];
  const pool = new BackendPool(
    { borrowTimeoutMs: 1000, maxConnectionLifetimeMs: 0, idleConnectionTimeoutMs: 60_000 },
    {
      open: async (key, endpoint) => {
        const socket = new FakeSocket();
        const b = new BackendConnection(backends.length + 1, socket as unknown as net.Socket, endpoint, key.user, key.database, Date.now());
        backends.push({ b, socket });
        return b;
      },
      clock: systemClock,
      log,
    },
  );
  pool.setLimits(computeBudget({ targetMaxConnections: 100, maxConnectionsPercent: 21, maxIdleConnectionsPercent: 21, divisor: 1 }));
  pool.setEndpoint({ host: '127.0.0.1', port: 1 });
  const counters = new PoolCounterRegistry(() => Date.now());
  const metrics = new ProxyMetrics({
    writer: () => null,
    targets: () => [],
    lastFailoverSeconds: () => null,
    clientConnections: () => 1,
    pool: () => pool.stats(),
    budget: () => null,
    targetMaxConnections: () => null,
    counters: () => counters.all(),
    sessions: () => ({ inTransaction: 0, tls: 0, noTls: 1 }),
    databaseConnectionsTls: () => 0,
  });
  // The whole of what a session needs: no cast, so the bench breaks when the seam changes.
  const ctx: SessionContext = {
    counters,
    config,
    pool,
    classifier,
    metrics,
    log,
    clock: systemClock,
    knownStatements: new KnownStatements(),
  };

  // Warm a backend into the pool.
  const warm = pool.borrow({ user: 'bench', database: 'postgres' });
  pool.release(await warm.promise);

  const reply = Buffer.concat([rowDescription(['abalance']), dataRow(['-1234']), commandComplete('SELECT 1'), readyForQuery('I')]);
  const extendedReply = Buffer.concat([Buffer.from([0x31, 0, 0, 0, 4, 0x32, 0, 0, 0, 4]), rowDescription(['abalance']), dataRow(['-1234']), commandComplete('SELECT 1'), readyForQuery('I')]);
  const preparedReply = Buffer.concat([Buffer.from([0x32, 0, 0, 0, 4]), dataRow(['-1234']), commandComplete('SELECT 1'), readyForQuery('I')]);
  const syncReply = Buffer.concat([commandComplete('SELECT 1'), readyForQuery('I')]);
  // The first Parse of a statement is followed by the proxy's own Describe of it (its shape).
  const parseReply = Buffer.concat([Buffer.from([0x31, 0, 0, 0, 4]), parameterDescription([23]), rowDescription(['abalance']), readyForQuery('I')]);

  const run = async (mode: Mode): Promise<{ us: number; writes: number }> => {
    const client = new FakeSocket();
    const session = new ClientSession(client as unknown as net.Socket, { user: 'bench', database: 'postgres' }, new Map([['application_name', 'pgbench']]), ctx, 1, () => undefined);
    session.start(Buffer.alloc(0));
    // What the session sent each backend since the driver last looked; the driver answers it the
    // way PostgreSQL would, one request at a time (no re-entrant calls, as with real sockets).
    const answerFor = mode === 'simple' ? reply : mode === 'extended' ? extendedReply : preparedReply;
    // Cheap bookkeeping: only the harness's own cost that a real socket would not have remains.
    let sentTo: BackendConnection | null = null;
    let first: Buffer | null = null;
    for (const { b, socket } of backends)
      socket.onWrite = (chunk) => {
        if (sentTo === null) {
          sentTo = b;
          first = chunk;
        }
      };
    const serve = (): void => {
      for (let round = 0; round < 4 && sentTo !== null; round++) {
        const b: BackendConnection = sentTo;
        const chunk = first!;
        sentTo = null;
        first = null;
        if (chunk[0] === 0x51 && chunk.length > 90 && chunk.includes('set_config')) b.socket.emit('data', syncReply);
        else if (chunk[0] === 0x50 && mode === 'prepared') b.socket.emit('data', parseReply);
        else b.socket.emit('data', answerFor);
      }
    };
    if (mode === 'prepared') {
      client.emit('data', Buffer.concat([serialize.parse({ name: 'P0_1', text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1', types: [23] }), serialize.sync()]));
      serve();
    }
    const one = (i: number): Buffer => {
      const aid = String(1 + ((i * 7919) % 1_000_000));
      if (mode === 'simple') return serialize.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid};`);
      if (mode === 'extended')
        return Buffer.concat([serialize.parse({ text: 'SELECT abalance FROM pgbench_accounts WHERE aid = $1;' }), serialize.bind({ values: [aid] }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync()]);
      return Buffer.concat([serialize.bind({ statement: 'P0_1', values: [aid] }), serialize.describe({ type: 'P' }), serialize.execute({}), serialize.sync()]);
    };
    const inputs = Array.from({ length: 1000 }, (_, i) => one(i));
    // Warm-up (JIT), then the measured run.
    for (let i = 0; i < 20_000; i++) {
      client.emit('data', inputs[i % 1000]);
      serve();
    }
    // Five slices, the cheapest kept: other work on the machine only ever adds to a slice.
    const writes0 = client.writes + backends.reduce((n, x) => n + x.socket.writes, 0);
    const slice = Math.ceil(txns / 5);
    let best = Infinity;
    for (let rep = 0; rep < 5; rep++) {
      const t0 = process.cpuUsage();
      for (let i = 0; i < slice; i++) {
        client.emit('data', inputs[i % 1000]);
        serve();
      }
      const t1 = process.cpuUsage(t0);
      best = Math.min(best, (t1.user + t1.system) / slice);
    }
    const writes = client.writes + backends.reduce((n, x) => n + x.socket.writes, 0) - writes0;
    client.emit('close');
    return { us: best, writes: writes / (slice * 5) };
  };

  const results: string[] = [];
  for (const mode of ['simple', 'extended', 'prepared'] as const) {
    const r = await run(mode);
    results.push(`${mode}: ${r.us.toFixed(2)} µs of JavaScript per transaction (best of 5 slices), ${r.writes.toFixed(2)} socket writes`);
  }
  process.stdout.write(`session micro-benchmark (${txns} transactions each, no I/O):\n  ${results.join('\n  ')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
