// Server side of STS token logins. A token is a presigned GetCallerIdentity URL (see
// iamToken.ts). The proxy never trusts what the URL says about the caller: it checks the URL
// strictly, so that it can only ever make a GetCallerIdentity call to a real STS host, and then
// makes that call with its own id in the signed binding header. STS answers with the caller's
// ARN only if the signature covers exactly that request — so a token made for another proxy,
// altered, or signed with the wrong keys is refused by STS itself.
//
// Checks, in order, each with its own refusal message (never echoing the token):
//   prefix and base64url; https; no user info, fragment or odd port; host on the allow-list
//   (AWS STS endpoints by their exact shapes); path "/"; only allow-listed query parameters, each
//   exactly once; Action=GetCallerIdentity; signed (SigV4 parameters present); credential scope
//   service sts in the host's region; host and the binding header among SignedHeaders;
//   X-Amz-Date within 15 minutes; then STS: no redirects followed, a timeout, a size cap, and the
//   ARN read only from GetCallerIdentityResponse/GetCallerIdentityResult/Arn of a well-formed answer.
// Assumed-role ARNs are canonicalized to the role's ARN, then mapped to database users.
import https from 'node:https';
import tls from 'node:tls';
import { parseXML } from '@aws-sdk/xml-builder';
import { parseAmzDate } from './rdsToken.js';
import { BINDING_HEADER, STS_TOKEN_PREFIX } from './iamToken.js';
import { TokenRefused, type TokenVerifier, type VerifiedIdentity } from './tokenAuth.js';

const ALLOWED_PARAMS = new Set([
  'Action',
  'Version',
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
]);
const REQUIRED_SIGV4 = ['X-Amz-Algorithm', 'X-Amz-Credential', 'X-Amz-Date', 'X-Amz-SignedHeaders', 'X-Amz-Signature'];
/** How old (or, with clock skew, how far in the future) a token's signing time may be. */
export const STS_TOKEN_MAX_AGE_MS = 15 * 60_000;
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface StsVerifierOptions {
  proxyId: string;
  stsHosts: readonly string[];
  roleMappings: ReadonlyArray<{ arn: string; user: string }>;
  timeoutMs: number;
  /** Extra CA certificates (PEM) trusted for STS, besides Node's built-in ones. */
  extraCa?: () => Buffer | undefined;
  now?: () => number;
}

/**
 * An AWS region name: us-east-1, eu-central-2, us-gov-west-1, cn-north-1, us-isob-east-1 (two
 * letters, an optional partition infix, a direction word, a number).
 */
const AWS_REGION = /^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$/;

/**
 * The signing region of an AWS STS endpoint, or undefined when the name is not one: the global
 * sts.amazonaws.com (us-east-1), sts.<region>.amazonaws.com, sts-fips.<region>.amazonaws.com,
 * and sts.<region>.amazonaws.com.cn for the China regions (which exist only there).
 */
export function awsStsRegion(hostname: string): string | undefined {
  const host = hostname.toLowerCase();
  if (host === 'sts.amazonaws.com') return 'us-east-1';
  const m = /^(sts|sts-fips)\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(host);
  if (!m || !AWS_REGION.test(m[2]!)) return undefined;
  const china = m[2]!.startsWith('cn-');
  if (china !== (m[3] !== undefined)) return undefined;
  if (china && m[1] === 'sts-fips') return undefined;
  return m[2];
}

/**
 * Whether a token's host may be called. Patterns are host names with an optional ":port" (none
 * means 443). An exact name is taken as given (a private STS endpoint, a test's local one). A "*"
 * stands for one AWS region name, and a name matched through it must be an AWS STS endpoint: the
 * proxy hands a token's host its own binding header and believes the ARN it answers, so a
 * wildcard must never reach a host someone else could answer for (sts.s3.amazonaws.com is an S3
 * bucket).
 */
