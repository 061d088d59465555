import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { DEFAULT_STS_HOSTS } from '../contract/config.js';
import { BINDING_HEADER, STS_TOKEN_PREFIX, stsToken } from './iamToken.js';
import { awsStsRegion, callerArn, canonicalArn, hostAllowed, StsVerifier } from './stsVerifier.js';
import { TokenAuth, TokenRefused, type TokenVerifier } from './tokenAuth.js';

const keys = { accessKeyId: 'AKIAUNITTEST00000001', secretAccessKey: 'unit/test/secret' };

test('the default allow-list takes the global, every regional, China and FIPS STS host, and nothing else', () => {
  const ok = (host: string, port = ''): boolean => hostAllowed(host, port, DEFAULT_STS_HOSTS);
  expect(ok('sts.amazonaws.com')).toBe(true);
  expect(ok('STS.eu-west-1.amazonaws.com')).toBe(true);
  expect(ok('sts.us-gov-west-1.amazonaws.com')).toBe(true);
  expect(ok('sts.cn-north-1.amazonaws.com.cn')).toBe(true);
  expect(ok('sts-fips.us-east-1.amazonaws.com')).toBe(true);
  expect(ok('sts-fips.us-gov-east-1.amazonaws.com')).toBe(true);
  expect(ok('sts.amazonaws.com', '8443')).toBe(false);
  expect(ok('sts.amazonaws.com.evil.example')).toBe(false);
  expect(ok('sts.a.b.amazonaws.com')).toBe(false);
  expect(ok('evilsts.amazonaws.com')).toBe(false);
  // One DNS label is not a region: S3 (a bucket named "sts"), other services, made-up names.
  expect(ok('sts.s3.amazonaws.com')).toBe(false);
  expect(ok('sts.execute-api.amazonaws.com')).toBe(false);
  expect(ok('sts.eu-west.amazonaws.com')).toBe(false);
  expect(ok('sts.xx-yy-zz-1.amazonaws.com')).toBe(false);
  // China regions live under .amazonaws.com.cn only, and only they do; no FIPS there.
  expect(ok('sts.cn-north-1.amazonaws.com')).toBe(false);
  expect(ok('sts.eu-west-1.amazonaws.com.cn')).toBe(false);
  expect(ok('sts-fips.cn-north-1.amazonaws.com.cn')).toBe(false);
  // Exact names are taken as given (a private STS, the tests' local one), with their port.
  expect(hostAllowed('localhost', '4443', ['localhost:4443'])).toBe(true);
  expect(hostAllowed('localhost', '', ['localhost:443'])).toBe(true);
  expect(hostAllowed('localhost', '4444', ['localhost:4443'])).toBe(false);
  // A wildcard in a configured pattern is a region, whatever the pattern.
  expect(hostAllowed('sts.eu-west-1.amazonaws.com', '8443', ['sts.*.amazonaws.com:8443'])).toBe(true);
  expect(hostAllowed('sts.s3.amazonaws.com', '', ['sts.*.amazonaws.com'])).toBe(false);
  expect(hostAllowed('api.eu-west-1.example.com', '', ['api.*.example.com'])).toBe(false);
});

test('the signing region of each STS host: us-east-1 for the global one', () => {
  expect(awsStsRegion('sts.amazonaws.com')).toBe('us-east-1');
  expect(awsStsRegion('sts.eu-west-1.amazonaws.com')).toBe('eu-west-1');
  expect(awsStsRegion('sts-fips.us-gov-west-1.amazonaws.com')).toBe('us-gov-west-1');
  expect(awsStsRegion('sts.cn-northwest-1.amazonaws.com.cn')).toBe('cn-northwest-1');
  expect(awsStsRegion('sts.s3.amazonaws.com')).toBeUndefined();
  expect(awsStsRegion('localhost')).toBeUndefined();
});

