// HTTP admin endpoints: /healthz (the process answers), /readyz (a writer is known and the pool
// can lend), /metrics (Prometheus), /stats (the JSON the operator reads; see contract/stats.ts).
import http from 'node:http';
import type { ProxyStats } from '../contract/stats.js';

export interface AdminHttpSource {
  ready(): boolean;
  stats(): ProxyStats;
  metrics(): Promise<string>;
  metricsContentType: string;
  /**
   * A cancel forwarded by a peer replica, from `source` (the sender's address). False when the
   * source is over its rate limit; otherwise the cancel is carried out in the background.
   */
  forwardedCancel(pid: number, secret: number, source: string | undefined): boolean;
  /**
   * A peer replica about to run DROP DATABASE (or RENAME, ...) asks this one to close its idle
   * connections to the database. Only peers may ask: 'forbidden' from any other address.
   */
  releaseDatabase(database: string, source: string | undefined): Promise<'accepted' | 'forbidden' | 'rate_limited'>;
}

export interface AdminHttp {
  port: number;
  close(): Promise<void>;
}

export async function startAdminHttp(addr: { host: string; port: number }, source: AdminHttpSource): Promise<AdminHttp> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    /** A small JSON body (at most 1 KiB), or a 400. */
    const withJson = (handle: (msg: Record<string, unknown>) => void): void => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => {
        body += d;
        if (body.length > 1024) req.destroy();
      });
      req.on('end', () => {
        let msg: unknown;
        try {
          msg = JSON.parse(body);
        } catch {
          return send(400, 'bad request\n');
        }
        if (typeof msg !== 'object' || msg === null) return send(400, 'bad request\n');
        handle(msg as Record<string, unknown>);
      });
    };
    if (req.method === 'POST' && path === '/cancel') {
      withJson((msg) => {
        if (typeof msg.pid !== 'number' || typeof msg.secret !== 'number') return send(400, 'pid and secret must be numbers\n');
        // One answer for every key, sent before the key is even looked up: like PostgreSQL's
        // cancel port, this endpoint must not tell a guesser (by status or by timing) whether a
        // guess named a session.
        if (!source.forwardedCancel(msg.pid, msg.secret, req.socket.remoteAddress)) return send(429, 'too many cancel requests\n');
        send(202, 'cancel request received\n');
      });
      return;
    }
    if (req.method === 'POST' && path === '/release-database') {
      withJson((msg) => {
        if (typeof msg.database !== 'string' || msg.database === '') return send(400, 'database must be a name\n');
        source.releaseDatabase(msg.database, req.socket.remoteAddress).then(
          (r) => (r === 'accepted' ? send(202, 'idle connections closed\n') : r === 'forbidden' ? send(403, 'only peer replicas may ask\n') : send(429, 'too many requests\n')),
          (e: Error) => send(500, `failed: ${e.message}\n`),
        );
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    switch (path) {
      case '/healthz':
        return send(200, 'ok\n');
      case '/readyz':
        return source.ready() ? send(200, 'ready\n') : send(503, 'not ready: no writable target or pool budget yet\n');
      case '/stats':
        return send(200, JSON.stringify(source.stats()), 'application/json');
      case '/metrics':
        source.metrics().then(
          (m) => send(200, m, source.metricsContentType),
          (e: Error) => send(500, `metrics failed: ${e.message}\n`),
        );
        return;
      default:
        return send(404, 'not found; try /healthz, /readyz, /metrics, /stats\n');
    }
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => resolve());
  });
  return {
    port: (server.address() as import('node:net').AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
