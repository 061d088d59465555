import { awsIdentityCheck, ConfigError, parseConfig, parseConfigYaml, parseDuration } from './config.js';

const minimal = { targets: ['db:5432'], users: [{ name: 'app', passwordFile: '/s/app' }] };

const problems = (input: unknown): string[] => {
  try {
    parseConfig(input);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
};

test('defaults are filled in and documented values hold', () => {
  const c = parseConfig(minimal);
  expect(c.listen).toBe('0.0.0.0:5432');
  expect(c.adminListen).toBe('0.0.0.0:9090');
  expect(c.pool).toMatchObject({
    maxConnectionsPercent: 90,
    maxIdleConnectionsPercent: 45,
    divisor: 1,
    borrowTimeout: 120_000,
    idleClientTimeout: 1_800_000,
    maxConnectionLifetime: 3_600_000,
    initQuery: '',
  });
  expect(c.clientAuth.method).toBe('scram-sha-256');
  expect(c.healthCheck.interval).toBe(1000);
  expect(c.adminUsers).toEqual([]);
  expect(c.statsUsers).toEqual([]);
  expect(c.cancelRateLimit).toEqual({ perSecond: 20, burst: 100, peerPerSecond: 200, peerBurst: 1000 });
});

test('maxIdleConnectionsPercent defaults to half of maxConnectionsPercent', () => {
  expect(parseConfig({ ...minimal, pool: { maxConnectionsPercent: 51 } }).pool.maxIdleConnectionsPercent).toBe(25);
});

test.each([
  [{ ...minimal, pool: { maxConnectionsPercent: 101 } }, 'pool.maxConnectionsPercent'],
  [{ ...minimal, pool: { maxConnectionsPercent: 50, maxIdleConnectionsPercent: 60 } }, 'pool.maxIdleConnectionsPercent'],
  [{ ...minimal, pool: { borrowTimeout: 'soon' } }, 'pool.borrowTimeout'],
  [{ ...minimal, pool: { divisor: 0 } }, 'pool.divisor'],
  // The old name: the problem names the key as the file spells it.
  [{ ...minimal, pool: { replicas: 0 } }, 'pool.replicas'],
  [{ ...minimal, pool: { replicas: 2, divisor: 2 } }, 'pool.replicas'],
  [{ ...minimal, listen: 'nonsense' }, 'listen'],
  [{ ...minimal, targets: [] }, 'targets'],
  [{ ...minimal, targets: ['db:99999'] }, 'targets[0]'],
  [{ ...minimal, users: [{ name: 'a' }] }, 'users[0]'],
  [{ ...minimal, users: [{ name: 'a', passwordFile: 'x', secretFile: 'y' }] }, 'users[0]'],
  [{ ...minimal, users: [{ name: 'a', passwordFile: 'x' }, { name: 'a', passwordFile: 'y' }] }, 'users[1].name'],
  [{ ...minimal, healthCheck: { user: 'nobody' } }, 'healthCheck.user'],
  [{ ...minimal, clientAuth: { method: 'trust' } }, 'clientAuth.method'],
  [{ ...minimal, poool: {} }, '(root)'],
])('a bad config names the field: %j', (input, field) => {
  const p = problems(input);
  expect(p.length).toBeGreaterThan(0);
  expect(p.some((x) => x.startsWith(`${field}:`))).toBe(true);
});

describe('pool.divisor, formerly pool.replicas', () => {
  test('pool.divisor is read without a warning', () => {
    const warned: string[] = [];
    expect(parseConfig({ ...minimal, pool: { divisor: 4 } }, { onDeprecated: (m) => warned.push(m) }).pool.divisor).toBe(4);
    expect(warned).toEqual([]);
  });

  test('the old key pool.replicas is still accepted, with a deprecation warning naming the new key', () => {
    const warned: string[] = [];
    const input = { ...minimal, pool: { maxConnectionsPercent: 50, replicas: 4 } };
    const c = parseConfigYaml(`targets: [db:5432]\nusers: [{name: app, passwordFile: /s/app}]\npool: {maxConnectionsPercent: 50, replicas: 4}\n`, { onDeprecated: (m) => warned.push(m) });
    expect(c.pool).toMatchObject({ divisor: 4, maxConnectionsPercent: 50 });
    expect(c.pool).not.toHaveProperty('replicas');
    expect(warned).toEqual(['config key pool.replicas is deprecated: it is now pool.divisor (same meaning); rename it']);
    expect(parseConfig(input)).toEqual(c);
    expect(input.pool).toEqual({ maxConnectionsPercent: 50, replicas: 4 }); // the caller's object is not changed
  });

  test('both keys at once is a config error, not a guess', () => {
    expect(() => parseConfig({ ...minimal, pool: { replicas: 2, divisor: 3 } })).toThrow(/pool\.replicas: is the old name of pool\.divisor; set only pool\.divisor/);
  });
});

test('YAML syntax errors are config errors', () => {
  expect(() => parseConfigYaml('targets: [unclosed')).toThrow(ConfigError);
  expect(parseConfigYaml('targets: ["h:1"]\nusers:\n  - name: u\n    secretFile: /s.json\npool:\n  borrowTimeout: 500ms\n').pool.borrowTimeout).toBe(500);
});

test('durations', () => {
  expect(parseDuration('120s')).toBe(120_000);
  expect(parseDuration('500ms')).toBe(500);
  expect(parseDuration('2m')).toBe(120_000);
  expect(parseDuration('1h')).toBe(3_600_000);
  expect(parseDuration(30)).toBe(30_000);
  expect(parseDuration('1.5s')).toBe(1500);
  expect(parseDuration('-1s')).toBeUndefined();
  expect(parseDuration('5 parsecs')).toBeUndefined();
});

test('session.untrackedParameters match whatever case they are written in (PostgreSQL folds parameter names)', () => {
  expect(parseConfig({ ...minimal, session: { untrackedParameters: ['Work_Mem', 'pg_hint_plan.Enable_Hint'] } }).session.untrackedParameters).toEqual(['work_mem', 'pg_hint_plan.enable_hint']);
});

test('paused defaults to false and is read from the file', () => {
  expect(parseConfig(minimal).paused).toBe(false);
  expect(parseConfig({ ...minimal, paused: true }).paused).toBe(true);
  expect(problems({ ...minimal, paused: 'yes' })).toEqual([expect.stringMatching(/^paused: /)]);
});

describe('awsIdentityCheck', () => {
  const iamUsers = [{ name: 'app', backendAuth: { method: 'iam', region: 'eu-west-1' } }];
  const tls = { backendTls: { mode: 'require' } };
  test.each<[string, Record<string, unknown>, ReturnType<typeof awsIdentityCheck>]>([
    ['off without IAM users or a section', minimal, undefined],
    ['on for a user with backendAuth iam, in its region', { ...minimal, ...tls, users: iamUsers }, { enabled: true, interval: 300_000, timeout: 10_000, fallbackRegion: 'eu-west-1' }],
    [
      'the section alone turns it on, with the expected role',
      { ...minimal, awsIdentity: { expectedRoleArn: 'arn:aws:iam::123456789012:role/orders-proxy', interval: '1m', region: 'us-west-2' } },
      { enabled: true, expectedRoleArn: 'arn:aws:iam::123456789012:role/orders-proxy', interval: 60_000, timeout: 10_000, region: 'us-west-2', fallbackRegion: undefined },
    ],
    ['enabled false turns it off even with IAM users', { ...minimal, ...tls, users: iamUsers, awsIdentity: { enabled: false } }, undefined],
  ])('%s', (_what, input, expected) => {
    expect(awsIdentityCheck(parseConfig(input))).toEqual(expected);
  });

  test('expectedRoleArn must be a role ARN', () => {
    expect(problems({ ...minimal, awsIdentity: { expectedRoleArn: 'arn:aws:iam::123456789012:user/alice' } })).toEqual([
      'awsIdentity.expectedRoleArn: must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)',
    ]);
  });
});

describe('certificate logins', () => {
  const clientTls = { certFile: '/t/tls.crt', keyFile: '/t/tls.key', clientCaFile: '/t/ca.crt' };
  const backendCert = { method: 'cert', certFile: '/c/tls.crt', keyFile: '/c/tls.key' };
  const backendTls = { mode: 'verify-full' };

  test('a certificate user on both sides needs no password file', () => {
    const c = parseConfig({ ...minimal, tls: clientTls, backendTls, users: [{ name: 'app', clientAuth: 'cert', backendAuth: backendCert }] });
    expect(c.users[0]).toMatchObject({ clientAuth: 'cert', backendAuth: backendCert });
    expect(c.tls.clientCaFile).toBe('/t/ca.crt');
    expect(parseConfig(minimal).users[0]!.clientAuth).toBe('password');
  });

  test('a password client with a certificate to the database needs a password file, unless clients use tokens only', () => {
    const users = [{ name: 'app', backendAuth: backendCert }];
    expect(problems({ ...minimal, tls: clientTls, backendTls, users })).toEqual([expect.stringMatching(/^users\[0\]: exactly one of passwordFile or secretFile/)]);
    const tokensOnly = { iamAuth: 'REQUIRED', iam: { proxyId: 'ns/p' } };
    expect(problems({ ...minimal, tls: clientTls, backendTls, users, ...tokensOnly })).toEqual([]);
  });

  test.each([
    [{ users: [{ name: 'app', clientAuth: 'cert', passwordFile: '/p' }] }, 'users[0].clientAuth', 'needs tls.clientCaFile'],
    [{ tls: { clientCaFile: '/t/ca.crt' } }, 'tls.clientCaFile', 'needs certFile'],
    [{ backendTls, users: [{ name: 'app', passwordFile: '/p', backendAuth: { method: 'cert', certFile: '/c' } }] }, 'users[0].backendAuth.method', 'needs certFile and keyFile'],
    [{ backendTls, users: [{ name: 'app', passwordFile: '/p', backendAuth: { method: 'password', certFile: '/c', keyFile: '/k' } }] }, 'users[0].backendAuth.certFile', 'for method cert only'],
    [{ users: [{ name: 'app', passwordFile: '/p', backendAuth: backendCert }] }, 'users[0].backendAuth', 'needs TLS to the database'],
    [{ users: [{ name: 'app', passwordFile: '/p', clientAuth: 'certificate' }] }, 'users[0].clientAuth', ''],
  ])('refused, naming the field: %j', (over, field, words) => {
    const p = problems({ ...minimal, ...over });
    expect(p).toContainEqual(expect.stringMatching(new RegExp(`^${field.replace(/[[\].]/g, '\\$&')}: .*${words}`)));
  });
});
