import { paramSyncSql, parseOptions, readBackSql, restoreParamsSql, startupSessionParams } from './sessionParams.js';

test('options: -c, --name=value, escaped spaces', () => {
  expect([...parseOptions('-c search_path=a,b --statement-timeout=5s -cwork_mem=4MB -c application_name=a\\ b')]).toEqual([
    ['search_path', 'a,b'],
    ['statement_timeout', '5s'],
    ['work_mem', '4MB'],
    ['application_name', 'a b'],
  ]);
});

test('startup params: GUCs only, options folded in, names lowercased', () => {
  const m = startupSessionParams(
    new Map([
      ['user', 'u'],
      ['database', 'd'],
      ['TimeZone', 'UTC'],
      ['application_name', 'psql'],
      ['_pq_.compression', 'on'],
      ['options', '-c search_path=s1'],
    ]),
  );
  expect([...m]).toEqual([
    ['timezone', 'UTC'],
    ['application_name', 'psql'],
    ['search_path', 's1'],
  ]);
});

test('sync sql sends only the difference, quoting values and names', () => {
  expect(paramSyncSql(new Map([['a', '1']]), new Map([['a', '1']]))).toBeNull();
  expect(paramSyncSql(new Map(), new Map())).toBeNull();
  expect(
    paramSyncSql(
      new Map([
        ['application_name', "o'k"],
        ['timezone', 'UTC'],
      ]),
      new Map([
        ['timezone', 'UTC'],
        ['search_path', 'x'],
      ]),
    ),
  ).toBe(`SELECT pg_catalog.set_config(E'application_name', E'o''k', false); RESET "search_path"`);
});

test('literals read the same with standard_conforming_strings off: backslashes are escaped too', () => {
  expect(paramSyncSql(new Map([['app.x', "a\\'; SELECT 1; --"]]), new Map())).toBe(`SELECT pg_catalog.set_config(E'app.x', E'a\\\\''; SELECT 1; --', false)`);
});

test('restoring parameters is one DO block whose dollar quote no value contains', () => {
  const sql = restoreParamsSql(new Map([['search_path', 'a, b'], ['app.x', '$dbproxy$']]));
  expect(sql).toBe(`DO $dbproxy_$ BEGIN PERFORM pg_catalog.set_config(E'search_path', E'a, b', false); PERFORM pg_catalog.set_config(E'app.x', E'$dbproxy$', false); END $dbproxy_$`);
});

test('read-back sql asks for each parameter, quoted, one column each', () => {
  const sql = readBackSql(['timezone', "odd'name"]);
  expect(sql).toContain(`pg_catalog.current_setting(E'timezone', true)`);
  expect(sql).toContain(`pg_catalog.current_setting(E'odd''name', true)`);
  expect(sql.match(/\(SELECT CASE/g)).toHaveLength(2);
});
