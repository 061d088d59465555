// `make demo`: the whole product on one machine, with no Docker and no cloud. Starts a PostgreSQL
// primary and standby, a real Kubernetes control plane (hack/controlplane) and the local pod runner
// (hack/podRunner, standing in for kubelets), installs the operator with the Helm chart, applies a
// sample DatabaseProxy and its Secret, waits for Ready, and prints a psql connection string that
// works and `kubectl get dbp`. Stays up until Ctrl-C, then removes everything it started.
import { join } from 'node:path';
import { startControlPlane, type ControlPlane } from '../controlplane/controlPlane.js';
import type { PodRunner } from '../podRunner/podRunner.js';
import { installOperator, kubectl, kubectlOk, runCommand, sampleManifests, startDatabasePair, startPodRunner, type DatabasePair } from './localStack.js';

const OPERATOR_NS = 'dbproxy-system';
const APP_NS = 'demo';
const NAME = 'orders';

const say = (m: string): void => void process.stderr.write(`[demo] ${m}\n`);

async function main(): Promise<void> {
  const primaryPort = Number(process.env.DEMO_PRIMARY_PORT ?? 15433);
  const standbyPort = Number(process.env.DEMO_STANDBY_PORT ?? 15434);
  let db: DatabasePair | undefined;
  let cp: ControlPlane | undefined;
  let runner: PodRunner | undefined;
  let cleaning = false;
  const cleanup = async (code: number): Promise<never> => {
    if (!cleaning) {
      cleaning = true;
      say('cleaning up');
      await runner?.stop().catch(() => {});
      await cp?.stop().catch(() => {});
      db?.stop();
    }
    process.exit(code);
  };
  process.on('SIGINT', () => void cleanup(0));
  process.on('SIGTERM', () => void cleanup(0));

  try {
    say(`PostgreSQL primary on 127.0.0.1:${primaryPort}, streaming standby on 127.0.0.1:${standbyPort}`);
    db = startDatabasePair({ primaryPort, standbyPort });
    say('control plane (first run builds Kubernetes from Go modules: about 11 minutes on 2 cores; cached afterwards)');
    cp = await startControlPlane({ log: (m) => say(m) });
    runner = await startPodRunner(cp, [OPERATOR_NS, APP_NS], (m) => say(`pod runner: ${m}`));
    say('installing the operator with helm (charts/dbproxy)');
    await installOperator(cp, { release: 'dbproxy', namespace: OPERATOR_NS, installCrds: true });
    await kubectlOk(cp, ['create', 'namespace', APP_NS]);
    const manifests = sampleManifests({ namespace: APP_NS, name: NAME, db });
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
    const get = await kubectlOk(cp, ['get', 'dbp', '-n', APP_NS]);
    const kubectlBin = join(cp.binDir, 'kubectl');
    process.stdout.write(
      [
        '',
        `dbproxy is running. ${check.stdout.trim()}.`,
        '',
        `  psql '${url}'`,
        '',
        `(${ip}:5432 stands in for ${NAME}.${APP_NS}.svc:5432: the pod runner forwards it to the ready proxy pods.)`,
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
        'Ctrl-C stops everything.',
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
