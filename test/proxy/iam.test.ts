// IAM. Backend: RDS IAM tokens from @aws-sdk/rds-signer, checked by recomputing SigV4 with the
// test's keys; credentials from the SDK's default chain doing the IRSA exchange
// (AssumeRoleWithWebIdentity) against a local STS; an "RDS" in front of a real PostgreSQL that
// accepts only valid tokens, over TLS. Clients: presigned STS GetCallerIdentity tokens bound to
// this proxy, verified by a local STS over https that checks SigV4 with the test's keys; every
// bad token refused by its own check.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import pg from 'pg';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PgCluster } from '../../hack/postgres.js';
import { type ControlPlane, startControlPlane } from '../../hack/controlplane/controlPlane.js';
import { parseConfig } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { presignedExpiry, RdsTokenProvider } from '../../proxy/auth/rdsToken.js';
import { BINDING_HEADER, STS_TOKEN_PREFIX, stsToken } from '../../proxy/auth/iamToken.js';
import { makeCa, makeLeaf, type TestCa } from '../support/certs.js';
import { connected, psql, run, startCluster, startProxy, USERS, writePasswordFiles, type RunningProxy } from '../support/harness.js';
import { startLocalSts, type LocalSts } from '../support/localSts.js';
import { startRdsEmulator, type RdsEmulator } from '../support/rdsEmulator.js';
import { verifyPresigned } from '../support/sigv4.js';

const STATIC_KEYS = { accessKeyId: 'AKIATESTSTATIC000001', secretAccessKey: 'test/secret+key/static000000000000000000' };
const ROLE_ARN = 'arn:aws:iam::123456789012:role/dbproxy-backend';

let ca: TestCa;
let sts: LocalSts;

beforeAll(async () => {
  ca = makeCa();
  const stsCert = makeLeaf(ca, 'sts', { dns: ['localhost'], ips: ['127.0.0.1'] });
  sts = await startLocalSts({ tls: stsCert, webIdentity: [{ roleArn: ROLE_ARN, token: 'eyJ.web-identity-token-of-the-pod.sig' }] });
});

afterAll(async () => {
  await sts?.close();
});