export function hostAllowed(hostname: string, port: string, patterns: readonly string[]): boolean {
  const host = hostname.toLowerCase();
  return patterns.some((p) => {
    const m = /^([^:]+)(?::(\d+))?$/.exec(p.toLowerCase());
    if (!m) return false;
    if ((m[2] ?? '') !== port && !(m[2] === '443' && port === '')) return false;
    const labels = m[1]!.split('.');
    if (!labels.includes('*')) return labels.join('.') === host;
    const got = host.split('.');
    return labels.length === got.length && labels.every((l, i) => (l === '*' ? AWS_REGION.test(got[i]!) : l === got[i])) && awsStsRegion(host) !== undefined;
  });
}

/** X-Amz-Credential: <access key id>/<yyyymmdd>/<region>/<service>/aws4_request. */
function credentialScope(credential: string): { date: string; region: string; service: string } | undefined {
  const parts = credential.split('/');
  if (parts.length !== 5 || parts[0] === '' || parts[4] !== 'aws4_request' || !/^\d{8}$/.test(parts[1]!)) return undefined;
  return { date: parts[1]!, region: parts[2]!, service: parts[3]! };
}

/** arn:aws:sts::123:assumed-role/Role/session -> arn:aws:iam::123:role/Role; IAM user and role ARNs stay. */
export function canonicalArn(arn: string): string | undefined {
  const assumed = /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/[^/]+$/.exec(arn);
  if (assumed) return `arn:${assumed[1]}:iam::${assumed[2]}:role/${assumed[3]}`;
  if (/^arn:aws[a-z-]*:iam::\d{12}:(user|role)\/.+$/.test(arn)) return arn;
  return undefined;
}

/** The role name alone, for mappings written with a path (arn:...:role/path/Name): assumed-role ARNs lose the path. */
function withoutPath(arn: string): string {
  const m = /^(arn:aws[a-z-]*:iam::\d{12}:role\/)(?:.*\/)?([^/]+)$/.exec(arn);
  return m ? `${m[1]}${m[2]}` : arn;
}

export class StsVerifier implements TokenVerifier {
  readonly kind = 'sts' as const;
  private readonly now: () => number;
  private agent: { ca: Buffer | undefined; agent: https.Agent } | undefined;

  constructor(private readonly opts: StsVerifierOptions) {
    this.now = opts.now ?? Date.now;
  }

  recognizes(token: string): boolean {
    return token.startsWith(STS_TOKEN_PREFIX);
  }

  mapsUser(user: string): boolean {
    return this.opts.roleMappings.some((m) => m.user === user);
  }

