import { paramSyncSql, parseOptions, readBackSql, startupSessionParams } from './sessionParams.js';

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
  ).toBe(`SELECT set_config('application_name', 'o''k', false); RESET "search_path"`);
});

test('read-back sql asks for each parameter, quoted, NULL when unknown', () => {
  expect(readBackSql(['timezone', "odd'name"])).toBe(`SELECT current_setting('timezone', true), current_setting('odd''name', true)`);
});
