import { lexStatements, redactLiterals } from './lexer.js';

const heads = (sql: string): string[] => lexStatements(sql).map((s) => s.firstWord);
const words = (sql: string): string[][] => lexStatements(sql).map((s) => [...s.words]);
const texts = (sql: string): string[] => lexStatements(sql).map((s) => sql.slice(s.start, s.end));

describe('lexStatements: splitting', () => {
  test('splits on top-level semicolons and drops empty statements', () => {
    expect(texts('select 1; ;  select 2 ;')).toEqual(['select 1', 'select 2']);
    expect(heads('SELECT 1;Insert into t values (1);UPDATE t set a = 1; delete from t')).toEqual([
      'select',
      'insert',
      'update',
      'delete',
    ]);
  });

  test('comment-only and empty texts have no statements', () => {
    expect(lexStatements('')).toEqual([]);
    expect(lexStatements('  -- nothing here\n /* nor ; here */ ;')).toEqual([]);
  });

  test('semicolons inside strings, quoted identifiers, comments and dollar quotes do not split', () => {
    expect(texts(`select ';', "a;b", $$x;y$$, $f$ ; $f$ /* ; */ -- ;\n from t; select 2`)).toEqual([
      `select ';', "a;b", $$x;y$$, $f$ ; $f$ /* ; */ -- ;\n from t`,
      'select 2',
    ]);
  });

  test('semicolons inside parentheses do not split (as in psql)', () => {
    expect(texts('select (1;2); select 3')).toEqual(['select (1;2)', 'select 3']);
  });

  test('CREATE FUNCTION ... BEGIN ATOMIC bodies keep their semicolons (psql heuristic)', () => {
    const sql =
      'CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; select 3';
    expect(texts(sql)).toEqual([sql.slice(0, sql.indexOf('; select 3')), 'select 3']);
    // BEGIN outside a routine definition is just a statement.
    expect(heads('begin; select 1; commit')).toEqual(['begin', 'select', 'commit']);
  });

  test('first and second words are lowercased; a leading parenthesis gives no first word', () => {
    const [a, b] = lexStatements('ROLLBACK Work; (select 1)');
    expect(a).toMatchObject({ firstWord: 'rollback', secondWord: 'work', tokenCount: 2 });
    expect(b).toMatchObject({ firstWord: '', tokenCount: 4 });
  });

  test('start and end cover the statement tokens only', () => {
    const sql = '  /* c */ select 1 -- trailing\n ;';
    const [s] = lexStatements(sql);
    expect(sql.slice(s!.start, s!.end)).toBe('select 1');
  });
});

