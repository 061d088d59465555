import { ResponseQueue, type Slot } from './responseQueue.js';

const msg = (type: string, body = ''): Buffer => {
  const b = Buffer.alloc(5 + body.length);
  b[0] = type.charCodeAt(0);
  b.writeUInt32BE(4 + body.length, 1);
  b.write(body, 5);
  return b;
};

function harness() {
  const seen: string[] = [];
  const q = new ResponseQueue((bytes) => seen.push(String.fromCharCode(bytes[0]!) + (bytes.length > 5 ? bytes.toString('utf8', 5) : '')));
  const server = (types: string): void => {
    for (const t of types) q.onServer(t.charCodeAt(0), msg(t));
  };
  return { q, seen, server };
}

test('local answers wait their turn behind server answers', () => {
  const { q, seen, server } = harness();
  q.push({ kind: 'client', req: 'P' });
  q.push({ kind: 'local', req: 'P', bytes: msg('1', 'local') });
  q.push({ kind: 'client', req: 'B' });
  q.push({ kind: 'client', req: 'E' });
  q.push({ kind: 'client', req: 'S' });
  expect(seen).toEqual([]);
  server('12DCZ');
  expect(seen).toEqual(['1', '1local', '2', 'D', 'C', 'Z']);
  expect(q.waiting).toBe(0);
});

test('answers to hidden requests are swallowed, their errors forwarded only when asked', () => {
  const { q, seen, server } = harness();
  const done: boolean[] = [];
  q.push({ kind: 'hidden', req: 'C' });
  q.push({ kind: 'hidden', req: 'P', forwardErrors: true, done: (ok) => done.push(ok) });
  q.push({ kind: 'client', req: 'B' });
  q.push({ kind: 'client', req: 'S' });
  expect(q.headIsHidden).toBe(true);
  server('3');
  server('E');
  // The server skipped the Bind; only the Sync is answered.
  server('Z');
  expect(seen).toEqual(['E', 'Z']);
  expect(done).toEqual([false]);
});

test('an error drops everything up to the Sync, local answers included, and reports each as not done', () => {
  const { q, seen, server } = harness();
  const done: Array<[string, boolean]> = [];
  const slot = (kind: Slot['kind'], req: Slot['req'], name: string, bytes?: Buffer): Slot => ({ kind, req, bytes, done: (ok) => done.push([name, ok]) });
  q.push(slot('client', 'P', 'parse'));
  q.push(slot('client', 'B', 'bind'));
  q.push(slot('local', 'C', 'close', msg('3')));
  q.push(slot('client', 'S', 'sync'));
  server('E');
  expect(seen).toEqual(['E']);
  server('Z');
  expect(seen).toEqual(['E', 'Z']);
  expect(done).toEqual([
    ['parse', false],
    ['bind', false],
    ['close', false],
    ['sync', true],
  ]);
});

test('after an error with no Sync queued yet, requests are skipped until the client sends one', () => {
  const { q, seen, server } = harness();
  const done: boolean[] = [];
  q.push({ kind: 'client', req: 'P' });
  server('E');
  expect(q.skipping).toBe(true);
  q.push({ kind: 'local', req: 'C', bytes: msg('3'), done: (ok) => done.push(ok) });
  q.push({ kind: 'client', req: 'S' });
  expect(q.skipping).toBe(false);
  server('Z');
  expect(seen).toEqual(['E', 'Z']);
  expect(done).toEqual([false]);
});

test('a local failure answers in order, then skips to Sync like the server', () => {
  const { q, seen, server } = harness();
  q.push({ kind: 'client', req: 'B' });
  q.failLocally(msg('E', '42P05'));
  expect(q.skipping).toBe(true);
  q.push({ kind: 'client', req: 'S' });
  server('2Z');
  expect(seen).toEqual(['2', 'E42P05', 'Z']);
});

test('simple Query: everything up to ReadyForQuery belongs to it; an error inside does not end it', () => {
  const { q, seen, server } = harness();
  const done: boolean[] = [];
  q.push({ kind: 'client', req: 'Q', done: (ok) => done.push(ok) });
  server('TDCEZ');
  expect(seen).toEqual(['T', 'D', 'C', 'E', 'Z']);
  expect(done).toEqual([false]);
});

test('Describe completes at RowDescription or NoData; async messages pass through', () => {
  const { q, seen, server } = harness();
  q.push({ kind: 'client', req: 'D' });
  q.push({ kind: 'client', req: 'D' });
  server('tNTn');
  expect(seen).toEqual(['t', 'N', 'T', 'n']);
  expect(q.waiting).toBe(0);
});

test('a hidden query collects its rows; abandon fails whatever is open', () => {
  const { q, server } = harness();
  const rows: Buffer[] = [];
  const done: boolean[] = [];
  q.push({ kind: 'hidden', req: 'Q', rows, done: (ok) => done.push(ok) });
  server('TDDCZ');
  expect(rows).toHaveLength(2);
  q.push({ kind: 'client', req: 'E', done: (ok) => done.push(ok) });
  q.abandon();
  expect(done).toEqual([true, false]);
  expect(q.waiting).toBe(0);
});

test('CommandCompletes of statements the proxy added to a query are kept from the client', () => {
  const { q, seen, server } = harness();
  q.push({ kind: 'client', req: 'Q', swallow: [1, 3] });
  server('CCTDCCCZ');
  expect(seen).toEqual(['C', 'T', 'D', 'C', 'C', 'Z']);
});

test('a notification during a request of the proxy\'s own still reaches the client; its notices do not', () => {
  const { q, seen, server } = harness();
  q.push({ kind: 'hidden', req: 'P' });
  server('NA1');
  expect(seen).toEqual(['A']);
});
