// `make demo` cleans up after itself whatever the user did meanwhile: the demo as a user runs it
// (its own control plane, pod runner, operator from the chart, PostgreSQL primary and standby),
// the failover it suggests typed in as printed (primary stopped, standby promoted), then Ctrl-C as
// a terminal sends it (SIGINT to the whole process group, and once more, as npx forwards it).
// Afterwards no process and no folder the demo started is left. And a demo killed outright
// (SIGKILL) is cleaned up after by the next one.
import { jest } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { startPostgres, startStandby } from '../../hack/postgres.js';
import { runningPostmaster, sweepLeftovers, writeState } from '../../hack/demo/leftovers.js';
import { eventually, freePort } from '../support/harness.js';

jest.setTimeout(900_000);

const DEMO = resolve('dist/hack/demo/demo.js');

/** Processes whose command line mentions `path`. */
function processesUsing(path: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(path) && Number(pid) !== process.pid) out.push(`${pid}: ${cmd.trim()}`);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

const listening = (port: number): Promise<boolean> =>
  new Promise((r) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      r(true);
    });
    s.on('error', () => r(false));
  });

test('Ctrl-C after the suggested failover stops every process and removes every folder the demo started', async () => {
  if (!existsSync(DEMO)) throw new Error(`${DEMO} is missing: run npm run build first`);
  const stateDir = mkdtempSync(join(tmpdir(), 'dbproxy-demo-state-'));
  const stateFile = join(stateDir, 'state.json');
  const [primaryPort, standbyPort] = [await freePort(), await freePort()];
  // Its own process group, as a terminal gives a foreground job: Ctrl-C signals the whole group.
  const demo = spawn(process.execPath, [DEMO], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DEMO_PRIMARY_PORT: String(primaryPort), DEMO_STANDBY_PORT: String(standbyPort), DEMO_STATE_FILE: stateFile },
  });
  let stdout = '';
  let stderr = '';
  demo.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  demo.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)));
  try {
    await eventually(() => {
      if (demo.exitCode !== null) throw new Error(`the demo exited early (${demo.exitCode}): ${stderr.slice(-3000)}`);
      return stdout.includes('Ctrl-C stops everything');
    }, 'the demo to be ready', 600_000);

    // What the demo started, as it tells the user.
    const failover = stdout.split('\n').filter((l) => l.startsWith('  su postgres -c '));
    expect(failover).toHaveLength(2);
    const dataDirs = failover.map((l) => / -D (\S+) /.exec(l)![1]!);
    const [, cpDir, podsDir] = /Control plane logs: (\S+); pod logs: (\S+)/.exec(stdout)!;
    const folders = [...dataDirs.map((d) => dirname(d)), cpDir!, podsDir!];
    for (const f of folders) expect([f, existsSync(f)]).toEqual([f, true]);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toMatchObject({ pid: demo.pid, dataDirs });

    // The connection strings it prints work: the first to the primary, the read-only one to the standby.
    const urls = stdout.split('\n').filter((l) => l.startsWith("  psql '")).map((l) => /'([^']+)'/.exec(l)![1]!);
    expect(urls).toHaveLength(2);
    const inRecovery = (url: string) => spawnSync('bash', ['-c', `su postgres -c "psql '${url}' -XAtc 'SELECT pg_is_in_recovery()'"`], { encoding: 'utf8' }).stdout.trim();
    expect(urls.map(inRecovery)).toEqual(['f', 't']);

    // The suggested failover, pasted as printed: the primary stopped, the standby promoted.
    for (const line of failover) {
      const r = spawnSync('bash', ['-c', line.trim()], { encoding: 'utf8' });
      expect([line, r.status, r.stderr]).toEqual([line, 0, expect.any(String)]);
    }
    expect(runningPostmaster(dataDirs[0]!)).toBeUndefined();
    expect(runningPostmaster(dataDirs[1]!)).toBeDefined();
    await eventually(() => spawnSync('bash', ['-c', `su postgres -c "psql -h ${dirname(dataDirs[1]!)} -p ${standbyPort} -Atc 'SELECT pg_is_in_recovery()'"`], { encoding: 'utf8' }).stdout.trim() === 'f', 'the standby to be promoted', 60_000);

    // Ctrl-C: SIGINT to the process group, and again to the demo (npx forwards it, users press twice).
    process.kill(-demo.pid!, 'SIGINT');
    await new Promise((r) => setTimeout(r, 200));
    process.kill(demo.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    expect(stderr).toContain('still cleaning up');

    for (const f of folders) expect([f, existsSync(f)]).toEqual([f, false]);
    for (const f of folders) expect([f, processesUsing(f)]).toEqual([f, []]);
    expect([await listening(primaryPort), await listening(standbyPort)]).toEqual([false, false]);
    expect(existsSync(stateFile)).toBe(false);
  } finally {
    if (demo.exitCode === null) {
      try {
        process.kill(-demo.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('a demo killed with SIGKILL is cleaned up after by the next one: a promoted standby and both folders', async () => {
  const primary = startPostgres({ port: await freePort(), users: [{ name: 'app', password: 'app' }], settings: { wal_level: 'replica', max_wal_senders: 5 } });
  const standby = startStandby(primary, { port: await freePort() });
  standby.promote();
  const stateDir = mkdtempSync(join(tmpdir(), 'dbproxy-demo-state-'));
  const stateFile = join(stateDir, 'state.json');
  const gone = spawnSync('true').pid!; // a pid that no longer runs: the killed demo
  const extra = mkdtempSync(join(tmpdir(), 'dbproxy-demo-cp-'));
  writeState(stateFile, { pid: gone, dataDirs: [primary.dataDir, standby.dataDir], dirs: [primary.socketDir, standby.socketDir, extra] });
  const logs: string[] = [];
  try {
    sweepLeftovers(stateFile, (m) => logs.push(m));
    expect(logs[0]).toMatch(/^cleaning up after an earlier demo that did not exit cleanly \(pid \d+\)$/);
    for (const d of [primary.socketDir, standby.socketDir, extra]) expect([d, existsSync(d)]).toEqual([d, false]);
    expect([await listening(primary.port), await listening(standby.port)]).toEqual([false, false]);
    expect(processesUsing(primary.dataDir)).toEqual([]);
    expect(processesUsing(standby.dataDir)).toEqual([]);
    expect(existsSync(stateFile)).toBe(false);
  } finally {
    primary.destroy();
    standby.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

test('a state file of a demo that still runs is left alone', () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'dbproxy-demo-state-'));
  const stateFile = join(stateDir, 'state.json');
  const kept = mkdtempSync(join(tmpdir(), 'dbproxy-demo-kept-'));
  try {
    writeState(stateFile, { pid: process.ppid, dataDirs: [], dirs: [kept] });
    expect(() => sweepLeftovers(stateFile, () => {})).toThrow(/another demo \(pid \d+\) is running/);
    expect(existsSync(kept)).toBe(true);
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(kept, { recursive: true, force: true });
  }
});
