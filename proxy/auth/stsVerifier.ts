// Server side of STS token logins. A token is a presigned GetCallerIdentity URL (see
// iamToken.ts). The proxy never trusts what the URL says about the caller: it checks the URL
// strictly, so that it can only ever make a GetCallerIdentity call to a real STS host, and then
// makes that call with its own id in the signed binding header. STS answers with the caller's
// ARN only if the signature covers exactly that request — so a token made for another proxy,
// altered, or signed with the wrong keys is refused by STS itself.
//
// Checks, in order, each with its own refusal message (never echoing the token):
//   prefix and base64url; https; no user info, fragment or odd port; host on the allow-list;
//   path "/"; only allow-listed query parameters, each exactly once; Action=GetCallerIdentity;
//   signed (SigV4 parameters present); host and the binding header among SignedHeaders;
//   X-Amz-Date within 15 minutes; then STS: no redirects followed, a timeout, a size cap.
// Assumed-role ARNs are canonicalized to the role's ARN, then mapped to database users.
import https from 'node:https';
import tls from 'node:tls';
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

/** "sts.*.amazonaws.com[:port]" style patterns: "*" is one DNS label; no port means 443. */
export function hostAllowed(hostname: string, port: string, patterns: readonly string[]): boolean {
  const host = hostname.toLowerCase();
  return patterns.some((p) => {
    const m = /^([^:]+)(?::(\d+))?$/.exec(p.toLowerCase());
    if (!m) return false;
    if ((m[2] ?? '') !== port && !(m[2] === '443' && port === '')) return false;
    const labels = m[1]!.split('.');
    const got = host.split('.');
    return labels.length === got.length && labels.every((l, i) => (l === '*' ? /^[a-z0-9-]+$/.test(got[i]!) : l === got[i]));
  });
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
            const arn = callerArn(body);
            if (!arn) return reject(new TokenRefused('sts', 'STS answer holds no caller ARN'));
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

function callerArn(body: string): string | undefined {
  try {
    const doc = JSON.parse(body) as { GetCallerIdentityResponse?: { GetCallerIdentityResult?: { Arn?: unknown } } };
    const arn = doc.GetCallerIdentityResponse?.GetCallerIdentityResult?.Arn;
    if (typeof arn === 'string') return arn;
  } catch {
    /* XML */
  }
  return /<Arn>([^<]{1,2048})<\/Arn>/.exec(body)?.[1];
}
