import { applyDefaults, validate } from './schema.js';
import { exampleProxy, minimalSpec } from './fixtures.js';
import { specSchema, withDefaults, API_VERSION, KIND, type DatabaseProxySpecInput } from './v1alpha1.js';

const spec = specSchema.json;
const check = (input: unknown): string[] => validate(applyDefaults(input, spec), spec);

describe('DatabaseProxy v1alpha1 schema', () => {
  test('defaulting fills every documented default, nested ones included', () => {
    const dbp = exampleProxy();
    expect(dbp.spec.replicas).toBe(2);
    expect(dbp.spec.target.port).toBe(5432);
    expect(dbp.spec.target.database).toBe('postgres');
    expect(dbp.spec.users[0]!.passwordSecretRef?.key).toBe('password');
    expect(dbp.spec.backendAuth).toEqual({ password: {} });
    expect(dbp.spec.clientAuth).toEqual({ method: 'scram-sha-256', iamAuth: 'DISABLED' });
    expect(dbp.spec.pool).toEqual({
      maxConnectionsPercent: 90,
      borrowTimeout: '120s',
      idleClientTimeout: '1800s',
      idleTransactionTimeout: '0s',
      queryTimeout: '0s',
      maxConnectionLifetime: '3600s',
      idleConnectionTimeout: '60s',
      maxClientConnections: 10000,
      connectTimeout: '10s',
    });
    expect(dbp.spec.session).toEqual({ trackSettings: true, maxPreparedStatements: 200 });
    expect(dbp.spec.healthCheck).toEqual({ interval: '1s' });
    // No read-only endpoint unless asked for; asked for, its settings get their defaults.
    expect(dbp.spec.readers).toBeUndefined();
    expect(exampleProxy({ readers: { enabled: true } }).spec.readers).toEqual({ enabled: true, maxReplicationLag: '30s', fallbackToWriter: false });
    expect(dbp.spec.cancelRateLimit).toEqual({ perSecond: 20, burst: 100, peerPerSecond: 200, peerBurst: 1000 });
    expect([dbp.spec.shutdownGracePeriod, dbp.spec.logLevel, dbp.spec.paused]).toEqual(['20s', 'info', false]);
    expect([dbp.spec.adminUsers, dbp.spec.statsUsers]).toEqual([undefined, undefined]);
    expect(dbp.spec.service).toEqual({ type: 'ClusterIP', port: 5432 });
    expect(dbp.spec.tls).toBeUndefined();
    // Users log in with passwords unless they say otherwise; the client CA key defaults like the backend CA's.
    expect(dbp.spec.users[0]!.clientAuth).toBe('password');
    expect(dbp.spec.users[0]!.backendCertificate).toBeUndefined();
    expect(exampleProxy({ tls: { secretName: 't', clientCaSecretRef: { name: 'client-ca' } } }).spec.tls?.clientCaSecretRef).toEqual({ name: 'client-ca', key: 'ca.crt' });
    // Token login settings are defaulted only where the user wrote the section.
    const sa = exampleProxy({ clientAuth: { serviceAccounts: { mappings: [{ namespace: 'shop', serviceAccount: 'api', user: 'app' }] } } });
    expect(sa.spec.clientAuth.serviceAccounts?.audience).toBe('dbproxy');
    expect(sa.spec.clientAuth.awsIam).toBeUndefined();
  });

  test('defaulting keeps what the user set and does not modify its input', () => {
    const input: DatabaseProxySpecInput = { ...minimalSpec, pool: { maxConnectionsPercent: 50 }, tls: { backend: {} } };
    const frozen = JSON.stringify(input);
    const out = withDefaults({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'a', namespace: 'b', uid: 'u' }, spec: input });
    expect(out.spec.pool.maxConnectionsPercent).toBe(50);
    expect(out.spec.pool.borrowTimeout).toBe('120s');
    expect(out.spec.tls).toEqual({ requireTLS: false, backend: { mode: 'verify-full' } });
    expect(JSON.stringify(input)).toBe(frozen);
  });

  test.each<[string, unknown, string[]]>([
    ['minimal spec', minimalSpec, []],
    ['endpoints', { ...minimalSpec, target: { endpoints: ['db-1.internal:5432', '10.0.0.7:5433', '[fd00::1]:5432'] } }, []],
    ['iam backend auth', { ...minimalSpec, backendAuth: { iam: { region: 'eu-west-1' } }, iam: { roleArn: 'arn:aws:iam::123456789012:role/orders-proxy' } }, []],
    ['replicas 0', { ...minimalSpec, replicas: 0 }, ['replicas: must be >= 1']],
    ['percent above 100', { ...minimalSpec, pool: { maxConnectionsPercent: 101 } }, ['pool.maxConnectionsPercent: must be <= 100']],
    ['bad duration', { ...minimalSpec, pool: { borrowTimeout: '2 minutes' } }, ['pool.borrowTimeout: does not match ^[0-9]+(ms|s|m|h)$']],
    ['bad endpoint', { ...minimalSpec, target: { endpoints: ['db-1'] } }, [expect.stringMatching(/^target\.endpoints\[0\]: does not match/) as unknown as string]],
    ['no users', { ...minimalSpec, users: [] }, ['users: must have at least 1 items']],
    ['duplicate users', { ...minimalSpec, users: [minimalSpec.users[0], minimalSpec.users[0]] }, [expect.stringMatching(/^users: duplicate entry/) as unknown as string]],
    ['unknown field', { ...minimalSpec, pool: { maxConnections: 5 } }, ['pool.maxConnections: unknown field']],
    ['bad service type', { ...minimalSpec, service: { type: 'ExternalName' } }, ['service.type: must be one of "ClusterIP", "LoadBalancer", "NodePort"']],
    ['missing target', { users: minimalSpec.users }, ['target: required']],
    ['quantities', { ...minimalSpec, resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: 1 } } }, []],
    ['bad quantity', { ...minimalSpec, resources: { requests: { cpu: 'lots' } } }, [expect.stringMatching(/^resources\.requests\["cpu"\]: does not match/) as unknown as string]],
    ['verify-ca backend TLS', { ...minimalSpec, tls: { backend: { mode: 'verify-ca', caSecretRef: { name: 'rds-ca' } } } }, []],
    [
      'client token logins',
      {
        ...minimalSpec,
        tls: { secretName: 'orders-tls' },
        serviceAccountName: 'orders-proxy',
        clientAuth: {
          iamAuth: 'REQUIRED',
          awsIam: { mappings: [{ arn: 'arn:aws:iam::123456789012:role/orders-api', user: 'app' }], stsHosts: ['sts.eu-west-1.amazonaws.com', 'sts.*.amazonaws.com:8443'] },
          serviceAccounts: { mappings: [{ namespace: 'shop', serviceAccount: 'orders-api', user: 'app' }] },
        },
      },
      [],
    ],
    ['a user without a password (tokens only, IAM to the database)', { ...minimalSpec, users: [{ name: 'app' }], backendAuth: { iam: { region: 'eu-west-1' } } }, []],
    ['not an IAM ARN', { ...minimalSpec, clientAuth: { awsIam: { mappings: [{ arn: 'arn:aws:sts::123456789012:assumed-role/x/y', user: 'app' }] } } }, [expect.stringMatching(/^clientAuth\.awsIam\.mappings\[0\]\.arn: does not match/) as unknown as string]],
    ['empty mappings', { ...minimalSpec, clientAuth: { serviceAccounts: { mappings: [] } } }, ['clientAuth.serviceAccounts.mappings: must have at least 1 items']],
    ['a GUC name with a dot', { ...minimalSpec, session: { untrackedParameters: ['pg_hint_plan.enable_hint'] } }, []],
    ['not a GUC name', { ...minimalSpec, session: { untrackedParameters: ['work mem'] } }, [expect.stringMatching(/^session\.untrackedParameters\[0\]: does not match/) as unknown as string]],
    ['maxPreparedStatements 0', { ...minimalSpec, session: { maxPreparedStatements: 0 } }, ['session.maxPreparedStatements: must be >= 1']],
    ['a bad TLS version', { ...minimalSpec, tls: { secretName: 't', minVersion: 'TLSv1.1' } }, ['tls.minVersion: must be one of "TLSv1.2", "TLSv1.3"']],
    ['a bad log level', { ...minimalSpec, logLevel: 'verbose' }, ['logLevel: must be one of "fatal", "error", "warn", "info", "debug", "trace"']],
    ['env from a source', { ...minimalSpec, pod: { env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }], nodeSelector: { a: 'b' }, imagePullSecrets: [{ name: 'reg' }] } }, []],
    [
      'certificate logins: a client CA, cert users, a certificate for the database',
      {
        ...minimalSpec,
        users: [{ name: 'app', clientAuth: 'cert', backendCertificate: { secretName: 'app-db-cert' } }, { name: 'report', clientAuth: 'password', passwordSecretRef: { name: 'r' } }],
        tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca', key: 'bundle.pem' }, backend: { mode: 'require' } },
      },
      [],
    ],
    ['an unknown users[].clientAuth', { ...minimalSpec, users: [{ name: 'app', passwordSecretRef: { name: 'a' }, clientAuth: 'scram-sha-256' }] }, ['users[0].clientAuth: must be one of "password", "cert"']],
    ['backendCertificate without its Secret', { ...minimalSpec, users: [{ name: 'app', passwordSecretRef: { name: 'a' }, backendCertificate: {} }] }, ['users[0].backendCertificate.secretName: required']],
    [
      'backendCertificate naming no valid Secret',
      { ...minimalSpec, users: [{ name: 'app', passwordSecretRef: { name: 'a' }, backendCertificate: { secretName: 'Not_A_Name' } }] },
      [expect.stringMatching(/^users\[0\]\.backendCertificate\.secretName: does not match/) as unknown as string],
    ],
    ['clientCaSecretRef without its name', { ...minimalSpec, tls: { secretName: 't', clientCaSecretRef: { key: 'ca.crt' } } }, ['tls.clientCaSecretRef.name: required']],
    ['pod overrides kept as is', { ...minimalSpec, pod: { affinity: { podAntiAffinity: { anything: [1] } }, tolerations: [{ key: 'k', operator: 'Exists' }] } }, []],
  ])('%s', (_name, input, problems) => {
    expect(check(input)).toEqual(problems);
  });

  test('the CEL rules are present where the API needs them', () => {
    const rules = (node: { 'x-kubernetes-validations'?: Array<{ rule: string }> } | undefined) => (node?.['x-kubernetes-validations'] ?? []).map((r) => r.rule);
    expect(rules(spec)).toEqual([
      '!(has(self.iam) && has(self.iam.roleArn) && has(self.serviceAccountName))',
      "!has(self.backendAuth.iam) || (has(self.tls) && has(self.tls.backend) && self.tls.backend.mode != 'disable')",
      "self.clientAuth.iamAuth == 'DISABLED' || (has(self.tls) && has(self.tls.secretName))",
      '!has(self.clientAuth.serviceAccounts) || has(self.serviceAccountName)',
      '!has(self.clientAuth.awsIam) || self.clientAuth.awsIam.mappings.all(m, self.users.exists(u, u.name == m.user))',
      '!has(self.clientAuth.serviceAccounts) || self.clientAuth.serviceAccounts.mappings.all(m, self.users.exists(u, u.name == m.user))',
      "self.users.all(u, has(u.passwordSecretRef) || ((has(self.backendAuth.iam) || has(u.backendCertificate)) && ((has(u.clientAuth) && u.clientAuth == 'cert') || self.clientAuth.iamAuth == 'REQUIRED')))",
      "!self.users.exists(u, has(u.clientAuth) && u.clientAuth == 'cert') || (has(self.tls) && has(self.tls.clientCaSecretRef))",
      "!self.users.exists(u, has(u.backendCertificate)) || (has(self.tls) && has(self.tls.backend) && self.tls.backend.mode != 'disable')",
      "!has(self.shutdownGracePeriod) || duration(self.shutdownGracePeriod) <= duration('300s')",
      '!has(self.adminUsers) || self.adminUsers.all(n, self.users.exists(u, u.name == n))',
      '!has(self.statsUsers) || self.statsUsers.all(n, self.users.exists(u, u.name == n))',
      '!has(self.healthCheck) || !has(self.healthCheck.user) || self.users.exists(u, u.name == self.healthCheck.user)',
      "!has(self.readers) || !has(self.readers.maxReplicationLag) || !has(self.healthCheck) || !has(self.healthCheck.interval) || duration(self.readers.maxReplicationLag) >= duration(self.healthCheck.interval) + duration(self.healthCheck.interval)",
      "!has(self.backendAuth.password) || !has(self.backendAuth.password.secretName) || self.users.all(u, u.name.matches('^[-._a-zA-Z0-9]+$'))",
    ]);
    expect(rules(spec.properties!.readers)).toEqual(["!has(self.maxReplicationLag) || duration(self.maxReplicationLag) > duration('0s')"]);
    expect(rules(spec.properties!.healthCheck)).toEqual(["!has(self.interval) || duration(self.interval) >= duration('100ms')"]);
    expect(rules(spec.properties!.pod)).toEqual(["!has(self.env) || self.env.all(e, !(e.name in ['POD_NAME', 'POD_NAMESPACE', 'POD_IP']))"]);
    expect(rules(spec.properties!.clientAuth)).toEqual(["!has(self.iamAuth) || self.iamAuth == 'DISABLED' || has(self.awsIam) || has(self.serviceAccounts)"]);
    expect(rules(spec.properties!.tls!.properties!.backend)).toEqual(["!has(self.caSecretRef) || self.mode == 'verify-ca' || self.mode == 'verify-full'"]);
    expect(rules(spec.properties!.backendAuth)).toEqual(['(has(self.password) ? 1 : 0) + (has(self.iam) ? 1 : 0) == 1']);
    expect(rules(spec.properties!.target)).toEqual(['has(self.endpoints) != has(self.host)']);
    expect(rules(spec.properties!.pool)).toEqual([
      '!has(self.maxIdleConnectionsPercent) || self.maxIdleConnectionsPercent <= self.maxConnectionsPercent',
      "!has(self.connectTimeout) || duration(self.connectTimeout) > duration('0s')",
    ]);
    expect(rules(spec.properties!.tls)).toEqual(['!self.requireTLS || has(self.secretName)', '!has(self.clientCaSecretRef) || has(self.secretName)', '!has(self.minVersion) || has(self.secretName)']);
  });
});
