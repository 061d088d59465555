import fc from 'fast-check';
import { StatementClassifier } from './classifier.js';
import { isPlainSql } from './prefilter.js';

let classifier: StatementClassifier;
beforeAll(async () => {
  classifier = await StatementClassifier.create({ cacheSize: 0 });
});

const plain = (sql: string): boolean => {
  const b = Buffer.from(sql);
  return isPlainSql(b, 0, b.length);
};

/**
 * What the classifier would do with the text: nothing at all, in either transaction context.
 * Except pinning text it cannot parse: text with no watched word and no head in it changes no
 * session state whether or not it parses (PostgreSQL refuses what does not), which is exactly
 * what the lexer's fast path relies on too.
 */
function classifierFindsNothing(sql: string): boolean {
  return [false, true].every((inTx) => {
    const c = classifier.classify(sql, inTx);
    return c.pins.every((p) => p === 'unparseable_statement') && c.settings.length === 0 && c.resets.length === 0 && !c.discardAll && !c.ddl && !c.ddlTemp && c.deallocate === null;
  });
}

test('ordinary statements are plain without decoding', () => {
  for (const sql of [
    'SELECT abalance FROM pgbench_accounts WHERE aid = 48312;',
    'UPDATE pgbench_accounts SET abalance = abalance + -4086 WHERE aid = 8123;',
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (4, 1, 23, 12, CURRENT_TIMESTAMP);",
    'select $1::int + $2',
    "select 'é', \"ünïcode\" from t where x = E'\\\\'",
    '(select 1) union (select 2)',
    'with x as (select 1) select * from x',
    'SELECT 1; SELECT 2',
    '',
  ]) {
    expect({ sql, plain: plain(sql) }).toEqual({ sql, plain: true });
  }
});

test('anything the classifier watches, or the prefilter cannot see through, is not plain', () => {
  for (const sql of [
    'SET work_mem = 1',
    '  reset all',
    'BEGIN',
    'commit',
    'select 1; set x = 1',
    "select 'x; set y = 1'",
    'create temp table t (a int)',
    "select nextval('s')",
    'select "nextval"(1)',
    "select pg_catalog.set_config('a', 'b', false)",
    'select pg_advisory_lock(1)',
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
    'explain execute p(1)',
    'LISTEN x',
    'DO $$ BEGIN END $$',
    'select 1 -- comment',
    '/* c */ select 1',
    'select U&"\\0074emp"',
    '1',
    "'x'",
    'select 1;;  -- set',
  ]) {
    expect({ sql, plain: plain(sql) }).toEqual({ sql, plain: false });
  }
});

test('whatever it calls plain, the full classifier finds nothing in', () => {
  const words = [
    'select', 'from', 'where', 'set', 'reset', 'update', 'insert', 'into', 'values', 'temp', 'temporary', 'pg_temp', 'hold', 'execute',
    'listen', 'nextval', 'currval', 'setval', 'lastval', 'set_config', 'pg_advisory_lock', 'pg_try_advisory_lock_shared', 'begin', 'commit',
    'rollback', 'end', 'start', 'transaction', 'do', 'prepare', 'deallocate', 'discard', 'all', 'load', 'declare', 'cursor', 'with', 'create',
    'table', 'function', 'returns', 'language', 'sql', 'role', 'session', 'local', 'to', 'default', 't', 'x', 'a', 'search_path', 'work_mem',
    'pg_catalog', 'public', 'as', 'and', 'chain', 'call', 'explain', 'analyze', 'copy', 'stdin', 'savepoint', 'release',
  ];
  const token = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...words).chain((w) => fc.constantFrom(w, w.toUpperCase(), w[0]!.toUpperCase() + w.slice(1))) },
    { weight: 3, arbitrary: fc.constantFrom(' ', ' ', '\n', '\t') },
    { weight: 2, arbitrary: fc.constantFrom(';', '(', ')', ',', '.', '=', '*', '1', '$1', "'", '"', '$$', '$q$', '--', '/*', '*/', '::', 'E\'\\\'', '&', 'U&') },
    { weight: 1, arbitrary: fc.constantFrom("'text'", '"Ident"', '"set_config"', "'; set x = 1; '", '$$ set x $$', '42', '1.5e3') },
  );
  fc.assert(
    fc.property(fc.array(token, { maxLength: 30 }), (tokens) => {
      const sql = tokens.join('');
      if (plain(sql)) expect({ sql, nothing: classifierFindsNothing(sql) }).toEqual({ sql, nothing: true });
    }),
    { seed: Number(process.env.FC_SEED ?? 7), numRuns: Number(process.env.FC_RUNS ?? 3000) },
  );
});
