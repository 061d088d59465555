import { DEFAULT_STS_HOSTS, parseConfigYaml, type ProxyConfig } from '../../proxy/contract/config.js';
import { allFeatures, exampleProxy } from '../api/fixtures.js';
import type { DatabaseProxySpecInput } from '../api/v1alpha1.js';
import { buildConfigMap, divisorInConfigMap, hostPort, LIVE_FIELDS, renderProxyConfig } from './configMap.js';

const ROLE = 'arn:aws:iam::123456789012:role/orders-api';

const render = (spec: Partial<DatabaseProxySpecInput>, poolDivisor = 3) => renderProxyConfig(exampleProxy(spec), { poolDivisor });
/** Parses the rendered YAML with the proxy's own parser: the two sides of the seam cannot drift. */
const parsed = (spec: Partial<DatabaseProxySpecInput>, poolDivisor = 3): ProxyConfig => parseConfigYaml(render(spec, poolDivisor).yaml);

describe('renderProxyConfig', () => {
  test.each<[string, Partial<DatabaseProxySpecInput>, number, (c: ProxyConfig) => void]>([
    [
      'defaults',
      {},
      3,
      (c) => {
        expect(c.listen).toBe('0.0.0.0:5432');
        expect(c.adminListen).toBe('0.0.0.0:9090');
        expect(c.targets).toEqual(['orders.cluster-abc.eu-west-1.rds.amazonaws.com:5432']);
        expect(c.users).toEqual([expect.objectContaining({ name: 'app', passwordFile: '/var/run/secrets/dbproxy/users/app/password' })]);
        expect(c.clientAuth.method).toBe('scram-sha-256');
        expect(c.pool).toEqual({
          maxConnectionsPercent: 90,
          maxIdleConnectionsPercent: 45,
          divisor: 3,
          borrowTimeout: 120_000,
          idleClientTimeout: 1_800_000,
          maxConnectionLifetime: 3_600_000,
          idleConnectionTimeout: 60_000,
          maxClientConnections: 10_000,
          connectTimeout: 10_000,
          idleTransactionTimeout: 0,
          queryTimeout: 0,
          initQuery: '',
        });
        expect(c.healthCheck).toEqual({ interval: 1000, database: 'postgres' });
        expect(c.session).toEqual({ trackSettings: true, untrackedParameters: [], maxPreparedStatements: 200 });
        expect(c.tls.minVersion).toBe('TLSv1.2');
        expect(c.cancelRateLimit).toEqual({ perSecond: 20, burst: 100, peerPerSecond: 200, peerBurst: 1000 });
        expect(c.adminUsers).toEqual([]);
        expect(c.statsUsers).toEqual([]);
        expect(c.logLevel).toBe('info');
        expect(c.paused).toBe(false);
        expect(c.awsIdentity).toBeUndefined();
        expect(c.shutdownGracePeriod).toBe(20_000);
        expect(c.replicaId).toBe(0); // not rendered: one ConfigMap serves every pod
      },
    ],
    ['the divisor is pool.divisor', {}, 7, (c) => expect(c.pool.divisor).toBe(7)],
    [
      'timeouts and a per-user cap (issue 13)',
      { pool: { idleTransactionTimeout: '60s', queryTimeout: '30s' }, users: [{ name: 'app', passwordSecretRef: { name: 's' }, maxConnections: 5 }] },
      3,
      (c) => {
        expect(c.pool).toMatchObject({ idleTransactionTimeout: 60_000, queryTimeout: 30_000 });
        expect(c.users[0]).toMatchObject({ name: 'app', maxConnections: 5 });
      },
    ],
    ['endpoints', { target: { endpoints: ['db-1:5432', 'db-2:5433', '[fd00::2]:5432'] } }, 3, (c) => expect(c.targets).toEqual(['db-1:5432', 'db-2:5433', '[fd00::2]:5432'])],
    ['host and port', { target: { host: '10.1.2.3', port: 6432, database: 'orders' } }, 3, (c) => {
      expect(c.targets).toEqual(['10.1.2.3:6432']);
      expect(c.healthCheck.database).toBe('orders');
    }],
    ['IPv6 host', { target: { host: 'fd00::1' } }, 3, (c) => expect(c.targets).toEqual(['[fd00::1]:5432'])],
    [
      'pool settings',
      { pool: { maxConnectionsPercent: 60, maxIdleConnectionsPercent: 20, borrowTimeout: '5s', idleClientTimeout: '0s', initQuery: 'SET search_path TO app' } },
      3,
      (c) => expect(c.pool).toMatchObject({ maxConnectionsPercent: 60, maxIdleConnectionsPercent: 20, borrowTimeout: 5000, idleClientTimeout: 0, initQuery: 'SET search_path TO app' }),
    ],
    [
      'every pool setting',
      { pool: { maxConnectionLifetime: '30m', idleConnectionTimeout: '15s', maxClientConnections: 500, connectTimeout: '3s' } },
      3,
      (c) => expect(c.pool).toMatchObject({ maxConnectionLifetime: 1_800_000, idleConnectionTimeout: 15_000, maxClientConnections: 500, connectTimeout: 3000 }),
    ],
    ['maxConnectionLifetime 0s disables recycling', { pool: { maxConnectionLifetime: '0s' } }, 3, (c) => expect(c.pool.maxConnectionLifetime).toBe(0)],
    [
      'session settings',
      { session: { trackSettings: false, untrackedParameters: ['pg_hint_plan.enable_hint', 'Work_Mem'], maxPreparedStatements: 1000 } },
      3,
      (c) => expect(c.session).toEqual({ trackSettings: false, untrackedParameters: ['pg_hint_plan.enable_hint', 'work_mem'], maxPreparedStatements: 1000 }),
    ],
    [
      'health checks: interval and user; the database is target.database',
      { users: [{ name: 'app', passwordSecretRef: { name: 'a' } }, { name: 'monitor', passwordSecretRef: { name: 'm' } }], healthCheck: { interval: '250ms', user: 'monitor' }, target: { host: 'db', database: 'orders' } },
      3,
      (c) => expect(c.healthCheck).toEqual({ interval: 250, user: 'monitor', database: 'orders' }),
    ],
    ['client TLS 1.3 only', { tls: { secretName: 'orders-tls', minVersion: 'TLSv1.3' } }, 3, (c) => expect(c.tls.minVersion).toBe('TLSv1.3')],
    [
      'admin database users',
      { users: [{ name: 'app', passwordSecretRef: { name: 'a' } }, { name: 'dba', passwordSecretRef: { name: 'd' } }, { name: 'grafana', passwordSecretRef: { name: 'g' } }], adminUsers: ['dba'], statsUsers: ['grafana'] },
      3,
      (c) => {
        expect(c.adminUsers).toEqual(['dba']);
        expect(c.statsUsers).toEqual(['grafana']);
      },
    ],
    ['cancel rate limits', { cancelRateLimit: { perSecond: 5, burst: 10, peerPerSecond: 50, peerBurst: 100 } }, 3, (c) => expect(c.cancelRateLimit).toEqual({ perSecond: 5, burst: 10, peerPerSecond: 50, peerBurst: 100 })],
    ['shutdownGracePeriod and logLevel', { shutdownGracePeriod: '2m', logLevel: 'debug' }, 3, (c) => expect([c.shutdownGracePeriod, c.logLevel]).toEqual([120_000, 'debug'])],
    ['paused', { paused: true }, 3, (c) => expect(c.paused).toBe(true)],
    [
      'IRSA role: the identity check expects it',
      { iam: { roleArn: 'arn:aws:iam::123456789012:role/orders-proxy' } },
      3,
      (c) => expect(c.awsIdentity).toEqual({ enabled: true, expectedRoleArn: 'arn:aws:iam::123456789012:role/orders-proxy', interval: 300_000, timeout: 10_000 }),
    ],
    [
      'backendAuth.iam with your own ServiceAccount: the identity is checked, any role accepted',
      { backendAuth: { iam: { region: 'eu-west-1' } }, tls: { backend: {} }, serviceAccountName: 'mine' },
      3,
      (c) => expect(c.awsIdentity).toEqual({ enabled: true, interval: 300_000, timeout: 10_000 }),
    ],
    [
      'several users, md5',
      {
        users: [
          { name: 'app', passwordSecretRef: { name: 'orders-app' } },
          { name: 'report.ro', passwordSecretRef: { name: 'orders-report', key: 'pw' } },
        ],
        clientAuth: { method: 'md5' },
      },
      3,
      (c) => {
        expect(c.users.map((u) => u.passwordFile)).toEqual(['/var/run/secrets/dbproxy/users/app/password', '/var/run/secrets/dbproxy/users/report.ro/password']);
        expect(c.clientAuth.method).toBe('md5');
      },
    ],
    [
      'client TLS from the mounted kubernetes.io/tls Secret',
      { tls: { secretName: 'orders-tls', requireTLS: true } },
      3,
      (c) => {
        expect(c.tls).toMatchObject({ certFile: '/var/run/secrets/dbproxy/tls/tls.crt', keyFile: '/var/run/secrets/dbproxy/tls/tls.key', requireTLS: true });
        expect(c.backendTls.mode).toBe('disable');
      },
    ],
    ['no tls section: neither side uses TLS', {}, 3, (c) => {
      expect(c.tls).toMatchObject({ requireTLS: false });
      expect(c.tls.certFile).toBeUndefined();
      expect(c.backendTls).toEqual({ mode: 'disable' });
    }],
    [
      'backend verify-full against the mounted CA bundle',
      { tls: { backend: { mode: 'verify-full', caSecretRef: { name: 'rds-ca', key: 'global-bundle.pem' } } } },
      3,
      (c) => expect(c.backendTls).toEqual({ mode: 'verify-full', caFile: '/var/run/secrets/dbproxy/backend-ca/ca.crt' }),
    ],
    // The CRD default mode without a CA Secret: the proxy verifies against the public CAs Node.js ships.
    ['backend TLS by default (verify-full, public CAs)', { tls: { backend: {} } }, 3, (c) => expect(c.backendTls).toEqual({ mode: 'verify-full' })],
    ['backend verify-ca', { tls: { backend: { mode: 'verify-ca', caSecretRef: { name: 'rds-ca' } } } }, 3, (c) => expect(c.backendTls).toEqual({ mode: 'verify-ca', caFile: '/var/run/secrets/dbproxy/backend-ca/ca.crt' })],
    ['backend require', { tls: { backend: { mode: 'require' } } }, 3, (c) => expect(c.backendTls).toEqual({ mode: 'require' })],
    ['backend disable', { tls: { backend: { mode: 'disable' } } }, 3, (c) => expect(c.backendTls).toEqual({ mode: 'disable' })],
    [
      'backendAuth.iam: an RDS IAM token per backend connection',
      { backendAuth: { iam: { region: 'eu-west-1' } }, tls: { backend: { mode: 'verify-full' } } },
      3,
      (c) => {
        expect(c.users).toEqual([{ name: 'app', passwordFile: '/var/run/secrets/dbproxy/users/app/password', clientAuth: 'password', backendAuth: { method: 'iam', region: 'eu-west-1' } }]);
        expect(c.backendTls.mode).toBe('verify-full');
      },
    ],
    [
      'backendAuth.password.secretName: database passwords from the separate Secret, client passwords from passwordSecretRef',
      { users: [{ name: 'app', passwordSecretRef: { name: 'orders-app' } }, { name: 'report', passwordSecretRef: { name: 'orders-report' } }], backendAuth: { password: { secretName: 'db-passwords' } } },
      3,
      (c) => {
        expect(c.users.map((u) => [u.name, u.passwordFile, u.backendAuth])).toEqual([
          ['app', '/var/run/secrets/dbproxy/users/app/password', { method: 'password', passwordFile: '/var/run/secrets/dbproxy/backend-passwords/app' }],
          ['report', '/var/run/secrets/dbproxy/users/report/password', { method: 'password', passwordFile: '/var/run/secrets/dbproxy/backend-passwords/report' }],
        ]);
      },
    ],
    ['backendAuth.password without secretName: the same password both sides', { backendAuth: { password: {} } }, 3, (c) => expect(c.users[0]!.backendAuth).toEqual({ method: 'password' })],
    [
      'client IAM: STS tokens, proxyId defaults to <namespace>/<name>',
      { tls: { secretName: 'orders-tls' }, clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } },
      3,
      (c) => {
        expect(c.iamAuth).toBe('OPTIONAL');
        expect(c.iam).toMatchObject({ proxyId: 'shop/orders', roleMappings: [{ arn: ROLE, user: 'app' }], stsHosts: DEFAULT_STS_HOSTS });
        expect(c.serviceAccountAuth).toBeUndefined();
      },
    ],
    [
      'client IAM: proxyId and STS hosts as set',
      { tls: { secretName: 'orders-tls' }, clientAuth: { iamAuth: 'REQUIRED', awsIam: { proxyId: 'orders-prod', stsHosts: ['sts.eu-west-1.amazonaws.com'], mappings: [{ arn: ROLE, user: 'app' }] } } },
      3,
      (c) => {
        expect(c.iamAuth).toBe('REQUIRED');
        expect(c.iam).toMatchObject({ proxyId: 'orders-prod', stsHosts: ['sts.eu-west-1.amazonaws.com'] });
      },
    ],
    [
      'client ServiceAccount tokens: in-cluster TokenReview (no kubeconfig), audience defaulted',
      { tls: { secretName: 'orders-tls' }, serviceAccountName: 'orders-proxy', clientAuth: { iamAuth: 'REQUIRED', serviceAccounts: { mappings: [{ namespace: 'shop', serviceAccount: 'orders-api', user: 'app' }] } } },
      3,
      (c) => {
        expect(c.serviceAccountAuth).toMatchObject({ audience: 'dbproxy', mappings: [{ namespace: 'shop', serviceAccount: 'orders-api', user: 'app' }] });
        expect(c.serviceAccountAuth!.kubeconfig).toBeUndefined();
        expect(c.iam).toBeUndefined();
      },
    ],
    [
      'iamAuth DISABLED: mappings stay in the spec but nothing is rendered (a kill switch)',
      { tls: { secretName: 'orders-tls' }, clientAuth: { iamAuth: 'DISABLED', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } },
      3,
      (c) => {
        expect(c.iamAuth).toBe('DISABLED');
        expect(c.iam).toBeUndefined();
        expect(c.serviceAccountAuth).toBeUndefined();
      },
    ],
    [
      'a user without a password: tokens only, IAM to the database',
      { users: [{ name: 'app' }], backendAuth: { iam: { region: 'eu-west-1' } }, tls: { secretName: 'orders-tls', backend: {} }, clientAuth: { iamAuth: 'REQUIRED', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } },
      3,
      (c) => expect(c.users).toEqual([{ name: 'app', clientAuth: 'password', backendAuth: { method: 'iam', region: 'eu-west-1' } }]),
    ],
    [
      'client certificates: tls.clientCaSecretRef is the mounted CA bundle, clientCaFile',
      { tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' } } },
      3,
      (c) => {
        expect(c.tls).toMatchObject({ certFile: '/var/run/secrets/dbproxy/tls/tls.crt', clientCaFile: '/var/run/secrets/dbproxy/client-ca/ca.crt' });
        expect(c.users).toEqual([expect.objectContaining({ name: 'app', clientAuth: 'password' })]);
      },
    ],
    ['no tls.clientCaSecretRef: no clientCaFile (no certificate asked for)', { tls: { secretName: 'orders-tls' } }, 3, (c) => expect(c.tls.clientCaFile).toBeUndefined()],
    [
      'users[].clientAuth cert: rendered for that user only, the password kept for the database',
      {
        users: [
          { name: 'app', passwordSecretRef: { name: 'orders-app' } },
          { name: 'batch', clientAuth: 'cert', passwordSecretRef: { name: 'orders-batch' } },
        ],
        tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' } },
      },
      3,
      (c) =>
        expect(c.users.map((u) => [u.name, u.clientAuth, u.passwordFile, u.backendAuth])).toEqual([
          ['app', 'password', '/var/run/secrets/dbproxy/users/app/password', { method: 'password' }],
          ['batch', 'cert', '/var/run/secrets/dbproxy/users/batch/password', { method: 'password' }],
        ]),
    ],
    [
      'users[].backendCertificate: backendAuth cert with the mounted tls.crt and tls.key, for that user only',
      {
        users: [
          { name: 'app', passwordSecretRef: { name: 'orders-app' } },
          { name: 'batch', passwordSecretRef: { name: 'orders-batch' }, backendCertificate: { secretName: 'batch-db-cert' } },
        ],
        tls: { backend: { mode: 'verify-full' } },
      },
      3,
      (c) =>
        expect(c.users.map((u) => [u.name, u.passwordFile, u.backendAuth])).toEqual([
          ['app', '/var/run/secrets/dbproxy/users/app/password', { method: 'password' }],
          [
            'batch',
            '/var/run/secrets/dbproxy/users/batch/password',
            { method: 'cert', certFile: '/var/run/secrets/dbproxy/backend-certs/batch/tls.crt', keyFile: '/var/run/secrets/dbproxy/backend-certs/batch/tls.key' },
          ],
        ]),
    ],
    [
      "users[].backendCertificate replaces spec.backendAuth (iam, or the separate passwords) for its user",
      {
        users: [
          { name: 'app', passwordSecretRef: { name: 'orders-app' } },
          { name: 'batch', passwordSecretRef: { name: 'orders-batch' }, backendCertificate: { secretName: 'batch-db-cert' } },
        ],
        backendAuth: { iam: { region: 'eu-west-1' } },
        tls: { backend: { mode: 'require' } },
      },
      3,
      (c) => expect(c.users.map((u) => u.backendAuth.method)).toEqual(['iam', 'cert']),
    ],
    [
      'a user without a password: certificates on both sides',
      { users: [{ name: 'app', clientAuth: 'cert', backendCertificate: { secretName: 'app-db-cert' } }], tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca', key: 'bundle.pem' }, backend: {} } },
      3,
      (c) =>
        expect(c.users).toEqual([
          { name: 'app', clientAuth: 'cert', backendAuth: { method: 'cert', certFile: '/var/run/secrets/dbproxy/backend-certs/app/tls.crt', keyFile: '/var/run/secrets/dbproxy/backend-certs/app/tls.key' } },
        ]),
    ],
    [
      'a user without a password: tokens only from clients, a certificate to the database',
      {
        users: [{ name: 'app', backendCertificate: { secretName: 'app-db-cert' } }],
        tls: { secretName: 'orders-tls', backend: {} },
        clientAuth: { iamAuth: 'REQUIRED', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } },
      },
      3,
      (c) => expect(c.users[0]).toMatchObject({ name: 'app', clientAuth: 'password', backendAuth: { method: 'cert' } }),
    ],
    [
      'every feature at once',
      allFeatures,
      3,
      (c) => {
        expect(c.tls).toMatchObject({ certFile: '/var/run/secrets/dbproxy/tls/tls.crt', requireTLS: true, clientCaFile: '/var/run/secrets/dbproxy/client-ca/ca.crt' });
        expect(c.backendTls).toEqual({ mode: 'verify-full', caFile: '/var/run/secrets/dbproxy/backend-ca/ca.crt' });
        expect(c.users.map((u) => u.backendAuth.passwordFile)).toEqual(['/var/run/secrets/dbproxy/backend-passwords/app', '/var/run/secrets/dbproxy/backend-passwords/report', undefined]);
        expect(c.users[2]).toEqual({
          name: 'batch',
          clientAuth: 'cert',
          backendAuth: { method: 'cert', certFile: '/var/run/secrets/dbproxy/backend-certs/batch/tls.crt', keyFile: '/var/run/secrets/dbproxy/backend-certs/batch/tls.key' },
        });
        expect(c.iamAuth).toBe('REQUIRED');
        expect(c.iam?.proxyId).toBe('shop/orders');
        expect(c.serviceAccountAuth).toMatchObject({ audience: 'dbproxy:shop/orders', mappings: [{ namespace: 'shop', serviceAccount: 'orders-api', user: 'app' }] });
      },
    ],
    ['no spec.readers: no read-only listener', {}, 3, (c) => expect(c.readers).toBeUndefined()],
    ['readers disabled: no read-only listener', { readers: { enabled: false, maxReplicationLag: '5s', fallbackToWriter: true } }, 3, (c) => expect(c.readers).toBeUndefined()],
    ['readers enabled: the listener behind <name>-ro, with the defaults', { readers: { enabled: true } }, 3, (c) => expect(c.readers).toEqual({ listen: '0.0.0.0:5433', maxReplicationLag: 30_000, fallbackToWriter: false })],
    [
      'readers enabled: lag limit and fallback as written',
      { readers: { enabled: true, maxReplicationLag: '1500ms', fallbackToWriter: true } },
      3,
      (c) => expect(c.readers).toEqual({ listen: '0.0.0.0:5433', maxReplicationLag: 1_500, fallbackToWriter: true }),
    ],
  ])('%s', (_name, spec, divisor, check) => {
    check(parsed(spec, divisor));
  });

  test('users[].clientAuth is written for cert users only (password, the default, is left out)', () => {
    const { config } = render({
      users: [
        { name: 'app', passwordSecretRef: { name: 'a' } },
        { name: 'batch', clientAuth: 'cert', passwordSecretRef: { name: 'b' } },
      ],
      tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' } },
    });
    expect(config.users.map((u) => ('clientAuth' in u ? u.clientAuth : '(absent)'))).toEqual(['(absent)', 'cert']);
  });

  test('hash: stable, changes with the config, ignores the divisor', () => {
    expect(render({}).hash).toMatch(/^[0-9a-f]{16}$/);
    expect(render({}).hash).toBe(render({}).hash);
    expect(render({}, 3).hash).toBe(render({}, 9).hash);
    expect(render({ pool: { borrowTimeout: '30s' } }).hash).not.toBe(render({}).hash);
    expect(render({ target: { endpoints: ['db-1:5432'] } }).hash).not.toBe(render({}).hash);
    expect(render({ tls: { secretName: 'orders-tls' } }).hash).not.toBe(render({}).hash);
    // TLS settings need a restart of the proxy: a client CA or a database certificate rolls the pods.
    expect(render({ tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'ca' } } }).hash).not.toBe(render({ tls: { secretName: 'orders-tls' } }).hash);
    expect(render({ users: [{ name: 'app', passwordSecretRef: { name: 'a' }, backendCertificate: { secretName: 'c' } }], tls: { backend: {} } }).hash).not.toBe(
      render({ users: [{ name: 'app', passwordSecretRef: { name: 'a' } }], tls: { backend: {} } }).hash,
    );
    expect(render({ session: { trackSettings: false } }).hash).not.toBe(render({}).hash);
    expect(render({ shutdownGracePeriod: '30s' }).hash).not.toBe(render({}).hash);
    // The read-only listener starts with the process: turning it on or off rolls the pods.
    expect(render({ readers: { enabled: true } }).hash).not.toBe(render({}).hash);
    expect(render({ readers: { enabled: false } }).hash).toBe(render({}).hash);
  });

  test('hash: fields the proxy applies on reload do not roll the pods (pausing a fleet must not restart it)', () => {
    const users = [{ name: 'app', passwordSecretRef: { name: 'a' } }, { name: 'dba', passwordSecretRef: { name: 'd' } }];
    const base = render({ users }).hash;
    for (const live of [{ paused: true }, { logLevel: 'debug' as const }, { adminUsers: ['dba'] }, { statsUsers: ['dba'] }]) {
      expect([live, render({ users, ...live }).hash]).toEqual([live, base]);
    }
    expect(LIVE_FIELDS).toEqual(['pool.divisor', 'paused', 'logLevel', 'adminUsers', 'statsUsers']);
  });

  test('nothing is reported for a spec the proxy accepts, whatever features it uses', () => {
    expect(render({}).unsupported).toEqual([]);
    expect(render(allFeatures).unsupported).toEqual([]);
  });

  test("a spec the CRD's rules would refuse (e.g. stored before a rule existed) is reported with the proxy's own message, not rolled out silently", () => {
    // backendAuth.iam without backend TLS: the CEL rule refuses it on admission; the renderer still must not hand it to the proxy.
    expect(render({ backendAuth: { iam: { region: 'eu-west-1' } } }).unsupported).toEqual([
      'the proxy would refuse its config: users[0].backendAuth: backendAuth iam needs TLS to the database: set backendTls.mode (require, verify-ca or verify-full)',
    ]);
    expect(render({ clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: ROLE, user: 'app' }] } } }).unsupported).toEqual([
      'the proxy would refuse its config: iamAuth: token logins are accepted over TLS only: set tls.certFile and tls.keyFile',
    ]);
    // The certificate features, likewise refused by CEL rules on admission.
    expect(render({ users: [{ name: 'app', passwordSecretRef: { name: 'a' }, backendCertificate: { secretName: 'c' } }] }).unsupported).toEqual([
      'the proxy would refuse its config: users[0].backendAuth: backendAuth cert needs TLS to the database: set backendTls.mode (require, verify-ca or verify-full)',
    ]);
    expect(render({ users: [{ name: 'app', passwordSecretRef: { name: 'a' }, clientAuth: 'cert' }], tls: { secretName: 'orders-tls' } }).unsupported).toEqual([
      'the proxy would refuse its config: users[0].clientAuth: clientAuth cert needs tls.clientCaFile (the CA client certificates are checked against)',
    ]);
    expect(render({ users: [{ name: 'app', clientAuth: 'cert' }], tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'ca' } } }).unsupported).toEqual([
      'the proxy would refuse its config: users[0]: exactly one of passwordFile or secretFile must be set (unless backendAuth.method is iam, or cert with clientAuth cert or iamAuth REQUIRED)',
    ]);
  });

  test('hostPort brackets IPv6 literals only', () => {
    expect(hostPort('db', 5432)).toBe('db:5432');
    expect(hostPort('::1', 5432)).toBe('[::1]:5432');
    expect(hostPort('[::1]', 5432)).toBe('[::1]:5432');
  });
});