test('assumed-role ARNs become role ARNs; users and roles stay; anything else is not an identity', () => {
  expect(canonicalArn('arn:aws:sts::123456789012:assumed-role/orders/i-0abc')).toBe('arn:aws:iam::123456789012:role/orders');
  expect(canonicalArn('arn:aws-cn:sts::123456789012:assumed-role/orders/s')).toBe('arn:aws-cn:iam::123456789012:role/orders');
  expect(canonicalArn('arn:aws:iam::123456789012:user/alice')).toBe('arn:aws:iam::123456789012:user/alice');
  expect(canonicalArn('arn:aws:iam::123456789012:root')).toBeUndefined();
  expect(canonicalArn('arn:aws:sts::123456789012:federated-user/bob')).toBeUndefined();
});

/** A presigned GetCallerIdentity for any host, service and region (what a forger could make). */
async function presigned(opts: { host: string; service: string; region: string }): Promise<string> {
  const signer = new SignatureV4({ service: opts.service, region: opts.region, credentials: keys, sha256: Hash.bind(null, 'sha256') });
  const p = await signer.presign(
    { method: 'GET', protocol: 'https:', hostname: opts.host, path: '/', query: { Action: 'GetCallerIdentity', Version: '2011-06-15' }, headers: { host: opts.host, [BINDING_HEADER]: 'a/b' } },
    { expiresIn: 900 },
  );
  const q = Object.entries(p.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return STS_TOKEN_PREFIX + Buffer.from(`https://${opts.host}/?${q}`).toString('base64url');
}

test('the credential scope must be service sts in the region of the host it names', async () => {
  const v = new StsVerifier({ proxyId: 'a/b', stsHosts: [...DEFAULT_STS_HOSTS, 'sts.private.example'], roleMappings: [], timeoutMs: 1000 });
  const refusal = async (t: Promise<string>): Promise<string | undefined> => {
    try {
      v.check(await t);
    } catch (e) {
      if (e instanceof TokenRefused) return `${e.check}: ${e.message}`;
      throw e;
    }
    return undefined;
  };
  expect(await refusal(presigned({ host: 'sts.eu-west-1.amazonaws.com', service: 'sts', region: 'eu-west-1' }))).toBeUndefined();
  expect(await refusal(presigned({ host: 'sts.amazonaws.com', service: 'sts', region: 'us-east-1' }))).toBeUndefined();
  expect(await refusal(presigned({ host: 'sts.cn-north-1.amazonaws.com.cn', service: 'sts', region: 'cn-north-1' }))).toBeUndefined();
  expect(await refusal(presigned({ host: 'sts.private.example', service: 'sts', region: 'eu-west-1' }))).toBeUndefined();
  expect(await refusal(presigned({ host: 'sts.eu-west-1.amazonaws.com', service: 's3', region: 'eu-west-1' }))).toBe(
    'credential: token is signed for service "s3", not sts',
  );
  expect(await refusal(presigned({ host: 'sts.eu-west-1.amazonaws.com', service: 'sts', region: 'eu-central-1' }))).toBe(
    'credential: token is signed for region eu-central-1, but sts.eu-west-1.amazonaws.com signs in eu-west-1',
  );
  expect(await refusal(presigned({ host: 'sts.amazonaws.com', service: 'sts', region: 'eu-west-1' }))).toBe(
    'credential: token is signed for region eu-west-1, but sts.amazonaws.com signs in us-east-1',
  );
  expect(await refusal(presigned({ host: 'sts.private.example', service: 'sts', region: 'moon-base' }))).toBe('credential: token is signed for an invalid region "moon-base"');
  // Scope and date must agree, and the scope must have its five parts.
  const t = await presigned({ host: 'sts.eu-west-1.amazonaws.com', service: 'sts', region: 'eu-west-1' });
  const edit = (f: (u: string) => string): string => STS_TOKEN_PREFIX + Buffer.from(f(Buffer.from(t.slice(STS_TOKEN_PREFIX.length), 'base64url').toString()), 'utf8').toString('base64url');
  expect(await refusal(Promise.resolve(edit((u) => u.replace(/(X-Amz-Credential=[^%]+%2F)\d{8}/, '$119990101'))))).toMatch(/^credential: token's credential scope date .* does not match X-Amz-Date/);
  expect(await refusal(Promise.resolve(edit((u) => u.replace('%2Faws4_request', '%2Fother'))))).toBe('credential: token has a malformed X-Amz-Credential');
});

test('the caller ARN is read from GetCallerIdentityResponse/GetCallerIdentityResult/Arn of a well-formed answer only', () => {
  const arn = 'arn:aws:sts::123456789012:assumed-role/orders-app/pod';
  const xml = (inner: string): string => `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">${inner}</GetCallerIdentityResponse>`;
  const json = (doc: unknown): string => JSON.stringify(doc);
  // Well-formed, both ways.
  expect(callerArn(json({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Account: '123456789012', Arn: arn, UserId: 'A:pod' } } }), 'application/json')).toBe(arn);
  expect(callerArn(`<?xml version="1.0"?>\n${xml(`<GetCallerIdentityResult><Arn>${arn}</Arn><UserId>A:pod</UserId></GetCallerIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>`)}\n`, 'text/xml')).toBe(arn);
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/a&amp;b</Arn></GetCallerIdentityResult>`), 'text/xml; charset=utf-8')).toBe('arn:aws:iam::123456789012:user/a&b');
  // An Arn anywhere else is no caller ARN.
  expect(callerArn(xml(`<GetCallerIdentityResult><UserId>x</UserId></GetCallerIdentityResult><Extra><Arn>${arn}</Arn></Extra>`), 'text/xml')).toBeUndefined();
  expect(callerArn(`<ErrorResponse><Error><Message><Arn>${arn}</Arn></Message></Error></ErrorResponse>`, 'text/xml')).toBeUndefined();
  expect(callerArn(`<Wrapper>${xml(`<GetCallerIdentityResult><Arn>${arn}</Arn></GetCallerIdentityResult>`)}</Wrapper>`, 'text/xml')).toBeUndefined();
  expect(callerArn(json({ Error: { Arn: arn } }), 'application/json')).toBeUndefined();
  expect(callerArn(json({ GetCallerIdentityResponse: { Arn: arn } }), 'application/json')).toBeUndefined();
  // Not well-formed, or ambiguous.
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn>${arn}</Arn></GetCallerIdentityResult>`).replace('</GetCallerIdentityResponse>', ''), 'text/xml')).toBeUndefined();
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn>${arn}</Arn></GetCallerIdentityResult>`) + `<Arn>${arn}</Arn>`, 'text/xml')).toBeUndefined();
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn>${arn}</Arn><Arn>arn:aws:iam::123456789012:role/other</Arn></GetCallerIdentityResult>`), 'text/xml')).toBeUndefined();
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn>${arn}</Arn></GetCallerIdentityResult><GetCallerIdentityResult><Arn>x</Arn></GetCallerIdentityResult>`), 'text/xml')).toBeUndefined();
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn><Arn>${arn}</Arn></Arn></GetCallerIdentityResult>`), 'text/xml')).toBeUndefined();
  expect(callerArn(`{"GetCallerIdentityResponse": {"GetCallerIdentityResult": {"Arn": "${arn}"}}`, 'application/json')).toBeUndefined();
  expect(callerArn(json({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Arn: [arn] } } }), 'application/json')).toBeUndefined();
  // The answer is what its Content-Type says, nothing else.
  expect(callerArn(json({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Arn: arn } } }), 'text/html')).toBeUndefined();
  expect(callerArn(xml(`<GetCallerIdentityResult><Arn>${arn}</Arn></GetCallerIdentityResult>`), 'application/json')).toBeUndefined();
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
