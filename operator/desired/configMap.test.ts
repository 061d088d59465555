import { parseConfigYaml, type ProxyConfig } from '../../proxy/contract/config.js';
import { exampleProxy } from '../api/fixtures.js';
import type { DatabaseProxySpecInput } from '../api/v1alpha1.js';
import { buildConfigMap, hostPort, renderProxyConfig } from './configMap.js';

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
        expect(c.pool).toMatchObject({ maxConnectionsPercent: 90, maxIdleConnectionsPercent: 45, replicas: 3, borrowTimeout: 120_000, idleClientTimeout: 1_800_000, initQuery: '' });
        expect(c.healthCheck.database).toBe('postgres');
        expect(c.shutdownGracePeriod).toBe(20_000);
        expect(c.replicaId).toBe(0); // not rendered: one ConfigMap serves every pod
      },
    ],
    ['the divisor is pool.replicas', {}, 7, (c) => expect(c.pool.replicas).toBe(7)],
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
  ])('%s', (_name, spec, divisor, check) => {
    check(parsed(spec, divisor));
  });

  test('hash: stable, changes with the config, ignores the divisor', () => {
    expect(render({}).hash).toMatch(/^[0-9a-f]{16}$/);
    expect(render({}).hash).toBe(render({}).hash);
    expect(render({}, 3).hash).toBe(render({}, 9).hash);
    expect(render({ pool: { borrowTimeout: '30s' } }).hash).not.toBe(render({}).hash);
    expect(render({ target: { endpoints: ['db-1:5432'] } }).hash).not.toBe(render({}).hash);
  });

  test.each<[Partial<DatabaseProxySpecInput>, RegExp | undefined]>([
    [{}, undefined],
    [{ tls: { secretName: 'orders-tls' } }, /^spec\.tls\.secretName/],
    [{ tls: { backend: { mode: 'verify-full' } } }, /^spec\.tls\.backend\.mode=verify-full/],
    [{ tls: { backend: { mode: 'disable' } } }, undefined],
    [{ backendAuth: { iam: { region: 'eu-west-1' } } }, /^spec\.backendAuth\.iam/],
    [{ backendAuth: { password: { secretName: 'db-passwords' } } }, /^spec\.backendAuth\.password\.secretName/],
    [{ clientAuth: { iamAuth: 'OPTIONAL' } }, /^spec\.clientAuth\.iamAuth=OPTIONAL/],
  ])('features the proxy cannot honour yet are reported: %j', (spec, expected) => {
    const { unsupported } = render(spec);
    if (expected) expect(unsupported).toEqual([expect.stringMatching(expected)]);
    else expect(unsupported).toEqual([]);
    // whatever is unsupported, what is rendered is still a config the proxy accepts
    expect(() => parseConfigYaml(render(spec).yaml)).not.toThrow();
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
    expect(parseConfigYaml(configMap.data['config.yaml']!).pool.replicas).toBe(3);
  });
});
