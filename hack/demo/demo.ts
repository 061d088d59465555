// `make demo`: the whole product on one machine, with no Docker and no cloud. Starts a PostgreSQL
// primary and standby, a real Kubernetes control plane (hack/controlplane) and the local pod runner
// (hack/podRunner, standing in for kubelets), installs the operator with the Helm chart, applies a
// sample DatabaseProxy and its Secret, waits for Ready, and prints psql connection strings that
// work (the main endpoint, and the read-only one to the standby) and `kubectl get dbp`. Stays up until Ctrl-C, then removes everything it started, whatever
// the user did meanwhile (the suggested failover included): see leftovers.ts.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../controlplane/controlPlane.js';
import type { PodRunner } from '../podRunner/podRunner.js';
import { cleanUp, defaultStateFile, stopPostgresAt, sweepLeftovers, writeState, type DemoState } from './leftovers.js';
import { installOperator, kubectl, kubectlOk, runCommand, sampleManifests, startDatabasePair, startPodRunner, type DatabasePair } from './localStack.js';

const OPERATOR_NS = 'dbproxy-system';
const APP_NS = 'demo';
const NAME = 'orders';

const say = (m: string): void => void process.stderr.write(`[demo] ${m}\n`);

async function main(): Promise<void> {
  const primaryPort = Number(process.env.DEMO_PRIMARY_PORT ?? 15433);
  const standbyPort = Number(process.env.DEMO_STANDBY_PORT ?? 15434);
  const stateFile = process.env.DEMO_STATE_FILE ?? defaultStateFile();
  sweepLeftovers(stateFile, say);
  // Everything that could outlive this process, recorded as it starts (leftovers.ts).
  const state: DemoState = { pid: process.pid, dataDirs: [], dirs: [] };
  const record = (o: Partial<Pick<DemoState, 'dataDirs' | 'dirs'>>): void => {
    state.dataDirs.push(...(o.dataDirs ?? []));
    state.dirs.push(...(o.dirs ?? []));
    writeState(stateFile, state);
  };
  record({});
  let db: DatabasePair | undefined;
  let cp: ControlPlane | undefined;
  let runner: PodRunner | undefined;
  let cleaning: Promise<never> | undefined;
  const cleanup = (code: number): Promise<never> =>
    (cleaning ??= (async (): Promise<never> => {
      say('cleaning up');
      // The databases first: they are what outlives us (pg_ctl detached them from this process).
      for (const d of state.dataDirs) stopPostgresAt(d);
      await runner?.stop().catch((e: Error) => say(`stopping the pod runner: ${e.message}`));
      await cp?.stop().catch((e: Error) => say(`stopping the control plane: ${e.message}`));
      cleanUp(state, say);
      rmSync(stateFile, { force: true });
      say('done: every process and folder the demo started is gone');
      process.exit(code);
    })());
  // Ctrl-C reaches the whole foreground process group: npx forwards it once more, and make, and
  // impatient users press it again. Any further signal must not cut the cleanup short.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (cleaning) say(`${signal}: still cleaning up, one moment`);
      else void cleanup(0);
    });
  }
  process.on('uncaughtException', (e) => {
    say(`failed: ${e.stack ?? e.message}`);
    void cleanup(1);
  });
  // Last resort when the process exits any other way: the databases and folders, synchronously.
  process.on('exit', () => cleanUp(state));

  try {
    say(`PostgreSQL primary on 127.0.0.1:${primaryPort}, streaming standby on 127.0.0.1:${standbyPort}`);
    db = startDatabasePair({ primaryPort, standbyPort });
    record({ dataDirs: [db.primary.dataDir, db.standby.dataDir], dirs: [db.primary.socketDir, db.standby.socketDir] });
    say('control plane (first run builds Kubernetes from Go modules: about 11 minutes on 2 cores; cached afterwards)');
    cp = await startControlPlane({ log: (m) => say(m) });
    record({ dirs: [cp.dir] });
    runner = await startPodRunner(cp, [OPERATOR_NS, APP_NS], (m) => say(`pod runner: ${m}`));
    record({ dirs: [runner.dir] });
    say('installing the operator with helm (charts/dbproxy)');
    await installOperator(cp, { release: 'dbproxy', namespace: OPERATOR_NS, installCrds: true });
    await kubectlOk(cp, ['create', 'namespace', APP_NS]);
    const manifests = sampleManifests({ namespace: APP_NS, name: NAME, db, readers: { enabled: true } });
    say(`applying the sample DatabaseProxy:\n${manifests}`);
    await kubectlOk(cp, ['apply', '-f', '-'], manifests);
    say('waiting for Ready');
    const wait = await kubectl(cp, ['wait', `dbp/${NAME}`, '-n', APP_NS, '--for=condition=Ready', '--timeout=180s']);
    if (wait.code !== 0) throw new Error(`DatabaseProxy did not become Ready: ${wait.stderr}\n${await kubectl(cp, ['describe', 'dbp', NAME, '-n', APP_NS]).then((r) => r.stdout)}`);

    const ip = runner.serviceIp(APP_NS, NAME);
    if (!ip) throw new Error('the pod runner has no address for the Service');
    const url = `postgresql://${db.user.name}:${db.user.password}@${ip}:5432/postgres`;
    // Prove the string works before printing it.
    const check = await runCommand(join(db.primary.bindir, 'psql'), [url, '-X', '-A', '-t', '-c', "SELECT 'connected through dbproxy to ' || inet_server_port()"]);
    if (check.code !== 0) throw new Error(`psql through the proxy failed: ${check.stderr}`);
    // The read-only endpoint: Ready is about the main one, so wait for the standby to be in rotation.
    const roIp = runner.serviceIp(APP_NS, `${NAME}-ro`);
    if (!roIp) throw new Error('the pod runner has no address for the read-only Service');
    const roUrl = `postgresql://${db.user.name}:${db.user.password}@${roIp}:5432/postgres`;
    const roWait = await kubectl(cp, ['wait', `dbp/${NAME}`, '-n', APP_NS, '--for=condition=ReadersAvailable', '--timeout=60s']);
    if (roWait.code !== 0) throw new Error(`the read-only endpoint has no standby in rotation: ${roWait.stderr}`);
    const roCheck = await runCommand(join(db.primary.bindir, 'psql'), [roUrl, '-X', '-A', '-t', '-c', "SELECT 'read-only, from the standby on port ' || inet_server_port() WHERE pg_is_in_recovery()"]);
    if (roCheck.code !== 0 || !roCheck.stdout.trim()) throw new Error(`psql through the read-only endpoint failed: ${roCheck.stderr || 'not a standby'}`);
    const get = await kubectlOk(cp, ['get', 'dbp', '-n', APP_NS, '-o', 'wide']);
    const kubectlBin = join(cp.binDir, 'kubectl');
    process.stdout.write(
      [
        '',
        `dbproxy is running. ${check.stdout.trim()}.`,
        '',
        `  psql '${url}'`,
        '',
        `Read-only (${roCheck.stdout.trim()}; writes get 25006):`,
        '',
        `  psql '${roUrl}'`,
        '',
        `(${ip}:5432 and ${roIp}:5432 stand in for ${NAME}.${APP_NS}.svc:5432 and ${NAME}-ro.${APP_NS}.svc:5432: the pod runner forwards them to the ready proxy pods.)`,
        '',
        get.trimEnd(),
        '',
        'Explore:',
        `  export KUBECONFIG=${cp.kubeconfigPath}`,
        `  ${kubectlBin} describe dbp ${NAME} -n ${APP_NS}`,
        `  ${kubectlBin} scale dbp ${NAME} -n ${APP_NS} --replicas=3`,
        `Fail over: stop the primary, promote the standby; the proxies follow the new writer:`,
        `  su postgres -c '${join(db.primary.bindir, 'pg_ctl')} -D ${db.primary.dataDir} -m immediate stop'`,
        `  su postgres -c '${join(db.primary.bindir, 'pg_ctl')} -D ${db.standby.dataDir} promote'`,
        '',
        `Control plane logs: ${cp.dir}; pod logs: ${runner.dir}`,
        'Ctrl-C stops everything and removes these folders, whatever was done meanwhile.',
        '',
      ].join('\n'),
    );
    if (process.env.DEMO_EXIT_WHEN_READY === '1') await cleanup(0);
    await new Promise(() => {}); // until Ctrl-C
  } catch (e) {
    say(`failed: ${(e as Error).message}`);
    say(`logs: ${cp ? join(cp.dir, '*.log') : '(no control plane)'}; pod logs under ${runner?.dir ?? '(no pod runner)'}`);
    await cleanup(1);
  }
}

void main();
