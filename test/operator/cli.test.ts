// `dbproxy operator` as a real child process (built output: `npm run build` first, as make test
// does), under the chart's RBAC: flags, pino JSON logs, /readyz and /metrics, reconciling, and a
// SIGTERM that exits 0 and releases the Lease.
import { jest } from '@jest/globals';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { run } from '../support/harness.js';
import { OPERATOR_NAMESPACE, createNamespace, deleteNamespace, getJson, applyDatabaseProxy, sharedCluster, waitFor, type TestCluster } from './support/cluster.js';

jest.setTimeout(120_000);

const DBPROXY = resolve('dist/proxy/cli/dbproxy.js');
let cluster: TestCluster;
let ns: string;
let child: ChildProcess | undefined;

beforeAll(async () => {
  if (!existsSync(DBPROXY)) throw new Error(`${DBPROXY} is missing: run \`npm run build\` (make test does) before this test`);
  cluster = sharedCluster();
  ns = await createNamespace(cluster, 'op-cli');
});

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  if (cluster && ns) {
    await deleteNamespace(cluster, ns);
    await cluster.kubectl(['delete', 'lease', `cli-${ns}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found']);
  }
});

test('dbproxy operator --help prints the flags', async () => {
  const r = await run(process.execPath, [DBPROXY, 'operator', '--help']);
  expect(r.code).toBe(0);
  expect(r.stderr).toBe('');
  expect(r.stdout).toContain('--leader-election-namespace');
  expect(r.stdout).toContain('--status-interval');
});

test.each([
  [[], /--default-image \(or DBPROXY_DEFAULT_IMAGE\) is required/],
  [['--default-image=x', '--status-interval=soon'], /--status-interval: invalid duration "soon"/],
  [['--default-image=x', '--lease-duration=1s'], /--lease-duration must exceed --renew-deadline/],
  [['--default-image=x', '--frobnicate'], /Unknown option '--frobnicate'/],
])('bad flags %j exit 2 with a message', async (args, message) => {
  const r = await run(process.execPath, [DBPROXY, 'operator', ...args], { DBPROXY_DEFAULT_IMAGE: '' });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).toContain('usage: dbproxy operator [flags]');
  expect(r.stdout).toBe('');
});

test('runs, leads, reconciles, serves /readyz and /metrics, and stops on SIGTERM releasing the Lease', async () => {
  const lease = `cli-${ns}`;
  const lines: string[] = [];
  child = spawn(
    process.execPath,
    [
      DBPROXY,
      'operator',
      `--kubeconfig=${cluster.operatorKubeconfigPath}`,
      `--namespace=${ns}`,
      '--default-image=registry.example/dbproxy:cli',
      `--leader-election-namespace=${OPERATOR_NAMESPACE}`,
      `--leader-election-id=${lease}`,
      '--lease-duration=3s',
      '--renew-deadline=2s',
      '--retry-period=250ms',
      '--status-interval=500ms',
      '--http-listen=127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let buffered = '';
  child.stdout!.on('data', (d: Buffer) => {
    buffered += d.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts);
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)));

  const logs = () => lines.map((l) => JSON.parse(l) as Record<string, any>);
  const starting = await waitFor('the starting log line', () => logs().find((l) => l.msg === 'dbproxy operator starting'), 20_000);
  expect(starting).toMatchObject({ level: 30, name: 'dbproxy-operator', namespace: ns, leaderElection: `${OPERATOR_NAMESPACE}/${lease}` });
  const base = `http://127.0.0.1:${starting.http}`;
  await waitFor('/readyz as leader', async () => {
    const r = await fetch(`${base}/readyz`);
    return r.status === 200 && (await r.text()).includes('leader; caches synced');
  });

  await applyDatabaseProxy(cluster, ns, 'cli', { target: { host: 'db.example.internal' }, users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }] });
  const dep = await waitFor('the Deployment', () => getJson(cluster, ['deployment', 'cli', '-n', ns]));
  expect(dep.spec.template.spec.containers[0].image).toBe('registry.example/dbproxy:cli');
  const metrics = await waitFor('a reconcile in /metrics', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    return /dbproxy_operator_reconcile_total\{result="success"\} [1-9]/.test(text) ? text : undefined;
  });
  expect(metrics).toContain('dbproxy_operator_process_cpu_seconds_total'); // process metrics in the CLI
  expect(logs().some((l) => l.msg === 'event' && l.reason === 'Created')).toBe(true);

  child.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(stderr).toBe('');
  const leaseObj = await getJson(cluster, ['lease', lease, '-n', OPERATOR_NAMESPACE]);
  expect(leaseObj!.spec.holderIdentity ?? '').toBe('');
  expect(logs().map((l) => l.msg)).toEqual(expect.arrayContaining(['started leading', 'stopped leading', 'dbproxy operator stopped']));
});
