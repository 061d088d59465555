import { DIGEST_MAX_LENGTH, StatementClassifier } from './classifier.js';
import type { Classification } from './classifier.js';
import type { PinReason } from './pinReasons.js';

let classifier: StatementClassifier;

beforeAll(async () => {
  classifier = await StatementClassifier.create();
});

const outside = (sql: string): Classification => classifier.classify(sql, false);
const inside = (sql: string): Classification => classifier.classify(sql, true);
const pins = (sql: string, inTransactionBlock = false): readonly PinReason[] =>
  classifier.classify(sql, inTransactionBlock).pins;

describe('each pin reason pins, and its harmless neighbour does not', () => {
  test.each<[string, string, string]>([
    // [reason, pins, does not pin]
    ['temporary_object', 'CREATE TEMP TABLE t (a int)', 'CREATE TABLE t (a int)'],
    ['temporary_object', 'create temporary table t (a int)', "select 'temp' from t -- temp"],
    ['temporary_object', 'CREATE LOCAL TEMPORARY VIEW v AS SELECT 1', 'CREATE VIEW v AS SELECT 1'],
    ['temporary_object', 'create temp sequence s', 'create sequence s'],
    ['temporary_object', 'create table pg_temp.t (a int)', 'create table "temp" (a int)'],
    ['temporary_object', 'create table "pg_temp".t (a int)', 'create table public.pg_tempx (a int)'],
    ['temporary_object', 'SELECT * INTO TEMP t FROM src', 'SELECT * INTO t FROM src'],
    ['temporary_object', 'create temp table t as select 1', 'create table t as select 1'],
    ['temporary_object', 'create temp table t (a int)', 'create temp table t (a int) on commit drop'],
    ['temporary_object', 'create function pg_temp.f() returns int language sql return 1', 'create function f() returns int language sql return 1'],
    ['temporary_object', 'set search_path = pg_temp, public', 'set local search_path = public, pg_temp'],
    ['listen', 'LISTEN channel', 'UNLISTEN channel'],
    ['listen', 'listen "x"', 'notify x'],
    ['session_advisory_lock', 'select pg_advisory_lock(1)', 'select pg_advisory_xact_lock(1)'],
    ['session_advisory_lock', 'select pg_catalog.pg_advisory_lock_shared(1, 2)', 'select pg_advisory_xact_lock_shared(1, 2)'],
    ['session_advisory_lock', 'select pg_try_advisory_lock(42)', 'select pg_try_advisory_xact_lock(42)'],
    ['session_advisory_lock', 'select pg_try_advisory_lock_shared(42)', 'select pg_advisory_unlock(42)'],
    ['session_advisory_lock', 'select x from t where pg_advisory_lock(t.id) is not null', 'select myschema.pg_advisory_lock(1)'],
    ['cursor_with_hold', 'DECLARE c CURSOR WITH HOLD FOR SELECT 1', 'DECLARE c CURSOR FOR SELECT 1'],
    ['cursor_with_hold', 'declare c no scroll cursor with hold for select 1', 'declare c cursor without hold for select 1'],
    ['sql_prepare', 'PREPARE p (int) AS SELECT $1', 'PREPARE TRANSACTION \'gid\''],
    ['sql_prepare', 'EXECUTE p(1)', 'select execute from t'],
    ['sql_prepare', 'explain execute p(1)', 'explain select 1'],
    ['sql_prepare', 'DEALLOCATE p; SELECT 1', 'DEALLOCATE ALL'],
    ['sql_prepare', 'select 1; deallocate prepare p', 'grant execute on function f() to r'],
    ['load', "LOAD 'auto_explain'", "select load from t"],
    ['set', 'SET statement_timeout = 1000', 'SET LOCAL statement_timeout = 1000'],
    ['set', "set search_path to app, public", 'set transaction isolation level serializable'],
    ['set', 'RESET statement_timeout', 'show statement_timeout'],
    ['set', 'set session characteristics as transaction read only', "set transaction snapshot '00000003-0000001B-1'"],
    ['set', "select set_config('app.user', 'x', false)", "select set_config('app.user', 'x', true)"],
    ['set', "select set_config('app.user', $1, $2)", "select set_config('app.user', $1, 'on')"],
    ['set_role', 'SET ROLE admin', 'SET LOCAL ROLE admin'],
    ['set_role', 'RESET ROLE', "select 'set role x'"],
    ['set_role', 'SET SESSION AUTHORIZATION bob', 'SET LOCAL SESSION AUTHORIZATION bob'],
    ['set_role', "select set_config('role', 'admin', false)", "select set_config('role', 'admin', true)"],
  ])('%s: %s', (reason, pinning, harmless) => {
    const pinned = outside(pinning);
    expect(pinned.pins).toContain(reason);
    expect(pinned.parsed).toBe(true);
    expect(pins(pinning, true)).toContain(reason);
    expect(pins(harmless)).toEqual([]);
    expect(pins(harmless, true)).toEqual([]);
  });

  test('set and set_role are told apart', () => {
    expect(pins('SET ROLE admin')).toEqual(['set_role']);
    expect(pins('SET work_mem = 1024')).toEqual(['set']);
  });

  test('functions are found anywhere in the tree: subqueries, CTEs, CASE, VALUES, COPY, EXPLAIN', () => {
    for (const sql of [
      'select * from (select pg_advisory_lock(1)) s',
      'with l as (select pg_advisory_lock(1)) select * from l',
      'select case when x then pg_advisory_lock(1) end from t',
      'insert into t values (pg_advisory_lock(1))',
      'update t set a = 1 where exists (select pg_advisory_lock(2))',
      'copy (select pg_advisory_lock(1)) to stdout',
      'explain analyze select pg_advisory_lock(1)',
      'select "pg_advisory_lock"(1)',
    ]) {
      expect({ sql, pins: pins(sql) }).toEqual({ sql, pins: ['session_advisory_lock'] });
    }
  });

  test('stored definitions are not runs: view queries and new-table defaults do not pin', () => {
    expect(pins('create view v as select pg_advisory_lock(1)')).toEqual([]);
    expect(pins("create table t (id bigint default nextval('s'))")).toEqual([]);
    expect(pins('create function f() returns int set search_path = a begin atomic select nextval(\'s\'); end')).toEqual([]);
    expect(pins('alter role r set work_mem = 1')).toEqual([]);
  });

  test('DO blocks are looked into', () => {
    expect(pins('DO $$ BEGIN PERFORM pg_advisory_lock(1); END $$')).toEqual(['session_advisory_lock']);
    expect(pins("do $x$ begin create temp table t(a int); end $x$")).toEqual(['temporary_object']);
    expect(pins('do $$ begin perform pg_advisory_xact_lock(1); end $$')).toEqual([]);
  });

  test('statements nested at any depth of a PL/pgSQL DO block count as if sent at top level', () => {
    const nested = (sql: string): Classification => outside(`DO $$ DECLARE r record; BEGIN IF now() IS NOT NULL THEN FOR r IN SELECT 1 LOOP BEGIN ${sql}; EXCEPTION WHEN others THEN NULL; END; END LOOP; END IF; END $$`);
    expect(nested('SET ROLE reader').pins).toEqual(['set_role']);
    expect(nested('SET search_path = app, public').settings).toEqual([{ kind: 'set', name: 'search_path', sql: 'SET search_path = app, public' }]);
    expect(nested("PERFORM set_config('work_mem', '64MB', false)").settings).toEqual([
      { kind: 'set', name: 'work_mem', sql: "SELECT pg_catalog.set_config('work_mem', '64MB', false)" },
    ]);
    expect(nested('SET LOCAL work_mem = 1').pins).toEqual([]);
    expect(nested('LISTEN x').pins).toEqual(['listen']);
    expect(nested("EXECUTE 'SET work_mem = ''2MB'''").settings).toEqual([{ kind: 'set', name: 'work_mem', sql: "SET work_mem = '2MB'" }]);
    expect(nested("EXECUTE 'CREATE TEMP TABLE t (a int)'").pins).toEqual(['temporary_object']);
    expect(nested("EXECUTE 'SELECT 1'").pins).toEqual([]);
    expect(nested('RESET ALL').settings).toEqual([{ kind: 'reset_all' }]);
  });

  test('SQL computed at run time, or in another language, cannot be read and pins', () => {
    expect(pins("DO $$ BEGIN EXECUTE format('SET %I = 1', 'work_mem'); END $$")).toEqual(['dynamic_sql']);
    expect(pins("DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT ' || 1 LOOP END LOOP; END $$")).toEqual(['dynamic_sql']);
    expect(pins("DO LANGUAGE plperl $$ spi_exec_query('SET work_mem = 1') $$")).toEqual(['dynamic_sql']);
    // A constant string is read like any statement; a DO inside it too.
    expect(pins("DO $$ BEGIN EXECUTE 'DO $i$ BEGIN SET ROLE x; END $i$'; END $$")).toEqual(['set_role']);
    expect(pins("DO $$ BEGIN EXECUTE 'SELECT 1' USING now(); END $$")).toEqual([]);
  });

  test('a DO body the PL/pgSQL parser refuses is still scanned for watched words', () => {
    expect(pins('DO $$ BEGIN PERFORM pg_advisory_lock(1) END $$')).toEqual(['session_advisory_lock']);
  });

  test('several reasons in one text are all reported, deduplicated, in PIN_REASONS order', () => {
    expect(pins('set x.y = 1; listen a; listen b; create temp table t(a int); set x.z = 2')).toEqual([
      'temporary_object',
      'listen',
      'set',
    ]);
  });
});