  /** The strict checks on the URL, before anything is sent anywhere. */
  check(token: string): { url: URL; signedAt: number } {
    const encoded = token.slice(STS_TOKEN_PREFIX.length);
    if (!/^[A-Za-z0-9_-]+$/.test(encoded)) throw new TokenRefused('format', 'token is not base64url after its prefix');
    const text = Buffer.from(encoded, 'base64url').toString('utf8');
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new TokenRefused('format', 'token does not hold a URL');
    }
    if (url.protocol !== 'https:') throw new TokenRefused('scheme', `token URL must use https, not ${url.protocol.replace(/:$/, '')}`);
    if (url.username || url.password) throw new TokenRefused('format', 'token URL must not carry user information');
    if (url.hash || text.includes('#')) throw new TokenRefused('format', 'token URL must not have a fragment');
    if (!hostAllowed(url.hostname, url.port, this.opts.stsHosts)) throw new TokenRefused('host', `STS host ${url.host} is not allowed (iam.stsHosts)`);
    if (url.pathname !== '/') throw new TokenRefused('path', 'token URL path must be "/"');
    // Parameters from the raw query: URLSearchParams would hide encodings and repeats.
    const rawQuery = text.includes('?') ? text.slice(text.indexOf('?') + 1) : '';
    const seen = new Map<string, string>();
    for (const part of rawQuery.split('&')) {
      if (part === '') throw new TokenRefused('query', 'token URL has an empty query parameter');
      const eq = part.indexOf('=');
      let name: string;
      let value: string;
      try {
        name = decodeURIComponent(eq < 0 ? part : part.slice(0, eq));
        value = decodeURIComponent(eq < 0 ? '' : part.slice(eq + 1));
      } catch {
        throw new TokenRefused('query', 'token URL has a malformed query parameter');
      }
      if (!ALLOWED_PARAMS.has(name)) throw new TokenRefused('query', `query parameter "${name.slice(0, 40)}" is not allowed`);
      if (seen.has(name)) throw new TokenRefused('query', `query parameter "${name}" appears more than once`);
      seen.set(name, value);
    }
    if (seen.get('Action') !== 'GetCallerIdentity') throw new TokenRefused('action', 'token must be for Action=GetCallerIdentity');
    if (REQUIRED_SIGV4.some((p) => !seen.get(p))) throw new TokenRefused('unsigned', 'token is not a SigV4-presigned request');
    if (seen.get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') throw new TokenRefused('unsigned', 'token must be signed with AWS4-HMAC-SHA256');
    // STS checks the signature against its own scope too, but only the proxy knows which host the
    // token was meant for: a token signed for another service or region is not an STS login.
    const scope = credentialScope(seen.get('X-Amz-Credential')!);
    if (!scope) throw new TokenRefused('credential', 'token has a malformed X-Amz-Credential');
    if (scope.service !== 'sts') throw new TokenRefused('credential', `token is signed for service "${scope.service.slice(0, 40)}", not sts`);
    const hostRegion = awsStsRegion(url.hostname);
    if (hostRegion !== undefined && scope.region !== hostRegion) {
      throw new TokenRefused('credential', `token is signed for region ${scope.region.slice(0, 40)}, but ${url.hostname} signs in ${hostRegion}`);
    }
    if (hostRegion === undefined && !AWS_REGION.test(scope.region)) throw new TokenRefused('credential', `token is signed for an invalid region "${scope.region.slice(0, 40)}"`);
    if (!seen.get('X-Amz-Date')!.startsWith(scope.date)) {
      throw new TokenRefused('credential', `token's credential scope date ${scope.date} does not match X-Amz-Date`);
    }
    const signed = seen.get('X-Amz-SignedHeaders')!.split(';');
    if (!signed.includes(BINDING_HEADER)) throw new TokenRefused('binding', `the ${BINDING_HEADER} header is not among the signed headers: the token is not bound to a proxy`);
    if (!signed.includes('host')) throw new TokenRefused('binding', 'the host header is not among the signed headers');
    const signedAt = parseAmzDate(seen.get('X-Amz-Date')!);
    if (signedAt === undefined) throw new TokenRefused('expired', 'token has a malformed X-Amz-Date');
    const age = this.now() - signedAt;
    if (age > STS_TOKEN_MAX_AGE_MS) throw new TokenRefused('expired', `token expired: signed ${Math.round(age / 1000)} s ago (at most ${STS_TOKEN_MAX_AGE_MS / 1000} s)`);
    if (age < -STS_TOKEN_MAX_AGE_MS) throw new TokenRefused('expired', 'token is signed in the future');
    return { url, signedAt };
  }

  async verify(token: string): Promise<{ identity: VerifiedIdentity; expiresAt: number }> {
    const { url, signedAt } = this.check(token);
    const arn = await this.callSts(url);
    const canonical = canonicalArn(arn);
    if (!canonical) throw new TokenRefused('identity', `identity ${arn} is not an IAM role or user`);
    const users = this.opts.roleMappings.filter((m) => m.arn === canonical || withoutPath(m.arn) === canonical).map((m) => m.user);
    if (users.length === 0) throw new TokenRefused('unmapped', `identity ${canonical} is not mapped to any database user (iam.roleMappings)`);
    return { identity: { kind: 'sts', identity: canonical, users }, expiresAt: signedAt + STS_TOKEN_MAX_AGE_MS };
  }

