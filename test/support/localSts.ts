// A small local STS for the tests, over HTTP and HTTPS (a certificate from the test CA):
//  - AssumeRoleWithWebIdentity (what the SDK's default chain calls for IRSA): checks the role and
//    the web identity token, and issues fresh temporary keys it remembers;
//  - GetCallerIdentity signed in the Authorization header (what the SDK's STS client sends: the
//    proxy's check of its own identity), verified with the keys it knows;
//  - GetCallerIdentity as a presigned GET (what the proxy sends to verify a client token): checks
//    the SigV4 signature with the keys it knows (its own issued ones and the test's static ones),
//    the expiry and the signed headers as they arrive, and answers with the caller's ARN in JSON
//    (Accept: application/json, as the proxy asks) or XML.
// Every request is recorded so tests can see what reached STS.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { type Keys, verifyAuthorizationHeader, verifyPresigned } from './sigv4.js';

export interface KnownIdentity extends Keys {
  /** The caller's ARN as STS reports it (an assumed-role ARN for issued keys). */
  arn: string;
  account: string;
  userId: string;
  expiration?: Date;
}

export interface LocalStsOptions {
  tls: { cert: string; key: string };
  /** Roles that may be assumed with a web identity token, and the token each accepts. */
  webIdentity?: Array<{ roleArn: string; token: string; /** Refused as STS refuses an expired projected token. */ expired?: boolean }>;
  /** Lifetime of issued keys. Default 1 hour. */
  credentialLifetimeMs?: number;
  region?: string;
}

export interface StsRequest {
  method: string;
  url: string;
  action: string | undefined;
  headers: http.IncomingHttpHeaders;
  status: number;
}

export interface LocalSts {
  httpUrl: string;
  httpsUrl: string;
  /** host:port of the HTTPS listener, by name (the certificate holds "localhost"). */
  httpsHost: string;
  identities: Map<string, KnownIdentity>;
  requests: StsRequest[];
  addIdentity(id: KnownIdentity): void;
  /** Makes every later answer wait this long (for timeout tests). */
  delayMs: number;
  /** When set, the body (and its Content-Type) of every later successful GetCallerIdentity answer. */
  callerIdentityAnswer: ((id: KnownIdentity) => { type: string; body: string }) | undefined;
  close(): Promise<void>;
}

