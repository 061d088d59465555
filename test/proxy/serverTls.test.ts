// The client-facing handshake on its own (no PostgreSQL): connections are handed to a tls.Server
// that never listens, and each accept() must get back the TLS socket of its own connection, with
// Node's verdict on the client certificate, or a TlsHandshakeFailed.
import net from 'node:net';
import tls from 'node:tls';
import { ServerTls, TlsHandshakeFailed } from '../../proxy/tls/serverTls.js';
import { makeCa, makeLeaf, type LeafCert, type TestCa } from '../support/certs.js';

let ca: TestCa;
let otherCa: TestCa;
let serverLeaf: LeafCert;
let clients: LeafCert[];
let stranger: LeafCert;
let serverTls: ServerTls;
let listener: net.Server;
let port: number;
/** accept()'s outcome per connection, in arrival order. */
let accepted: Array<Promise<tls.TLSSocket>>;

beforeAll(async () => {
  ca = makeCa();
  otherCa = makeCa('a CA nobody trusts');
  serverLeaf = makeLeaf(ca, 'server', { dns: ['localhost'], ips: ['127.0.0.1'] });
  clients = Array.from({ length: 12 }, (_, i) => makeLeaf(ca, `client${i}`, { cn: `user${i}`, usage: 'client' }));
  stranger = makeLeaf(otherCa, 'stranger', { cn: 'user0', usage: 'client' });
  serverTls = new ServerTls({ certFile: serverLeaf.certFile, keyFile: serverLeaf.keyFile, clientCaFile: ca.certFile, minVersion: 'TLSv1.2', recheckMs: 1000 });
  serverTls.load();
  // As the proxy does after an SSLRequest: hand the connection to accept() and keep its outcome.
  listener = net.createServer((raw) => {
    const p = serverTls.accept(raw);
    p.catch(() => undefined);
    accepted.push(p);
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
  port = (listener.address() as net.AddressInfo).port;
});

beforeEach(() => {
  accepted = [];
});

afterAll(async () => {
  await new Promise((r) => listener.close(r));
});

/** A TLS client, after reading the 'S' the proxy answers an SSLRequest with. */
function tlsClient(cert?: LeafCert): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = net.connect(port, '127.0.0.1');
    raw.once('error', reject);
    raw.once('data', (b) => {
      if (b.toString() !== 'S') return reject(new Error(`expected S, got ${b.toString()}`));
      const s = tls.connect({ socket: raw, ca: ca.pem, servername: 'localhost', ...(cert ? { cert: cert.cert, key: cert.key } : {}) });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
  });
}

const cn = (s: tls.TLSSocket): unknown => s.getPeerCertificate().subject?.CN;

test('concurrent handshakes each resolve to their own connection, with the client certificate verified', async () => {
  const sockets = await Promise.all(clients.map((c) => tlsClient(c)));
  const servers = await Promise.all(accepted);
  expect(servers).toHaveLength(clients.length);
  // Pair every server-side socket with its client by the client's local port.
  for (const server of servers) {
    const client = sockets.find((c) => c.localPort === server.remotePort)!;
    const index = sockets.indexOf(client);
    expect(server.authorized).toBe(true);
    expect(cn(server)).toBe(`user${index}`);
  }
  for (const s of [...sockets, ...servers]) s.destroy();
});

test('no certificate: the handshake completes, nothing is presented', async () => {
  const client = await tlsClient();
  const [server] = await Promise.all(accepted);
  expect(server!.authorized).toBe(false);
  expect(Object.keys(server!.getPeerCertificate())).toHaveLength(0);
  client.destroy();
  server!.destroy();
});

test('a certificate from another CA: the handshake completes and it is marked unauthorized', async () => {
  const client = await tlsClient(stranger);
  const [server] = await Promise.all(accepted);
  expect(server!.authorized).toBe(false);
  expect(cn(server!)).toBe('user0');
  expect(String(server!.authorizationError)).toMatch(/[A-Z_]+/);
  client.destroy();
  server!.destroy();
});

test('a client that does not speak TLS: accept rejects with TlsHandshakeFailed', async () => {
  const raw = net.connect(port, '127.0.0.1');
  await new Promise((r) => raw.once('data', r));
  raw.write('GET / HTTP/1.0\r\n\r\n');
  await expect(accepted[0]).rejects.toBeInstanceOf(TlsHandshakeFailed);
  raw.destroy();
});

test('a client that hangs up during the handshake: accept rejects', async () => {
  const raw = net.connect(port, '127.0.0.1');
  await new Promise((r) => raw.once('data', r));
  raw.destroy();
  await expect(accepted[0]).rejects.toThrow(/closed the connection during the TLS handshake/);
});