describe('buildConfigMap', () => {
  test('one key, config.yaml, named <name>-config, owned by the DatabaseProxy', () => {
    const { configMap, hash } = buildConfigMap(exampleProxy(), { poolDivisor: 3 });
    expect(configMap.metadata.name).toBe('orders-config');
    expect(configMap.metadata.namespace).toBe('shop');
    expect(Object.keys(configMap.data)).toEqual(['config.yaml']);
    expect(configMap.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'DatabaseProxy', name: 'orders', controller: true });
    expect(configMap.metadata.labels).toEqual({
      'app.kubernetes.io/name': 'dbproxy',
      'app.kubernetes.io/instance': 'orders',
      'app.kubernetes.io/component': 'proxy',
      'app.kubernetes.io/managed-by': 'dbproxy-operator',
    });
    expect(hash).toBe(renderProxyConfig(exampleProxy(), { poolDivisor: 3 }).hash);
    expect(parseConfigYaml(configMap.data['config.yaml']!).pool.divisor).toBe(3);
  });

  test('the divisor is written as pool.divisor, never under its old name', () => {
    const yaml = buildConfigMap(exampleProxy(), { poolDivisor: 3 }).configMap.data['config.yaml']!;
    expect(yaml).toMatch(/^  divisor: 3$/m);
    expect(yaml).not.toMatch(/replicas/);
  });
});

describe('divisorInConfigMap', () => {
  test('reads pool.divisor from a rendered ConfigMap', () => {
    expect(divisorInConfigMap(buildConfigMap(exampleProxy(), { poolDivisor: 7 }).configMap)).toBe(7);
  });
  test('reads pool.replicas from a ConfigMap an older operator rendered (an upgrade keeps the previous divisor)', () => {
    expect(divisorInConfigMap({ data: { 'config.yaml': 'pool: {replicas: 5}' } })).toBe(5);
  });
  test.each([
    [undefined],
    [{}],
    [{ data: { 'config.yaml': ': not yaml: [' } }],
    [{ data: { 'config.yaml': 'pool: {replicas: 0}' } }],
    [{ data: { 'config.yaml': 'pool: {divisor: 0}' } }],
    [{ data: { 'config.yaml': 'pool: {divisor: two}' } }],
  ])('is undefined when unreadable: %j', (cm) => {
    expect(divisorInConfigMap(cm)).toBeUndefined();
  });
});