describe('lexStatements: quoting corner cases', () => {
  test('nested block comments', () => {
    expect(words('/* outer /* inner */ temp still comment */ select 1')).toEqual([[]]);
    expect(heads('/* a /* b */ c */ listen x')).toEqual(['listen']);
  });

  test('line comments end at a newline or carriage return', () => {
    expect(words('select 1 -- nextval(\nfrom t')).toEqual([[]]);
    expect(words('select 1 -- x\rfrom nextval()')).toEqual([['nextval']]);
  });

  test("standard strings use '' escapes; backslash is an ordinary character", () => {
    expect(words("select 'it''s temp', 'a\\' from t")).toEqual([[]]);
    expect(texts("select 'a\\'; select 2")).toEqual(["select 'a\\'", 'select 2']);
  });

  test("E'...' strings use backslash escapes", () => {
    expect(texts("select E'\\''; select 2")).toEqual(["select E'\\''", 'select 2']);
    expect(texts("select e'a\\\\'; select 2")).toEqual(["select e'a\\\\'", 'select 2']);
    expect(words("select E'\\' ; temp' from t")).toEqual([[]]);
    expect(words("select E'it''s'; select nextval('s')")).toEqual([[], ['nextval']]);
  });

  test('an identifier ending in e before a string is not an E string', () => {
    // `type'...'` is a typed literal; the backslash does not escape the quote.
    expect(texts("select type'a\\'; select 2")).toEqual(["select type'a\\'", 'select 2']);
  });

  test('dollar quotes with and without tags', () => {
    expect(words('select $$ temp ; $$, $tag$ nextval($) $notit$ $tag$ from t')).toEqual([[]]);
    expect(texts('select $a$ $b$ ; $b$ $a$; select 2')).toEqual(['select $a$ $b$ ; $b$ $a$', 'select 2']);
  });

  test('$1 parameters are not dollar quotes', () => {
    expect(texts('select $1; select $2 from t where x = $3')).toEqual(['select $1', 'select $2 from t where x = $3']);
    expect(words('select $1, nextval($2)')).toEqual([['nextval']]);
  });

  test('a dollar sign inside an identifier does not open a quote', () => {
    expect(texts('select a$$b; select 2')).toEqual(['select a$$b', 'select 2']);
  });

  test('quoted identifiers: "" escapes; keywords inside never count', () => {
    expect(words('create table "temp" ("hold" int, "a""temp" int)')).toEqual([[]]);
    expect(texts('select "a"";b"; select 2')).toEqual(['select "a"";b"', 'select 2']);
  });

  test('quoted identifiers that spell a watched function or pg_temp exactly do count', () => {
    expect(words('select "nextval"(\'s\'), "pg_temp".f()')).toEqual([['nextval', 'pg_temp']]);
    // Quoted names are case-sensitive: "NEXTVAL" is another function.
    expect(words('select "NEXTVAL"(1)')).toEqual([[]]);
  });

  test('watched words are found case-insensitively, including pg_temp_N', () => {
    expect(words('CREATE TEMP TABLE t(); select PG_ADVISORY_LOCK(1); create table pg_temp_3.x()')).toEqual([
      ['temp'],
      ['pg_advisory_lock'],
      ['pg_temp'],
    ]);
    expect(words('select pg_advisory_xact_lock(1), pg_tempest, temperature, nextvalue')).toEqual([[]]);
  });

  test('unterminated constructs make the statement opaque', () => {
    expect(lexStatements("select 'abc")[0]!.opaque).toBe(true);
    expect(lexStatements('select "abc')[0]!.opaque).toBe(true);
    expect(lexStatements('select $x$ abc')[0]!.opaque).toBe(true);
    expect(lexStatements('select 1 /* abc')[0]!.opaque).toBe(true);
    expect(lexStatements('select 1')[0]!.opaque).toBe(false);
  });

  test('U&"..." identifiers are opaque, U&\'...\' strings are not', () => {
    expect(lexStatements('select U&"\\0074emp"')[0]!.opaque).toBe(true);
    expect(lexStatements("select U&'d\\0061t\\+000061'")[0]!.opaque).toBe(false);
  });
});

describe('redactLiterals', () => {
  test('replaces string and numeric constants with ?', () => {
    expect(redactLiterals("select * from t where password = 'hunter2' and n = 42 and x < 1.5e-3")).toBe(
      'select * from t where password = ? and n = ? and x < ?',
    );
  });

  test('handles every string form, keeps identifiers, parameters and quoted identifiers', () => {
    expect(
      redactLiterals(
        `select E'it\\'s', B'101', X'1F', N'n', U&'u', $$ secret $$, $q$ s $q$, interval '1 day', t1.c2, "Col 3", $1, 0x1F, .5, 1_000`,
      ),
    ).toBe('select ?, ?, ?, ?, ?, ?, ?, interval ?, t1.c2, "Col 3", $1, ?, ?, ?');
  });

  test('drops comments and collapses whitespace', () => {
    expect(redactLiterals("/* pw: hunter2 */ select\n\t1  -- 'secret'\n from t")).toBe('select ? from t');
  });

  test('an unterminated string is never copied', () => {
    expect(redactLiterals("select 'hunter2")).toBe('select ?');
  });
});