describe('RDS IAM tokens (rds-signer)', () => {
  const creds = (expiration?: Date) => async () => ({ ...STATIC_KEYS, sessionToken: 'session-token-1', expiration });
  const lookup = (akid: string) => (akid === STATIC_KEYS.accessKeyId ? { ...STATIC_KEYS, sessionToken: 'session-token-1' } : undefined);
  const req = { hostname: 'mydb.abc123.eu-west-1.rds.amazonaws.com', port: 5432, username: 'app', region: 'eu-west-1' };

  test('the token is a presigned rds-db:connect whose SigV4 signature recomputes with the test keys', async () => {
    const tokens = new RdsTokenProvider({ credentials: creds() });
    const token = await tokens.token(req);
    expect(token.startsWith(`${req.hostname}:5432/?`)).toBe(true);
    const q = new URLSearchParams(token.slice(token.indexOf('?') + 1));
    expect(q.get('Action')).toBe('connect');
    expect(q.get('DBUser')).toBe('app');
    expect(q.get('X-Amz-Expires')).toBe('900');
    expect(q.get('X-Amz-Credential')).toMatch(/^AKIATESTSTATIC000001\/\d{8}\/eu-west-1\/rds-db\/aws4_request$/);
    const check = verifyPresigned('GET', token.slice(token.indexOf('/')), { host: `${req.hostname}:5432` }, lookup, { service: 'rds-db', region: 'eu-west-1' });
    expect(check).toMatchObject({ ok: true, signedHeaders: ['host'] });
    // Any change breaks it: another user, another host.
    const forged = token.replace('DBUser=app', 'DBUser=admin');
    expect(verifyPresigned('GET', forged.slice(forged.indexOf('/')), { host: `${req.hostname}:5432` }, lookup).code).toBe('SignatureDoesNotMatch');
    expect(verifyPresigned('GET', token.slice(token.indexOf('/')), { host: `other:5432` }, lookup).code).toBe('SignatureDoesNotMatch');
    // A different secret does not reproduce it.
    expect(verifyPresigned('GET', token.slice(token.indexOf('/')), { host: `${req.hostname}:5432` }, () => ({ ...STATIC_KEYS, secretAccessKey: 'x', sessionToken: 'session-token-1' })).ok).toBe(false);
  });

  test('tokens are cached for their lifetime less the margin, per (host, port, user, region)', async () => {
    let now = Date.now();
    const tokens = new RdsTokenProvider({ credentials: creds(), now: () => now, marginMs: 300_000 });
    const t1 = await tokens.token(req);
    expect(presignedExpiry(t1)! - Date.now()).toBeGreaterThan(890_000);
    expect(await tokens.token(req)).toBe(t1);
    expect(await tokens.token({ ...req, username: 'other' })).not.toBe(t1);
    expect(tokens.signed).toBe(2);
    // Concurrent requests share one signature.
    const [a, b] = await Promise.all([tokens.token({ ...req, port: 5433 }), tokens.token({ ...req, port: 5433 })]);
    expect(a).toBe(b);
    expect(tokens.signed).toBe(3);
    now += 599_000; // 15 min - 5 min margin = 600 s
    expect(await tokens.token(req)).toBe(t1);
    now += 2_000;
    // Past its reuse window: signed again (the string may be the same within one second of X-Amz-Date).
    await tokens.token(req);
    expect(tokens.signed).toBe(4);
  });

  test('credentials expiring before the token shorten its reuse', async () => {
    let now = Date.now();
    const tokens = new RdsTokenProvider({ credentials: creds(new Date(now + 360_000)), now: () => now, marginMs: 300_000 });
    await tokens.token(req);
    await tokens.token(req);
    expect(tokens.signed).toBe(1);
    now += 61_000; // past credentials expiry - margin
    await tokens.token(req);
    expect(tokens.signed).toBe(2);
  });

  test('config: token logins need TLS, a verifier section, and mappings to known users', () => {
    const base = { targets: ['db:5432'], users: [{ name: 'a', passwordFile: '/p' }] };
    const tls = { certFile: '/c', keyFile: '/k' };
    const iam = { proxyId: 'ns/name', roleMappings: [{ arn: 'arn:aws:iam::123456789012:role/r', user: 'a' }] };
    expect(() => parseConfig({ ...base, iamAuth: 'REQUIRED', iam })).toThrow(/token logins are accepted over TLS only/);
    expect(() => parseConfig({ ...base, tls, iamAuth: 'OPTIONAL' })).toThrow(/iamAuth needs an iam or serviceAccountAuth section/);
    expect(() => parseConfig({ ...base, tls, iamAuth: 'OPTIONAL', iam: { ...iam, roleMappings: [{ arn: 'arn:aws:iam::123456789012:role/r', user: 'zz' }] } })).toThrow(/iam.roleMappings\[0\].user: unknown user zz/);
    expect(() => parseConfig({ ...base, tls, iamAuth: 'OPTIONAL', iam: { ...iam, roleMappings: [{ arn: 'arn:aws:sts::123456789012:assumed-role/r/s', user: 'a' }] } })).toThrow(/must be an IAM role or user ARN/);
    const c = parseConfig({ ...base, tls, iamAuth: 'OPTIONAL', iam, serviceAccountAuth: { mappings: [{ namespace: 'n', serviceAccount: 's', user: 'a' }] } });
    expect(c.iam).toMatchObject({ stsHosts: ['sts.amazonaws.com', 'sts.*.amazonaws.com', 'sts.*.amazonaws.com.cn', 'sts-fips.*.amazonaws.com'], timeout: 5000, cacheTtl: 60_000 });
    expect(c.serviceAccountAuth).toMatchObject({ audience: 'dbproxy', timeout: 5000, cacheTtl: 60_000 });
    expect(parseConfig(base)).toMatchObject({ iamAuth: 'DISABLED', tls: { requireTLS: false, reloadInterval: 5000, minVersion: 'TLSv1.2' }, backendTls: { mode: 'disable' } });
  });

  test('config: IAM backend auth needs a region and TLS to the database', () => {
    const base = { targets: ['db:5432'] };
    expect(() => parseConfig({ ...base, users: [{ name: 'a', backendAuth: { method: 'iam' } }], backendTls: { mode: 'require' } })).toThrow(/backendAuth.region is required/);
    expect(() => parseConfig({ ...base, users: [{ name: 'a', backendAuth: { method: 'iam', region: 'us-east-1' } }] })).toThrow(/needs TLS to the database/);
    const ok = parseConfig({ ...base, users: [{ name: 'a', backendAuth: { method: 'iam', region: 'us-east-1' } }], backendTls: { mode: 'verify-full' } });
    expect(ok.users[0]!.backendAuth).toEqual({ method: 'iam', region: 'us-east-1' });
    expect(parseConfig({ ...base, users: [{ name: 'a', passwordFile: '/p' }] }).users[0]!.backendAuth).toEqual({ method: 'password' });
  });
});