describe('sequence functions and transaction blocks', () => {
  test('a lone sequence function call outside a transaction block pins', () => {
    for (const fn of ["nextval('s')", "setval('s', 5)", "currval('s')", 'lastval()']) {
      expect(pins(`select ${fn}`)).toEqual(['sequence_function_outside_transaction']);
      expect(pins(`select ${fn}`, true)).toEqual([]);
    }
    expect(pins("insert into t (id) values (nextval('s'))")).toEqual(['sequence_function_outside_transaction']);
  });

  test('nextval inside BEGIN ... COMMIT does not pin', () => {
    expect(pins("BEGIN; INSERT INTO t VALUES (nextval('s')); SELECT currval('s'); COMMIT")).toEqual([]);
    expect(pins("start transaction; select nextval('s')")).toEqual([]);
  });

  test('several statements in one Query run in one implicit transaction', () => {
    expect(pins("select nextval('s'); select currval('s')")).toEqual([]);
    expect(pins("commit; select nextval('s')", true)).toEqual([]);
  });

  test('the block state of a single statement comes from the session', () => {
    expect(pins("select nextval('s')", false)).toEqual(['sequence_function_outside_transaction']);
    expect(pins("select nextval('s')", true)).toEqual([]);
  });

  test('a schema other than pg_catalog names another function', () => {
    expect(pins("select app.nextval('s')")).toEqual([]);
    expect(pins("select pg_catalog.nextval('s')")).toEqual(['sequence_function_outside_transaction']);
  });
});

