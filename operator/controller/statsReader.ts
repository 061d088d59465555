// Reads a proxy pod's /stats (proxy/contract/stats.ts) over HTTP, with a short timeout: a slow or
// dead pod must not hold up the reconcile of the whole DatabaseProxy.
import http from 'node:http';
import type { ProxyStats } from '../../proxy/contract/stats.js';

export type StatsFetcher = (podIP: string, port: number, timeoutMs: number) => Promise<ProxyStats>;

function urlHost(ip: string): string {
  return ip.includes(':') ? `[${ip}]` : ip;
}

export const fetchStats: StatsFetcher = (podIP, port, timeoutMs) =>
  new Promise<ProxyStats>((resolve, reject) => {
    const req = http.get(`http://${urlHost(podIP)}:${port}/stats`, { agent: false, headers: { Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 1 << 20) req.destroy(new Error('/stats answer too large'));
        else chunks.push(c);
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`/stats answered ${res.statusCode}`));
        try {
          const s = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ProxyStats;
          if (typeof s !== 'object' || s === null || typeof s.clientConnections !== 'number' || typeof s.pool !== 'object') {
            return reject(new Error('/stats is not a dbproxy stats document'));
          }
          resolve(s);
        } catch (e) {
          reject(new Error(`/stats is not JSON: ${(e as Error).message}`));
        }
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`/stats timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
