import { DEFAULT_STS_HOSTS } from '../contract/config.js';
import { STS_TOKEN_PREFIX, stsToken } from './iamToken.js';
import { canonicalArn, hostAllowed, StsVerifier } from './stsVerifier.js';
import { TokenAuth, TokenRefused, type TokenVerifier } from './tokenAuth.js';

const keys = { accessKeyId: 'AKIAUNITTEST00000001', secretAccessKey: 'unit/test/secret' };

test('the default allow-list takes the global and every regional STS host, and nothing else', () => {
  expect(hostAllowed('sts.amazonaws.com', '', DEFAULT_STS_HOSTS)).toBe(true);
  expect(hostAllowed('STS.eu-west-1.amazonaws.com', '', DEFAULT_STS_HOSTS)).toBe(true);
  expect(hostAllowed('sts.cn-north-1.amazonaws.com.cn', '', DEFAULT_STS_HOSTS)).toBe(true);
  expect(hostAllowed('sts.amazonaws.com', '8443', DEFAULT_STS_HOSTS)).toBe(false);
  expect(hostAllowed('sts.amazonaws.com.evil.example', '', DEFAULT_STS_HOSTS)).toBe(false);
  expect(hostAllowed('sts.a.b.amazonaws.com', '', DEFAULT_STS_HOSTS)).toBe(false);
  expect(hostAllowed('evilsts.amazonaws.com', '', DEFAULT_STS_HOSTS)).toBe(false);
  expect(hostAllowed('localhost', '4443', ['localhost:4443'])).toBe(true);
  expect(hostAllowed('localhost', '', ['localhost:443'])).toBe(true);
});

test('assumed-role ARNs become role ARNs; users and roles stay; anything else is not an identity', () => {
  expect(canonicalArn('arn:aws:sts::123456789012:assumed-role/orders/i-0abc')).toBe('arn:aws:iam::123456789012:role/orders');
  expect(canonicalArn('arn:aws-cn:sts::123456789012:assumed-role/orders/s')).toBe('arn:aws-cn:iam::123456789012:role/orders');
  expect(canonicalArn('arn:aws:iam::123456789012:user/alice')).toBe('arn:aws:iam::123456789012:user/alice');
  expect(canonicalArn('arn:aws:iam::123456789012:root')).toBeUndefined();
  expect(canonicalArn('arn:aws:sts::123456789012:federated-user/bob')).toBeUndefined();
});

test('the local checks of a regional token pass, with the default allow-list', async () => {
  const v = new StsVerifier({ proxyId: 'a/b', stsHosts: DEFAULT_STS_HOSTS, roleMappings: [], timeoutMs: 1000 });
  const t = await stsToken({ proxyId: 'a/b', region: 'eu-central-1', credentials: keys });
  const { url } = v.check(t);
  expect(url.host).toBe('sts.eu-central-1.amazonaws.com');
  const global = await stsToken({ proxyId: 'a/b', credentials: keys, region: undefined });
  expect(v.recognizes(global)).toBe(true);
  expect(() => v.check(STS_TOKEN_PREFIX + 'e30')).toThrow(TokenRefused);
});

test('TokenAuth caches a verified identity by token hash, bounded by the token expiry and the TTL', async () => {
  let now = 1_000_000;
  let calls = 0;
  const verifier: TokenVerifier = {
    kind: 'sts',
    recognizes: (t) => t.startsWith('tok'),
    mapsUser: (u) => u === 'app',
    verify: async () => {
      calls++;
      return { identity: { kind: 'sts', identity: 'arn:x', users: ['app'] }, expiresAt: now + 30_000 };
    },
  };
  const auth = new TokenAuth({ verifiers: [verifier], cacheTtlMs: () => 60_000, now: () => now });
  await auth.verify('tok-1');
  await auth.verify('tok-1');
  expect(calls).toBe(1);
  now += 31_000; // past the token's own expiry, within the TTL
  await auth.verify('tok-1');
  expect(calls).toBe(2);
  await expect(auth.verify('x'.repeat(9000))).rejects.toThrow(/token is too long/);
  await expect(auth.verify('nope')).rejects.toThrow(/not a token this proxy accepts/);
  expect(auth.mapsUser('app')).toBe(true);
  expect(auth.looksLikeToken('password')).toBe(false);
});
