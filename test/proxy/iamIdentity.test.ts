// The proxy's check of its own AWS identity: the SDK's default credential chain doing the IRSA
// exchange (AssumeRoleWithWebIdentity) and @aws-sdk/client-sts calling GetCallerIdentity against
// the local STS, which checks every signature with the keys it issued. What a user sees: /stats
// awsIdentity with the role ARN, or the reason it is missing, one log line per change.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { PgCluster } from '../../hack/postgres.js';
import { parseConfig } from '../../proxy/contract/config.js';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import { classifyIdentityError, isExpectedRole, stsRegion } from '../../proxy/iam/identityCheck.js';
import { ProxyServer } from '../../proxy/proxyServer.js';
import { eventually, startCluster, writePasswordFiles } from '../support/harness.js';
import { startLocalSts, type LocalSts } from '../support/localSts.js';
import { makeCa, makeLeaf } from '../support/certs.js';

const ROLE = 'arn:aws:iam::123456789012:role/orders-proxy';
const OTHER_ROLE = 'arn:aws:iam::123456789012:role/someone-else';
const EXPIRED_ROLE = 'arn:aws:iam::123456789012:role/expired-token';
const TOKEN = 'eyJ.projected-service-account-token.sig';

let sts: LocalSts;
let cluster: PgCluster;
let dir: string;
const ENV = ['AWS_ROLE_ARN', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_SESSION_NAME', 'AWS_REGION', 'AWS_ENDPOINT_URL_STS', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE', 'AWS_EC2_METADATA_DISABLED', 'AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'];
const saved: Record<string, string | undefined> = {};

beforeAll(async () => {
  const ca = makeCa();
  sts = await startLocalSts({
    tls: makeLeaf(ca, 'sts', { dns: ['localhost'], ips: ['127.0.0.1'] }),
    webIdentity: [
      { roleArn: ROLE, token: TOKEN },
      { roleArn: OTHER_ROLE, token: TOKEN },
      { roleArn: EXPIRED_ROLE, token: TOKEN, expired: true },
    ],
  });
  cluster = await startCluster();
  dir = mkdtempSync(join(tmpdir(), 'dbproxy-irsa-'));
  for (const k of ENV) saved[k] = process.env[k];
});

afterAll(async () => {
  for (const k of ENV) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  await sts?.close();
  cluster?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** What the EKS pod identity webhook injects for a ServiceAccount annotated with `roleArn`. */
function irsaEnv(roleArn: string | undefined, tokenFile: string | undefined): void {
  for (const k of ENV) delete process.env[k];
  Object.assign(process.env, {
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL_STS: sts.httpUrl,
    AWS_ROLE_SESSION_NAME: 'dbproxy-pod',
    AWS_CONFIG_FILE: join(dir, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    ...(roleArn ? { AWS_ROLE_ARN: roleArn } : {}),
    ...(tokenFile ? { AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile } : {}),
  });
}

async function withProxy(awsIdentity: Record<string, unknown>, body: (p: { stats: () => Promise<ProxyStats>; logs: string[]; server: ProxyServer }) => Promise<void>): Promise<void> {
  const config = parseConfig({
    listen: '127.0.0.1:0',
    adminListen: '127.0.0.1:0',
    targets: [`127.0.0.1:${cluster.port}`],
    users: writePasswordFiles().users,
    healthCheck: { interval: '200ms' },
    awsIdentity,
  });
  const logs: string[] = [];
  const server = await ProxyServer.create({ config, log: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }) });
  const { adminPort } = await server.start();
  try {
    await body({ stats: async () => (await (await fetch(`http://127.0.0.1:${adminPort}/stats`)).json()) as ProxyStats, logs, server });
  } finally {
    await server.shutdown(1000);
  }
}

const settled = async (stats: () => Promise<ProxyStats>): Promise<NonNullable<ProxyStats['awsIdentity']>> =>
  (await eventually(async () => {
    const s = (await stats()).awsIdentity;
    return s && s.state !== 'PENDING' ? s : undefined;
  }, 'the identity check to answer', 15_000))!;

test('IRSA as it should be: /stats shows the role ARN STS reports, logged once however often it is checked', async () => {
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN);
  irsaEnv(ROLE, tokenFile);
  const before = sts.requests.length;
  await withProxy({ expectedRoleArn: ROLE, interval: '200ms' }, async ({ stats, logs }) => {
    const id = await settled(stats);
    expect(id).toMatchObject({
      state: 'VERIFIED',
      arn: 'arn:aws:sts::123456789012:assumed-role/orders-proxy/dbproxy-pod',
      roleArn: ROLE,
      account: '123456789012',
      expectedRoleArn: ROLE,
    });
    expect(id.reason).toBeUndefined();
    expect(Date.parse(id.lastVerifiedAt!)).toBeGreaterThan(Date.now() - 60_000);
    // Checked again and again, logged once.
    await eventually(() => sts.requests.slice(before).filter((r) => r.action === 'GetCallerIdentity').length >= 3, 'three checks');
    const lines = logs.filter((l) => l.includes('AWS identity verified with STS'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ arn: 'arn:aws:sts::123456789012:assumed-role/orders-proxy/dbproxy-pod', account: '123456789012' });
  });
  // The calls STS saw: the IRSA exchange once (cached credentials), then GetCallerIdentity signed with the issued keys.
  const seen = sts.requests.slice(before);
  expect(seen.filter((r) => r.action === 'AssumeRoleWithWebIdentity').map((r) => r.status)).toEqual([200]);
  expect(seen.filter((r) => r.action === 'GetCallerIdentity').every((r) => r.method === 'POST' && r.status === 200)).toBe(true);
});

