// Issue 17: what real drivers' own test suites found (pgx v5's, run by `make conformance`; see
// docs/conformance.md). Each exchange runs against PostgreSQL directly and through dbproxy and
// the transcripts are compared. The proxy here has ONE backend (40 × 5 % = 2, less the health
// check), so every client shares it and a server statement another client (or this one, before
// some DDL) left there is certain to be met.
//
// Tests marked `failing` pin a dbproxy defect: they fail today and will pass once it is fixed,
// and jest then reports them; turn them into plain `test` with the fix. DRIVERS_EXPECT_FIXED=1
// runs them as plain tests, to see the actual difference.
//
// Tests of behaviour that is inherent to transaction pooling (docs/conformance.md, class a) are
// plain tests that document what dbproxy does instead.
import { Socket } from 'node:net';
import tls from 'node:tls';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { type PgCluster, startPostgres } from '../../hack/postgres.js';
import { md5PasswordHash } from '../../proxy/auth/md5.js';
import { ScramClientExchange } from '../../proxy/auth/scramClient.js';
import { makeCa, makeLeaf, postgresTlsSettings } from '../support/certs.js';
import { type CommandResult, type RunningProxy, USERS, freePort, psql, startProxy } from '../support/harness.js';
import { type Msg, RawClient } from '../support/rawClient.js';

let cluster: PgCluster;
let proxy: RunningProxy;
/**
 * A proxy with room for several server connections, for exchanges that need two at once (a
 * listener and a notifier) or idle ones left behind (the shared proxy's single connection is
 * taken over by the next client's login).
 */
let roomy: RunningProxy;
const app = USERS.find((u) => u.name === 'app')!;
const boss = USERS.find((u) => u.name === 'boss')!;

/** A defect of dbproxy: fails today; DRIVERS_EXPECT_FIXED=1 runs it as a plain test. */
const failing = process.env.DRIVERS_EXPECT_FIXED ? test : test.failing;

beforeAll(async () => {
  const ca = makeCa();
  const leaf = makeLeaf(ca, 'proxy', { dns: ['localhost'], ips: ['127.0.0.1'] });
  cluster = startPostgres({
    port: await freePort(),
    users: USERS,
    maxConnections: 40,
    // TLS on the server too, so both sides can be asked what they offer over TLS.
    settings: postgresTlsSettings(ca, { ips: ['127.0.0.1'] }),
  });
  cluster.psql('GRANT CREATE ON DATABASE postgres TO app;');
  proxy = await startProxy(cluster, {
    pool: { maxConnectionsPercent: 5, borrowTimeout: '20s' },
    tls: { certFile: leaf.certFile, keyFile: leaf.keyFile },
  });
  roomy = await startProxy(cluster, { pool: { maxConnectionsPercent: 25 } });
}, 60_000);

afterAll(async () => {
  await proxy?.stop();
  await roomy?.stop();
  cluster?.destroy();
});

type Target = 'direct' | 'proxy';
const portOf = (t: Target): number => (t === 'direct' ? cluster.port : proxy.port);
const roomyPortOf = (t: Target): number => (t === 'direct' ? cluster.port : roomy.port);
const login = (t: Target, user = app): Promise<RawClient> => RawClient.login(portOf(t), user.name, user.password);

/** One line per message, with what a driver acts on (no message texts: the SQLSTATE decides). */
function line(m: Msg): string {
  switch (m.name) {
    case 'error':
    case 'notice':
      return `${m.name} ${String(m.severity)} ${String(m.code)}`;
    case 'dataRow':
      return `DataRow ${JSON.stringify(m.fields)}`;
    case 'rowDescription':
      return `RowDescription ${(m.fields as Array<{ name: string; dataTypeID: number }>).map((f) => `${f.name}:${f.dataTypeID}`).join(',')}`;
    case 'parameterDescription':
      return `ParameterDescription ${(m.dataTypeIDs as number[]).join(',')}`;
    case 'commandComplete':
      return `CommandComplete ${String(m.text)}`;
    case 'readyForQuery':
      return `ReadyForQuery ${String(m.status)}`;
    case 'parameterStatus':
      return `ParameterStatus ${String(m.parameterName)}=${String(m.parameterValue)}`;
    default:
      return m.name;
  }
}

/** Sends `msgs` and reads the answers up to `readies` ReadyForQuery (default: one per Query or Sync sent). */
async function ask(c: RawClient, msgs: Buffer[], readies = msgs.filter((m) => m[0] === 0x51 || m[0] === 0x53).length, timeoutMs = 5000): Promise<string[]> {
  c.send(msgs);
  const out: string[] = [];
  for (let n = 0; n < readies; ) {
    let m: Msg;
    try {
      m = await c.next(timeoutMs);
    } catch (e) {
      out.push(c.closed ? '<closed>' : `<${(e as Error).message}>`);
      return out;
    }
    out.push(line(m));
    if (m.name === 'readyForQuery') n++;
  }
  return out;
}

const q = (sql: string): Buffer => serialize.query(sql);
const P = (name: string, text: string, types: number[] = []): Buffer => serialize.parse({ name, text, types });
const B = (statement: string, values: Array<string | null> = []): Buffer => serialize.bind({ statement, portal: '', values });
const E = (): Buffer => serialize.execute({ portal: '', rows: 0 });
const D = (type: 'S' | 'P', name: string): Buffer => serialize.describe({ type, name });
const C = (name: string): Buffer => serialize.close({ type: 'S', name });
const S = (): Buffer => serialize.sync();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs `f` directly against PostgreSQL, then through the proxy; returns both transcripts. */
async function both<T>(f: (t: Target) => Promise<T>): Promise<{ direct: T; proxied: T }> {
  const direct = await f('direct');
  const proxied = await f('proxy');
  return { direct, proxied };
}