describe('statements that need no other session on a database', () => {
  test.each([
    ['DROP DATABASE scratch', 'scratch'],
    ['drop database if exists "My DB" with (force)', 'My DB'],
    ['ALTER DATABASE old RENAME TO new', 'old'],
    ['ALTER DATABASE d SET TABLESPACE fast', 'd'],
    ['CREATE DATABASE copy TEMPLATE source', 'source'],
    ["create database copy with owner = app template = 'source'", 'source'],
  ])('%s names %s', (sql, database) => {
    expect(outside(sql)).toMatchObject({ pins: [], releasesDatabase: database });
  });

  test.each(['CREATE DATABASE fresh', 'ALTER DATABASE d SET work_mem = 1', 'ALTER DATABASE d OWNER TO r', 'DROP TABLE database', 'SELECT 1', 'DROP DATABASE a; SELECT 1'])(
    '%s names none',
    (sql) => {
      expect(outside(sql).releasesDatabase).toBeNull();
    },
  );
});

describe('DEALLOCATE name and DDL', () => {
  test('a lone DEALLOCATE name is named for the session to answer, and pins nothing by itself', () => {
    expect(outside('DEALLOCATE p')).toMatchObject({ pins: [], deallocate: 'p' });
    expect(outside('deallocate prepare "My Stmt"')).toMatchObject({ pins: [], deallocate: 'My Stmt' });
    expect(outside('DEALLOCATE p; SELECT 1')).toMatchObject({ pins: ['sql_prepare'], deallocate: null });
    expect(outside('DEALLOCATE ALL').deallocate).toBeNull();
    expect(outside("DO $$ BEGIN EXECUTE 'DEALLOCATE p'; END $$").deallocate).toBeNull();
  });

  test('statements that change what later statements mean are DDL; temporary ones only for the session', () => {
    const kind = (sql: string): string => {
      const c = outside(sql);
      return c.ddl ? 'ddl' : c.ddlTemp ? 'temp' : '-';
    };
    for (const sql of [
      'CREATE TABLE t (a int)',
      'alter table t drop column a',
      'DROP TYPE e',
      "CREATE TYPE e AS ENUM ('a')",
      "alter type e add value 'b'",
      'create or replace view v as select 1',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1',
      'ALTER TABLE t RENAME TO u',
      'create schema s',
      'CREATE TABLE t2 AS SELECT 1',
      "DO $$ BEGIN EXECUTE 'ALTER TABLE t ADD COLUMN b int'; END $$",
      'select 1; drop table t',
    ]) {
      expect({ sql, kind: kind(sql) }).toEqual({ sql, kind: 'ddl' });
    }
    for (const sql of ['CREATE TEMP TABLE t (a int)', 'create temp table t (a int) on commit drop', 'SELECT 1 INTO TEMP t']) {
      expect({ sql, kind: kind(sql) }).toEqual({ sql, kind: 'temp' });
    }
    // (CREATE INDEX counts too: the lexer decides CREATE/ALTER/DROP by their first word, erring towards a fresh analysis.)
    for (const sql of ['SELECT 1', 'GRANT SELECT ON t TO r', 'comment on table t is $$x$$', 'insert into t values (1)', 'vacuum t']) {
      expect({ sql, kind: kind(sql) }).toEqual({ sql, kind: '-' });
    }
  });
});

