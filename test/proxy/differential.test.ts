// Issue 11, the differential check: scripted client sessions (simple and extended protocol,
// pipelines, errors mid-pipeline, COPY, large messages, SETs at top level and nested) run once
// directly against PostgreSQL and once through the proxy with ONE backend shared by interleaved
// clients, each batch written in random chunks. Every client's transcript must be the same both
// ways, and after each round a probe client must find the backend pristine: settings, role,
// isolation, search_path, advisory locks, temporary objects, SQL prepared statements, cursors,
// listened channels. The seed is fixed in CI; DIFF_SEED / DIFF_ROUNDS explore further locally.
import type { PgCluster } from '../../hack/postgres.js';
import { type RunningProxy, USERS, eventually, startCluster, startProxy } from '../support/harness.js';
import { type Msg, RawClient, serialize } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
const app = USERS[0]!;
const SEED = Number(process.env.DIFF_SEED ?? 20261130);
const ROUNDS = Number(process.env.DIFF_ROUNDS ?? 20);

beforeAll(async () => {
  cluster = await startCluster({ maxConnections: 40 });
  const tables = SCRIPTS.map((_, i) => `CREATE TABLE public.d${i} (id int, v text); GRANT ALL ON public.d${i} TO app;`).join('\n');
  cluster.psql(`${tables}\nCREATE ROLE diff_reader NOLOGIN; GRANT diff_reader TO app;`);
  // 40 × 5 % = a budget of 2: the health check and one backend every client shares.
  proxy = await startProxy(cluster, { pool: { maxConnectionsPercent: 5, borrowTimeout: '60s' } });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  cluster?.destroy();
});

/** A deterministic PRNG (mulberry32): the same seed, the same chunkings and interleavings. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function frontend(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}
const copyData = (s: string): Buffer => frontend('d', s);
const copyDone = (): Buffer => frontend('c');
const copyFail = (why: string): Buffer => frontend('f', `${why}\0`);
const q = (sql: string): Buffer => serialize.query(sql);
const sync = (): Buffer => serialize.sync();
const P = (text: string, name = '', types: number[] = []): Buffer => serialize.parse({ name, text, types });
const B = (statement = '', values: Array<string | null> = [], portal = ''): Buffer => serialize.bind({ statement, portal, values });
const E = (portal = '', rows = 0): Buffer => serialize.execute({ portal, rows });
const D = (type: 'S' | 'P', name = ''): Buffer => serialize.describe({ type, name });
const C = (type: 'S' | 'P', name = ''): Buffer => serialize.close({ type, name });

/** One write of a script: its messages, and how many ReadyForQuery end its answer. */
interface Batch {
  messages: Buffer[];
  ready: number;
}
const batch = (...messages: Buffer[]): Batch => ({
  messages,
  ready: messages.filter((m) => m[0] === 0x51 /* Q */ || m[0] === 0x53 /* S */).length,
});

interface Script {
  name: string;
  startup?: Record<string, string>;
  /** `t` is this script's own table. */
  batches: (t: string) => Batch[];
}

const big = (n: number, c = 'x'): string => c.repeat(n);