/** The server pid of whatever runs `text` right now (pg_stat_activity), asked directly as a superuser. */
async function serverPidRunning(text: string): Promise<number> {
  const k = await login('direct', boss);
  try {
    for (let i = 0; i < 100; i++) {
      const rows = (await ask(k, [q(`SELECT pid FROM pg_stat_activity WHERE query = '${text.replaceAll("'", "''")}' AND pid <> pg_backend_pid()`)])).filter((l) => l.startsWith('DataRow'));
      if (rows.length > 0) return Number(JSON.parse(rows[0]!.slice('DataRow '.length))[0]);
      await sleep(20);
    }
    throw new Error(`nothing runs ${text}`);
  } finally {
    k.close();
  }
}

async function terminate(pid: number): Promise<void> {
  const k = await login('direct', boss);
  try {
    await ask(k, [q(`SELECT pg_terminate_backend(${pid})`)]);
  } finally {
    k.close();
  }
}

/** Everything the server (or proxy) sends without being asked, for `ms`. */
async function unsolicited(c: RawClient, ms: number): Promise<string[]> {
  const out: string[] = [];
  const deadline = Date.now() + ms;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) return out;
    try {
      out.push(line(await c.next(left)));
    } catch {
      if (c.closed) {
        out.push('<closed>');
        return out;
      }
    }
  }
}

/**
 * Another client makes the one backend's session its own and leaves: through the proxy, the
 * backend is reset (DISCARD ALL) before anyone gets it again, so it no longer holds any
 * statement; directly, nothing happens to anyone else's session.
 */
async function resetTheSharedBackend(t: Target): Promise<void> {
  const k = await login(t);
  try {
    await ask(k, [q('CREATE TEMPORARY TABLE drv_reset (a int)')]);
  } finally {
    k.close();
  }
}