describe('session resets', () => {
  test('DISCARD ALL and DEALLOCATE ALL drop prepared statements without pinning', () => {
    for (const sql of ['DISCARD ALL', 'DEALLOCATE ALL', 'deallocate prepare all']) {
      const c = outside(sql);
      expect({ sql, pins: c.pins, discardAll: c.discardAll }).toEqual({ sql, pins: [], discardAll: true });
    }
  });

  test('DISCARD ALL and RESET ALL reset every setting; DEALLOCATE ALL does not', () => {
    const resetsAll = (sql: string): boolean => outside(sql).settings.some((s) => s.kind === 'reset_all');
    expect(resetsAll('DISCARD ALL')).toBe(true);
    expect(resetsAll('RESET ALL')).toBe(true);
    expect(resetsAll('DEALLOCATE ALL')).toBe(false);
    expect(outside('RESET ALL').discardAll).toBe(false);
    expect(outside('RESET ALL').pins).toEqual([]);
  });

  test('other DISCARD forms and ordinary statements are not resets', () => {
    for (const sql of ['DISCARD PLANS', 'DISCARD TEMP', 'discard sequences', 'select 1', 'reset work_mem']) {
      expect({ sql, discardAll: outside(sql).discardAll }).toEqual({ sql, discardAll: false });
    }
  });
});

