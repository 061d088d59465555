// Resident memory of one dbproxy process holding N idle client connections (default 10,000):
// `node dist/test/bench/idleMemory.js [N]`. Prints VmRSS before, after the logins and after a
// garbage collection settles. `make bench` measures the same in its idle phase.
import { join } from 'node:path';
import { startPostgres } from '../../hack/postgres.js';
import { repoRoot } from '../../hack/repoRoot.js';
import { freePort, startDbproxy } from './dbproxyProcess.js';
import { openIdleClients } from './idleClients.js';

const USER = { name: 'bench', password: 'bench-secret-1' };
const mib = (n: number): string => `${(n / 1048576).toFixed(0)} MiB`;

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 10_000);
  const pg = startPostgres({ port: await freePort(), users: [{ ...USER, auth: 'scram-sha-256' }], maxConnections: 100 });
  const proxy = await startDbproxy({ cli: join(repoRoot(), 'dist/proxy/cli/dbproxy.js'), targetPort: pg.port, users: [USER], maxConnectionsPercent: 11, maxClientConnections: count + 100 });
  try {
    await new Promise((r) => setTimeout(r, 1000));
    const before = proxy.rss();
    const res = await openIdleClients({ port: proxy.port, user: USER.name, password: USER.password, database: 'postgres', count, concurrency: 64, deadline: Date.now() + 300_000 });
    const opened = proxy.rss();
    await new Promise((r) => setTimeout(r, 5000));
    const settled = proxy.rss();
    process.stdout.write(`idle clients: ${res.sockets.length} open (${res.failed} failed) in ${(res.elapsedMs / 1000).toFixed(1)} s; dbproxy VmRSS ${mib(before)} before, ${mib(opened)} with them, ${mib(settled)} 5 s later (${((settled - before) / Math.max(1, res.sockets.length) / 1024).toFixed(1)} KiB per client)\n`);
    for (const s of res.sockets) s.destroy();
  } finally {
    await proxy.stop();
    pg.destroy();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
