// Protocol v3 through the proxy against real PostgreSQL 15: startup negotiation, simple and
// extended query, pipelining, COPY both ways, notices, errors in transactions, Terminate.
import net from 'node:net';
import type { PgCluster } from '../../hack/postgres.js';
import { connected, proxyBackendCount, psql, startCluster, startProxy, USERS, type RunningProxy } from '../support/harness.js';
import { RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const app = USERS[0]!;

beforeAll(async () => {
  cluster = await startCluster();
  cluster.psql('CREATE TABLE public.items (id int primary key, name text); GRANT ALL ON public.items TO app;');
  proxy = await startProxy(cluster);
});

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

function startupReply(port: number, packet: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => s.write(packet));
    s.once('data', (d: Buffer) => {
      s.destroy();
      resolve(d);
    });
    s.once('error', reject);
  });
}

const codePacket = (code: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(8, 0);
  b.writeUInt32BE(code, 4);
  return b;
};

test('SSLRequest and GSSENCRequest are answered N', async () => {
  expect((await startupReply(proxy.port, codePacket(80877103))).toString()).toBe('N');
  expect((await startupReply(proxy.port, codePacket(80877104))).toString()).toBe('N');
});

test('psql asks for SSL first (sslmode=prefer) and goes on in plaintext', async () => {
  // libpq's default sslmode is prefer: it sends SSLRequest first.
  const r = await psql(proxy.port, 'SELECT 40 + 2');
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('42');
});

test('startup parameters reach the session: application_name, options -c, TimeZone', async () => {
  const c = await connected(proxy.port, 'app', { application_name: 'orders-api', options: '-c search_path=pg_catalog,public -c statement_timeout=12345' } as object);
  try {
    const r = await c.query("SELECT current_setting('application_name') AS a, current_setting('search_path') AS s, current_setting('statement_timeout') AS t");
    expect(r.rows[0]).toEqual({ a: 'orders-api', s: 'pg_catalog,public', t: '12345ms' });
  } finally {
    await c.end();
  }
});

test('a client with other startup parameters on the same backend does not see them', async () => {
  const a = await connected(proxy.port, 'app', { application_name: 'first' } as object);
  await a.query('SELECT 1');
  await a.end();
  const b = await connected(proxy.port, 'app');
  try {
    const r = await b.query("SELECT current_setting('application_name') AS a");
    expect(r.rows[0].a).not.toBe('first');
  } finally {
    await b.end();
  }
});

test('simple and extended protocol with parameters', async () => {
  const c = await connected(proxy.port);
  try {
    expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    expect((await c.query('SELECT $1::int + $2::int AS sum', [2, 3])).rows).toEqual([{ sum: 5 }]);
    expect((await c.query({ text: 'SELECT $1::text AS t', values: ['x'], rowMode: 'array' })).rows).toEqual([['x']]);
  } finally {
    await c.end();
  }
});

