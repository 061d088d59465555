// The CRD as the real API server enforces it: invalid specs are refused with messages a person can
// act on (OpenAPI validation and CEL rules), defaults are filled in, `kubectl explain` teaches
// the API, and `kubectl get dbp` shows the printer columns. No operator needed.
import { createNamespace, databaseProxyManifest, deleteNamespace, getJson, kubectlOk, sharedCluster, type TestCluster } from './support/cluster.js';

let cluster: TestCluster;
let ns: string;

beforeAll(async () => {
  cluster = sharedCluster();
  ns = await createNamespace(cluster, 'op-validation');
});

afterAll(async () => {
  if (cluster && ns) await deleteNamespace(cluster, ns);
});

const baseSpec = {
  target: { host: 'db.example.internal' },
  users: [{ name: 'app', passwordSecretRef: { name: 'app-password' } }],
};

const ROLE = 'arn:aws:iam::123456789012:role/orders-api';

const proxy = (name: string, spec: Record<string, unknown>): string => databaseProxyManifest(ns, name, spec);

const NO_PASSWORD = 'users[].passwordSecretRef may be left out only when no password is used for that user';

async function applyExpectingRefusal(name: string, spec: Record<string, unknown>): Promise<string> {
  const r = await cluster.kubectl(['apply', '-f', '-'], { input: proxy(name, spec) });
  expect(r.code).not.toBe(0);
  return r.stderr;
}

