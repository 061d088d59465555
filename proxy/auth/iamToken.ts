// Client side of STS token logins: a presigned STS GetCallerIdentity request, made with the
// caller's AWS credentials (the SDK's default chain unless given), that also signs the header
// x-dbproxy-id: <proxy id>. The proxy replays it to STS with its own id in that header, so STS
// only accepts the token at the proxy it was made for. The token is the prefix plus the URL in
// base64url, and is used as the database password:
//
//   import { stsToken } from 'dbproxy/proxy/auth/iamToken.js';
//   new pg.Client({ ..., ssl: {...}, password: () => stsToken({ proxyId: 'prod/orders-db' }) })
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

export const STS_TOKEN_PREFIX = 'dbproxy-sts-v1.';
export const BINDING_HEADER = 'x-dbproxy-id';
/** Presigned for the longest STS allows; the proxy also refuses tokens signed more than 15 minutes ago. */
export const STS_TOKEN_EXPIRES_S = 900;

export interface StsTokenOptions {
  /** The proxy's iam.proxyId, e.g. "<namespace>/<name>". */
  proxyId: string;
  /** Use the regional endpoint sts.<region>.amazonaws.com (default: $AWS_REGION, else the global sts.amazonaws.com). */
  region?: string;
  /** Another STS endpoint, e.g. https://sts.us-east-1.amazonaws.com or a private one; must be https. */
  endpoint?: string;
  /** Default: the SDK's default provider chain (env, profile, web identity / IRSA, ECS, IMDS). */
  credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** Signing time; default now. */
  signingDate?: Date;
}

function endpointFor(opts: StsTokenOptions): { url: URL; region: string } {
  const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  if (opts.endpoint) {
    const url = new URL(opts.endpoint);
    if (url.protocol !== 'https:') throw new Error(`STS endpoint must be https: ${opts.endpoint}`);
    return { url, region: region ?? 'us-east-1' };
  }
  if (region) return { url: new URL(`https://sts.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`), region };
  return { url: new URL('https://sts.amazonaws.com'), region: 'us-east-1' };
}

/** A token for logging in to the dbproxy whose iam.proxyId is `proxyId`. */
export async function stsToken(opts: StsTokenOptions): Promise<string> {
  if (!opts.proxyId) throw new Error('proxyId is required');
  const { url, region } = endpointFor(opts);
  const signer = new SignatureV4({
    service: 'sts',
    region,
    credentials: opts.credentials ?? fromNodeProviderChain(),
    sha256: Hash.bind(null, 'sha256'),
    uriEscapePath: true,
  });
  const presigned = await signer.presign(
    {
      method: 'GET',
      protocol: 'https:',
      hostname: url.hostname,
      port: url.port ? Number(url.port) : undefined,
      path: '/',
      query: { Action: 'GetCallerIdentity', Version: '2011-06-15' },
      headers: { host: url.host, [BINDING_HEADER]: opts.proxyId },
    },
    { expiresIn: STS_TOKEN_EXPIRES_S, signingDate: opts.signingDate },
  );
  const query = Object.entries(presigned.query ?? {})
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  const signedUrl = `https://${url.host}/?${query}`;
  return STS_TOKEN_PREFIX + Buffer.from(signedUrl, 'utf8').toString('base64url');
}