const SCRIPTS: Script[] = [
  {
    name: 'simple queries, several statements, an error inside, an empty query',
    batches: (t) => [
      batch(q(`INSERT INTO ${t} VALUES (1, 'a'), (2, 'b'); SELECT id, v FROM ${t} ORDER BY id`)),
      batch(q(`SELECT 1; SELECT 1/0; SELECT 2`)),
      batch(q('')),
      batch(q(`DELETE FROM ${t}`)),
    ],
  },
  {
    name: 'extended protocol: named and unnamed statements, describe, portals with row limits',
    batches: (t) => [
      batch(P(`INSERT INTO ${t} SELECT g, 'v' || g FROM generate_series(1, $1::int) g`, 'ins'), B('ins', ['5']), E(), sync()),
      batch(P(`SELECT id, v FROM ${t} WHERE id > $1 ORDER BY id`, 'sel', [23]), D('S', 'sel'), B('sel', ['1'], 'p1'), D('P', 'p1'), E('p1', 2), E('p1', 2), E('p1'), sync()),
      batch(P('SELECT $1::text AS echo'), B('', ['unnamed']), E(), sync()),
      batch(B('sel', ['3']), E(), C('S', 'sel'), B('sel', ['3']), E(), sync()),
      batch(C('S', 'ins'), P(`DELETE FROM ${t}`), B(), E(), sync()),
    ],
  },
  {
    name: 'pipelines with errors mid-pipeline: the rest is skipped up to Sync',
    batches: (t) => [
      batch(P('SELECT 1/$1::int AS r', 'div'), B('div', ['0']), E(), B('div', ['1']), E(), sync(), B('div', ['2']), E(), sync()),
      batch(B('missing'), E(), sync(), P(`SELECT count(*) FROM ${t}`), B(), E(), sync()),
      batch(P('SELECT 1', 'div'), sync(), P('SELEC 1', 'bad'), B('bad'), E(), sync()),
      batch(q('BEGIN'), P('SELECT 1/0'), B(), E(), sync(), q('SELECT 1'), q('ROLLBACK')),
    ],
  },
  {
    name: 'COPY in and out, and a COPY the client fails',
    batches: (t) => [
      batch(q(`COPY ${t} FROM STDIN`), copyData('1\tone\n'), copyData('2\ttwo\n3\tth'), copyData('ree\n'), copyDone()),
      batch(q(`COPY ${t} TO STDOUT`)),
      batch(q(`COPY (SELECT id FROM ${t} ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)`)),
      batch(q(`COPY ${t} FROM STDIN`), copyData('4\tfour\n'), copyFail('client changed its mind')),
      batch(q(`SELECT count(*) FROM ${t}; DELETE FROM ${t}`)),
    ],
  },
  {
    name: 'large messages both ways: a 300 KB query, a 300 KB parameter, a 300 KB row and notice',
    batches: () => [
      batch(q(`SELECT length('${big(300_000)}') AS n`)),
      batch(P('SELECT length($1::text) AS n, md5($1::text) AS h'), B('', [big(300_000, 'p')]), E(), sync()),
      batch(q(`SELECT repeat('r', 300000) AS r`)),
      batch(q(`DO $$ BEGIN RAISE NOTICE '%', repeat('n', 300000); END $$`)),
    ],
  },
  {
    name: 'transactions: commit, an error inside, savepoints, rollback',
    batches: (t) => [
      batch(q(`BEGIN; INSERT INTO ${t} VALUES (10, 'x')`)),
      batch(q('SAVEPOINT s1'), q(`INSERT INTO ${t} VALUES (11, 'y')`), q('ROLLBACK TO s1')),
      batch(q('COMMIT')),
      batch(q('BEGIN'), q('SELECT 1/0'), q('SELECT 1'), q('ROLLBACK')),
      batch(q(`SELECT id FROM ${t} ORDER BY id; DELETE FROM ${t}`)),
    ],
  },
  {
    name: 'SETs at top level, local, session characteristics, reset',
    startup: { application_name: 'diff-sets', options: '-c work_mem=5MB -c search_path=pg_catalog,public' },
    batches: () => [
      batch(q("SET statement_timeout = '12s'; SET LOCAL work_mem = '1MB'; SHOW work_mem")),
      batch(q('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ')),
      batch(q("SELECT current_setting('transaction_isolation'), current_setting('statement_timeout')")),
      batch(q("SET application_name = 'renamed'; RESET work_mem; SHOW work_mem")),
      batch(q("RESET ALL; SELECT current_setting('search_path'), current_setting('application_name'), current_setting('work_mem')")),
      batch(q("SET work_mem = '7MB'")),
      batch(q("SELECT current_setting('work_mem')")),
    ],
  },
  {
    name: 'SETs nested in DO blocks and set_config',
    batches: () => [
      batch(q("DO $$ BEGIN IF true THEN SET work_mem = '6MB'; PERFORM set_config('app.tenant', 'acme', false); END IF; END $$")),
      batch(q("DO $$ BEGIN EXECUTE 'SET search_path = pg_catalog'; END $$")),
      batch(q("SELECT current_setting('work_mem'), current_setting('app.tenant'), current_setting('search_path')")),
      batch(P("SELECT set_config('statement_timeout', $1, false)"), B('', ['9s']), E(), sync()),
      batch(q("SELECT current_setting('statement_timeout')")),
    ],
  },
  {
    name: 'state that pins: temp table, advisory lock, WITH HOLD cursor, SQL PREPARE, LISTEN, SET ROLE',
    batches: () => [
      batch(q('CREATE TEMP TABLE tmp (a int); INSERT INTO tmp VALUES (1)')),
      batch(q('SELECT pg_advisory_lock(4242)')),
      batch(q('BEGIN; DECLARE cur CURSOR WITH HOLD FOR SELECT a FROM tmp; COMMIT')),
      batch(q('FETCH ALL FROM cur')),
      batch(q('PREPARE sqlp AS SELECT 41 + 1'), q('EXECUTE sqlp')),
      batch(q('LISTEN diffchan'), q("NOTIFY diffchan, 'hello'")),
      batch(q('SET ROLE diff_reader'), q('SELECT current_user')),
    ],
  },
  {
    name: 'errors and notices the server raises, and prepared statements after DDL',
    batches: (t) => [
      batch(q(`DO $$ BEGIN RAISE NOTICE 'note %', 1; RAISE WARNING 'careful'; END $$`)),
      batch(q('SELECT * FROM no_such_table')),
      batch(P(`SELECT * FROM ${t}`, 'star'), B('star'), E(), sync()),
      batch(q(`ALTER TABLE ${t} ADD COLUMN extra int`)),
      batch(B('star'), E(), sync()),
      batch(q(`ALTER TABLE ${t} DROP COLUMN extra`)),
      batch(P('SELECT 1', 'dup'), P('SELECT 2', 'dup'), sync()),
      batch(D('S', 'nope'), sync()),
    ],
  },
];