describe('invalid specs are refused by the API server with readable messages', () => {
  test.each<[string, Record<string, unknown>, string[]]>([
    [
      'both backend auths',
      { ...baseSpec, backendAuth: { password: {}, iam: { region: 'eu-west-1' } } },
      ['spec.backendAuth', 'set exactly one of backendAuth.password or backendAuth.iam'],
    ],
    [
      'maxIdleConnectionsPercent above maxConnectionsPercent',
      { ...baseSpec, pool: { maxConnectionsPercent: 20, maxIdleConnectionsPercent: 50 } },
      ['spec.pool.maxIdleConnectionsPercent', 'pool.maxIdleConnectionsPercent must not exceed pool.maxConnectionsPercent'],
    ],
    [
      'an unknown client auth method',
      { ...baseSpec, clientAuth: { method: 'plain' } },
      ['spec.clientAuth.method', 'Unsupported value: "plain"', '"scram-sha-256"', '"md5"'],
    ],
    ['both target.endpoints and target.host', { ...baseSpec, target: { host: 'db', endpoints: ['db-1:5432'] } }, ['set exactly one of target.endpoints or target.host']],
    [
      'iam.roleArn and serviceAccountName',
      { ...baseSpec, iam: { roleArn: 'arn:aws:iam::123456789012:role/x' }, serviceAccountName: 'mine' },
      ['set iam.roleArn or serviceAccountName, not both'],
    ],
    ['replicas 0', { ...baseSpec, replicas: 0 }, ['spec.replicas', 'should be greater than or equal to 1']],
    ['maxConnectionsPercent 150', { ...baseSpec, pool: { maxConnectionsPercent: 150 } }, ['spec.pool.maxConnectionsPercent', 'should be less than or equal to 100']],
    ['a malformed borrowTimeout', { ...baseSpec, pool: { borrowTimeout: 'two minutes' } }, ['spec.pool.borrowTimeout', 'should match']],
    ['no users', { target: baseSpec.target }, ['spec.users', 'Required value']],
    ['requireTLS without a certificate', { ...baseSpec, tls: { requireTLS: true } }, ['spec.tls.requireTLS', 'tls.requireTLS needs tls.secretName']],
    [
      'token logins without client TLS',
      { ...baseSpec, clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } },
      ['spec.clientAuth.iamAuth', 'tokens are accepted over TLS only'],
    ],
    ['token logins without mappings', { ...baseSpec, tls: { secretName: 'tls' }, clientAuth: { iamAuth: 'REQUIRED' } }, ['spec.clientAuth.iamAuth', 'needs clientAuth.awsIam or clientAuth.serviceAccounts']],
    [
      'a mapping to a user not in spec.users',
      { ...baseSpec, tls: { secretName: 'tls' }, clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: ROLE, user: 'stranger' }] } } },
      ['spec.clientAuth.awsIam.mappings', 'every clientAuth.awsIam.mappings[].user must be one of spec.users'],
    ],
    [
      'ServiceAccount tokens without the proxy\'s own ServiceAccount',
      { ...baseSpec, tls: { secretName: 'tls' }, clientAuth: { iamAuth: 'OPTIONAL', serviceAccounts: { mappings: [{ namespace: 'shop', serviceAccount: 'api', user: 'app' }] } } },
      ['spec.serviceAccountName', 'system:auth-delegator'],
    ],
    ['IAM to the database without TLS to it', { ...baseSpec, backendAuth: { iam: { region: 'eu-west-1' } } }, ['spec.backendAuth.iam', 'backendAuth.iam needs TLS to the database']],
    ['a user without a password while passwords are used', { ...baseSpec, users: [{ name: 'app' }] }, ['spec.users', NO_PASSWORD]],
    [
      'a user without a password: a certificate to the database, but clients log in with passwords',
      { ...baseSpec, users: [{ name: 'app', backendCertificate: { secretName: 'app-db-cert' } }], tls: { backend: { mode: 'require' } } },
      ['spec.users', NO_PASSWORD],
    ],
    [
      'a user without a password: client certificates, but a password to the database',
      { ...baseSpec, users: [{ name: 'app', clientAuth: 'cert' }], tls: { secretName: 'tls', clientCaSecretRef: { name: 'client-ca' } } },
      ['spec.users', NO_PASSWORD],
    ],
    [
      // The proxy itself would run this (the password would serve client logins only, and there is
      // none), but the CRD stays strict: with OPTIONAL, clients of this user may still send a password.
      'a user without a password: IAM to the database, but tokens only OPTIONAL',
      { ...baseSpec, users: [{ name: 'app' }], backendAuth: { iam: { region: 'eu-west-1' } }, tls: { secretName: 'tls', backend: {} }, clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } },
      ['spec.users', NO_PASSWORD],
    ],
    [
      'one user without a password next to one that may go without (the rule is per user)',
      {
        ...baseSpec,
        users: [{ name: 'app', clientAuth: 'cert', backendCertificate: { secretName: 'app-db-cert' } }, { name: 'report', backendCertificate: { secretName: 'report-db-cert' } }],
        tls: { secretName: 'tls', clientCaSecretRef: { name: 'client-ca' }, backend: { mode: 'require' } },
      },
      ['spec.users', NO_PASSWORD],
    ],
    ['a client CA without client-facing TLS', { ...baseSpec, tls: { clientCaSecretRef: { name: 'client-ca' } } }, ['spec.tls.clientCaSecretRef', 'tls.clientCaSecretRef needs tls.secretName']],
    [
      'a certificate-login user without a client CA',
      { ...baseSpec, users: [{ name: 'app', clientAuth: 'cert', passwordSecretRef: { name: 'app-password' } }], tls: { secretName: 'tls' } },
      ['spec.users', 'users[].clientAuth cert needs tls.clientCaSecretRef'],
    ],
    ['an unknown users[].clientAuth', { ...baseSpec, users: [{ name: 'app', passwordSecretRef: { name: 'p' }, clientAuth: 'md5' }] }, ['spec.users[0].clientAuth', 'Unsupported value: "md5"', '"password"', '"cert"']],
    [
      'a certificate for the database without TLS to it',
      { ...baseSpec, users: [{ name: 'app', passwordSecretRef: { name: 'p' }, backendCertificate: { secretName: 'app-db-cert' } }] },
      ['spec.users', 'users[].backendCertificate needs TLS to the database'],
    ],
    [
      'a certificate for the database with backend TLS mode disable',
      { ...baseSpec, users: [{ name: 'app', passwordSecretRef: { name: 'p' }, backendCertificate: { secretName: 'app-db-cert' } }], tls: { backend: { mode: 'disable' } } },
      ['spec.users', 'users[].backendCertificate needs TLS to the database'],
    ],
    ['a certificate for the database without its Secret', { ...baseSpec, users: [{ name: 'app', passwordSecretRef: { name: 'p' }, backendCertificate: {} }], tls: { backend: {} } }, ['spec.users[0].backendCertificate.secretName', 'Required value']],
    ['a CA for backend TLS mode require', { ...baseSpec, tls: { backend: { mode: 'require', caSecretRef: { name: 'ca' } } } }, ['spec.tls.backend.caSecretRef', 'only used by mode verify-ca or verify-full']],
    ['an STS role ARN that is a session, not a role', { ...baseSpec, tls: { secretName: 'tls' }, clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: 'arn:aws:sts::123456789012:assumed-role/x/y', user: 'app' }] } } }, ['spec.clientAuth.awsIam.mappings[0].arn', 'should match']],
    ['connectTimeout 0s', { ...baseSpec, pool: { connectTimeout: '0s' } }, ['spec.pool.connectTimeout', 'pool.connectTimeout must be more than 0s']],
    ['a health check every 10ms', { ...baseSpec, healthCheck: { interval: '10ms' } }, ['spec.healthCheck.interval', 'healthCheck.interval must be at least 100ms']],
    ['a health-check user not in spec.users', { ...baseSpec, healthCheck: { user: 'monitor' } }, ['spec.healthCheck.user', 'healthCheck.user must be one of spec.users']],
    ['an admin user not in spec.users', { ...baseSpec, adminUsers: ['dba'] }, ['spec.adminUsers', 'every adminUsers entry must be one of spec.users']],
    ['a stats user not in spec.users', { ...baseSpec, statsUsers: ['grafana'] }, ['spec.statsUsers', 'every statsUsers entry must be one of spec.users']],
    ['a shutdown grace period of an hour', { ...baseSpec, shutdownGracePeriod: '1h' }, ['spec.shutdownGracePeriod', 'shutdownGracePeriod must be at most 300s']],
    ['tls.minVersion without a certificate', { ...baseSpec, tls: { minVersion: 'TLSv1.3' } }, ['spec.tls.minVersion', 'tls.minVersion is for client-facing TLS: it needs tls.secretName']],
    ['TLS 1.1', { ...baseSpec, tls: { secretName: 't', minVersion: 'TLSv1.1' } }, ['spec.tls.minVersion', 'Unsupported value: "TLSv1.1"']],
    ['a log level the proxy does not know', { ...baseSpec, logLevel: 'verbose' }, ['spec.logLevel', 'Unsupported value: "verbose"']],
    ['an env var the operator sets', { ...baseSpec, pod: { env: [{ name: 'POD_IP', value: '1.2.3.4' }] } }, ['spec.pod.env', 'pod.env may not set POD_NAME, POD_NAMESPACE, POD_IP']],
    ['an env var with value and valueFrom', { ...baseSpec, pod: { env: [{ name: 'X', value: 'a', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] } }, ['spec.pod.env[0]', 'set value or valueFrom, not both']],
    ['a parameter name with a space', { ...baseSpec, session: { untrackedParameters: ['work mem'] } }, ['spec.session.untrackedParameters[0]', 'should match']],
    ['maxPreparedStatements 0', { ...baseSpec, session: { maxPreparedStatements: 0 } }, ['spec.session.maxPreparedStatements', 'should be greater than or equal to 1']],
    ['readers without enabled', { ...baseSpec, readers: { fallbackToWriter: true } }, ['spec.readers.enabled', 'Required value']],
    ['a readers lag limit of 0s', { ...baseSpec, readers: { enabled: true, maxReplicationLag: '0s' } }, ['spec.readers.maxReplicationLag', 'readers.maxReplicationLag must be more than 0s']],
    ['a malformed readers lag limit', { ...baseSpec, readers: { enabled: true, maxReplicationLag: 'a few seconds' } }, ['spec.readers.maxReplicationLag', 'should match']],
    [
      'a readers lag limit the health checks cannot measure',
      { ...baseSpec, healthCheck: { interval: '2s' }, readers: { enabled: true, maxReplicationLag: '3s' } },
      ['spec.readers.maxReplicationLag', 'readers.maxReplicationLag must be at least twice healthCheck.interval'],
    ],
  ])('%s', async (_what, spec, messages) => {
    const stderr = await applyExpectingRefusal('bad', spec);
    expect(stderr).toContain('The DatabaseProxy "bad" is invalid');
    for (const m of messages) expect(stderr).toContain(m);
  });

  test('a name too long for its children is refused', async () => {
    const stderr = await applyExpectingRefusal('a'.repeat(57), baseSpec);
    expect(stderr).toMatch(/metadata\.name.*(Too long|may not be more than 56)/);
  });
});

