// The read-only endpoint end to end (issue 12): `kubectl apply` of a DatabaseProxy with
// spec.readers over a primary and its streaming standby, on the local pod runner with the operator
// installed from the chart. psql through <name>-ro reads from the standby; a write through it gets
// PostgreSQL's own 25006; `kubectl get dbp` shows the standby in rotation.
import { jest } from '@jest/globals';
import { join } from 'node:path';
import pg from 'pg';
import { type DatabasePair, runCommand, sampleManifests, startDatabasePair } from '../../hack/demo/localStack.js';
import { freePort } from '../support/harness.js';
import { getJson, kubectlOk, waitFor, type TestCluster } from '../operator/support/cluster.js';
import { startE2eStack, type E2eStack } from '../support/e2eStack.js';

jest.setTimeout(600_000);

const NAME = 'reports';
let stack: E2eStack | undefined;
let cluster: TestCluster;
let appNs: string;
let db: DatabasePair | undefined;

interface ReadersStatusView {
  endpoint?: string;
  standbys?: number;
  available?: number;
  targets?: Array<{ endpoint: string; available: boolean }>;
}
interface DbpView {
  metadata: { generation: number };
  status?: { observedGeneration?: number; readers?: ReadersStatusView; conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
}

beforeAll(async () => {
  db = startDatabasePair({ primaryPort: await freePort(), standbyPort: await freePort(), maxConnections: 60 });
  db.primary.psql(`CREATE TABLE public.orders (id int PRIMARY KEY); INSERT INTO public.orders SELECT generate_series(1, 10); GRANT ALL ON public.orders TO ${db.user.name};`);
  stack = await startE2eStack({ prefix: 'readers' });
  ({ cluster, appNamespace: appNs } = stack);
  await kubectlOk(cluster, ['apply', '-f', '-'], sampleManifests({ namespace: appNs, name: NAME, db, replicas: 1, readers: { enabled: true } }));
  await kubectlOk(cluster, ['wait', `dbp/${NAME}`, '-n', appNs, '--for=condition=Ready', '--timeout=180s']);
});

afterAll(async () => {
  await stack?.stop();
  db?.stop();
});

test('psql through <name>-ro reads from the standby, a write gets 25006, and kubectl get dbp shows the standby', async () => {
  const roIp = await waitFor('the pod runner to serve the read-only Service', async () => stack!.runner.serviceIp(appNs, `${NAME}-ro`));
  const url = `postgresql://${db!.user.name}:${db!.user.password}@${roIp}:5432/postgres`;
  // Once the pod has the standby in rotation (its first health checks), reads land there.
  const dbp = await waitFor(
    'ReadersAvailable=True with the standby',
    async () => {
      const o = await getJson<DbpView>(cluster, ['dbp', NAME, '-n', appNs]);
      const c = o?.status?.conditions?.find((x) => x.type === 'ReadersAvailable');
      return c?.status === 'True' && o!.status!.observedGeneration === o!.metadata.generation ? o : undefined;
    },
    120_000,
    250,
  );
  expect(dbp.status!.readers).toMatchObject({
    endpoint: `${NAME}-ro.${appNs}.svc:5432`,
    standbys: 1,
    available: 1,
    targets: [{ endpoint: `127.0.0.1:${db!.standby.port}`, available: true }],
  });
  expect(dbp.status!.conditions!.find((c) => c.type === 'ReadersAvailable')).toMatchObject({ reason: 'StandbysInRotation', message: expect.stringMatching(/^1\/1 standbys in rotation on every ready pod/) });

  const psql = await runCommand(join(db!.primary.bindir, 'psql'), [url, '-X', '-A', '-t', '-c', 'SELECT pg_is_in_recovery(), inet_server_port(), count(*) FROM public.orders']);
  expect([psql.code, psql.stderr]).toEqual([0, '']);
  expect(psql.stdout.trim()).toBe(`t|${db!.standby.port}|10`);

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    expect((await client.query('SELECT pg_is_in_recovery() AS r')).rows[0].r).toBe(true);
    const write = await client.query('INSERT INTO public.orders VALUES (11)').then(
      () => undefined,
      (e: unknown) => e as { code?: string },
    );
    expect(write?.code).toBe('25006');
    // The session goes on after the refused write.
    expect((await client.query('SELECT count(*)::int AS n FROM public.orders')).rows[0].n).toBe(10);
  } finally {
    await client.end();
  }
  expect(db!.primary.psql('SELECT count(*) FROM public.orders').trim()).toBe('10');

  const wide = await kubectlOk(cluster, ['get', 'dbp', NAME, '-n', appNs, '-o', 'wide']);
  const [header, row] = wide.trim().split('\n').map((l) => l.split(/\s+/));
  expect(row![header!.indexOf('READERS')]).toBe('1');
});
