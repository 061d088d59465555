// RDS IAM authentication tokens for backend connections (backendAuth: {method: iam}). A token is
// a SigV4-presigned "connect" request for (host, port, user, region), made by @aws-sdk/rds-signer
// with credentials from the AWS SDK's default provider chain — in an EKS pod with IRSA that is
// AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE exchanged at STS (AssumeRoleWithWebIdentity).
//
// A token is valid for 15 minutes, and never beyond the credentials that signed it. Each is
// cached until its expiry less a margin, so a burst of new backend connections costs one
// signature, and no connection is ever opened with a token about to expire.
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { Signer } from '@aws-sdk/rds-signer';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

export interface RdsTokenRequest {
  hostname: string;
  port: number;
  username: string;
  region: string;
}

export interface RdsTokenProviderOptions {
  /** Default: the SDK's default chain (fromNodeProviderChain), made once. */
  credentials?: AwsCredentialIdentityProvider;
  now?: () => number;
  /** Tokens are reused until this long before they expire. Default 5 minutes. */
  marginMs?: number;
}

/** RDS tokens are presigned for this long (rds-signer's X-Amz-Expires). */
export const RDS_TOKEN_LIFETIME_MS = 900_000;

export class RdsTokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RdsTokenError';
  }
}

/** When a presigned token stops being valid, from its X-Amz-Date and X-Amz-Expires. */
export function presignedExpiry(token: string): number | undefined {
  const q = token.indexOf('?');
  if (q < 0) return undefined;
  const params = new URLSearchParams(token.slice(q + 1));
  const date = parseAmzDate(params.get('X-Amz-Date') ?? '');
  const expires = Number(params.get('X-Amz-Expires'));
  if (date === undefined || !Number.isFinite(expires)) return undefined;
  return date + expires * 1000;
}

/** Parses SigV4's basic ISO 8601 form, e.g. 20240102T030405Z. */
export function parseAmzDate(v: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v);
  if (!m) return undefined;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

export class RdsTokenProvider {
  private readonly cache = new Map<string, { token: string; reuseUntil: number }>();
  private readonly inflight = new Map<string, Promise<string>>();
  private credentials: AwsCredentialIdentityProvider | undefined;
  private readonly now: () => number;
  private readonly marginMs: number;
  /** Tokens signed so far (for tests and debugging). */
  signed = 0;

  constructor(private readonly opts: RdsTokenProviderOptions = {}) {
    this.credentials = opts.credentials;
    this.now = opts.now ?? Date.now;
    this.marginMs = opts.marginMs ?? 300_000;
  }

  /** A token for the request: a cached one while it has more than the margin left, else a new one. */
  token(req: RdsTokenRequest): Promise<string> {
    const key = `${req.region}\0${req.hostname}\0${req.port}\0${req.username}`;
    const hit = this.cache.get(key);
    if (hit && this.now() < hit.reuseUntil) return Promise.resolve(hit.token);
    let p = this.inflight.get(key);
    if (!p) {
      p = this.sign(req, key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  private async sign(req: RdsTokenRequest, key: string): Promise<string> {
    this.credentials ??= fromNodeProviderChain();
    let creds: AwsCredentialIdentity;
    try {
      creds = await this.credentials();
    } catch (e) {
      throw new RdsTokenError(`cannot get AWS credentials for the RDS IAM token of user "${req.username}": ${(e as Error).message}`);
    }
    const token = await new Signer({ hostname: req.hostname, port: req.port, username: req.username, region: req.region, credentials: creds }).getAuthToken();
    this.signed++;
    const tokenExpiry = presignedExpiry(token) ?? this.now() + RDS_TOKEN_LIFETIME_MS;
    const validUntil = Math.min(tokenExpiry, creds.expiration?.getTime() ?? Infinity);
    const reuseUntil = validUntil - this.marginMs;
    if (reuseUntil > this.now()) this.cache.set(key, { token, reuseUntil });
    else this.cache.delete(key);
    return token;
  }
}
