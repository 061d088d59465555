// TLS on both sides. Client-facing: certificate and key from files (re-read when they change),
// psql with sslmode=require/verify-full and node-postgres with the test CA, requireTLS refusing
// plaintext. Backend: PostgreSQL with ssl=on, the proxy connecting with require / verify-ca /
// verify-full against a CA bundle file. All certificates are made here with openssl.
import { copyFileSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import pg from 'pg';
import { pino } from 'pino';
import { type PgCluster, startPostgres } from '../../hack/postgres.js';
import { parseConfig, type ProxyConfigInput } from '../../proxy/contract/config.js';
import { ProxyServer } from '../../proxy/proxyServer.js';
import { makeCa, makeLeaf, postgresTlsSettings, serialOf, type TestCa } from '../support/certs.js';
import { connected, eventually, freePort, psql, startProxy, USERS, writePasswordFiles, type RunningProxy } from '../support/harness.js';

let ca: TestCa;
let otherCa: TestCa;
let cluster: PgCluster;
let plainCluster: PgCluster;
let certDir: string;
const running: RunningProxy[] = [];

beforeAll(async () => {
  ca = makeCa();
  otherCa = makeCa('another CA');
  certDir = mkdtempSync(join(tmpdir(), 'dbproxy-proxy-tls-'));
  // Served by the proxy; rotated by a test.
  const leaf = makeLeaf(ca, 'proxy', { dns: ['localhost'], ips: ['127.0.0.1'] });
  copyFileSync(leaf.certFile, join(certDir, 'tls.crt'));
  copyFileSync(leaf.keyFile, join(certDir, 'tls.key'));

  cluster = startPostgres({
    port: await freePort(),
    users: USERS,
    maxConnections: 40,
    settings: postgresTlsSettings(ca, { dns: ['db.internal.test'], ips: ['127.0.0.1'] }),
  });
  plainCluster = startPostgres({ port: await freePort(), users: USERS, maxConnections: 20 });
});

afterAll(async () => {
  for (const p of running) await p.stop();
  cluster?.destroy();
  plainCluster?.destroy();
});

async function proxyWith(overrides: Partial<ProxyConfigInput>, on: PgCluster = cluster): Promise<RunningProxy> {
  const p = await startProxy(on, overrides);
  running.push(p);
  return p;
}

const clientTls = (): Partial<ProxyConfigInput> => ({ tls: { certFile: join(certDir, 'tls.crt'), keyFile: join(certDir, 'tls.key'), reloadInterval: '100ms' } });

const psqlTls = (port: number, sql: string, env: Record<string, string>): ReturnType<typeof psql> => psql(port, sql, { env });

/** The certificate the proxy presented, and whether the pg connection runs over TLS. */
function peer(c: pg.Client): { encrypted: boolean; serial?: string } {
  const stream = (c as unknown as { connection: { stream: TLSSocket & { encrypted?: boolean } } }).connection.stream;
  return { encrypted: stream.encrypted === true, serial: stream.encrypted ? stream.getPeerCertificate().serialNumber : undefined };
}

describe('client-facing TLS', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    proxy = await proxyWith(clientTls());
  });

  test('psql with sslmode=verify-full and the test CA lands as its user over TLS', async () => {
    const r = await psqlTls(proxy.port, 'SELECT current_user', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca.certFile });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('app');
    const info = await psqlTls(proxy.port, '\\conninfo', { PGSSLMODE: 'require' });
    expect(info.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
  });

  test('psql with verify-full against another CA refuses the proxy certificate', async () => {
    const r = await psqlTls(proxy.port, 'SELECT 1', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: otherCa.certFile });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate verify failed/);
  });

  test('node-postgres with ssl {ca} is encrypted and verifies the name', async () => {
    const c = await connected(proxy.port, 'app', { ssl: { ca: ca.pem, servername: 'localhost' } });
    try {
      expect(peer(c).encrypted).toBe(true);
      expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
    } finally {
      await c.end();
    }
    // The same proxy still serves plaintext clients when requireTLS is off.
    const plain = await connected(proxy.port, 'legacy');
    expect(peer(plain).encrypted).toBe(false);
    expect((await plain.query('SELECT 2 AS x')).rows[0].x).toBe(2);
    await plain.end();
  });

  test('queries of 40 to 300 KB over TLS (many TLS records, many reads) arrive whole', async () => {
    // Issue 11: a message spanning three or more reads was corrupted, and TLS records (16 KB)
    // make that happen from about 40 KB.
    const c = await connected(proxy.port, 'app', { ssl: { ca: ca.pem, servername: 'localhost' } });
    try {
      for (const n of [40_000, 100_000, 300_000]) {
        const r = await c.query(`SELECT length('${'t'.repeat(n)}') AS n, length($1::text) AS p`, ['p'.repeat(n)]);
        expect(r.rows).toEqual([{ n, p: n }]);
      }
    } finally {
      await c.end();
    }
  });

  test('data sent before the TLS handshake is refused (no plaintext injection)', async () => {
    const net = await import('node:net');
    const sock = net.connect(proxy.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    const chunks: Buffer[] = [];
    sock.on('data', (d: Buffer) => chunks.push(d));
    // SSLRequest and, in the same packet, a plaintext startup message.
    const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    sock.write(Buffer.concat([ssl, Buffer.from([0, 0, 0, 9, 0, 3, 0, 0, 0])]));
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(chunks).toString('latin1');
    expect(all.startsWith('E')).toBe(true);
    expect(all).toContain('08P01');
  });

  test('a renewed certificate is served to the next handshake without a restart; a broken one is ignored', async () => {
    const c1 = await connected(proxy.port, 'app', { ssl: { ca: ca.pem, servername: 'localhost' } });
    const before = peer(c1).serial!;
    // Rotate like a Secret update: new files renamed into place, not edited in place.
    const next = makeLeaf(ca, 'proxy-renewed', { dns: ['localhost'], ips: ['127.0.0.1'] });
    expect(serialOf(next.cert).toLowerCase()).not.toBe(before.toLowerCase());
    copyFileSync(next.keyFile, join(certDir, 'tls.key.new'));
    copyFileSync(next.certFile, join(certDir, 'tls.crt.new'));
    renameSync(join(certDir, 'tls.key.new'), join(certDir, 'tls.key'));
    renameSync(join(certDir, 'tls.crt.new'), join(certDir, 'tls.crt'));
    const after = (await eventually(async (): Promise<string | false> => {
      const c = await connected(proxy.port, 'app', { ssl: { ca: ca.pem, servername: 'localhost' } });
      const serial = peer(c).serial!;
      await c.end();
      return serial !== before ? serial : false;
    }, 'the renewed certificate')) as string;
    expect(after.toLowerCase()).toBe(serialOf(next.cert).toLowerCase());
    // The connection made before the rotation carries on.
    expect((await c1.query('SELECT 1 AS x')).rows[0].x).toBe(1);
    await c1.end();

    // A half-written rotation (a key that is not a key) keeps the last good certificate.
    writeFileSync(join(certDir, 'tls.key'), 'not a key\n');
    try {
      await eventually(async () => {
        // The files are looked at on handshakes.
        const c2 = await connected(proxy.port, 'app', { ssl: { ca: ca.pem, servername: 'localhost' } });
        expect(peer(c2).serial!.toLowerCase()).toBe(after.toLowerCase());
        await c2.end();
        return proxy.logs.some((l) => l.includes('client TLS certificate reload failed'));
      }, 'the reload error in the logs');
      expect(proxy.logs.join('\n')).not.toContain('BEGIN');
    } finally {
      copyFileSync(next.keyFile, join(certDir, 'tls.key'));
    }
  });
});

