// Issue 2, behaviour 8 (bad input) against real PostgreSQL 15: malformed and oversized messages,
// garbage startup packets, unsupported protocol versions and missing users each get an
// ErrorResponse with the right SQLSTATE and a closed connection, never a crash or an unbounded
// allocation; other clients carry on.
import net from 'node:net';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { PgCluster } from '../../hack/postgres.js';
import { ScramClientExchange } from '../../proxy/auth/scramClient.js';
import { type RunningProxy, USERS, client, connected, eventually, startCluster, startProxy } from '../support/harness.js';
import { type Msg, RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const raws: RawClient[] = [];

beforeAll(async () => {
  cluster = await startCluster();
  proxy = await startProxy(cluster);
});

afterAll(async () => {
  for (const r of raws) r.close();
  await proxy?.stop();
  cluster?.destroy();
});

const password = (user: string): string => USERS.find((u) => u.name === user)!.password;

async function login(user = 'app', database = 'postgres'): Promise<RawClient> {
  const c = await RawClient.login(proxy.port, user, password(user), database);
  raws.push(c);
  return c;
}

async function rawConnect(): Promise<RawClient> {
  const c = await RawClient.connect(proxy.port);
  raws.push(c);
  return c;
}

/** A message with a type byte and a length field that may lie about the body. */
function frame(type: string, length: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeUInt32BE(length >>> 0, 1);
  return Buffer.concat([head, body]);
}

/** A startup packet of any protocol version, with exactly these parameters. */
function startupPacket(major: number, minor: number, params: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.writeUInt32BE(((major << 16) | minor) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** Reads up to the first ErrorResponse, asserts its SQLSTATE and that the proxy then closes. */
async function expectFatal(c: RawClient, code: string): Promise<Msg> {
  let m: Msg;
  do {
    m = await c.next();
  } while (m.name !== 'error');
  expect({ code: m.code, severity: m.severity }).toEqual({ code, severity: 'FATAL' });
  await c.whenClosed();
  return m;
}

/** Another, well-behaved client still gets served. */
async function healthy(): Promise<void> {
  const c = await connected(proxy.port);
  try {
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
  } finally {
    await c.end();
  }
  expect(proxy.server.isReady()).toBe(true);
}

async function protocolErrors(): Promise<number> {
  return (await proxy.server.metrics.protocolErrors.get()).values[0]?.value ?? 0;
}

async function rejections(reason: string): Promise<number> {
  return (await proxy.server.metrics.clientRejections.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/** After a bad client left: no session, no backend lent out. */
async function settled(): Promise<void> {
  await eventually(() => {
    const s = proxy.server.stats();
    return s.clientConnections === 0 && s.borrowed === 0;
  }, 'no clients and no borrowed backends');
}

afterEach(async () => {
  // Each test has asserted what it expects of its own connections; whatever is left is closed
  // from the client side so that one failure does not spill into the next test.
  for (const r of raws.splice(0)) r.close();
  await healthy();
  await settled();
});

describe('malformed messages after login', () => {
  test('a length field below 4 gets 08P01 and a closed connection', async () => {
    const before = await protocolErrors();
    const c = await login();
    c.send(frame('Q', 3));
    const m = await expectFatal(c, '08P01');
    expect(m.message).toMatch(/invalid message length 3/);
    expect(await protocolErrors()).toBe(before + 1);
  });

  test('a length field of 0 gets 08P01', async () => {
    const c = await login();
    c.send(frame('P', 0));
    await expectFatal(c, '08P01');
  });

  test('an absurd length (0x7ffffff0) gets 08P01 and allocates nothing', async () => {
    const rssBefore = process.memoryUsage().rss;
    for (const type of ['Q', 'P', 'B', 'd', 'S']) {
      const batch = await Promise.all(Array.from({ length: 5 }, () => login()));
      for (const c of batch) c.send(frame(type, 0x7ffffff0, Buffer.from('SELECT 1')));
      for (const c of batch) await expectFatal(c, '08P01');
    }
    const grew = process.memoryUsage().rss - rssBefore;
    expect(grew).toBeLessThan(50 * 1024 * 1024);
  });

  test('a length just above maxMessageBytes gets 08P01', async () => {
    const c = await login();
    c.send(frame('Q', proxy.server.config.maxMessageBytes + 1));
    const m = await expectFatal(c, '08P01');
    expect(m.message).toMatch(/invalid message length/);
  });

  test('an unknown message type gets 08P01', async () => {
    for (const type of ['z', '\x01', 'p']) {
      const c = await login();
      c.send(frame(type, 4));
      await expectFatal(c, '08P01');
    }
  });

  test('a Query without its terminating NUL gets 08P01', async () => {
    const c = await login();
    c.send(frame('Q', 4 + 8, Buffer.from('SELECT 1')));
    await expectFatal(c, '08P01');
  });

  test('a malformed message inside a transaction: 08P01, and the backend is not lent on dirty', async () => {
    const c = await login();
    c.send(serialize.query('BEGIN; CREATE TABLE bad_input_tx (x int)'));
    const replies = await c.untilReady();
    expect(replies.at(-1)).toMatchObject({ name: 'readyForQuery', status: 'T' });
    c.send(frame('Q', 2));
    await expectFatal(c, '08P01');
    await settled();
    await eventually(() => cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'") === '0', 'no transaction left open on the server');
    expect(cluster.psql("SELECT count(*) FROM pg_class WHERE relname = 'bad_input_tx'")).toBe('0');
  });

  test('an absurd length in the admin console gets 08P01', async () => {
    const c = await login('boss', 'dbproxy');
    c.send(frame('Q', 0x7ffffff0));
    await expectFatal(c, '08P01');
  });
});

describe('bad startup and authentication', () => {
  test('a startup packet with length 3 gets 08P01 and a closed connection', async () => {
    const c = await rawConnect();
    c.send(Buffer.from([0, 0, 0, 3]));
    const m = await expectFatal(c, '08P01');
    expect(m.message).toMatch(/invalid length of startup packet/);
  });

  test('a startup packet longer than 10000 bytes gets 08P01', async () => {
    const c = await rawConnect();
    const head = Buffer.alloc(8);
    head.writeUInt32BE(20_000, 0);
    head.writeUInt32BE(196608, 4);
    c.send(head);
    await expectFatal(c, '08P01');
  });

  test('an absurd startup length (0x7ffffff0) gets 08P01', async () => {
    const c = await rawConnect();
    const head = Buffer.alloc(8);
    head.writeUInt32BE(0x7ffffff0, 0);
    head.writeUInt32BE(196608, 4);
    c.send(head);
    await expectFatal(c, '08P01');
  });

  test('a startup packet whose parameters are not terminated gets 08P01', async () => {
    const c = await rawConnect();
    const bad = startupPacket(3, 0, { user: 'app' }).subarray(0, -2);
    bad.writeUInt32BE(bad.length, 0);
    c.send(bad);
    await expectFatal(c, '08P01');
  });

  test.each([
    [2, 0],
    [4, 0],
    [65535, 0],
  ])('protocol version %i.%i gets 0A000', async (major, minor) => {
    const before = await rejections('protocol_version');
    const c = await rawConnect();
    c.send(startupPacket(major, minor, { user: 'app', database: 'postgres' }));
    const m = await expectFatal(c, '0A000');
    expect(m.message).toMatch(/unsupported frontend protocol/);
    expect(await rejections('protocol_version')).toBe(before + 1);
  });

  test('a startup packet with no user gets 28000', async () => {
    const c = await rawConnect();
    c.send(startupPacket(3, 0, { database: 'postgres' }));
    const m = await expectFatal(c, '28000');
    expect(m.message).toMatch(/no PostgreSQL user name/);
  });

  test('an empty user name gets 28000', async () => {
    const c = await rawConnect();
    c.send(startupPacket(3, 0, { user: '', database: 'postgres' }));
    await expectFatal(c, '28000');
  });

  test('an absurd length in the password message gets 08P01', async () => {
    const c = await rawConnect();
    c.send(serialize.startup({ user: 'app', database: 'postgres' }));
    const first = await c.next();
    expect(first.name).toBe('authenticationSASL');
    c.send(frame('p', 0x7ffffff0));
    await expectFatal(c, '08P01');
  });

  test('a message other than a password during authentication gets 08P01', async () => {
    const c = await rawConnect();
    c.send(serialize.startup({ user: 'app', database: 'postgres' }));
    expect((await c.next()).name).toBe('authenticationSASL');
    c.send(serialize.query('SELECT 1'));
    await expectFatal(c, '08P01');
  });

  test('a wrong password gets 28P01, and logs do not carry it', async () => {
    const e = await RawClient.login(proxy.port, 'app', 'wrong-horse-battery').then(
      () => undefined,
      (err: unknown) => err as { code?: string },
    );
    expect(e?.code).toBe('28P01');
    expect(proxy.logs.some((l) => l.includes('wrong-horse-battery'))).toBe(false);
  });

  test('a client that connects and sends nothing is not a client session and disturbs nobody', async () => {
    const silent = await Promise.all(Array.from({ length: 20 }, () => rawConnect()));
    const half = await rawConnect();
    half.send(Buffer.from([0, 0])); // half a length field
    await healthy();
    const s = proxy.server.stats();
    expect(s.clientConnections).toBe(0);
    for (const c of silent) expect(c.closed).toBe(false);
    for (const c of [...silent, half]) c.close();
  });
});

/**
 * A peer that never closes its end of the connection by itself (allowHalfOpen): whatever the proxy
 * sends is parsed, and `closed` settles only when the proxy really closes the socket.
 */
class StubbornPeer {
  readonly messages: Msg[] = [];
  private readonly parser = new Parser();
  private cursor = 0;
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.parser.parse(chunk, (m) => this.messages.push(m as Msg)));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<StubbornPeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      s.once('connect', () => resolve(new StubbornPeer(s)));
      s.once('error', reject);
    });
  }

  async next(what = 'a message from the proxy'): Promise<Msg> {
    await eventually(() => this.cursor < this.messages.length, what);
    return this.messages[this.cursor++]!;
  }

  async nextError(): Promise<Msg> {
    for (;;) {
      const m = await this.next('an ErrorResponse');
      if (m.name === 'error') return m;
    }
  }

  /** Keeps writing, as a client that ignores the FATAL would, until the socket is gone. */
  keepTalking(chunk: Buffer): void {
    const tick = (): void => {
      if (this.isClosed || this.socket.destroyed) return;
      this.socket.write(chunk, () => setTimeout(tick, 5));
    };
    tick();
  }
}

describe('refused connections are closed, not half-closed', () => {
  let small: RunningProxy;
  const peers: StubbornPeer[] = [];

  beforeAll(async () => {
    // maxClientConnections 1: the listener itself takes at most 101 sockets at once.
    small = await startProxy(cluster, { pool: { maxClientConnections: 1 }, clientAuth: { failureDelay: '500ms' } });
  });

  afterAll(async () => {
    for (const p of peers) p.socket.destroy();
    await small?.stop();
  });

  test('after a FATAL in startup the proxy closes the socket even if the client never does', async () => {
    const p = await StubbornPeer.connect(proxy.port);
    peers.push(p);
    p.socket.write(startupPacket(3, 0, { database: 'postgres' }));
    expect(await p.nextError()).toMatchObject({ code: '28000', severity: 'FATAL' });
    // PostgreSQL exits after a FATAL: whatever the client sends next meets a closed socket.
    p.keepTalking(Buffer.alloc(16 * 1024, 0x61));
    await eventually(() => p.isClosed, 'the proxy to close the refused connection');
  });

  test('a flood sent while a failed login is being answered is not buffered: the answer comes on time', async () => {
    const p = await StubbornPeer.connect(small.port);
    peers.push(p);
    p.socket.write(serialize.startup({ user: 'app', database: 'postgres' }));
    expect((await p.next()).name).toBe('authenticationSASL');
    const scram = new ScramClientExchange('not-the-password');
    p.socket.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
    const cont = await p.next();
    expect(cont.name).toBe('authenticationSASLContinue');
    p.socket.write(serialize.sendSCRAMClientFinalMessage(scram.handleServerFirst(cont.data as string)));
    // 64 MiB of junk while the proxy waits out failureDelay before answering.
    const started = Date.now();
    const junk = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i < 64; i++) p.socket.write(junk);
    expect(await p.nextError()).toMatchObject({ code: '28P01', severity: 'FATAL' });
    await eventually(() => p.isClosed, 'the proxy to close the failed login');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  test('refused connections that the client keeps open do not use up the listener', async () => {
    const before = (await small.server.metrics.clientRejections.get()).values.find((v) => v.labels.reason === 'no_user')?.value ?? 0;
    const refused = await Promise.all(Array.from({ length: 110 }, () => StubbornPeer.connect(small.port)));
    peers.push(...refused);
    for (const p of refused) p.socket.write(startupPacket(3, 0, { database: 'postgres' }));
    // Every one that the listener took was refused with 28000 (the rest were dropped by maxConnections).
    await eventually(() => refused.every((p) => p.messages.some((m) => m.name === 'error') || p.isClosed), 'every refused client to be answered');
    const after = (await small.server.metrics.clientRejections.get()).values.find((v) => v.labels.reason === 'no_user')?.value ?? 0;
    expect(after - before).toBeGreaterThanOrEqual(100);
    // A well-behaved client still gets in: the refused sockets were closed, not parked.
    await eventually(async () => {
      const c = client(small.port);
      c.on('error', () => undefined);
      try {
        await c.connect();
      } catch {
        return false;
      }
      try {
        return (await c.query('SELECT 1 AS one')).rows[0].one === 1;
      } finally {
        await c.end();
      }
    }, 'a new client to log in past the refused ones');
  });
});

describe('the process survives all of it', () => {
  test('a flood of mixed garbage leaves the proxy serving', async () => {
    const garbage: Buffer[] = [
      Buffer.from([0, 0, 0, 3]),
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      Buffer.alloc(64, 0xff),
      startupPacket(2, 0, { user: 'app' }),
      startupPacket(3, 0, {}),
    ];
    const clients = await Promise.all(garbage.map(() => rawConnect()));
    clients.forEach((c, i) => c.send(garbage[i]!));
    for (const c of clients) await c.whenClosed();
    const inSession = await Promise.all(Array.from({ length: 5 }, () => login()));
    inSession.forEach((c, i) => c.send(i % 2 ? frame('Q', 1) : Buffer.alloc(32, 0)));
    for (const c of inSession) await c.whenClosed();
    await healthy();
  });
});