describe('backend IAM end to end: IRSA credentials, RDS tokens, TLS', () => {
  let cluster: PgCluster;
  let rds: RdsEmulator;
  let proxy: RunningProxy;
  const saved: Record<string, string | undefined> = {};
  const ENV = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_SESSION_NAME', 'AWS_REGION', 'AWS_ENDPOINT_URL_STS', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_EC2_METADATA_DISABLED'];

  beforeAll(async () => {
    cluster = await startCluster();
    const rdsCert = makeLeaf(ca, 'rds', { dns: ['localhost'], ips: ['127.0.0.1'] });
    rds = await startRdsEmulator({ cluster, tls: rdsCert, region: 'eu-west-1', lookup: (akid) => sts.identities.get(akid) });
    // What EKS injects into a pod whose ServiceAccount has the IRSA annotation.
    for (const k of ENV) saved[k] = process.env[k];
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE']) delete process.env[k];
    const dir = mkdtempSync(join(tmpdir(), 'dbproxy-irsa-'));
    writeFileSync(join(dir, 'token'), 'eyJ.web-identity-token-of-the-pod.sig');
    Object.assign(process.env, {
      AWS_ROLE_ARN: ROLE_ARN,
      AWS_WEB_IDENTITY_TOKEN_FILE: join(dir, 'token'),
      AWS_ROLE_SESSION_NAME: 'dbproxy-test',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_STS: sts.httpUrl,
      AWS_CONFIG_FILE: join(dir, 'no-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    const files = writePasswordFiles();
    proxy = await startProxy(cluster, {
      targets: [`127.0.0.1:${rds.port}`],
      users: files.users.map((u) => (u.name === 'boss' ? u : { ...u, backendAuth: { method: 'iam' as const, region: 'eu-west-1' } })),
      backendTls: { mode: 'verify-full', caFile: ca.certFile },
    });
  });

  afterAll(async () => {
    await proxy?.stop();
    await rds?.close();
    cluster?.destroy();
    for (const k of ENV) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });

  test('clients log in with their password; the proxy logs in to "RDS" with IAM tokens over TLS', async () => {
    const clients = await Promise.all([1, 2, 3].map(() => connected(proxy.port, 'app')));
    await Promise.all(clients.map((c) => c.query('BEGIN')));
    const users = await Promise.all(clients.map(async (c) => (await c.query('SELECT current_user AS u')).rows[0].u));
    expect(users).toEqual(['app', 'app', 'app']);
    await Promise.all(clients.map((c) => c.query('COMMIT')));
    await Promise.all(clients.map((c) => c.end()));
    const legacy = await connected(proxy.port, 'legacy');
    expect((await legacy.query('SELECT current_user AS u')).rows[0].u).toBe('legacy');
    await legacy.end();

    // The credentials came from the web identity exchange, once.
    const exchanges = sts.requests.filter((r) => r.action === 'AssumeRoleWithWebIdentity');
    expect(exchanges).toHaveLength(1);
    expect(exchanges[0]!.status).toBe(200);
    // Health check + pool connections for app: several logins, one token (cached).
    const appTokens = rds.accepted.filter((a) => a.user === 'app').map((a) => a.token);
    expect(appTokens.length).toBeGreaterThanOrEqual(3);
    expect(new Set(appTokens).size).toBe(1);
    expect(rds.accepted.some((a) => a.user === 'legacy')).toBe(true);
    expect(rds.refused).toEqual([]);
    // The token is signed with the assumed role's temporary keys.
    const akid = new URLSearchParams(appTokens[0]!.split('?')[1]).get('X-Amz-Credential')!.split('/')[0]!;
    expect(akid.startsWith('ASIA')).toBe(true);
    expect(sts.identities.get(akid)!.arn).toBe('arn:aws:sts::123456789012:assumed-role/dbproxy-backend/dbproxy-test');
    // Tokens never reach the logs.
    expect(proxy.logs.join('\n')).not.toContain('X-Amz-Signature');
  });

  test('a token the database refuses is reported in /stats and the logs', async () => {
    // "boss" is a password user here; pretend the DBA switched it to IAM on the server only.
    const c = await connected(proxy.port, 'boss').catch((e: { code: string }) => e);
    expect(c).toMatchObject({ code: '28P01' });
    const s = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/stats`)).json()) as ProxyStats;
    expect(s.backendAuthFailures).toMatchObject({ last: { user: 'boss', code: '28P01' } });
    expect(rds.refused.map((r) => r.user)).toContain('boss');
    expect(proxy.logs.join('\n')).toContain('the database refused the configured password');
    expect(proxy.logs.join('\n')).not.toContain(USERS[2]!.password);
  });
});

// ---- client logins with STS tokens ----

const PROXY_ID = 'prod/orders-db';
const ORDERS_ROLE = { accessKeyId: 'ASIAORDERSAPPROLE001', secretAccessKey: 'orders/app/role/secret/000000000000000000', sessionToken: 'orders-session-token' };
const ALICE = { accessKeyId: 'AKIAALICEUSER0000001', secretAccessKey: 'alice/user/secret/00000000000000000000000' };
const STRANGER = { accessKeyId: 'ASIASTRANGERROLE0001', secretAccessKey: 'stranger/role/secret/0000000000000000000', sessionToken: 'stranger-session' };

describe('client logins with STS tokens', () => {
  let cluster: PgCluster;
  let optional: RunningProxy;
  let required: RunningProxy;
  let proxyCert: { certFile: string; keyFile: string };

  const token = (keys: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }, extra: Partial<Parameters<typeof stsToken>[0]> = {}) =>
    stsToken({ proxyId: PROXY_ID, endpoint: sts.httpsUrl, region: 'us-east-1', credentials: keys, ...extra });
  /** Decodes a token's URL, lets `edit` change it, encodes it again (an attacker's edit). */
  const tamper = (t: string, edit: (url: string) => string) => STS_TOKEN_PREFIX + Buffer.from(edit(Buffer.from(t.slice(STS_TOKEN_PREFIX.length), 'base64url').toString()), 'utf8').toString('base64url');
  const ssl = () => ({ ca: ca.pem, servername: 'localhost' });

  async function refusal(port: number, user: string, password: string, extra: Partial<pg.ClientConfig> = { ssl: ssl() }): Promise<{ code: string; message: string }> {
    const c = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres', ...extra });
    try {
      await c.connect();
    } catch (e) {
      return e as { code: string; message: string };
    }
    await c.end();
    throw new Error('login unexpectedly succeeded');
  }

  beforeAll(async () => {
    cluster = await startCluster();
    proxyCert = makeLeaf(ca, 'proxy', { dns: ['localhost'], ips: ['127.0.0.1'] });
    sts.addIdentity({ ...ORDERS_ROLE, arn: 'arn:aws:sts::123456789012:assumed-role/orders-app/pod-7f9c', account: '123456789012', userId: 'AROAORDERS:pod-7f9c' });
    sts.addIdentity({ ...ALICE, arn: 'arn:aws:iam::123456789012:user/alice', account: '123456789012', userId: 'AIDAALICE' });
    sts.addIdentity({ ...STRANGER, arn: 'arn:aws:sts::210987654321:assumed-role/stranger/s', account: '210987654321', userId: 'AROASTRANGER:s' });
    const iam = {
      proxyId: PROXY_ID,
      stsHosts: [sts.httpsHost],
      stsCaFile: ca.certFile,
      timeout: '1s',
      roleMappings: [
        { arn: 'arn:aws:iam::123456789012:role/orders-app', user: 'app' },
        { arn: 'arn:aws:iam::123456789012:user/alice', user: 'legacy' },
      ],
    };
    const tls = { certFile: proxyCert.certFile, keyFile: proxyCert.keyFile };
    optional = await startProxy(cluster, { tls, iamAuth: 'OPTIONAL', iam });
    required = await startProxy(cluster, { tls, iamAuth: 'REQUIRED', iam });
  });

  afterAll(async () => {
    await optional?.stop();
    await required?.stop();
    cluster?.destroy();
  });

  test('psql over TLS with an STS token lands as the mapped user', async () => {
    const t = await token(ORDERS_ROLE);
    const r = await psql(required.port, 'SELECT current_user', { password: t, env: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca.certFile } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('app');
    expect(required.logs.join('\n')).toContain('"identity":"arn:aws:iam::123456789012:role/orders-app"');
    expect(required.logs.join('\n')).not.toContain(t);
  });

  test('node-postgres with password: () => stsToken(...), and the verified token is cached briefly', async () => {
    const before = sts.requests.filter((r) => r.action === 'GetCallerIdentity').length;
    const t = await token(ALICE);
    for (let i = 0; i < 2; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: optional.port, user: 'legacy', database: 'postgres', ssl: ssl(), password: async () => t });
      await c.connect();
      expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('legacy');
      await c.end();
    }
    const calls = sts.requests.filter((r) => r.action === 'GetCallerIdentity').slice(before);
    expect(calls).toHaveLength(1);
    // The proxy sent its own id in the binding header, and asked for JSON.
    expect(calls[0]!.headers[BINDING_HEADER]).toBe(PROXY_ID);
    expect(calls[0]!.headers.accept).toBe('application/json');
    // A fresh token per connection works just as well.
    const c = new pg.Client({ host: '127.0.0.1', port: optional.port, user: 'app', database: 'postgres', ssl: ssl(), password: () => token(ORDERS_ROLE) });
    await c.connect();
    expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
    await c.end();
  });

  test('iamAuth OPTIONAL: a mapped user may still use its password over TLS, and SCRAM in plaintext', async () => {
    const tlsLogin = await connected(optional.port, 'app', { ssl: ssl() });
    expect((await tlsLogin.query('SELECT current_user AS u')).rows[0].u).toBe('app');
    await tlsLogin.end();
    const plain = await connected(optional.port, 'app');
    await plain.end();
    expect((await refusal(optional.port, 'app', 'wrong-password')).message).toBe('password authentication failed for user "app"');
    // An unmapped user is not affected at all.
    const boss = await connected(optional.port, 'boss', { ssl: ssl() });
    await boss.end();
  });

  test('tokens are accepted over TLS only', async () => {
    const t = await token(ORDERS_ROLE);
    // OPTIONAL, plaintext: the usual SCRAM exchange, in which a token is just a wrong password.
    expect(await refusal(optional.port, 'app', t, {})).toMatchObject({ code: '28P01' });
    // REQUIRED, plaintext: refused outright.
    const r = await refusal(required.port, 'app', t, {});
    expect(r.code).toBe('28000');
    expect(r.message).toBe('IAM authentication for user "app" requires TLS (use sslmode=require)');
  });

  test('iamAuth REQUIRED: passwords are refused', async () => {
    const r = await refusal(required.port, 'app', 'app-secret');
    expect(r.code).toBe('28P01');
    expect(r.message).toMatch(/password logins are disabled \(iamAuth REQUIRED\)/);
  });

  // Each bad token, with the check that refuses it.
  const bad: Array<[string, () => Promise<string>, RegExp]> = [
    ['expired', () => token(ORDERS_ROLE, { signingDate: new Date(Date.now() - 16 * 60_000) }), /token expired: signed 9\d\d s ago \(at most 900 s\)/],
    ['wrong host', () => token(ORDERS_ROLE, { endpoint: 'https://sts.evil.example' }), /STS host sts\.evil\.example is not allowed/],
    ['a regional host not on this allow-list', () => token(ORDERS_ROLE, { endpoint: 'https://sts.eu-west-1.amazonaws.com' }), /STS host sts\.eu-west-1\.amazonaws\.com is not allowed/],
    ['extra query parameter', async () => tamper(await token(ORDERS_ROLE), (u) => `${u}&Foo=bar`), /query parameter "Foo" is not allowed/],
    ['repeated query parameter', async () => tamper(await token(ORDERS_ROLE), (u) => `${u}&Action=GetCallerIdentity`), /query parameter "Action" appears more than once/],
    ['another action', async () => tamper(await token(ORDERS_ROLE), (u) => u.replace('Action=GetCallerIdentity', 'Action=AssumeRole')), /token must be for Action=GetCallerIdentity/],
    ['another path', async () => tamper(await token(ORDERS_ROLE), (u) => u.replace('/?', '/x/?')), /token URL path must be "\/"/],
    ['binding header missing', () => presignWithout(ORDERS_ROLE), /the x-dbproxy-id header is not among the signed headers/],
    ['unsigned', async () => STS_TOKEN_PREFIX + Buffer.from(`${sts.httpsUrl}/?Action=GetCallerIdentity&Version=2011-06-15`).toString('base64url'), /not a SigV4-presigned request/],
    ['made for another proxy', () => token(ORDERS_ROLE, { proxyId: 'staging/orders-db' }), /STS refused the token \(HTTP 403 SignatureDoesNotMatch\)/],
    ['signed with the wrong secret', () => token({ ...ORDERS_ROLE, secretAccessKey: 'not-the-secret' }), /STS refused the token \(HTTP 403 SignatureDoesNotMatch\)/],
    ['http instead of https', async () => tamper(await token(ORDERS_ROLE), (u) => u.replace('https://', 'http://')), /token URL must use https, not http/],
    ['oversized', async () => tamper(await token(ORDERS_ROLE), (u) => `${u}&X-Amz-Security-Token=${'A'.repeat(9000)}`), /token is too long/],
    ['not base64url', async () => `${STS_TOKEN_PREFIX}not*base64`, /token is not base64url/],
    ['an identity that is not mapped', () => token(STRANGER), /identity arn:aws:iam::210987654321:role\/stranger is not mapped to any database user/],
    ['an identity mapped to another user', () => token(ALICE), /identity arn:aws:iam::123456789012:user\/alice is not mapped to user "app"/],
  ];

  test.each(bad)('refused: %s', async (_name, make, why) => {
    const t = await make();
    const r = await refusal(required.port, 'app', t);
    expect(r.code).toBe('28P01');
    expect(r.message).toMatch(/^IAM authentication failed for user "app": /);
    expect(r.message).toMatch(why);
    expect(r.message).not.toContain(t.slice(STS_TOKEN_PREFIX.length, STS_TOKEN_PREFIX.length + 40));
    expect(required.logs.join('\n')).not.toContain(t.slice(STS_TOKEN_PREFIX.length, STS_TOKEN_PREFIX.length + 40));
  });

  test('refused before STS is called: a token signed for another service than sts', async () => {
    const before = sts.requests.length;
    const t = await presignWith(ORDERS_ROLE, { service: 's3', region: 'us-east-1' });
    const r = await refusal(required.port, 'app', t);
    expect(r.code).toBe('28P01');
    expect(r.message).toBe('IAM authentication failed for user "app": token is signed for service "s3", not sts');
    expect(sts.requests.length).toBe(before);
  });

  test('STS answering in XML: the caller ARN counts only from GetCallerIdentityResult', async () => {
    const xmlAnswer = (inner: (arn: string) => string) => (id: { arn: string }) => ({
      type: 'text/xml',
      body: `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">${inner(id.arn)}<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
    });
    try {
      // The ARN where STS puts it: accepted.
      sts.callerIdentityAnswer = xmlAnswer((arn) => `<GetCallerIdentityResult><Arn>${arn}</Arn><UserId>u</UserId><Account>123456789012</Account></GetCallerIdentityResult>`);
      const ok = await token(ORDERS_ROLE, { signingDate: new Date(Date.now() - 41_000) });
      const c = new pg.Client({ host: '127.0.0.1', port: required.port, user: 'app', database: 'postgres', ssl: ssl(), password: ok });
      await c.connect();
      expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('app');
      await c.end();
      // The same ARN anywhere else in the answer: refused.
      sts.callerIdentityAnswer = xmlAnswer((arn) => `<GetCallerIdentityResult><UserId>u</UserId></GetCallerIdentityResult><Note><Arn>${arn}</Arn></Note>`);
      const r = await refusal(required.port, 'app', await token(ORDERS_ROLE, { signingDate: new Date(Date.now() - 43_000) }));
      expect(r.code).toBe('28P01');
      expect(r.message).toBe('IAM authentication failed for user "app": STS answer is not a well-formed GetCallerIdentity response with the caller ARN');
    } finally {
      sts.callerIdentityAnswer = undefined;
    }
  });

  test('refused: STS does not answer in time', async () => {
    sts.delayMs = 1500;
    try {
      const r = await refusal(required.port, 'app', await token(ORDERS_ROLE, { signingDate: new Date(Date.now() - 37_000) })); // a token never seen, so not cached
      expect(r.code).toBe('28P01');
      expect(r.message).toMatch(/STS did not answer within 1000 ms/);
    } finally {
      sts.delayMs = 0;
    }
  });

  test('`dbproxy token` (the built CLI) prints a token from the default chain that psql can log in with', async () => {
    const cli = resolve('dist/proxy/cli/dbproxy.js');
    if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` (make test does) before this test`);
    const env = {
      AWS_ACCESS_KEY_ID: ORDERS_ROLE.accessKeyId,
      AWS_SECRET_ACCESS_KEY: ORDERS_ROLE.secretAccessKey,
      AWS_SESSION_TOKEN: ORDERS_ROLE.sessionToken,
      AWS_REGION: 'us-east-1',
      AWS_PROFILE: '',
    };
    const out = await run(process.execPath, [cli, 'token', '--proxy-id', PROXY_ID, '--endpoint', sts.httpsUrl], env);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const t = out.stdout.trim();
    expect(t.startsWith(STS_TOKEN_PREFIX)).toBe(true);
    const r = await psql(required.port, 'SELECT current_user', { password: t, env: { PGSSLMODE: 'require' } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('app');
    const usage = await run(process.execPath, [cli, 'token'], { DBPROXY_PROXY_ID: '' });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/--proxy-id ID is required/);
  });

  /** A token bound to this proxy, for the local STS, signed with any service and region. */
  async function presignWith(keys: typeof ORDERS_ROLE, scope: { service: string; region: string }): Promise<string> {
    const url = new URL(sts.httpsUrl);
    const signer = new SignatureV4({ ...scope, credentials: keys, sha256: Hash.bind(null, 'sha256') });
    const p = await signer.presign(
      { method: 'GET', protocol: 'https:', hostname: url.hostname, port: Number(url.port), path: '/', query: { Action: 'GetCallerIdentity', Version: '2011-06-15' }, headers: { host: url.host, [BINDING_HEADER]: PROXY_ID } },
      { expiresIn: 900 },
    );
    const q = Object.entries(p.query ?? {}).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&');
    return STS_TOKEN_PREFIX + Buffer.from(`https://${url.host}/?${q}`).toString('base64url');
  }

  /** A presigned GetCallerIdentity that signs only the host header (no binding to a proxy). */
  async function presignWithout(keys: typeof ORDERS_ROLE): Promise<string> {
    const url = new URL(sts.httpsUrl);
    const signer = new SignatureV4({ service: 'sts', region: 'us-east-1', credentials: keys, sha256: Hash.bind(null, 'sha256') });
    const p = await signer.presign(
      { method: 'GET', protocol: 'https:', hostname: url.hostname, port: Number(url.port), path: '/', query: { Action: 'GetCallerIdentity', Version: '2011-06-15' }, headers: { host: url.host } },
      { expiresIn: 900 },
    );
    const q = Object.entries(p.query ?? {}).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&');
    return STS_TOKEN_PREFIX + Buffer.from(`https://${url.host}/?${q}`).toString('base64url');
  }
});

