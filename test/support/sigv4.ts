// AWS Signature Version 4, written from the published algorithm for the tests: it recomputes
// the signature of a presigned request (an RDS IAM token, a client STS token) with the test's own
// keys, independently of the SDK code that made it.
import { createHash, createHmac } from 'node:crypto';

export interface Keys {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

const sha256hex = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');
const hmac = (key: Buffer | string, s: string): Buffer => createHmac('sha256', key).update(s, 'utf8').digest();

/** RFC 3986 percent-encoding, as SigV4 wants it (unreserved characters kept, everything else %XX). */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

export interface PresignedCheck {
  ok: boolean;
  /** Why not, in STS's words where there are any. */
  code?: 'MissingAuthenticationToken' | 'IncompleteSignature' | 'SignatureDoesNotMatch' | 'ExpiredToken' | 'InvalidClientTokenId' | 'RequestExpired';
  message?: string;
  accessKeyId?: string;
  region?: string;
  service?: string;
  signedHeaders?: string[];
}

/**
 * Verifies a presigned GET: `pathAndQuery` as it arrived ("/?Action=..."), `headers` with lower-case
 * names (host included). `lookup` gives the keys for an access key id.
 */
export function verifyPresigned(
  method: string,
  pathAndQuery: string,
  headers: Record<string, string | undefined>,
  lookup: (accessKeyId: string) => Keys | undefined,
  opts: { now?: number; service?: string; region?: string } = {},
): PresignedCheck {
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const pairs: Array<[string, string]> = [];
  for (const part of (q < 0 ? '' : pathAndQuery.slice(q + 1)).split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    const k = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
    const v = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '));
    pairs.push([k, v]);
  }
  const get = (k: string): string | undefined => pairs.find(([n]) => n === k)?.[1];
  const signature = get('X-Amz-Signature');
  const credential = get('X-Amz-Credential');
  const amzDate = get('X-Amz-Date');
  const signedHeadersParam = get('X-Amz-SignedHeaders');
  if (!signature || !credential || !amzDate || !signedHeadersParam) return { ok: false, code: 'MissingAuthenticationToken', message: 'Request is missing Authentication Token' };
  if (get('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') return { ok: false, code: 'IncompleteSignature', message: 'unsupported algorithm' };
  const [accessKeyId, date, region, service, term] = credential.split('/');
  if (!accessKeyId || !date || !region || !service || term !== 'aws4_request' || !amzDate.startsWith(date)) {
    return { ok: false, code: 'IncompleteSignature', message: 'malformed credential scope' };
  }
  if (opts.service && service !== opts.service) return { ok: false, code: 'SignatureDoesNotMatch', message: `credential should be scoped to correct service: '${opts.service}'` };
  if (opts.region && region !== opts.region) return { ok: false, code: 'SignatureDoesNotMatch', message: `credential should be scoped to a valid region` };
  const keys = lookup(accessKeyId);
  if (!keys) return { ok: false, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' };
  if ((keys.sessionToken ?? undefined) !== get('X-Amz-Security-Token')) return { ok: false, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' };

  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  const expires = Number(get('X-Amz-Expires') ?? '0');
  if (!m) return { ok: false, code: 'IncompleteSignature', message: 'malformed X-Amz-Date' };
  const signedAt = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  const now = opts.now ?? Date.now();
  if (now > signedAt + expires * 1000) return { ok: false, code: 'ExpiredToken', message: 'Request has expired' };
  if (signedAt > now + 15 * 60_000) return { ok: false, code: 'SignatureDoesNotMatch', message: 'Signature not yet current' };

  const signedHeaders = signedHeadersParam.split(';');
  const canonicalQuery = pairs
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const canonicalHeaders = signedHeaders.map((h) => `${h}:${(headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonicalUri = path.split('/').map((seg) => uriEncode(decodeURIComponent(seg))).join('/') || '/';
  const canonicalRequest = [method, canonicalUri, canonicalQuery, canonicalHeaders, signedHeadersParam, sha256hex('')].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, `${date}/${region}/${service}/aws4_request`, sha256hex(canonicalRequest)].join('\n');
  const expected = createHmac('sha256', signingKey(keys.secretAccessKey, date, region, service)).update(stringToSign, 'utf8').digest('hex');
  if (expected !== signature) {
    return { ok: false, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided.' };
  }
  return { ok: true, accessKeyId, region, service, signedHeaders };
}

/**
 * Verifies a request signed in its Authorization header (how the SDK's STS client calls
 * GetCallerIdentity): `headers` with lower-case names, `body` as sent.
 */
export function verifyAuthorizationHeader(
  method: string,
  pathAndQuery: string,
  headers: Record<string, string | undefined>,
  body: string,
  lookup: (accessKeyId: string) => Keys | undefined,
  opts: { now?: number; service?: string; region?: string } = {},
): PresignedCheck {
  const auth = headers.authorization ?? '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(auth);
  if (!m) return { ok: false, code: 'MissingAuthenticationToken', message: 'Request is missing Authentication Token' };
  const [, credential, signedHeadersParam, signature] = m;
  const amzDate = headers['x-amz-date'] ?? '';
  const [accessKeyId, date, region, service, term] = credential!.split('/');
  if (!accessKeyId || !date || !region || !service || term !== 'aws4_request' || !amzDate.startsWith(date)) {
    return { ok: false, code: 'IncompleteSignature', message: 'malformed credential scope' };
  }
  if (opts.service && service !== opts.service) return { ok: false, code: 'SignatureDoesNotMatch', message: `credential should be scoped to correct service: '${opts.service}'` };
  if (opts.region && region !== opts.region) return { ok: false, code: 'SignatureDoesNotMatch', message: 'credential should be scoped to a valid region' };
  const keys = lookup(accessKeyId);
  if (!keys) return { ok: false, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' };
  if ((keys.sessionToken ?? undefined) !== headers['x-amz-security-token']) return { ok: false, code: 'InvalidClientTokenId', message: 'The security token included in the request is invalid.' };
  const dm = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!dm) return { ok: false, code: 'IncompleteSignature', message: 'malformed X-Amz-Date' };
  const signedAt = Date.UTC(+dm[1]!, +dm[2]! - 1, +dm[3]!, +dm[4]!, +dm[5]!, +dm[6]!);
  if (Math.abs((opts.now ?? Date.now()) - signedAt) > 15 * 60_000) return { ok: false, code: 'RequestExpired', message: 'Signature expired' };
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const pairs = (q < 0 ? '' : pathAndQuery.slice(q + 1))
    .split('&')
    .filter(Boolean)
    .map((part): [string, string] => {
      const eq = part.indexOf('=');
      return [decodeURIComponent(eq < 0 ? part : part.slice(0, eq)), eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1))];
    });
  const canonicalQuery = pairs
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const signedHeaders = signedHeadersParam!.split(';');
  const canonicalHeaders = signedHeaders.map((h) => `${h}:${(headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonicalUri = path.split('/').map((seg) => uriEncode(decodeURIComponent(seg))).join('/') || '/';
  const payloadHash = headers['x-amz-content-sha256'] ?? sha256hex(body);
  const canonicalRequest = [method, canonicalUri, canonicalQuery, canonicalHeaders, signedHeadersParam, payloadHash].join('\n');
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, `${date}/${region}/${service}/aws4_request`, sha256hex(canonicalRequest)].join('\n');
  const expected = createHmac('sha256', signingKey(keys.secretAccessKey, date!, region!, service!)).update(stringToSign, 'utf8').digest('hex');
  if (expected !== signature) return { ok: false, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided.' };
  return { ok: true, accessKeyId, region: region!, service: service!, signedHeaders };
}
