// The operator's HTTP endpoints: /healthz (the process is alive), /readyz (a standby is ready; a
// leader once its caches are synced), /metrics (Prometheus, the operator's own Registry).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HealthSource {
  healthy(): boolean;
  ready(): { ok: boolean; detail: string };
}

export interface OperatorHttpServer {
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(listen: { host: string; port: number }, registry: Registry, health: HealthSource): Promise<OperatorHttpServer> {
  const server = http.createServer((req, res) => {
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    const path = (req.url ?? '/').split('?')[0];
    switch (path) {
      case '/healthz':
      case '/livez':
        return health.healthy() ? send(200, 'ok\n') : send(500, 'unhealthy\n');
      case '/readyz': {
        const r = health.ready();
        return send(r.ok ? 200 : 503, `${r.detail}\n`);
      }
      case '/metrics':
        registry.metrics().then(
          (text) => send(200, text, registry.contentType),
          (e: Error) => send(500, `${e.message}\n`),
        );
        return;
      default:
        return send(404, 'not found; try /healthz, /readyz, /metrics\n');
    }
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