/** What a client can observe of one message, minus what legitimately differs (pids, OIDs of new tables). */
function observe(m: Msg): string {
  const f = m as unknown as Record<string, unknown>;
  switch (m.name) {
    case 'rowDescription':
      return `T:${JSON.stringify((f.fields as Array<Record<string, unknown>>).map((x) => [x.name, x.dataTypeID, x.format]))}`;
    case 'dataRow':
      return `D:${JSON.stringify(f.fields)}`;
    case 'commandComplete':
      return `C:${String(f.text)}`;
    case 'readyForQuery':
      return `Z:${String(f.status)}`;
    case 'error':
    case 'notice':
      return `${m.name}:${String(f.severity)}:${String(f.code)}:${String(f.message)}:${String(f.detail ?? '')}`;
    case 'parameterStatus':
      return `S:${String(f.parameterName)}=${String(f.parameterValue)}`;
    case 'notification':
      return `A:${String(f.channel)}:${String(f.payload)}`;
    case 'copyData':
      return `d:${(f.chunk as Buffer).toString()}`;
    case 'parameterDescription':
      return `t:${JSON.stringify(f.dataTypeIDs)}`;
    default:
      return m.name;
  }
}

/** Writes a batch in random chunks, yielding between them so they arrive as separate reads. */
async function sendChunked(c: RawClient, messages: Buffer[], rnd: () => number): Promise<void> {
  const bytes = Buffer.concat(messages);
  let at = 0;
  while (at < bytes.length) {
    const style = rnd();
    const n = style < 0.2 ? 1 + Math.floor(rnd() * 6) : style < 0.6 ? 1 + Math.floor(rnd() * 4096) : bytes.length;
    c.socket.write(bytes.subarray(at, at + n));
    at += n;
    if (rnd() < 0.5) await new Promise((r) => setImmediate(r));
  }
}

async function runScript(port: number, script: Script, index: number, rnd: () => number): Promise<string[]> {
  const c = await RawClient.login(port, app.name, app.password, 'postgres', script.startup ?? {});
  c.socket.setNoDelay(true);
  const transcript: string[] = [];
  try {
    for (const b of script.batches(`public.d${index}`)) {
      await sendChunked(c, b.messages, rnd);
      for (let i = 0; i < b.ready; i++) transcript.push(...(await c.untilReady(30_000)).map(observe));
      // Let other clients' batches interleave with this one's.
      if (rnd() < 0.7) await new Promise((r) => setTimeout(r, Math.floor(rnd() * 3)));
    }
    c.send(frontend('X'));
  } finally {
    c.close();
  }
  return transcript;
}

const PROBE = `SELECT current_user, session_user, current_setting('search_path'), current_setting('work_mem'),
  current_setting('statement_timeout'), current_setting('application_name'), current_setting('default_transaction_isolation'),
  current_setting('TimeZone'), coalesce(current_setting('app.tenant', true), ''),
  (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
  (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),
  (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
  (SELECT count(*) FROM pg_cursors), (SELECT count(*) FROM pg_listening_channels())`;

async function probe(port: number): Promise<string[]> {
  const c = await RawClient.login(port, app.name, app.password);
  try {
    c.send(q(PROBE));
    return (await c.untilReady()).map(observe);
  } finally {
    c.close();
  }
}

test('every script gives the same transcript directly and through the proxy, one at a time', async () => {
  const pristine = await probe(cluster.port);
  for (const [i, script] of SCRIPTS.entries()) {
    const direct = await runScript(cluster.port, script, i, prng(SEED + i));
    const proxied = await runScript(proxy.port, script, i, prng(SEED + i));
    expect({ script: script.name, transcript: proxied }).toEqual({ script: script.name, transcript: direct });
    await eventually(() => proxy.server.stats().clientConnections === 0, 'the session to end');
    expect({ after: script.name, probe: await probe(proxy.port) }).toEqual({ after: script.name, probe: pristine });
  }
}, 120_000);

test('interleaved clients over one backend each see exactly what they see alone on PostgreSQL', async () => {
  const pristine = await probe(cluster.port);
  const rnd = prng(SEED);
  for (let round = 0; round < ROUNDS; round++) {
    // A random handful of scripts at once, each in its own table.
    const chosen = SCRIPTS.map((s, i) => ({ s, i })).filter(() => rnd() < 0.5);
    const seeds = chosen.map(() => Math.floor(rnd() * 2 ** 31));
    const direct = await Promise.all(chosen.map(({ s, i }, k) => runScript(cluster.port, s, i, prng(seeds[k]!))));
    const proxied = await Promise.all(chosen.map(({ s, i }, k) => runScript(proxy.port, s, i, prng(seeds[k]!))));
    chosen.forEach(({ s }, k) => expect({ round, script: s.name, transcript: proxied[k] }).toEqual({ round, script: s.name, transcript: direct[k] }));
    await eventually(() => proxy.server.stats().clientConnections === 0, 'the sessions to end');
    expect({ round, probe: await probe(proxy.port) }).toEqual({ round, probe: pristine });
  }
}, 600_000);