test('a spec with every TLS and token-login feature is accepted, with the token defaults filled in', async () => {
  const spec = {
    ...baseSpec,
    tls: { secretName: 'orders-tls', requireTLS: true, backend: { mode: 'verify-ca', caSecretRef: { name: 'rds-ca', key: 'bundle.pem' } } },
    backendAuth: { password: { secretName: 'db-passwords' } },
    serviceAccountName: 'orders-proxy',
    clientAuth: {
      iamAuth: 'OPTIONAL',
      awsIam: { mappings: [{ arn: ROLE, user: 'app' }], stsHosts: ['sts.eu-west-1.amazonaws.com'] },
      serviceAccounts: { mappings: [{ namespace: 'shop', serviceAccount: 'orders-api', user: 'app' }] },
    },
  };
  await kubectlOk(cluster, ['apply', '-f', '-'], proxy('secured', spec));
  const dbp = await getJson(cluster, ['dbp', 'secured', '-n', ns]);
  expect(dbp!.spec.clientAuth).toEqual({ ...spec.clientAuth, method: 'scram-sha-256', serviceAccounts: { ...spec.clientAuth.serviceAccounts, audience: 'dbproxy' } });
});

describe('certificate logins', () => {
  test.each<[string, string, Record<string, unknown>]>([
    [
      'certificates on both sides: no password at all',
      'certs-both',
      { ...baseSpec, users: [{ name: 'app', clientAuth: 'cert', backendCertificate: { secretName: 'app-db-cert' } }], tls: { secretName: 'tls', clientCaSecretRef: { name: 'client-ca' }, backend: { mode: 'verify-full' } } },
    ],
    [
      'a certificate to the database, tokens only from clients: no password',
      'certs-tokens',
      {
        ...baseSpec,
        users: [{ name: 'app', backendCertificate: { secretName: 'app-db-cert' } }],
        tls: { secretName: 'tls', backend: { mode: 'require' } },
        clientAuth: { iamAuth: 'REQUIRED', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } },
      },
    ],
    [
      'client certificates, IAM to the database: no password',
      'certs-iam',
      { ...baseSpec, users: [{ name: 'app', clientAuth: 'cert' }], backendAuth: { iam: { region: 'eu-west-1' } }, tls: { secretName: 'tls', clientCaSecretRef: { name: 'client-ca' }, backend: {} } },
    ],
    [
      'tokens only, IAM to the database: no password (as before)',
      'tokens-iam',
      { ...baseSpec, users: [{ name: 'app' }], backendAuth: { iam: { region: 'eu-west-1' } }, tls: { secretName: 'tls', backend: {} }, clientAuth: { iamAuth: 'REQUIRED', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } },
    ],
    [
      'a password user next to a certificate user, the password kept for the database',
      'certs-mixed',
      {
        ...baseSpec,
        users: [
          { name: 'app', passwordSecretRef: { name: 'app-password' } },
          { name: 'batch', clientAuth: 'cert', passwordSecretRef: { name: 'batch-password' } },
          { name: 'etl', clientAuth: 'cert', backendCertificate: { secretName: 'etl-db-cert' } },
        ],
        tls: { secretName: 'tls', clientCaSecretRef: { name: 'client-ca', key: 'bundle.pem' }, backend: { mode: 'verify-ca', caSecretRef: { name: 'db-ca' } } },
      },
    ],
  ])('accepted: %s', async (_what, name, spec) => {
    await kubectlOk(cluster, ['apply', '-f', '-'], proxy(name, spec));
    const dbp = await getJson(cluster, ['dbp', name, '-n', ns]);
    expect(dbp!.spec.users).toEqual((spec.users as Array<Record<string, unknown>>).map((u) => ({ clientAuth: 'password', ...u, ...(u.passwordSecretRef ? { passwordSecretRef: { key: 'password', ...(u.passwordSecretRef as object) } } : {}) })));
  });

  test('the defaults: users log in with passwords, the client CA key is ca.crt', async () => {
    await kubectlOk(cluster, ['apply', '-f', '-'], proxy('client-ca', { ...baseSpec, tls: { secretName: 'tls', clientCaSecretRef: { name: 'client-ca' } } }));
    const dbp = await getJson(cluster, ['dbp', 'client-ca', '-n', ns]);
    expect(dbp!.spec.tls.clientCaSecretRef).toEqual({ name: 'client-ca', key: 'ca.crt' });
    expect(dbp!.spec.users).toEqual([{ name: 'app', clientAuth: 'password', passwordSecretRef: { name: 'app-password', key: 'password' } }]);
  });
});

