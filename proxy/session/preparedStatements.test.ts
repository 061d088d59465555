import { readBindNames } from '../protocol/clientMessages.js';
import { serialize } from 'pg-protocol';
import { BackendStatementCache, KnownStatements, rewriteBindStatement, serverStatementName } from './preparedStatements.js';

test('server names depend on search_path, text and parameter types, and fit NAMEDATALEN', () => {
  const a = serverStatementName('public', 'SELECT $1', [23]);
  expect(a).toBe(serverStatementName('public', 'SELECT $1', [23]));
  expect(a).not.toBe(serverStatementName('other', 'SELECT $1', [23]));
  expect(a).not.toBe(serverStatementName('public', 'SELECT $1', [25]));
  expect(a).not.toBe(serverStatementName('public', 'SELECT $1 ', [23]));
  expect(a.length).toBeLessThanOrEqual(63);
});

test('the backend cache is an LRU that hands back what to Close, stale names included', () => {
  const c = new BackendStatementCache(2);
  expect(c.add('a')).toEqual([]);
  expect(c.add('b')).toEqual([]);
  expect(c.has('a')).toBe(true); // a is now most recent
  expect(c.add('c')).toEqual(['b']);
  c.confirm('c');
  c.invalidate('a');
  expect(c.has('a')).toBe(false);
  expect(c.add('a')).toEqual(['a']);
  c.forget('a');
  expect(c.size).toBe(1);
  c.clear();
  expect(c.size).toBe(0);
});

test('a rewritten Bind keeps everything but the statement name', () => {
  const bind = serialize.bind({ portal: 'p1', statement: 'mine', values: ['x', null], binary: false });
  const rewritten = rewriteBindStatement(bind, 'dbproxy_abc');
  expect(readBindNames(rewritten)).toEqual({ portal: 'p1', statement: 'dbproxy_abc' });
  expect(rewritten.subarray(5 + 3 + 'dbproxy_abc'.length + 1)).toEqual(bind.subarray(5 + 3 + 5));
});

test('known statements are bounded, and kept per user and database', () => {
  const k = new KnownStatements(2);
  const app = { user: 'app', database: 'db' };
  k.add(app, 'a');
  k.add(app, 'b');
  k.add(app, 'c');
  expect(k.has(app, 'a')).toBe(false);
  expect(k.has(app, 'c')).toBe(true);
  expect(k.has({ user: 'other', database: 'db' }, 'c')).toBe(false);
  expect(k.has({ user: 'app', database: 'other' }, 'c')).toBe(false);
});