describe('session settings for tracking', () => {
  test('statements that reset parameters are located, so startup values can be put back right after them', () => {
    const sql = "SET a.b = 1; RESET ALL; SELECT 'é'; RESET search_path; SET work_mem TO DEFAULT; DO $$ BEGIN RESET x.y; END $$; DISCARD ALL";
    const resets = outside(sql).resets;
    const bytes = Buffer.from(sql);
    expect(resets.map((r) => [r.statement, bytes.subarray(0, r.end).toString().split(';').pop()!.trim(), r.names])).toEqual([
      [1, 'RESET ALL', null],
      [3, 'RESET search_path', ['search_path']],
      [4, 'SET work_mem TO DEFAULT', ['work_mem']],
      [5, 'END $$', ['x.y']], // the DO statement's end
      [6, 'DISCARD ALL', null],
    ]);
    expect(outside('select 1; set x.y = 2').resets).toEqual([]);
    expect(outside('RESET ALL -- trailing comment').resets).toEqual([{ statement: 0, end: 'RESET ALL -- trailing comment'.length, names: null }]);
    // A text that does not parse resets nothing: the server runs none of it.
    expect(outside('RESET ALL; SELEC 1').resets).toEqual([]);
  });

  test('SET SESSION CHARACTERISTICS sets the default_transaction_* parameters', () => {
    const c = outside('SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE');
    expect(c.pins).toEqual(['set']);
    expect(c.settings.map((x) => (x.kind === 'set' ? x.name : x.kind))).toEqual([
      'default_transaction_isolation',
      'default_transaction_read_only',
      'default_transaction_deferrable',
    ]);
  });

  test('SET, RESET and set_config report replayable changes', () => {
    expect(outside("SET search_path TO app, public; RESET work_mem; select set_config('App.X', 'v''1', false)").settings).toEqual([
      { kind: 'set', name: 'search_path', sql: 'SET search_path TO app, public' },
      { kind: 'reset', name: 'work_mem' },
      { kind: 'set', name: 'app.x', sql: "SELECT pg_catalog.set_config('app.x', 'v''1', false)" },
    ]);
    expect(outside('reset all').settings).toEqual([{ kind: 'reset_all' }]);
  });

  test('statement source survives non-ASCII text (parser offsets are bytes)', () => {
    expect(outside("select 'é'; set application_name = 'ü'").settings).toEqual([
      { kind: 'set', name: 'application_name', sql: "set application_name = 'ü'" },
    ]);
  });

  test('changes the classifier cannot describe are opaque', () => {
    expect(outside("select set_config('a.b', $1, false)").settings).toEqual([{ kind: 'opaque' }]);
    expect(outside('set local work_mem = 1').settings).toEqual([]);
  });
});

describe('unparseable statements', () => {
  test('a statement the lexer cannot clear and the parser rejects pins', () => {
    const c = outside('SET = oops');
    expect(c.pins).toEqual(['unparseable_statement']);
    expect(c.parsed).toBe(true);
    expect(pins("select 'unterminated")).toEqual(['unparseable_statement']);
  });

  test('a statement the lexer clears is not parsed, even if PostgreSQL will reject it', () => {
    const c = outside('selec 1 from');
    expect(c.pins).toEqual([]);
    expect(c.parsed).toBe(false);
  });

  test('one bad statement does not hide the others', () => {
    expect(pins('selec 1; listen x')).toEqual(['listen']);
    expect(pins('listen x; set = oops')).toEqual(['listen', 'unparseable_statement']);
  });
});

describe('digest', () => {
  test('never contains literal values', () => {
    const fast = classifier.digest("select * from t where password = 'hunter2'");
    expect(fast).not.toContain('hunter2');
    expect(fast).toBe('select * from t where password = ?');

    const setConfig = "select set_config('app.password', 'hunter2', false)";
    expect(outside(setConfig).parsed).toBe(true);
    expect(classifier.digest(setConfig)).not.toContain('hunter2');
    expect(classifier.digest(setConfig)).toBe('select set_config($1, $2, $3)');

    // normalize keeps constants in utility statements and comments; they are redacted too.
    for (const sql of [
      "/* hunter2 */ LISTEN x; COPY t FROM '/hunter2'",
      "create temp table t (a text default 'hunter2')",
      "set application_name = 'hunter2'",
      "explain execute p('hunter2')",
      "SET = 'hunter2'",
    ]) {
      expect({ sql, digest: classifier.digest(sql) }).toEqual({ sql, digest: expect.not.stringContaining('hunter2') });
    }
  });

  test('is truncated', () => {
    const sql = `select ${Array.from({ length: 100 }, (_, i) => `col${i}`).join(', ')} from t`;
    expect(classifier.digest(sql)).toHaveLength(DIGEST_MAX_LENGTH);
  });
});