test.each<[string, () => void, string, RegExp]>([
  [
    'no web identity token mounted',
    () => irsaEnv(ROLE, join(dir, 'missing-token')),
    'NoWebIdentityToken',
    /web identity token file .*missing-token cannot be read .*eks\.amazonaws\.com\/role-arn/,
  ],
  [
    "a role whose trust policy does not name this ServiceAccount (STS: AccessDenied)",
    () => {
      writeFileSync(join(dir, 'token'), TOKEN);
      irsaEnv('arn:aws:iam::123456789012:role/not-trusted', join(dir, 'token'));
    },
    'AccessDenied',
    /STS refused to let the pod assume the role arn:aws:iam::123456789012:role\/not-trusted: .*trust policy/,
  ],
  [
    'an expired projected token',
    () => {
      writeFileSync(join(dir, 'token'), TOKEN);
      irsaEnv(EXPIRED_ROLE, join(dir, 'token'));
    },
    'ExpiredToken',
    /STS says the token has expired: Token expired/,
  ],
  [
    'a token the identity provider did not issue',
    () => {
      writeFileSync(join(dir, 'forged'), 'eyJ.not-from-the-cluster.sig');
      irsaEnv(ROLE, join(dir, 'forged'));
    },
    'InvalidWebIdentityToken',
    /STS refused the web identity token/,
  ],
  [
    'IRSA working, but for another role than the DatabaseProxy names',
    () => {
      writeFileSync(join(dir, 'token'), TOKEN);
      irsaEnv(OTHER_ROLE, join(dir, 'token'));
    },
    'WrongRole',
    /^the pods run as arn:aws:sts::123456789012:assumed-role\/someone-else\/dbproxy-pod, not as arn:aws:iam::123456789012:role\/orders-proxy$/,
  ],
  ['no IRSA at all (no webhook): no credentials', () => irsaEnv(undefined, undefined), 'NoCredentials', /no AWS credentials: .*AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE/],
])('%s: /stats says why, with a reason the operator turns into IAMReady=False', async (_what, setup, reason, message) => {
  setup();
  await withProxy({ expectedRoleArn: ROLE, timeout: '5s' }, async ({ stats, logs }) => {
    const id = await settled(stats);
    expect(id).toMatchObject({ state: 'FAILED', reason, expectedRoleArn: ROLE });
    expect(id.message).toMatch(message);
    const failed = logs.filter((l) => l.includes('AWS identity check failed'));
    expect(failed).toHaveLength(1);
    expect(JSON.parse(failed[0]!)).toMatchObject({ reason });
  });
});