describe('requireTLS', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    const t = clientTls().tls!;
    proxy = await proxyWith({ tls: { ...t, requireTLS: true } });
  });

  test('psql with sslmode=disable gets a clear FATAL; sslmode=require works', async () => {
    const r = await psqlTls(proxy.port, 'SELECT 1', { PGSSLMODE: 'disable' });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/FATAL: {2}dbproxy requires TLS: .*SSL is off/);
    const ok = await psqlTls(proxy.port, 'SELECT current_user', { PGSSLMODE: 'require' });
    expect(ok.stdout.trim()).toBe('app');
  });

  test('node-postgres without ssl gets 28000', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app', password: 'app-secret', database: 'postgres' });
    await expect(c.connect()).rejects.toMatchObject({ code: '28000', message: expect.stringContaining('requires TLS') });
    const ok = await connected(proxy.port, 'app', { ssl: { rejectUnauthorized: false } });
    expect(peer(ok).encrypted).toBe(true);
    await ok.end();
  });

  test('config refuses requireTLS without a certificate', () => {
    expect(() => parseConfig({ targets: ['h:1'], users: [{ name: 'u', passwordFile: '/x' }], tls: { requireTLS: true } })).toThrow(/requireTLS needs certFile/);
  });
});

describe('backend TLS', () => {
  const sslOfProxyBackend = async (port: number): Promise<string> => {
    const c = await connected(port);
    try {
      return (await c.query('SELECT ssl::text AS ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).rows[0].ssl;
    } finally {
      await c.end();
    }
  };

  test.each([
    ['require', {}],
    ['verify-ca', { caFile: 'CA' }],
    ['verify-full', { caFile: 'CA' }],
    ['verify-full', { caFile: 'CA', serverName: 'db.internal.test' }],
  ])('mode %s %j: every backend connection is encrypted', async (mode, extra) => {
    const backendTls = { mode, ...extra, ...('caFile' in extra ? { caFile: ca.certFile } : {}) } as ProxyConfigInput['backendTls'];
    const proxy = await proxyWith({ backendTls });
    expect(await sslOfProxyBackend(proxy.port)).toBe('true');
    // The health check connection too (other proxies of this file still run in plaintext).
    expect(Number(cluster.psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'dbproxy health check' AND s.ssl"))).toBeGreaterThan(0);
    await proxy.stop();
  });

  test('mode disable (default) stays in plaintext', async () => {
    const proxy = await proxyWith({});
    expect(await sslOfProxyBackend(proxy.port)).toBe('false');
    await proxy.stop();
  });

  /** A proxy that will not become ready: what its target and logs say. */
  async function failingProxy(on: PgCluster, backendTls: ProxyConfigInput['backendTls']): Promise<{ reason: string | undefined; logs: string }> {
    const files = writePasswordFiles();
    const logs: string[] = [];
    const server = await ProxyServer.create({
      config: parseConfig({ listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', targets: [`127.0.0.1:${on.port}`], users: files.users, healthCheck: { interval: '100ms' }, backendTls }),
      log: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }),
    });
    await server.start();
    try {
      await eventually(() => server.stats().targets[0]!.state === 'UNAVAILABLE', 'target UNAVAILABLE');
      expect(server.isReady()).toBe(false);
      return { reason: server.stats().targets[0]!.reason, logs: logs.join('\n') };
    } finally {
      await server.shutdown(500);
    }
  }

  test('verify-full against another CA refuses the server', async () => {
    const r = await failingProxy(cluster, { mode: 'verify-full', caFile: otherCa.certFile });
    expect(r.logs).toMatch(/TLS handshake with 127\.0\.0\.1 failed \(verify-full\): .*(self-signed|unable to verify|unable to get local issuer)/);
  });

  test('verify-full with a name the certificate does not hold refuses the server; verify-ca accepts it', async () => {
    const r = await failingProxy(cluster, { mode: 'verify-full', caFile: ca.certFile, serverName: 'other.example' });
    expect(r.logs).toMatch(/Host: other\.example\. is not in the cert's altnames/);
    const ok = await proxyWith({ backendTls: { mode: 'verify-ca', caFile: ca.certFile, serverName: 'other.example' } });
    expect(await sslOfProxyBackend(ok.port)).toBe('true');
    await ok.stop();
  });

  test('verify-full with a target given by host name checks the certificate against that name, not the address it resolves to', async () => {
    // A server whose certificate names only the host (cert-manager's, RDS's do), no address.
    const named = startPostgres({ port: await freePort(), users: USERS, maxConnections: 20, settings: postgresTlsSettings(ca, { dns: ['localhost'] }) });
    try {
      const proxy = await proxyWith({ targets: [`localhost:${named.port}`], backendTls: { mode: 'verify-full', caFile: ca.certFile } }, named);
      expect(await sslOfProxyBackend(proxy.port)).toBe('true');
      await proxy.stop();
    } finally {
      named.destroy();
    }
  });

  test('require against a server without TLS says so', async () => {
    const r = await failingProxy(plainCluster, { mode: 'require' });
    expect(r.logs).toMatch(/does not support TLS, but backendTls\.mode is require/);
  });

  test('both sides at once: psql verify-full to the proxy, verify-full to the server', async () => {
    const proxy = await proxyWith({ ...clientTls(), backendTls: { mode: 'verify-full', caFile: ca.certFile } });
    const r = await psqlTls(proxy.port, 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca.certFile });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('t');
    await proxy.stop();
  });
});