describe('fast path and cache', () => {
  test('ordinary statements are decided without a parse', () => {
    for (const sql of [
      'SELECT * FROM t WHERE id = $1',
      "INSERT INTO t (a, b) VALUES ($1, 'x') RETURNING id",
      'UPDATE t SET a = a + 1 WHERE id = 3',
      'DELETE FROM t WHERE id = 3',
      'BEGIN',
      'start transaction',
      'COMMIT',
      'END',
      'ROLLBACK',
      'rollback work',
      'ROLLBACK TO SAVEPOINT sp1',
      'SAVEPOINT sp1',
      'RELEASE SAVEPOINT sp1',
      'BEGIN; SELECT 1; COMMIT',
      "select 'temp', \"temp\" from t -- nextval(",
      'create table t (a int)',
      'unlisten *',
      'with x as (select 1) select * from x',
      '',
    ]) {
      const c = outside(sql);
      expect({ sql, parsed: c.parsed, pins: c.pins }).toEqual({ sql, parsed: false, pins: [] });
    }
  });

  test('transaction-control variants the lexer cannot judge go to the parser', () => {
    expect(outside('COMMIT AND CHAIN').parsed).toBe(true);
    expect(outside("COMMIT PREPARED 'x'").parsed).toBe(true);
    // Options may ask for READ WRITE, which the read-only endpoint must see.
    expect(outside('BEGIN ISOLATION LEVEL SERIALIZABLE').parsed).toBe(true);
    expect(outside('START TRANSACTION READ ONLY').parsed).toBe(true);
  });

  test('the cache returns the same result', () => {
    const c = new StatementClassifier({ cacheSize: 2 });
    const a1 = c.classify('select 1', false);
    const a2 = c.classify('select 1', false);
    expect(a2).toBe(a1);
    const l1 = c.classify('listen x', true);
    expect(c.classify('listen x', false)).toBe(l1); // the context does not matter here
    expect(c.cacheStats).toEqual({ size: 2, hits: 2, misses: 2, plain: 0 });

    // The two contexts of a sequence call are both cached.
    const s = "select nextval('s')";
    const out1 = c.classify(s, false);
    const in1 = c.classify(s, true);
    expect(out1.pins).toEqual(['sequence_function_outside_transaction']);
    expect(in1.pins).toEqual([]);
    expect(c.classify(s, false)).toBe(out1);
    expect(c.classify(s, true)).toBe(in1);
  });

  test('the cache is LRU and bounded', () => {
    const c = new StatementClassifier({ cacheSize: 2 });
    const a = c.classify('select 1', false);
    c.classify('select 2', false);
    c.classify('select 1', false); // 'select 1' is now the most recent
    c.classify('select 3', false); // evicts 'select 2'
    expect(c.cacheStats.size).toBe(2);
    expect(c.classify('select 1', false)).toBe(a);
    const before = c.cacheStats.misses;
    c.classify('select 2', false);
    expect(c.cacheStats.misses).toBe(before + 1);
  });

  test('texts longer than maxCachedLength are not cached', () => {
    const c = new StatementClassifier({ maxCachedLength: 10 });
    c.classify('select 1 from a_long_table', false);
    expect(c.cacheStats.size).toBe(0);
  });

  test('results are frozen', () => {
    const c = outside('listen x');
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.pins)).toBe(true);
  });
});

describe('read-write requests (what a read-only endpoint refuses on the writer)', () => {
  test.each([
    ['BEGIN READ WRITE', true],
    ['START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE', true],
    ['SET TRANSACTION READ WRITE', true],
    ['SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE', true],
    ['SET default_transaction_read_only = off', true],
    ['SET LOCAL transaction_read_only TO false', true],
    ['RESET default_transaction_read_only', true],
    ["SELECT set_config('default_transaction_read_only', 'off', false)", true],
    ["DO $$ BEGIN SET transaction_read_only = off; END $$", true],
    ['BEGIN READ ONLY', false],
    ['BEGIN', false],
    ['SET default_transaction_read_only = on', false],
    ['SET TRANSACTION ISOLATION LEVEL REPEATABLE READ', false],
    ['SELECT 1', false],
  ])('%s: %s', (sql, readWrite) => {
    expect(outside(sql).readWrite).toBe(readWrite);
  });
});