test('spec.readers: accepted with its defaults filled in; a lag limit of twice the health-check interval is enough', async () => {
  await kubectlOk(cluster, ['apply', '-f', '-'], proxy('readers', { ...baseSpec, readers: { enabled: true } }));
  expect((await getJson(cluster, ['dbp', 'readers', '-n', ns]))!.spec.readers).toEqual({ enabled: true, maxReplicationLag: '30s', fallbackToWriter: false });
  await kubectlOk(cluster, ['apply', '-f', '-'], proxy('readers-tight', { ...baseSpec, healthCheck: { interval: '500ms' }, readers: { enabled: true, maxReplicationLag: '1s', fallbackToWriter: true } }));
  expect((await getJson(cluster, ['dbp', 'readers-tight', '-n', ns]))!.spec.readers).toEqual({ enabled: true, maxReplicationLag: '1s', fallbackToWriter: true });
  // Turned off again, the other settings may stay.
  await kubectlOk(cluster, ['apply', '-f', '-'], proxy('readers-tight', { ...baseSpec, healthCheck: { interval: '500ms' }, readers: { enabled: false, maxReplicationLag: '1s', fallbackToWriter: true } }));
});

describe('defaults', () => {
  test('the API server fills in the schema defaults (and the spec round-trips unchanged)', async () => {
    await kubectlOk(cluster, ['apply', '-f', '-'], proxy('defaults', baseSpec));
    const dbp = await getJson(cluster, ['dbp', 'defaults', '-n', ns]);
    expect(dbp!.spec).toMatchObject({
      replicas: 2,
      target: { host: 'db.example.internal', port: 5432, database: 'postgres' },
      users: [{ name: 'app', passwordSecretRef: { name: 'app-password', key: 'password' } }],
      backendAuth: { password: {} },
      clientAuth: { method: 'scram-sha-256', iamAuth: 'DISABLED' },
      pool: { maxConnectionsPercent: 90, borrowTimeout: '120s', idleClientTimeout: '1800s', maxConnectionLifetime: '3600s', idleConnectionTimeout: '60s', maxClientConnections: 10000, connectTimeout: '10s' },
      session: { trackSettings: true, maxPreparedStatements: 200 },
      healthCheck: { interval: '1s' },
      cancelRateLimit: { perSecond: 20, burst: 100, peerPerSecond: 200, peerBurst: 1000 },
      shutdownGracePeriod: '20s',
      logLevel: 'info',
      paused: false,
      service: { type: 'ClusterIP', port: 5432 },
    });
    // Re-applying the same manifest (client-side and server-side) changes nothing: no drift from defaulting (GitOps).
    await kubectlOk(cluster, ['apply', '-f', '-'], proxy('defaults', baseSpec));
    await kubectlOk(cluster, ['apply', '--server-side', '--field-manager=argocd-controller', '--force-conflicts', '-f', '-'], proxy('defaults', baseSpec));
    const after = await getJson(cluster, ['dbp', 'defaults', '-n', ns]);
    expect(after!.metadata.generation).toBe(dbp!.metadata.generation);
    expect(after!.spec).toEqual(dbp!.spec);
  });
});