test('several Parse/Bind/Execute pipelined before one Sync run on one backend, in order', async () => {
  const c = await RawClient.login(proxy.port, app.name, app.password);
  c.send([
    serialize.parse({ text: 'SELECT pg_backend_pid()::text' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.parse({ text: 'SELECT $1::text' }),
    serialize.bind({ values: ['two'] }),
    serialize.execute({}),
    serialize.parse({ text: 'SELECT pg_backend_pid()::text' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.sync(),
  ]);
  const msgs = await c.untilReady();
  const rows = msgs.filter((m) => m.name === 'dataRow').map((m) => (m.fields as string[])[0]);
  expect(rows[1]).toBe('two');
  expect(rows[0]).toBe(rows[2]);
  expect(msgs.filter((m) => m.name === 'commandComplete')).toHaveLength(3);
  c.close();
});

test('Flush without Sync gets results back while the backend stays with the client', async () => {
  const c = await RawClient.login(proxy.port, app.name, app.password);
  c.send([serialize.parse({ text: 'SELECT 7::text' }), serialize.bind({}), serialize.execute({}), serialize.flush()]);
  const seen: string[] = [];
  for (;;) {
    const m = await c.next();
    seen.push(m.name);
    if (m.name === 'commandComplete') break;
  }
  expect(seen).toEqual(['parseComplete', 'bindComplete', 'dataRow', 'commandComplete']);
  expect(proxy.server.stats().borrowed).toBeGreaterThanOrEqual(1);
  c.send(serialize.sync());
  const end = await c.untilReady();
  expect(end.map((m) => m.name)).toEqual(['readyForQuery']);
  c.close();
});

test('an error in a pipeline skips to Sync exactly as PostgreSQL does', async () => {
  const pipeline = [
    serialize.parse({ text: 'SELECT 1' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.parse({ text: 'SELECT * FROM no_such_table' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.parse({ text: 'SELECT 2' }),
    serialize.bind({}),
    serialize.execute({}),
    serialize.sync(),
    serialize.query('SELECT 3'),
  ];
  const shape = async (port: number): Promise<string[]> => {
    const c = await RawClient.login(port, app.name, app.password);
    c.send(pipeline);
    const msgs = [...(await c.untilReady()), ...(await c.untilReady())];
    c.close();
    return msgs.map((m) => (m.name === 'error' ? `error:${String(m.code)}` : m.name === 'readyForQuery' ? `Z:${String(m.status)}` : m.name));
  };
  const direct = await shape(cluster.port);
  expect(direct).toContain('error:42P01');
  expect(await shape(proxy.port)).toEqual(direct);
});

test('COPY FROM STDIN and COPY TO STDOUT', async () => {
  const rows = Array.from({ length: 5000 }, (_, i) => `${i + 1}\titem-${i + 1}`).join('\n') + '\n';
  const load = await psql(proxy.port, '', { input: `COPY public.items FROM STDIN;\n${rows}\\.\n` });
  expect(load.stderr).toBe('');
  const count = await psql(proxy.port, 'SELECT count(*), max(name) FROM public.items');
  expect(count.stdout.trim()).toBe('5000|item-999');
  const out = await psql(proxy.port, 'COPY (SELECT * FROM public.items ORDER BY id) TO STDOUT');
  expect(out.stdout).toBe(rows);
  // A COPY that fails half way leaves the client and the pool usable.
  const bad = await psql(proxy.port, '', { input: 'COPY public.items FROM STDIN;\n1\tdup\n\\.\n' });
  expect(bad.stderr).toMatch(/duplicate key/);
  expect((await psql(proxy.port, 'SELECT count(*) FROM public.items')).stdout.trim()).toBe('5000');
});

test('notices reach the client', async () => {
  const c = await connected(proxy.port);
  const notices: string[] = [];
  c.on('notice', (n) => notices.push(n.message ?? ''));
  try {
    await c.query("DO $$ BEGIN RAISE NOTICE 'hello from %', 'plpgsql'; END $$");
    expect(notices).toEqual(['hello from plpgsql']);
  } finally {
    await c.end();
  }
});

test('an error inside a transaction keeps the backend until ROLLBACK, then releases it', async () => {
  const c = await connected(proxy.port);
  try {
    await c.query('BEGIN');
    await expect(c.query('SELECT * FROM no_such_table')).rejects.toMatchObject({ code: '42P01' });
    await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
    expect(proxy.server.stats().borrowed).toBe(1);
    await c.query('ROLLBACK');
    expect(proxy.server.stats().borrowed).toBe(0);
    expect((await c.query('SELECT 3 AS x')).rows[0].x).toBe(3);
  } finally {
    await c.end();
  }
});

test('Terminate closes the client and leaves its backend in the pool', async () => {
  const before = proxy.server.stats().databaseConnections;
  const c = await RawClient.login(proxy.port, app.name, app.password);
  c.send(serialize.query('SELECT 1'));
  await c.untilReady();
  c.send(serialize.end());
  await c.whenClosed();
  expect(proxy.server.stats().databaseConnections).toBeGreaterThanOrEqual(Math.min(before, 1));
  expect(proxyBackendCount(cluster)).toBe(proxy.server.stats().databaseConnections);
});

test('the ParameterStatus a client sees carries its own startup values', async () => {
  const r = await RawClient.connect(proxy.port);
  r.send(serialize.startup({ user: app.name, database: 'postgres', application_name: 'shown-back' }));
  const { ScramClientExchange } = await import('../../proxy/auth/scramClient.js');
  let scram: InstanceType<typeof ScramClientExchange> | undefined;
  const status = new Map<string, string>();
  for (;;) {
    const m = await r.next();
    if (m.name === 'authenticationSASL') {
      scram = new ScramClientExchange(app.password);
      r.send(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
    } else if (m.name === 'authenticationSASLContinue') {
      r.send(serialize.sendSCRAMClientFinalMessage(scram!.handleServerFirst(m.data as string)));
    } else if (m.name === 'parameterStatus') {
      status.set(m.parameterName as string, m.parameterValue as string);
    } else if (m.name === 'readyForQuery') {
      break;
    }
  }
  expect(status.get('application_name')).toBe('shown-back');
  expect(status.get('server_version')).toMatch(/^15\./);
  expect(status.get('client_encoding')).toBe('UTF8');
  expect(r.pid).toBeGreaterThan(0);
  r.close();
});
