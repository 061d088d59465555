// The proxy's own AWS identity, checked with STS GetCallerIdentity at start and periodically, so a
// broken IRSA setup (no web identity token mounted, a role whose trust policy does not name this
// ServiceAccount, an expired token, the node's role instead of the pod's) is one readable line in
// /stats and in the DatabaseProxy's status instead of a stream of 28P01s from the database.
// The credentials are the same provider the RDS token signer uses, so the check sees exactly what
// backend logins will use and costs no extra AssumeRoleWithWebIdentity call.
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import type { Logger } from 'pino';
import { canonicalArn } from '../auth/stsVerifier.js';
import type { AwsIdentityStats } from '../contract/stats.js';
import type { Clock } from '../runtime/clock.js';

export interface CallerIdentity {
  arn: string;
  account: string;
  userId: string;
}

/** One GetCallerIdentity call, aborted by `signal`; the default uses @aws-sdk/client-sts. */
export type GetCallerIdentity = (signal: AbortSignal) => Promise<CallerIdentity>;

/** The STS client's region: the configured one, else the SDK's own (AWS_REGION, which IRSA sets), else the fallback (the database's). */
export function stsRegion(configured: string | undefined, fallback: string | undefined, env: { AWS_REGION?: string } = process.env): string | undefined {
  return configured ?? (env.AWS_REGION ? undefined : fallback);
}

/** GetCallerIdentity through the SDK's STS client (endpoint from the SDK's settings, e.g. AWS_ENDPOINT_URL_STS). */
export function stsGetCallerIdentity(o: { credentials: AwsCredentialIdentityProvider; region: string | undefined; fallbackRegion?: string | undefined }): GetCallerIdentity {
  let client: STSClient | undefined;
  return async (signal) => {
    const region = stsRegion(o.region, o.fallbackRegion);
    // One attempt: the next check comes soon enough, and a retry would hide how long STS took.
    client ??= new STSClient({ credentials: o.credentials, maxAttempts: 1, ...(region ? { region } : {}) });
    const out = await client.send(new GetCallerIdentityCommand({}), { abortSignal: signal });
    if (!out.Arn) throw new Error('STS answered GetCallerIdentity without an ARN');
    return { arn: out.Arn, account: out.Account ?? '', userId: out.UserId ?? '' };
  };
}

