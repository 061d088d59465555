import { pino } from 'pino';
import { PeerForwarder } from './peerForwarder.js';

const log = pino({ level: 'silent' });

test('peers: static ones plus every address of the DNS name, never this replica', async () => {
  const f = new PeerForwarder({
    config: { dns: 'proxy-peers.ns.svc', static: ['10.1.0.9:9090'], adminPort: 9090, timeoutMs: 100 },
    self: () => '10.1.0.9:9090',
    log,
    // 127.0.0.1 is one of this machine's own addresses: a pod finds itself in its headless Service.
    resolve: async () => ['10.1.0.7', '127.0.0.1', 'fd00::5'],
  });
  expect((await f.peers()).sort()).toEqual(['10.1.0.7:9090', '[fd00::5]:9090']);
  expect(f.enabled).toBe(true);
});

test('forward: counts the peers that took the cancel in; unreachable or refusing peers are logged, not fatal', async () => {
  const posted: string[] = [];
  const f = new PeerForwarder({
    config: { static: ['a:1', 'b:2', 'c:3'], adminPort: 9090, timeoutMs: 100 },
    self: () => 'me:0',
    log,
    post: async (url, body) => {
      posted.push(`${url} ${body}`);
      if (url.includes('c:3')) throw new Error('ECONNREFUSED');
      return url.includes('a:1') ? 202 : 429;
    },
  });
  expect(await f.forward(7, 9)).toBe(1);
  expect(posted.sort()).toEqual(['http://a:1/cancel {"pid":7,"secret":9}', 'http://b:2/cancel {"pid":7,"secret":9}', 'http://c:3/cancel {"pid":7,"secret":9}']);
  expect(new PeerForwarder({ config: { static: [], adminPort: 9090, timeoutMs: 1 }, self: () => '', log }).enabled).toBe(false);
});

test('isPeer: an address of the DNS name or of a static peer (by name or literal), IPv4-mapped or not; nothing else', async () => {
  const f = new PeerForwarder({
    config: { dns: 'proxy-peers.ns.svc', static: ['10.1.0.9:9090', 'peer-b.ns.svc:9090', '[fd00::7]:9090'], adminPort: 9090, timeoutMs: 100 },
    self: () => '10.1.0.1:9090',
    log,
    resolve: async (name) => ({ 'proxy-peers.ns.svc': ['10.1.0.7', '10.1.0.1'], 'peer-b.ns.svc': ['10.1.0.8'] })[name] ?? Promise.reject(new Error(`ENOTFOUND ${name}`)),
  });
  for (const a of ['10.1.0.7', '::ffff:10.1.0.7', '10.1.0.8', '10.1.0.9', 'fd00::7']) expect(await f.isPeer(a)).toBe(true);
  for (const a of ['10.9.9.9', '::ffff:10.9.9.9', undefined]) expect(await f.isPeer(a)).toBe(false);
});

test('releaseDatabase: posts the database to every peer', async () => {
  const posted: string[] = [];
  const f = new PeerForwarder({
    config: { static: ['a:1', 'b:2'], adminPort: 9090, timeoutMs: 100 },
    self: () => 'me:0',
    log,
    post: async (url, body) => {
      posted.push(`${url} ${body}`);
      return 202;
    },
  });
  expect(await f.releaseDatabase('scratch')).toBe(2);
  expect(posted.sort()).toEqual(['http://a:1/release-database {"database":"scratch"}', 'http://b:2/release-database {"database":"scratch"}']);
});
