import { readBindNames } from '../protocol/clientMessages.js';
import { serialize } from 'pg-protocol';
import { BackendStatementCache, KnownStatements, rewriteBindStatement, serverStatementName, shapeOf } from './preparedStatements.js';

test('server names depend on search_path, text and parameter types, and fit NAMEDATALEN', () => {
  const a = serverStatementName('public', 'SELECT $1', [23]);
  expect(a).toBe(serverStatementName('public', 'SELECT $1', [23]));
  expect(a).not.toBe(serverStatementName('other', 'SELECT $1', [23]));
  expect(a).not.toBe(serverStatementName('public', 'SELECT $1', [25]));
  expect(a).not.toBe(serverStatementName('public', 'SELECT $1 ', [23]));
  expect(a).not.toBe(serverStatementName('public', 'SELECT $1', [23], '1'));
  expect(serverStatementName('public', 'SELECT $1', [23], '1/7.2')).toHaveLength(a.length);
  expect(a.length).toBeLessThanOrEqual(63);
});

test('the backend cache is an LRU that hands back what to Close', () => {
  const c = new BackendStatementCache(2);
  expect(c.add('a')).toEqual([]);
  expect(c.add('b')).toEqual([]);
  expect(c.has('a')).toBe(true); // a is now most recent
  expect(c.add('c')).toEqual(['b']);
  c.confirm('c');
  c.forget('a');
  expect(c.has('a')).toBe(false);
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

test('known statements remember their shape; the catalog epoch is per database', () => {
  const k = new KnownStatements();
  const app = { user: 'app', database: 'db' };
  k.setShape(app, 'a', { params: [23], result: '-' });
  expect(k.shape(app, 'a')).toBeNull();
  k.add(app, 'a');
  k.setShape(app, 'a', { params: [23], result: '-' });
  expect(k.shape(app, 'a')).toEqual({ params: [23], result: '-' });
  expect(k.epoch('db')).toBe(0);
  k.bump('db');
  expect(k.epoch('db')).toBe(1);
  expect(k.epoch('other')).toBe(0);
});

test('a shape is read from a Describe answer: parameter types, result names, types and modifiers', () => {
  const t = Buffer.from([0x74, 0, 0, 0, 14, 0, 2, 0, 0, 0, 23, 0, 0, 0, 16]);
  const col = (name: string, type: number, mod: number): Buffer => {
    const b = Buffer.alloc(name.length + 1 + 18);
    b.write(name, 0);
    b.writeUInt32BE(type, name.length + 1 + 6);
    b.writeInt32BE(mod, name.length + 1 + 12);
    return b;
  };
  const body = Buffer.concat([Buffer.from([0, 2]), col('id', 23, -1), col('v', 1043, 14)]);
  const T = Buffer.concat([Buffer.from([0x54, 0, 0, 0, 0]), body]);
  T.writeUInt32BE(T.length - 1, 1);
  expect(shapeOf([t, T])).toEqual({ params: [23, 16], result: 'id\0' + '23\0-1\0\0v\0' + '1043\0' + '14' });
  expect(shapeOf([t, Buffer.from([0x6e, 0, 0, 0, 4])])).toEqual({ params: [23, 16], result: '-' });
  expect(shapeOf([t])).toBeNull();
});
