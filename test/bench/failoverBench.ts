// `make bench`, failover part: client-visible unavailability when the primary dies and the
// standby is promoted, measured through a dbproxy process (its own event loop, as in a pod).
// Each run: a fresh primary with a synchronous standby, 8 clients writing short transactions,
// an immediate stop of the primary, promotion after BENCH_PROMOTE_DELAY_MS, and the clock.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort, USERS } from '../support/harness.js';
import { runFailover, startReplicatedPair, type FailoverOutcome } from '../support/failoverScenario.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const runs = Number(process.env.BENCH_FAILOVERS ?? 3);
const promoteDelayMs = Number(process.env.BENCH_PROMOTE_DELAY_MS ?? 500);

async function startProxyProcess(targets: string[]): Promise<{ port: number; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-failover-bench-'));
  const users = USERS.map((u) => {
    const passwordFile = join(dir, u.name);
    writeFileSync(passwordFile, u.password);
    return { name: u.name, passwordFile };
  });
  const port = await freePort();
  const adminPort = await freePort();
  const config = {
    listen: `127.0.0.1:${port}`,
    adminListen: `127.0.0.1:${adminPort}`,
    targets,
    users,
    pool: { maxConnectionsPercent: 30, borrowTimeout: '30s' },
    healthCheck: { interval: '1s' },
    logLevel: process.env.BENCH_PROXY_LOG_LEVEL ?? 'warn',
  };
  writeFileSync(join(dir, 'config.yaml'), stringify(config));
  const { openSync } = await import('node:fs');
  const logFile = join(dir, 'dbproxy.log');
  const child = spawn(process.execPath, [join(repoRoot, 'dist/proxy/cli/dbproxy.js'), 'proxy', '--config', join(dir, 'config.yaml')], { stdio: ['ignore', openSync(logFile, 'a'), 'inherit'] });
  process.stderr.write(`dbproxy log: ${logFile}\n`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error('dbproxy did not become ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function main(): Promise<number> {
  const outcomes: FailoverOutcome[] = [];
  for (let i = 0; i < runs; i++) {
    const pair = await startReplicatedPair();
    const proxy = await startProxyProcess([`127.0.0.1:${pair.primary.port}`, `127.0.0.1:${pair.standby.port}`]);
    try {
      const o = await runFailover({ proxyPort: proxy.port, pair, clients: 8, warmupMs: 1500, promoteDelayMs, commitsAfter: 20 });
      outcomes.push(o);
      process.stderr.write(`failover run ${i + 1}/${runs}: ${o.downFromPromotionMs} ms after promotion issued (PostgreSQL promoting: ${o.promotionMs} ms), ${o.downFromDeathMs} ms after the primary died, longest client gap ${o.longestClientGapMs} ms, ${o.missing.length} lost, ${o.reconnects} reconnects\n`);
    } finally {
      await proxy.stop();
      pair.destroy();
    }
  }
  const row = (o: FailoverOutcome, i: number): string =>
    `| ${i + 1} | ${o.downFromPromotionMs} | ${o.promotionMs} | ${o.downFromDeathMs} | ${o.longestClientGapMs} | ${o.acknowledged} | ${o.errors} (${Object.entries(o.errorCodes).map(([k, v]) => `${k}×${v}`).join(', ') || '-'}) | ${o.missing.length} | ${o.reconnects} |`;
  const worst = (f: (o: FailoverOutcome) => number): number => Math.max(...outcomes.map(f));
  const md = [
    `### Failover (PostgreSQL 15 streaming replication, synchronous standby; ${runs} runs; ${cpus().length} CPUs)`,
    '',
    `8 clients through one dbproxy process write short transactions; the primary is stopped in immediate mode and the standby promoted ${promoteDelayMs} ms later. Health checks every 1 s, every 100 ms once the writer fails a check.`,
    '',
    '| run | first commit after promotion issued (ms) | of which PostgreSQL promoting (ms) | after the primary died (ms) | longest client gap (ms) | commits acknowledged | errors (SQLSTATE) | acknowledged but lost | reconnects |',
    '|---:|---:|---:|---:|---:|---:|---|---:|---:|',
    ...outcomes.map(row),
    '',
    `Worst: ${worst((o) => o.downFromPromotionMs)} ms after promotion (target: under 2000 ms), ${worst((o) => o.downFromDeathMs)} ms after the primary died (includes the ${promoteDelayMs} ms before promotion).`,
    '',
  ].join('\n');
  mkdirSync(join(repoRoot, '.tmp'), { recursive: true });
  writeFileSync(join(repoRoot, '.tmp', 'failover-results.md'), md);
  process.stdout.write(`\n${md}\n`);
  return outcomes.every((o) => o.missing.length === 0 && o.reconnects === 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`failover bench failed: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