const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export async function startLocalSts(opts: LocalStsOptions): Promise<LocalSts> {
  const identities = new Map<string, KnownIdentity>();
  const requests: StsRequest[] = [];
  const region = opts.region ?? 'us-east-1';
  const state: { delayMs: number; callerIdentityAnswer: LocalSts['callerIdentityAnswer'] } = { delayMs: 0, callerIdentityAnswer: undefined };

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', 'http://x');
      const form = new URLSearchParams(req.method === 'POST' ? body : '');
      const action = url.searchParams.get('Action') ?? form.get('Action') ?? undefined;
      const json = (req.headers.accept ?? '').includes('application/json');
      const send = (status: number, text: string, type: string): void => {
        requests.push({ method: req.method ?? '', url: req.url ?? '', action, headers: req.headers, status });
        setTimeout(() => {
          res.writeHead(status, { 'content-type': type });
          res.end(text);
        }, state.delayMs);
      };
      const fail = (status: number, code: string, message: string): void => {
        if (json) send(status, JSON.stringify({ Error: { Code: code, Message: message, Type: 'Sender' } }), 'application/json');
        else send(status, `<ErrorResponse><Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error></ErrorResponse>`, 'text/xml');
      };

      if (action === 'AssumeRoleWithWebIdentity') {
        const roleArn = form.get('RoleArn') ?? url.searchParams.get('RoleArn') ?? '';
        const token = form.get('WebIdentityToken') ?? url.searchParams.get('WebIdentityToken') ?? '';
        const session = form.get('RoleSessionName') ?? url.searchParams.get('RoleSessionName') ?? 'session';
        const allowed = (opts.webIdentity ?? []).find((w) => w.roleArn === roleArn);
        if (!allowed) return fail(403, 'AccessDenied', `Not authorized to perform sts:AssumeRoleWithWebIdentity on ${roleArn}`);
        if (allowed.token !== token) return fail(400, 'InvalidIdentityToken', 'Couldn\'t retrieve verification key from your identity provider');
        if (allowed.expired) return fail(400, 'ExpiredTokenException', 'Token expired: current date/time must be before the expiration date/time');
        const m = /^arn:aws:iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(roleArn)!;
        const id: KnownIdentity = {
          accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
          secretAccessKey: randomBytes(30).toString('base64'),
          sessionToken: randomBytes(60).toString('base64'),
          arn: `arn:aws:sts::${m[1]}:assumed-role/${m[2]}/${session}`,
          account: m[1]!,
          userId: `AROA${randomBytes(8).toString('hex').toUpperCase()}:${session}`,
          expiration: new Date(Date.now() + (opts.credentialLifetimeMs ?? 3_600_000)),
        };
        identities.set(id.accessKeyId, id);
        return send(
          200,
          `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>` +
            `<SubjectFromWebIdentityToken>system:serviceaccount:default:app</SubjectFromWebIdentityToken>` +
            `<AssumedRoleUser><Arn>${xmlEscape(id.arn)}</Arn><AssumedRoleId>${xmlEscape(id.userId)}</AssumedRoleId></AssumedRoleUser>` +
            `<Credentials><AccessKeyId>${id.accessKeyId}</AccessKeyId><SecretAccessKey>${xmlEscape(id.secretAccessKey)}</SecretAccessKey>` +
            `<SessionToken>${xmlEscape(id.sessionToken!)}</SessionToken><Expiration>${id.expiration!.toISOString()}</Expiration></Credentials>` +
            `<Audience>sts.amazonaws.com</Audience></AssumeRoleWithWebIdentityResult>` +
            `<ResponseMetadata><RequestId>${randomBytes(8).toString('hex')}</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
          'text/xml',
        );
      }

      if (action === 'GetCallerIdentity' && req.method === 'POST') {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        const check = verifyAuthorizationHeader('POST', req.url ?? '/', headers, body, (akid) => identities.get(akid), { service: 'sts', region });
        if (!check.ok) return fail(403, check.code!, check.message!);
        const id = identities.get(check.accessKeyId!)!;
        if (id.expiration && id.expiration.getTime() < Date.now()) return fail(400, 'ExpiredToken', 'The security token included in the request is expired');
        return send(
          200,
          `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>${xmlEscape(id.arn)}</Arn>` +
            `<UserId>${xmlEscape(id.userId)}</UserId><Account>${id.account}</Account></GetCallerIdentityResult>` +
            `<ResponseMetadata><RequestId>${randomBytes(8).toString('hex')}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
          'text/xml',
        );
      }

      if (action === 'GetCallerIdentity' && req.method === 'GET') {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
        const check = verifyPresigned('GET', req.url ?? '/', headers, (akid) => identities.get(akid), { service: 'sts', region });
        if (!check.ok) return fail(403, check.code!, check.message!);
        const id = identities.get(check.accessKeyId!)!;
        if (state.callerIdentityAnswer) {
          const custom = state.callerIdentityAnswer(id);
          return send(200, custom.body, custom.type);
        }
        if (json) {
          return send(200, JSON.stringify({ GetCallerIdentityResponse: { GetCallerIdentityResult: { Account: id.account, Arn: id.arn, UserId: id.userId }, ResponseMetadata: { RequestId: 'r' } } }), 'application/json');
        }
        return send(
          200,
          `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>${xmlEscape(id.arn)}</Arn>` +
            `<UserId>${xmlEscape(id.userId)}</UserId><Account>${id.account}</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`,
          'text/xml',
        );
      }
      fail(400, 'InvalidAction', `Could not find operation ${action ?? '(none)'}`);
    });
  };

  const plain = http.createServer(handler);
  const secure = https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler);
  await Promise.all([plain, secure].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))));
  const hp = (plain.address() as AddressInfo).port;
  const sp = (secure.address() as AddressInfo).port;
  const sts: LocalSts = {
    httpUrl: `http://127.0.0.1:${hp}`,
    httpsUrl: `https://localhost:${sp}`,
    httpsHost: `localhost:${sp}`,
    identities,
    requests,
    addIdentity: (id) => void identities.set(id.accessKeyId, id),
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(v: number) {
      state.delayMs = v;
    },
    get callerIdentityAnswer() {
      return state.callerIdentityAnswer;
    },
    set callerIdentityAnswer(f) {
      state.callerIdentityAnswer = f;
    },
    close: async () => {
      for (const s of [plain, secure]) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
  };
  return sts;
}