/** DDL on a connection of its own, straight to PostgreSQL (a migration the proxy never sees). */
async function externalDdl(sql: string): Promise<void> {
  const k = await login('direct', boss);
  try {
    const out = await ask(k, [q(sql)]);
    if (out.some((l) => l.startsWith('error'))) throw new Error(`${sql}: ${out.join(', ')}`);
  } finally {
    k.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Class 1: prepared statements after DDL. The proxy shares one server statement per (search_path,
// text, types) between clients and across a client's own Close/Parse; PostgreSQL analyses every
// Parse afresh.

describe('class 1: prepared statements after DDL', () => {
  // pgx TestStmtCacheInvalidationTx, TestStmtCacheInvalidationTxWithBatch
  test('a statement Parsed after the table changed describes the new table (no 0A000)', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('DROP TABLE IF EXISTS drv_cols; CREATE TABLE drv_cols (id int, f1 int, f2 int); INSERT INTO drv_cols VALUES (1, 2, 3)')]);
        const sql = 'SELECT * FROM drv_cols WHERE id = $1';
        await ask(c, [P('s1', sql), B('s1', ['1']), E(), S()]);
        await ask(c, [q('ALTER TABLE drv_cols DROP COLUMN f1')]);
        // The driver drops its statement and prepares the same text again, as pgx does.
        return await ask(c, [C('s1'), P('s1', sql), D('S', 's1'), B('s1', ['1']), E(), S()]);
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['closeComplete', 'parseComplete', 'ParameterDescription 23', 'RowDescription id:23,f2:23', 'bindComplete', 'DataRow ["1","3"]', 'CommandComplete SELECT 1', 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  // pgx TestStmtCacheInvalidationExec
  test('a statement Parsed after ALTER COLUMN TYPE reports the new parameter type', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('DROP TABLE IF EXISTS drv_types; CREATE TABLE drv_types (f1 int, f2 int)')]);
        const sql = 'INSERT INTO drv_types (f1, f2) VALUES ($1, $2)';
        await ask(c, [P('s2', sql), D('S', 's2'), B('s2', ['1', '2']), E(), S()]);
        await ask(c, [q('ALTER TABLE drv_types ALTER COLUMN f1 TYPE boolean USING f1::boolean')]);
        return await ask(c, [C('s2'), P('s2', sql), D('S', 's2'), S()]);
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['closeComplete', 'parseComplete', 'ParameterDescription 16,23', 'noData', 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  // pgx pgtype TestEnumCodecValues, TestCompositeCodecTranscodeStructWrapper(ForTable)
  test('a new client Parsing a query on a type that was dropped and recreated gets no XX000', async () => {
    const { direct, proxied } = await both(async (t) => {
      const a = await login(t);
      const b = await login(t);
      try {
        await ask(a, [q("DROP TYPE IF EXISTS drv_enum; CREATE TYPE drv_enum AS ENUM ('foo', 'bar')")]);
        const sql = "SELECT 'foo'::drv_enum::text AS v";
        await ask(a, [P('e1', sql), B('e1'), E(), S()]);
        await ask(a, [q("DROP TYPE drv_enum; CREATE TYPE drv_enum AS ENUM ('foo', 'bar', 'baz')")]);
        return await ask(b, [P('e1', sql), D('S', 'e1'), B('e1'), E(), S()]);
      } finally {
        a.close();
        b.close();
      }
    });
    expect(direct).toEqual(['parseComplete', 'ParameterDescription ', 'RowDescription v:25', 'bindComplete', 'DataRow ["foo"]', 'CommandComplete SELECT 1', 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  // Found by hand while reading pgx TestStmtCacheInvalidationTx: the proxy answers 0A000 for a
  // statement it saw fail with 0A000, where PostgreSQL gives 25P02 in the aborted transaction
  // and runs the statement again once the DDL is rolled back.
  test('after 0A000 inside a transaction: 25P02 until ROLLBACK, then the statement runs again', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('DROP TABLE IF EXISTS drv_rb; CREATE TABLE drv_rb (id int, f1 int, f2 int); INSERT INTO drv_rb VALUES (1, 2, 3)')]);
        await ask(c, [q('BEGIN')]);
        await ask(c, [P('r1', 'SELECT * FROM drv_rb WHERE id = $1'), B('r1', ['1']), E(), S()]);
        await ask(c, [q('ALTER TABLE drv_rb DROP COLUMN f1')]);
        const out = [...(await ask(c, [B('r1', ['1']), E(), S()])), ...(await ask(c, [B('r1', ['1']), E(), S()]))];
        await ask(c, [q('ROLLBACK')]);
        return [...out, ...(await ask(c, [B('r1', ['1']), E(), S()]))];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'error ERROR 0A000',
      'ReadyForQuery E',
      'error ERROR 25P02',
      'ReadyForQuery E',
      'bindComplete',
      'DataRow ["1","2","3"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  // What PostgreSQL's plan cache does for a statement whose table changed after it was prepared:
  // same result columns, it runs; other result columns, 0A000; columns back, it runs again.
  // Through the proxy the backend no longer holds the statement (another session's reset dropped
  // it), so the proxy prepares it again and must make the same check, for DDL it never saw.
  test('a statement prepared again on a backend that lost it: 0A000 if its result changed (even by DDL the proxy never saw), and it runs again once the table is back', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('DROP TABLE IF EXISTS drv_re; CREATE TABLE drv_re (id int, f1 int); INSERT INTO drv_re VALUES (1, 2)')]);
        await ask(c, [P('r', 'SELECT * FROM drv_re WHERE id = $1'), B('r', ['1']), E(), S()]);
        await resetTheSharedBackend(t);
        await externalDdl('ALTER TABLE drv_re ADD COLUMN f2 int');
        const out = await ask(c, [B('r', ['1']), E(), S()]);
        out.push(...(await ask(c, [D('S', 'r'), S()])));
        await resetTheSharedBackend(t);
        await externalDdl('ALTER TABLE drv_re DROP COLUMN f2');
        out.push(...(await ask(c, [B('r', ['1']), E(), S()])));
        return out;
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'error ERROR 0A000',
      'ReadyForQuery I',
      'ParameterDescription 23',
      'error ERROR 0A000',
      'ReadyForQuery I',
      'bindComplete',
      'DataRow ["1","2"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  test('a Parse after DDL inside a transaction sees the change; after ROLLBACK a new Parse sees the table as it was', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('DROP TABLE IF EXISTS drv_txddl; CREATE TABLE drv_txddl (id int, f1 int)')]);
        const sql = 'SELECT * FROM drv_txddl';
        await ask(c, [P('before', sql), S()]);
        await ask(c, [q('BEGIN'), q('ALTER TABLE drv_txddl ADD COLUMN f2 int')]);
        const out = await ask(c, [P('inside', sql), D('S', 'inside'), S()]);
        await ask(c, [q('ROLLBACK')]);
        out.push(...(await ask(c, [C('inside'), P('inside', sql), D('S', 'inside'), S()])));
        out.push(...(await ask(c, [D('S', 'before'), S()])));
        return out;
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'parseComplete',
      'ParameterDescription ',
      'RowDescription id:23,f1:23,f2:23',
      'ReadyForQuery T',
      'closeComplete',
      'parseComplete',
      'ParameterDescription ',
      'RowDescription id:23,f1:23',
      'ReadyForQuery I',
      'ParameterDescription ',
      'RowDescription id:23,f1:23',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });
});

// ---------------------------------------------------------------------------------------------
// Class 2: statement names and the unnamed statement.

describe('class 2: statement names and the unnamed statement', () => {
  // pgx TestDeallocateMissingPreparedStatementStillClearsFromPreparedStatementMap (all 5 modes)
  test('SQL DEALLOCATE of a protocol-level statement deallocates it', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        return [
          ...(await ask(c, [P('ps', 'SELECT $1::text'), D('S', 'ps'), S()])),
          ...(await ask(c, [q('DEALLOCATE ps')])),
          ...(await ask(c, [C('ps'), S()])),
          ...(await ask(c, [P('ps', 'SELECT $1::text, $2::text'), B('ps', ['hello', 'world']), E(), S()])),
        ];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'parseComplete',
      'ParameterDescription 25',
      'RowDescription text:25',
      'ReadyForQuery I',
      'CommandComplete DEALLOCATE',
      'ReadyForQuery I',
      'closeComplete',
      'ReadyForQuery I',
      'parseComplete',
      'bindComplete',
      'DataRow ["hello","world"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  // Not in pgx's suite; same cause: SQL-level and protocol-level prepared statements share one
  // namespace in PostgreSQL.
  test('SQL EXECUTE runs a protocol-level statement, and Bind runs a SQL-PREPAREd one', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        return [
          ...(await ask(c, [P('proto_ps', 'SELECT 6 AS v'), S()])),
          ...(await ask(c, [q('EXECUTE proto_ps')])),
          ...(await ask(c, [q('PREPARE sql_ps AS SELECT 5 AS v')])),
          ...(await ask(c, [B('sql_ps'), E(), S()])),
        ];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'parseComplete',
      'ReadyForQuery I',
      'RowDescription v:23',
      'DataRow ["6"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
      'CommandComplete PREPARE',
      'ReadyForQuery I',
      'bindComplete',
      'DataRow ["5"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  // pgx QueryExecModeDescribeExec (Parse/Describe/Sync, then Bind/Execute/Sync): stdlib
  // TestConnConcurrency/describe_exec, TestInetCIDRTranscodeWithJustIP/describe_exec, ... whichever
  // test another client's simple Query lands between the two round trips.
  test("the unnamed statement survives another client's simple Query on the shared backend", async () => {
    const { direct, proxied } = await both(async (t) => {
      const a = await login(t);
      const b = await login(t);
      try {
        const out = await ask(a, [P('', 'SELECT $1::int8 AS n'), D('S', ''), S()]);
        // Another client, between this client's two round trips (on the proxy, on the same backend).
        await ask(b, [q('SELECT 1')]);
        out.push(...(await ask(a, [D('S', ''), S()])));
        out.push(...(await ask(a, [B('', ['7']), E(), S()])));
        return out;
      } finally {
        a.close();
        b.close();
      }
    });
    expect(direct).toEqual([
      'parseComplete',
      'ParameterDescription 20',
      'RowDescription n:20',
      'ReadyForQuery I',
      'ParameterDescription 20',
      'RowDescription n:20',
      'ReadyForQuery I',
      'bindComplete',
      'DataRow ["7"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  // pgx TestPrepareWithDigestedNameHandlesTimeoutBetweenParseAndDescribe (and
  // TestPrepareHandlesTimeoutBetweenParseAndDescribe when its text is already known to the proxy).
  test('statement_timeout expires between a Parse and its Describe even when the proxy knows the statement', async () => {
    const sql = 'SELECT $1::varchar AS slow_client';
    const { direct, proxied } = await both(async (t) => {
      // Another client prepared the same text before, so the proxy knows it.
      const other = await login(t);
      await ask(other, [P('known', sql), S()]);
      other.close();
      const c = await login(t);
      try {
        await ask(c, [q("SET statement_timeout = '100ms'")]);
        c.send(P('test', sql));
        await sleep(250);
        return await ask(c, [D('S', 'test'), S()]);
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['parseComplete', 'error ERROR 57014', 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  test("a client without an unnamed statement gets 26000 for it, never another client's", async () => {
    const { direct, proxied } = await both(async (t) => {
      const a = await login(t);
      const b = await login(t);
      try {
        await ask(a, [P('', 'SELECT 42 AS secret'), S()]);
        return [...(await ask(b, [B(''), E(), S()])), ...(await ask(b, [D('S', ''), S()])), ...(await ask(b, [C(''), S()])), ...(await ask(a, [B(''), E(), S()]))];
      } finally {
        a.close();
        b.close();
      }
    });
    expect(direct).toEqual([
      'error ERROR 26000',
      'ReadyForQuery I',
      'error ERROR 26000',
      'ReadyForQuery I',
      'closeComplete',
      'ReadyForQuery I',
      'bindComplete',
      'DataRow ["42"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  test("the client's own simple Query drops its unnamed statement, as on PostgreSQL", async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [P('', 'SELECT 1'), S()]);
        await ask(c, [q('SELECT 2')]);
        return await ask(c, [B(''), E(), S()]);
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['error ERROR 26000', 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  test('SQL DEALLOCATE of a protocol-level statement inside a transaction, in an aborted one, and after ROLLBACK', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('BEGIN')]);
        await ask(c, [P('ps1', 'SELECT 1'), P('ps2', 'SELECT 2'), S()]);
        return [
          ...(await ask(c, [q('DEALLOCATE ps1')])),
          ...(await ask(c, [q('SELECT 1/0')])).filter((l) => !l.startsWith('error')),
          ...(await ask(c, [q('DEALLOCATE PREPARE ps2')])),
          ...(await ask(c, [q('ROLLBACK')])),
          ...(await ask(c, [B('ps1'), E(), S()])),
          ...(await ask(c, [B('ps2'), E(), S()])),
        ];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'CommandComplete DEALLOCATE',
      'ReadyForQuery T',
      'ReadyForQuery E',
      'error ERROR 25P02',
      'ReadyForQuery E',
      'CommandComplete ROLLBACK',
      'ReadyForQuery I',
      'error ERROR 26000',
      'ReadyForQuery I',
      'bindComplete',
      'DataRow ["2"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  test('SQL PREPARE and Parse share one namespace: 42P05 either way, and EXECUTE runs what Parse made', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        return [
          ...(await ask(c, [P('both1', 'SELECT 1 AS v'), S()])),
          ...(await ask(c, [q('PREPARE both1 AS SELECT 2')])),
          ...(await ask(c, [q('EXECUTE both1')])),
          ...(await ask(c, [q('PREPARE both2 AS SELECT 3')])),
          ...(await ask(c, [P('both2', 'SELECT 4'), S()])),
          ...(await ask(c, [q('DEALLOCATE both1')])),
          ...(await ask(c, [P('both1', 'SELECT 5 AS v'), B('both1'), E(), S()])),
        ];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'parseComplete',
      'ReadyForQuery I',
      'error ERROR 42P05',
      'ReadyForQuery I',
      'RowDescription v:23',
      'DataRow ["1"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
      'CommandComplete PREPARE',
      'ReadyForQuery I',
      'error ERROR 42P05',
      'ReadyForQuery I',
      'CommandComplete DEALLOCATE',
      'ReadyForQuery I',
      'parseComplete',
      'bindComplete',
      'DataRow ["5"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });

  test('the answers PostgreSQL gives for unknown and duplicate names, at the same step', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        return [
          ...(await ask(c, [q('DEALLOCATE never_prepared')])),
          ...(await ask(c, [C('never_prepared'), S()])),
          ...(await ask(c, [D('S', 'never_prepared'), S()])),
          ...(await ask(c, [B('never_prepared'), E(), S()])),
          ...(await ask(c, [P('dup', 'SELECT 1'), P('dup', 'SELECT 2'), S()])),
          ...(await ask(c, [C('dup'), P('dup', 'SELECT 2 AS v'), B('dup'), E(), S()])),
          ...(await ask(c, [q('DEALLOCATE ALL')])),
          ...(await ask(c, [D('S', 'dup'), S()])),
        ];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'error ERROR 26000',
      'ReadyForQuery I',
      'closeComplete',
      'ReadyForQuery I',
      'error ERROR 26000',
      'ReadyForQuery I',
      'error ERROR 26000',
      'ReadyForQuery I',
      'parseComplete',
      'error ERROR 42P05',
      'ReadyForQuery I',
      'closeComplete',
      'parseComplete',
      'bindComplete',
      'DataRow ["2"]',
      'CommandComplete SELECT 1',
      'ReadyForQuery I',
      'CommandComplete DEALLOCATE ALL',
      'ReadyForQuery I',
      'error ERROR 26000',
      'ReadyForQuery I',
    ]);
    expect(proxied).toEqual(direct);
  });
});

// ---------------------------------------------------------------------------------------------
// Class 3: NotificationResponse pid.

describe('class 3: NotificationResponse pid', () => {
  // Drivers recognise their own notifications by comparing this pid with BackendKeyData's.
  test("a notification the client's own session raised carries the pid the client was given", async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        await ask(c, [q('LISTEN drv_self')]);
        c.send(q("NOTIFY drv_self, 'x'"));
        for (;;) {
          const m = await c.next();
          if (m.name === 'notification') return { ownPid: (m.processId as number) === c.pid, channel: m.channel };
        }
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual({ ownPid: true, channel: 'drv_self' });
    expect(proxied).toEqual(direct);
  });

  // asyncpg's test_listen_02 and test_listen_notletters: the listener is told the notifier's pid.
  test.each([
    ['NOTIFY', "NOTIFY drv_other, 'x'"],
    ['pg_notify in a transaction block', "BEGIN; SELECT pg_notify('drv_other', 'x'); COMMIT"],
  ])("a notification another client raised (%s) carries the pid that client was given", async (_how, notify) => {
    const { direct, proxied } = await both(async (t) => {
      const listener = await RawClient.login(roomyPortOf(t), app.name, app.password);
      const notifier = await RawClient.login(roomyPortOf(t), app.name, app.password);
      try {
        await ask(listener, [q('LISTEN drv_other')]);
        await ask(notifier, [q(notify)]);
        for (;;) {
          const m = await listener.next();
          if (m.name === 'notification') return { notifierPid: (m.processId as number) === notifier.pid, ownPid: (m.processId as number) === listener.pid, payload: m.payload };
        }
      } finally {
        listener.close();
        notifier.close();
      }
    });
    expect(direct).toEqual({ notifierPid: true, ownPid: false, payload: 'x' });
    expect(proxied).toEqual(direct);
  });
});

// ---------------------------------------------------------------------------------------------
// Class 4: ParameterStatus as PostgreSQL reports it.

/**
 * A login with exactly these startup parameters (pg-protocol's serializer always adds
 * client_encoding=UTF8); resolves with the ParameterStatus of those parameters, sorted.
 */
async function loginWith(t: Target, params: Record<string, string>): Promise<string[]> {
  const { client, reported } = await startupWith(t, params);
  client.close();
  return reported;
}

async function loginWithClient(t: Target, params: Record<string, string>): Promise<RawClient> {
  const { client, reported } = await startupWith(t, params);
  if (reported.some((l) => l.startsWith('error'))) throw new Error(`login refused: ${reported.join(', ')}`);
  client.messages.length = 0;
  client.cursor = 0;
  return client;
}

async function startupWith(t: Target, params: Record<string, string>): Promise<{ client: RawClient; reported: string[] }> {
  const c = await RawClient.connect(portOf(t));
  const body = Buffer.concat([
    Buffer.from([0, 3, 0, 0]),
    ...Object.entries({ user: app.name, database: 'postgres', ...params }).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
    Buffer.from([0]),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length + 4);
  c.send(Buffer.concat([len, body]));
  const reported: string[] = [];
  let scram: ScramClientExchange | undefined;
  for (;;) {
    const m = await c.next();
    if (m.name === 'authenticationSASL') {
      scram = new ScramClientExchange(app.password);
      c.send(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
    } else if (m.name === 'authenticationSASLContinue') {
      c.send(serialize.sendSCRAMClientFinalMessage(scram!.handleServerFirst(m.data as string)));
    } else if (m.name === 'authenticationMD5Password') {
      c.send(serialize.password(md5PasswordHash(app.name, app.password, m.salt as Buffer)));
    } else if (m.name === 'parameterStatus' && Object.keys(params).some((k) => k.toLowerCase() === String(m.parameterName).toLowerCase())) {
      reported.push(line(m));
    } else if (m.name === 'error') {
      reported.push(line(m));
      return { client: c, reported };
    } else if (m.name === 'readyForQuery') {
      return { client: c, reported: reported.sort() };
    }
  }
}

describe('class 4: ParameterStatus values', () => {
  test('startup parameters are reported as the server spells them (utf-8 → UTF8, iso, dmy → ISO, DMY, utc → UTC)', async () => {
    const params = { client_encoding: 'utf-8', DateStyle: 'iso, dmy', TimeZone: 'utc' };
    const { direct, proxied } = await both((t) => loginWith(t, params));
    expect(direct).toEqual(['ParameterStatus DateStyle=ISO, DMY', 'ParameterStatus TimeZone=UTC', 'ParameterStatus client_encoding=UTF8']);
    expect(proxied).toEqual(direct);
  });

  test('SET reports the server spelling through the proxy too', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        return [...(await ask(c, [q("SET datestyle = 'iso, dmy'")])), ...(await ask(c, [q("SET timezone = 'utc'")]))];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['CommandComplete SET', 'ParameterStatus DateStyle=ISO, DMY', 'ReadyForQuery I', 'CommandComplete SET', 'ParameterStatus TimeZone=UTC', 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  // Found while checking class 4 by hand: the values are right, the ParameterStatus after RESET
  // reports the server's default instead of the client's startup value.
  test('RESET back to a startup value reports the startup value, as PostgreSQL does', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await loginWithClient(t, { DateStyle: 'iso, dmy', TimeZone: 'utc' });
      try {
        return [
          ...(await ask(c, [q("SET datestyle = 'german'; SET timezone = 'Europe/Paris'")])),
          ...(await ask(c, [q('RESET datestyle')])),
          ...(await ask(c, [q('RESET ALL')])),
          ...(await ask(c, [q('SHOW datestyle')])).filter((l) => l.startsWith('DataRow')),
          ...(await ask(c, [q('SHOW timezone')])).filter((l) => l.startsWith('DataRow')),
        ];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([
      'CommandComplete SET',
      'CommandComplete SET',
      'ParameterStatus DateStyle=German, DMY',
      'ParameterStatus TimeZone=Europe/Paris',
      'ReadyForQuery I',
      'CommandComplete RESET',
      'ParameterStatus DateStyle=ISO, DMY',
      'ReadyForQuery I',
      'CommandComplete RESET',
      'ParameterStatus TimeZone=UTC',
      'ReadyForQuery I',
      'DataRow ["ISO, DMY"]',
      'DataRow ["UTC"]',
    ]);
    expect(proxied).toEqual(direct);
  });
});

// ---------------------------------------------------------------------------------------------
// Class 5: a server process terminated under a client (pg_terminate_backend). dbproxy's policy
// (README, failover): an idle client keeps its connection; a client whose request or transaction
// was on the server process loses it. Whatever the policy, the client must see the server's
// SQLSTATE, exactly one error per request, and never a FATAL followed by a connection that stays
// open (a FATAL means the server closes; drivers close on it).

/** The invariants above, on what a client received after its server process was terminated. */
function expectOneHonestError(received: string[]): void {
  const errors = received.filter((l) => l.startsWith('error '));
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatch(/ 57P01$/);
  if (errors[0]!.startsWith('error FATAL')) expect(received.at(-1)).toBe('<closed>');
}

describe('class 5: a server process terminated under a client', () => {
  // pgx TestFatalRxError's scenario with the server's pid (the test itself uses BackendKeyData's pid).
  test('a query running when its server process is terminated: one error, 57P01', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        const sql = `SELECT pg_sleep(5) /* drv-running-${t} */`;
        c.send(q(sql));
        await terminate(await serverPidRunning(sql));
        const out = await ask(c, [], 1);
        // Whatever came after: a FATAL must be followed by the close.
        return [...out, ...(c.closed || out.includes('<closed>') ? [] : await unsolicited(c, 500))];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['RowDescription pg_sleep:2278', 'error FATAL 57P01', '<closed>']);
    expectOneHonestError(proxied);
  });

  test('idle in a transaction when its server process is terminated: one error, 57P01', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        const begin = await ask(c, [q('BEGIN'), q('SELECT pg_backend_pid()')]);
        const pid = Number(JSON.parse(begin.find((l) => l.startsWith('DataRow'))!.slice('DataRow '.length))[0]);
        await terminate(pid);
        const out = await unsolicited(c, 500);
        if (out.includes('<closed>')) return out;
        return [...out, ...(await ask(c, [q('SELECT 1')]))];
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['error FATAL 57P01', '<closed>']);
    expectOneHonestError(proxied);
  });

  test('a pinned session whose server process is terminated: one FATAL, 57P01, then the close', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        const out = await ask(c, [q('CREATE TEMPORARY TABLE drv_pinned (a int)'), q('SELECT pg_backend_pid()')]);
        const pid = Number(JSON.parse(out.find((l) => l.startsWith('DataRow'))!.slice('DataRow '.length))[0]);
        await terminate(pid);
        return await unsolicited(c, 1000);
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual(['error FATAL 57P01', '<closed>']);
    expect(proxied).toEqual(direct);
  });

  // pgconn TestConnCopyFromConnectionTerminated's scenario with the server's pid.
  test('COPY FROM STDIN whose server process is terminated mid-stream: one error, 57P01, at once', async () => {
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      let feeding = true;
      try {
        await ask(c, [q('CREATE TABLE IF NOT EXISTS drv_copy (a int)')]);
        const sql = `COPY drv_copy FROM STDIN /* drv-copy-${t} */`;
        c.send(q(sql));
        expect(line(await c.next())).toBe('copyInResponse');
        const feeder = (async () => {
          for (let i = 0; feeding && !c.closed; i++) {
            c.send(serialize.copyData(Buffer.from(`${i}\n`)));
            await sleep(2);
          }
        })();
        await terminate(await serverPidRunning(sql));
        const started = Date.now();
        const out = await unsolicited(c, 1500);
        feeding = false;
        await feeder;
        // No hang: the answer comes at once, not after the client stops sending.
        expect(Date.now() - started).toBeLessThan(1500 + 100);
        return out;
      } finally {
        feeding = false;
        c.close();
      }
    });
    expect(direct).toEqual(['error FATAL 57P01', '<closed>']);
    expectOneHonestError(proxied);
  });

  // Inherent to transaction pooling (class a): pgx TestConnCheckConn, TestConnPing,
  // TestFatalTxError, pgxpool TestPoolAcquireChecksIdleConns, stdlib TestCheckIdleConn.
  test('an idle client keeps its connection when the server process it last used is terminated (pooling policy)', async () => {
    const c = await login('proxy');
    try {
      const out = await ask(c, [q('SELECT pg_backend_pid()')]);
      const pid = Number(JSON.parse(out.find((l) => l.startsWith('DataRow'))!.slice('DataRow '.length))[0]);
      await terminate(pid);
      expect(await unsolicited(c, 300)).toEqual([]);
      expect(await ask(c, [q('SELECT 1')])).toEqual(['RowDescription ?column?:23', 'DataRow ["1"]', 'CommandComplete SELECT 1', 'ReadyForQuery I']);
    } finally {
      c.close();
    }
  });

  test("the pid in BackendKeyData is the proxy's, not a server process's: pg_terminate_backend of it ends nothing (inherent)", async () => {
    const c = await login('proxy');
    const k = await login('direct', boss);
    try {
      const server = await ask(c, [q('SELECT pg_backend_pid()')]);
      expect(server).not.toContain(`DataRow ["${c.pid}"]`);
      // PostgreSQL: WARNING "PID … is not a PostgreSQL backend process", and false.
      expect(await ask(k, [q(`SELECT pg_terminate_backend(${c.pid})`)])).toContain('DataRow ["f"]');
      expect(await unsolicited(c, 200)).toEqual([]);
      expect(await ask(c, [q('SELECT 1')])).toContain('CommandComplete SELECT 1');
    } finally {
      c.close();
      k.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Class 6: no hang.

describe('class 6: every exchange ends', () => {
  test('a row of 1,664 columns (the most a target list may have), simple and extended', async () => {
    const cols = Array.from({ length: 1664 }, (_, i) => `${i}::int AS column_with_a_fairly_long_name_${i}`).join(', ');
    const sql = `SELECT ${cols} FROM generate_series(1, 3)`;
    const { direct, proxied } = await both(async (t) => {
      const c = await login(t);
      try {
        const simple = await ask(c, [q(sql)], 1, 10_000);
        const extended = await ask(c, [P('', sql), D('S', ''), B(''), E(), S()], 1, 10_000);
        const shape = (l: string[]): string[] => l.map((x) => (x.startsWith('RowDescription') ? `RowDescription(${x.split(',').length})` : x.startsWith('DataRow') ? `DataRow(${JSON.parse(x.slice(8)).length})` : x));
        return [...shape(simple), ...shape(extended)];
      } finally {
        c.close();
      }
    });
    expect(direct).toContain('RowDescription(1664)');
    expect(proxied).toEqual(direct);
  });
});

// ---------------------------------------------------------------------------------------------
// Authentication over TLS (pgx TestConnectTLS/WithChannelBinding).

/** The SASL mechanisms offered to a client that asked for TLS. */
async function saslMechanismsOverTls(port: number): Promise<string[]> {
  const raw = new Socket();
  await new Promise<void>((res, rej) => raw.connect(port, '127.0.0.1', res).once('error', rej));
  const sslRequest = Buffer.alloc(8);
  sslRequest.writeUInt32BE(8, 0);
  sslRequest.writeUInt32BE(80877103, 4);
  raw.write(sslRequest);
  const answer = await new Promise<string>((res) => raw.once('data', (d: Buffer) => res(d.toString('latin1', 0, 1))));
  expect(answer).toBe('S');
  const secure = tls.connect({ socket: raw, rejectUnauthorized: false });
  await new Promise<void>((res) => secure.once('secureConnect', res));
  secure.write(serialize.startup({ user: app.name, database: 'postgres' }));
  const parser = new Parser();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<string[]>((res, rej) => {
      secure.on('data', (d: Buffer) =>
        parser.parse(d, (m) => {
          const msg = m as Msg;
          if (msg.name === 'authenticationSASL') res((msg.mechanisms as string[]).slice().sort());
          else if (msg.name === 'error') rej(new Error(`${String(msg.code)} ${String(msg.message)}`));
        }),
      );
      timer = setTimeout(() => rej(new Error('no AuthenticationSASL')), 5000);
    });
  } finally {
    clearTimeout(timer);
    secure.destroy();
  }
}

describe('authentication over TLS', () => {
  test('SCRAM-SHA-256-PLUS (channel binding) is offered over TLS, as PostgreSQL offers it', async () => {
    const direct = await saslMechanismsOverTls(cluster.port);
    const proxied = await saslMechanismsOverTls(proxy.port);
    expect(direct).toEqual(['SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS']);
    expect(proxied).toEqual(direct);
  });

  // pgconn TestConnectTLS/WithChannelBinding, with libpq: the binding is to the certificate the
  // proxy presents (it terminates the client's TLS).
  test('libpq with channel_binding=require logs in over TLS; without TLS it refuses, as against PostgreSQL', async () => {
    const login = (port: number, sslmode: string): Promise<CommandResult> =>
      psql(port, 'SELECT 1', { env: { PGSSLMODE: sslmode, PGCHANNELBINDING: 'require' } });
    for (const port of [cluster.port, proxy.port]) {
      const bound = await login(port, 'require');
      expect({ port, out: bound.stdout.trim(), code: bound.code }).toEqual({ port, out: '1', code: 0 });
      const plain = await login(port, 'disable');
      expect({ port, code: plain.code, err: /channel binding required/.test(plain.stderr) }).toEqual({ port, code: 2, err: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Found by asyncpg's suite (docs/conformance.md, "asyncpg"): a database its clients have left.

describe('a database no client uses any more', () => {
  // asyncpg's test_type_cache_invalidation_in_pool and its introspection tests drop the database
  // their pool used once the pool is closed; through the proxy its idle server connections stayed.
  const portOf = roomyPortOf;
  const login = (t: Target, user = app): Promise<RawClient> => RawClient.login(portOf(t), user.name, user.password);
  test.each([
    ['DROP DATABASE', (db: string) => `DROP DATABASE ${db}`, 'DROP DATABASE'],
    ['ALTER DATABASE ... RENAME', (db: string) => `ALTER DATABASE ${db} RENAME TO ${db}_renamed`, 'ALTER DATABASE'],
    ['CREATE DATABASE ... TEMPLATE', (db: string) => `CREATE DATABASE ${db}_copy TEMPLATE ${db}`, 'CREATE DATABASE'],
  ])('%s succeeds once its last client has gone, as directly', async (_what, statement, tag) => {
    const { direct, proxied } = await both(async (t) => {
      const db = `drv_gone_${t}_${tag.split(' ')[0]!.toLowerCase()}`;
      cluster.psql(`DROP DATABASE IF EXISTS ${db}_copy; DROP DATABASE IF EXISTS ${db}_renamed; DROP DATABASE IF EXISTS ${db}; CREATE DATABASE ${db}`);
      const used = await RawClient.login(portOf(t), boss.name, boss.password, db);
      await ask(used, [q('SELECT 1')]);
      used.close();
      const c = await login(t, boss);
      try {
        return await ask(c, [q(statement(db))], 1, 15_000);
      } finally {
        c.close();
      }
    });
    expect(direct).toEqual([`CommandComplete ${tag}`, 'ReadyForQuery I']);
    expect(proxied).toEqual(direct);
  });

  test('with two replicas, the other replica closes its idle connections to the database too (peers)', async () => {
    const [adminA, adminB] = [await freePort(), await freePort()];
    const a = await startProxy(cluster, { adminListen: `127.0.0.1:${adminA}`, replicaId: 1, peers: { static: [`127.0.0.1:${adminB}`] }, pool: { maxConnectionsPercent: 20 } });
    const b = await startProxy(cluster, { adminListen: `127.0.0.1:${adminB}`, replicaId: 2, peers: { static: [`127.0.0.1:${adminA}`] }, pool: { maxConnectionsPercent: 20 } });
    try {
      cluster.psql('DROP DATABASE IF EXISTS drv_two_replicas; CREATE DATABASE drv_two_replicas');
      const used = await RawClient.login(b.port, boss.name, boss.password, 'drv_two_replicas');
      await ask(used, [q('SELECT 1')]);
      used.close();
      const c = await RawClient.login(a.port, boss.name, boss.password);
      try {
        expect(await ask(c, [q('DROP DATABASE drv_two_replicas')], 1, 15_000)).toEqual(['CommandComplete DROP DATABASE', 'ReadyForQuery I']);
      } finally {
        c.close();
      }
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  test('a server connection a client is in a transaction on is not closed: DROP DATABASE is refused (55006)', async () => {
    cluster.psql('DROP DATABASE IF EXISTS drv_busy; CREATE DATABASE drv_busy');
    const busy = await RawClient.login(roomy.port, boss.name, boss.password, 'drv_busy');
    const c = await login('proxy', boss);
    try {
      await ask(busy, [q('BEGIN'), q('SELECT 1')]);
      expect(await ask(c, [q('DROP DATABASE drv_busy')], 1, 15_000)).toEqual(['error ERROR 55006', 'ReadyForQuery I']);
      await ask(busy, [q('COMMIT')]);
    } finally {
      busy.close();
      c.close();
    }
  });
});