  private httpsAgent(): https.Agent {
    const ca = this.opts.extraCa?.();
    if (!this.agent || this.agent.ca !== ca) {
      this.agent?.agent.destroy();
      this.agent = { ca, agent: new https.Agent({ keepAlive: true, maxSockets: 16, ...(ca ? { ca: [...tls.rootCertificates, ca.toString('utf8')] } : {}) }) };
    }
    return this.agent.agent;
  }

  private callSts(url: URL): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        {
          method: 'GET',
          agent: this.httpsAgent(),
          headers: { host: url.host, [BINDING_HEADER]: this.opts.proxyId, accept: 'application/json' },
          timeout: this.opts.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) {
              req.destroy();
              reject(new TokenRefused('sts', 'STS answer too large'));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status >= 300 && status < 400) return reject(new TokenRefused('sts', `STS answered with a redirect (${status}); not followed`));
            if (status !== 200) {
              const code = errorCode(body);
              if (status >= 500) return reject(new TokenRefused('sts_unavailable', `STS is unavailable (HTTP ${status}${code ? ` ${code}` : ''})`));
              return reject(new TokenRefused('sts', `STS refused the token (HTTP ${status}${code ? ` ${code}` : ''}): it is expired, altered, signed with other keys, or made for another proxy`));
            }
            const arn = callerArn(body, String(res.headers['content-type'] ?? ''));
            if (!arn) return reject(new TokenRefused('sts', 'STS answer is not a well-formed GetCallerIdentity response with the caller ARN'));
            resolve(arn);
          });
          res.on('error', (e) => reject(new TokenRefused('sts_unavailable', `STS call failed: ${e.message}`)));
        },
      );
      req.on('timeout', () => {
        req.destroy();
        reject(new TokenRefused('sts_unavailable', `STS did not answer within ${this.opts.timeoutMs} ms`));
      });
      req.on('error', (e) => reject(new TokenRefused('sts_unavailable', `STS call failed: ${e.message}`)));
      req.end();
    });
  }
}

function errorCode(body: string): string | undefined {
  try {
    const code = (JSON.parse(body) as { Error?: { Code?: unknown } }).Error?.Code;
    if (typeof code === 'string' && /^[A-Za-z.]{1,64}$/.test(code)) return code;
  } catch {
    /* XML */
  }
  const m = /<Code>([A-Za-z.]{1,64})<\/Code>/.exec(body);
  return m?.[1];
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The caller's ARN from a GetCallerIdentity answer: GetCallerIdentityResponse /
 * GetCallerIdentityResult / Arn, a single string, in a document that parses whole as what its
 * Content-Type says (JSON, which the proxy asks for, or STS's usual XML). Anything else — an Arn
 * elsewhere, two of them, a wrapper element, trailing content — is no answer.
 */
export function callerArn(body: string, contentType: string): string | undefined {
  const type = contentType.split(';')[0]!.trim().toLowerCase();
  let doc: unknown;
  try {
    if (type === 'application/json') {
      doc = JSON.parse(body);
    } else if (type === 'text/xml' || type === 'application/xml') {
      // The parser reads the first root element and stops: anything after it must be whitespace.
      if (!body.trimEnd().endsWith('</GetCallerIdentityResponse>')) return undefined;
      doc = parseXML(body);
    } else {
      return undefined;
    }
  } catch {
    return undefined;
  }
  if (!isObject(doc) || Object.keys(doc).length !== 1) return undefined;
  const response = doc.GetCallerIdentityResponse;
  if (!isObject(response)) return undefined;
  const result = response.GetCallerIdentityResult;
  if (!isObject(result)) return undefined;
  const arn = result.Arn;
  return typeof arn === 'string' && arn.length > 0 && arn.length <= 2048 ? arn : undefined;
}