// ---- client logins with Kubernetes ServiceAccount tokens (TokenReview on a real kube-apiserver) ----

describe('client logins with ServiceAccount tokens', () => {
  let cp: ControlPlane;
  let cluster: PgCluster;
  let proxy: RunningProxy;
  const ssl = () => ({ ca: ca.pem, servername: 'localhost' });

  async function kubectl(args: string[]): Promise<string> {
    const r = await cp.kubectl(args);
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  beforeAll(async () => {
    cp = await startControlPlane({ controllers: ['serviceaccount', 'serviceaccount-token'] });
    await kubectl(['create', 'namespace', 'apps']);
    await kubectl(['create', 'namespace', 'dbproxy']);
    for (const sa of ['orders', 'billing']) await kubectl(['-n', 'apps', 'create', 'serviceaccount', sa]);
    // The proxy's own identity may create TokenReviews and nothing else of note.
    await kubectl(['create', 'clusterrolebinding', 'dbproxy-tokenreview', '--clusterrole=system:auth-delegator', '--serviceaccount=dbproxy:proxy']);
    const proxyKubeconfig = await cp.userKubeconfig({ user: 'system:serviceaccount:dbproxy:proxy', groups: ['system:serviceaccounts', 'system:serviceaccounts:dbproxy'] });
    cluster = await startCluster();
    const cert = makeLeaf(ca, 'proxy-sa', { dns: ['localhost'], ips: ['127.0.0.1'] });
    proxy = await startProxy(cluster, {
      tls: { certFile: cert.certFile, keyFile: cert.keyFile },
      iamAuth: 'REQUIRED',
      serviceAccountAuth: { kubeconfig: proxyKubeconfig, mappings: [{ namespace: 'apps', serviceAccount: 'orders', user: 'app' }] },
    });
  }, 240_000);

  afterAll(async () => {
    await proxy?.stop();
    cluster?.destroy();
    await cp?.stop();
  });

  async function refusal(user: string, password: string): Promise<{ code: string; message: string }> {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user, password, database: 'postgres', ssl: ssl() });
    try {
      await c.connect();
    } catch (e) {
      return e as { code: string; message: string };
    }
    await c.end();
    throw new Error('login unexpectedly succeeded');
  }

  test('psql over TLS with a ServiceAccount token (audience dbproxy) lands as the mapped user', async () => {
    const t = await kubectl(['-n', 'apps', 'create', 'token', 'orders', '--audience', 'dbproxy']);
    const r = await psql(proxy.port, 'SELECT current_user', { password: t, env: { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca.certFile } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('app');
    expect(proxy.logs.join('\n')).toContain('"identity":"system:serviceaccount:apps:orders"');
    expect(proxy.logs.join('\n')).not.toContain(t);
  });

  test.each([
    ['a token for another audience', () => kubectl(['-n', 'apps', 'create', 'token', 'orders', '--audience', 'not-dbproxy']), /the Kubernetes API did not accept the ServiceAccount token/],
    ['an unmapped ServiceAccount', () => kubectl(['-n', 'apps', 'create', 'token', 'billing', '--audience', 'dbproxy']), /ServiceAccount apps\/billing is not mapped to any database user/],
    [
      'a forged signature',
      async () => {
        const t = await kubectl(['-n', 'apps', 'create', 'token', 'orders', '--audience', 'dbproxy']);
        return t.slice(0, -4) + (t.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      },
      /the Kubernetes API did not accept the ServiceAccount token/,
    ],
  ])('refused: %s', async (_name, make, why) => {
    const t = await make();
    const r = await refusal('app', t);
    expect(r.code).toBe('28P01');
    expect(r.message).toMatch(why);
    expect(r.message).not.toContain(t.split('.')[1]!.slice(0, 30));
  });

  test('refused: a ServiceAccount token for another user than the one mapped', async () => {
    const t = await kubectl(['-n', 'apps', 'create', 'token', 'orders', '--audience', 'dbproxy']);
    // legacy is not the mapped user; with iamAuth REQUIRED it has no other way in.
    const r = await refusal('legacy', t);
    expect(r.code).toBe('28P01');
    expect(r.message).toMatch(/system:serviceaccount:apps:orders is not mapped to user "legacy"/);
  });
});