test('a broken setup that is fixed is seen at the next check, logged once more', async () => {
  const tokenFile = join(dir, 'late-token');
  rmSync(tokenFile, { force: true });
  irsaEnv(ROLE, tokenFile);
  await withProxy({ expectedRoleArn: ROLE, interval: '300ms' }, async ({ stats, logs }) => {
    expect(await settled(stats)).toMatchObject({ state: 'FAILED', reason: 'NoWebIdentityToken' });
    writeFileSync(tokenFile, TOKEN); // the webhook's projected volume appears
    const ok = await eventually(async () => ((await stats()).awsIdentity?.state === 'VERIFIED' ? (await stats()).awsIdentity : undefined), 'the identity to be verified', 15_000);
    expect(ok).toMatchObject({ roleArn: ROLE });
    expect(ok!.reason).toBeUndefined();
    expect(logs.filter((l) => l.includes('AWS identity check failed'))).toHaveLength(1);
    expect(logs.filter((l) => l.includes('AWS identity verified with STS'))).toHaveLength(1);
  });
});

test('STS not answering in time is StsUnreachable, not a hang', async () => {
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, TOKEN);
  irsaEnv(ROLE, tokenFile);
  sts.delayMs = 3000;
  try {
    await withProxy({ timeout: '300ms' }, async ({ stats }) => {
      const id = await settled(stats);
      expect(id).toMatchObject({ state: 'FAILED', reason: 'StsUnreachable' });
      expect(id.message).toMatch(/timed out after 300 ms/);
    });
  } finally {
    sts.delayMs = 0;
  }
});

test('without backend IAM users or an awsIdentity section there is no check and no awsIdentity in /stats', async () => {
  irsaEnv(ROLE, join(dir, 'token'));
  const config = parseConfig({ listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', targets: [`127.0.0.1:${cluster.port}`], users: writePasswordFiles().users, healthCheck: { interval: '200ms' } });
  const before = sts.requests.length;
  const server = await ProxyServer.create({ config, log: pino({ level: 'silent' }) });
  await server.start();
  try {
    await server.whenReady();
    expect(server.stats().awsIdentity).toBeUndefined();
    expect(sts.requests.length).toBe(before);
  } finally {
    await server.shutdown(1000);
  }
});

describe('pure parts', () => {
  test.each([
    ['arn:aws:sts::123456789012:assumed-role/orders-proxy/s', 'arn:aws:iam::123456789012:role/orders-proxy', true],
    ['arn:aws:sts::123456789012:assumed-role/orders-proxy/s', 'arn:aws:iam::123456789012:role/team/orders-proxy', true],
    ['arn:aws:sts::123456789012:assumed-role/eks-node-role/i-0abc', 'arn:aws:iam::123456789012:role/orders-proxy', false],
    ['arn:aws:sts::210987654321:assumed-role/orders-proxy/s', 'arn:aws:iam::123456789012:role/orders-proxy', false],
    ['arn:aws:iam::123456789012:user/alice', 'arn:aws:iam::123456789012:role/alice', false],
  ])('isExpectedRole(%s, %s) is %s', (arn, expected, yes) => {
    expect(isExpectedRole(arn, expected)).toBe(yes);
  });

  test.each<[unknown, string]>([
    [Object.assign(new Error('getaddrinfo ENOTFOUND sts.eu-west-1.amazonaws.com'), { code: 'ENOTFOUND' }), 'StsUnreachable'],
    [Object.assign(new Error('Region is missing'), {}), 'NoRegion'],
    [Object.assign(new Error('Signature expired'), { name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } }), 'ExpiredToken'],
    [Object.assign(new Error('The security token included in the request is invalid.'), { name: 'InvalidClientTokenId', $metadata: { httpStatusCode: 403 } }), 'InvalidCredentials'],
    [Object.assign(new Error('User: arn:aws:sts::1:assumed-role/x/y is not authorized'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }), 'AccessDenied'],
    [new Error('something else'), 'StsError'],
  ])('classifyIdentityError %#: %s', (err, reason) => {
    expect(classifyIdentityError(err).reason).toBe(reason);
  });

  test('the STS region: configured, else the SDK\'s (AWS_REGION), else the database\'s', () => {
    expect(stsRegion('us-west-2', 'eu-west-1', { AWS_REGION: 'us-east-1' })).toBe('us-west-2');
    expect(stsRegion(undefined, 'eu-west-1', { AWS_REGION: 'us-east-1' })).toBeUndefined();
    expect(stsRegion(undefined, 'eu-west-1', {})).toBe('eu-west-1');
  });
});