test('a spec using every operations setting is accepted as written', async () => {
  const spec = {
    ...baseSpec,
    users: [
      { name: 'app', passwordSecretRef: { name: 'app-password' } },
      { name: 'dba', passwordSecretRef: { name: 'dba-password' } },
      { name: 'grafana', passwordSecretRef: { name: 'grafana-password' } },
    ],
    pool: { maxConnectionLifetime: '30m', idleConnectionTimeout: '15s', maxClientConnections: 500, connectTimeout: '3s' },
    session: { trackSettings: false, untrackedParameters: ['pg_hint_plan.enable_hint'], maxPreparedStatements: 1000 },
    healthCheck: { interval: '500ms', user: 'grafana' },
    cancelRateLimit: { perSecond: 5, burst: 10, peerPerSecond: 50, peerBurst: 100 },
    tls: { secretName: 'orders-tls', minVersion: 'TLSv1.3' },
    adminUsers: ['dba'],
    statsUsers: ['grafana'],
    shutdownGracePeriod: '5m',
    logLevel: 'debug',
    paused: true,
    pod: {
      nodeSelector: { 'kubernetes.io/arch': 'arm64' },
      imagePullSecrets: [{ name: 'registry' }],
      env: [{ name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' }, { name: 'HTTPS_PROXY', valueFrom: { configMapKeyRef: { name: 'egress', key: 'url' } } }],
      priorityClassName: 'high',
    },
  };
  await kubectlOk(cluster, ['apply', '-f', '-'], proxy('operations', spec));
  const dbp = await getJson(cluster, ['dbp', 'operations', '-n', ns]);
  expect(dbp!.spec).toMatchObject(spec);
});

describe('kubectl explain and kubectl get', () => {
  test('kubectl explain databaseproxy.spec documents every operations field', async () => {
    const flat = async (path: string) => (await kubectlOk(cluster, ['explain', path])).replace(/\s+/g, ' ');
    const spec = await flat('databaseproxy.spec');
    for (const field of ['session', 'healthCheck', 'cancelRateLimit', 'adminUsers', 'statsUsers', 'shutdownGracePeriod', 'logLevel', 'paused']) expect(spec).toContain(`${field} <`);
    expect(spec).toContain('Pause every proxy pod');
    expect(spec).toContain("terminationGracePeriodSeconds is this plus the preStop delay");
    const pool = await flat('databaseproxy.spec.pool');
    for (const field of ['maxConnectionLifetime', 'idleConnectionTimeout', 'maxClientConnections', 'connectTimeout']) expect(pool).toContain(`${field} <`);
    expect(await flat('databaseproxy.spec.session')).toContain("like PgBouncer's max_prepared_statements");
    expect(await flat('databaseproxy.spec.healthCheck')).toContain('The database is target.database');
    expect(await flat('databaseproxy.spec.tls.minVersion')).toContain('Lowest TLS version clients may use');
    const pod = await flat('databaseproxy.spec.pod');
    for (const field of ['nodeSelector', 'imagePullSecrets', 'env', 'priorityClassName', 'topologySpreadConstraints']) expect(pod).toContain(`${field} <`);
    expect(pod).toContain('when the cluster\'s nodes carry topology.kubernetes.io/zone');
    expect(await flat('databaseproxy.status.conditions')).toContain('IAMReady');
    const readers = await flat('databaseproxy.spec.readers');
    for (const field of ['enabled', 'maxReplicationLag', 'fallbackToWriter']) expect(readers).toContain(`${field} <`);
    expect(readers).toContain('<name>-ro');
    expect(await flat('databaseproxy.spec.readers.enabled')).toContain('SQLSTATE 25006');
    expect(await flat('databaseproxy.status.conditions')).toContain('ReadersAvailable');
    const users = await flat('databaseproxy.spec.users');
    for (const field of ['clientAuth', 'backendCertificate', 'passwordSecretRef']) expect(users).toContain(`${field} <`);
    expect(await flat('databaseproxy.spec.users.clientAuth')).toContain("whose subject CN equals the user name; no password is asked (like PostgreSQL's pg_hba method cert)");
    expect(await flat('databaseproxy.spec.users.backendCertificate')).toContain('instead of a password');
    expect(await flat('databaseproxy.spec.users.backendCertificate.secretName')).toContain('kubernetes.io/tls Secret (tls.crt, tls.key)');
    expect(await flat('databaseproxy.spec.users.passwordSecretRef')).toContain("this user's backendCertificate");
    expect(await flat('databaseproxy.spec.tls.clientCaSecretRef')).toContain('the CA bundle client certificates are checked against');
    const status = await flat('databaseproxy.status.readers');
    for (const field of ['endpoint', 'standbys', 'available', 'lag', 'targets']) expect(status).toContain(`${field} <`);
  });

  test('kubectl explain databaseproxy.spec.pool shows the descriptions', async () => {
    const out = await kubectlOk(cluster, ['explain', 'databaseproxy.spec.pool']);
    expect(out).toContain('KIND:       DatabaseProxy');
    expect(out).toContain("Connection pool settings, named like RDS Proxy's.");
    for (const field of ['maxConnectionsPercent', 'maxIdleConnectionsPercent', 'borrowTimeout', 'idleClientTimeout', 'initQuery']) expect(out).toContain(field);
    expect(out.replace(/\s+/g, ' ')).toContain("Share of the database's max_connections that all replicas together may use, 1-100.");
    const top = await kubectlOk(cluster, ['explain', 'dbp']);
    expect(top.replace(/\s+/g, ' ')).toContain('applications connect to <name>.<namespace>.svc as they would to the database');
  });

  test('kubectl get dbp shows the printer columns', async () => {
    const out = await kubectlOk(cluster, ['get', 'dbp', '-n', ns]);
    expect(out.split('\n')[0]!.split(/\s+/).filter(Boolean)).toEqual(['NAME', 'READY', 'WRITER', 'CLIENTS', 'BORROWED', 'PINNED', 'AGE']);
    expect(out).toMatch(/^defaults\s/m);
    // The read-only endpoint's column only in the wide view.
    const wide = await kubectlOk(cluster, ['get', 'dbp', '-n', ns, '-o', 'wide']);
    expect(wide.split('\n')[0]!.split(/\s+/).filter(Boolean)).toEqual(['NAME', 'READY', 'WRITER', 'CLIENTS', 'BORROWED', 'PINNED', 'READERS', 'AGE']);
    // The category: `kubectl get dbproxy` lists them too.
    expect(await kubectlOk(cluster, ['get', 'dbproxy', '-n', ns, '-o', 'name'])).toContain('databaseproxy.dbproxy.io/defaults');
  });
});