export interface IdentityProblem {
  /** CamelCase, for the operator's IAMReady condition. */
  reason: string;
  message: string;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/** Why a check failed, in words an operator can act on. Pure. */
export function classifyIdentityError(err: unknown, env: { roleArn?: string; tokenFile?: string } = {}): IdentityProblem {
  const e = (err ?? {}) as { name?: string; code?: string; Code?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const name = e.name ?? '';
  const code = e.code ?? e.Code ?? '';
  const text = e.message ?? String(err);
  const role = env.roleArn ? ` ${env.roleArn}` : '';
  if (code === 'ENOENT' || /ENOENT|no such file/i.test(text)) {
    return {
      reason: 'NoWebIdentityToken',
      message: `the web identity token file${env.tokenFile ? ` ${env.tokenFile}` : ''} cannot be read (${text}): is the ServiceAccount annotated with eks.amazonaws.com/role-arn and the pod identity webhook running?`,
    };
  }
  if (name === 'ExpiredTokenException' || name === 'ExpiredToken' || code === 'ExpiredTokenException' || /expired/i.test(text)) {
    return { reason: 'ExpiredToken', message: `STS says the token has expired: ${text}` };
  }
  if (name === 'InvalidIdentityToken' || code === 'InvalidIdentityToken') {
    return { reason: 'InvalidWebIdentityToken', message: `STS refused the web identity token: ${text} (is the cluster's OIDC provider registered in IAM?)` };
  }
  if (name === 'InvalidClientTokenId' || name === 'SignatureDoesNotMatch' || name === 'UnrecognizedClientException') {
    return { reason: 'InvalidCredentials', message: `STS does not accept the pod's AWS credentials: ${text}` };
  }
  if (name === 'AccessDenied' || name === 'AccessDeniedException' || code === 'AccessDenied' || e.$metadata?.httpStatusCode === 403) {
    return {
      reason: 'AccessDenied',
      message: `STS refused to let the pod assume the role${role}: ${text} (does the role's trust policy allow this ServiceAccount, system:serviceaccount:<namespace>:<name>?)`,
    };
  }
  if (/Could not load credentials from any providers/i.test(text) || name === 'CredentialsProviderError') {
    return { reason: 'NoCredentials', message: `no AWS credentials: ${text} (IRSA sets AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE in the pod)` };
  }
  if (/Region is missing/i.test(text)) return { reason: 'NoRegion', message: `no AWS region for STS: set AWS_REGION or the proxy config's awsIdentity.region (${text})` };
  if (NETWORK_CODES.has(code) || name === 'TimeoutError' || name === 'AbortError' || /timed out|ECONNREFUSED|ENOTFOUND|socket hang up/i.test(text)) {
    return { reason: 'StsUnreachable', message: `STS could not be reached: ${text}` };
  }
  return { reason: 'StsError', message: `${name && name !== 'Error' ? `${name}: ` : ''}${text}` };
}

/** Whether `arn` (as STS reports it) is `expectedRoleArn`; assumed-role ARNs drop the role's path, so names are compared. */
export function isExpectedRole(arn: string, expectedRoleArn: string): boolean {
  const canon = canonicalArn(arn);
  const m = /^arn:(aws[a-z-]*):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(expectedRoleArn);
  return !!canon && !!m && canon === `arn:${m[1]}:iam::${m[2]}:role/${m[3]}`;
}

export interface IdentityCheckOptions {
  getCallerIdentity: GetCallerIdentity;
  expectedRoleArn?: string;
  intervalMs: number;
  timeoutMs: number;
  clock: Clock;
  log: Logger;
  /** IRSA's variables, for messages; default process.env. */
  env?: { AWS_ROLE_ARN?: string; AWS_WEB_IDENTITY_TOKEN_FILE?: string };
}

export class IdentityCheck {
  private current: AwsIdentityStats;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  /** The last state logged: a line per change, not per check. */
  private logged = '';

  constructor(private readonly o: IdentityCheckOptions) {
    this.current = { state: 'PENDING', ...(o.expectedRoleArn ? { expectedRoleArn: o.expectedRoleArn } : {}) };
  }

  stats(): AwsIdentityStats {
    return { ...this.current };
  }

  /** Checks now, then every intervalMs until stop(). */
  start(): Promise<void> {
    const first = this.checkNow();
    const tick = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.checkNow().finally(tick), this.o.intervalMs);
      this.timer.unref();
    };
    void first.finally(tick);
    return first;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One check (concurrent callers share it). */
  checkNow(): Promise<void> {
    this.running ??= this.check().finally(() => (this.running = null));
    return this.running;
  }

  private async check(): Promise<void> {
    const env = this.o.env ?? process.env;
    const at = new Date(this.o.clock.now()).toISOString();
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        ac.abort();
        const err = new Error(`timed out after ${this.o.timeoutMs} ms`);
        err.name = 'TimeoutError';
        reject(err);
      }, this.o.timeoutMs);
    });
    const base = { checkedAt: at, ...(this.o.expectedRoleArn ? { expectedRoleArn: this.o.expectedRoleArn } : {}) };
    const lastVerifiedAt = this.current.lastVerifiedAt;
    try {
      const id = await Promise.race([this.o.getCallerIdentity(ac.signal), timeout]);
      const identity = { arn: id.arn, account: id.account, ...(canonicalArn(id.arn) ? { roleArn: canonicalArn(id.arn)! } : {}) };
      if (this.o.expectedRoleArn && !isExpectedRole(id.arn, this.o.expectedRoleArn)) {
        this.current = {
          state: 'FAILED',
          ...base,
          ...identity,
          reason: 'WrongRole',
          message: `the pods run as ${id.arn}, not as ${this.o.expectedRoleArn}${env.AWS_ROLE_ARN ? '' : ': AWS_ROLE_ARN is not set, so IRSA is not in effect (is the pod identity webhook running, and was the pod created after the ServiceAccount was annotated?)'}`,
          ...(lastVerifiedAt ? { lastVerifiedAt } : {}),
        };
      } else {
        this.current = { state: 'VERIFIED', ...base, ...identity, lastVerifiedAt: at };
      }
    } catch (e) {
      const p = classifyIdentityError(e, {
        ...(env.AWS_ROLE_ARN ? { roleArn: env.AWS_ROLE_ARN } : {}),
        ...(env.AWS_WEB_IDENTITY_TOKEN_FILE ? { tokenFile: env.AWS_WEB_IDENTITY_TOKEN_FILE } : {}),
      });
      this.current = { state: 'FAILED', ...base, reason: p.reason, message: p.message, ...(lastVerifiedAt ? { lastVerifiedAt } : {}) };
    } finally {
      clearTimeout(timer);
    }
    this.logChange();
  }

  private logChange(): void {
    const c = this.current;
    const key = `${c.state}|${c.arn ?? ''}|${c.reason ?? ''}`;
    if (key === this.logged) return;
    this.logged = key;
    if (c.state === 'VERIFIED') this.o.log.info({ arn: c.arn, account: c.account }, 'AWS identity verified with STS');
    else this.o.log.error({ reason: c.reason, err: c.message, ...(c.arn ? { arn: c.arn } : {}) }, 'AWS identity check failed');
  }
}
