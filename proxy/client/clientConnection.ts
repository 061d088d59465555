// A client connection's first act: the startup packet (SSL/GSS requests, cancel requests,
// protocol version), the TLS upgrade when configured, then authentication — SCRAM-SHA-256 (and
// SCRAM-SHA-256-PLUS over TLS) or md5 against the user's configured password, a token (STS or
// ServiceAccount) sent as a cleartext password over TLS, or a client certificate (clientAuth
// cert) — then the hand-over to a pooled session (greeting.ts) or to the admin console.
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type net from 'node:net';
import type tls from 'node:tls';
import type { Logger } from 'pino';
import type { ProxyMetrics } from '../admin/metrics.js';
import type { CredentialStore } from '../auth/credentialStore.js';
import type { ProxyConfig } from '../contract/config.js';
import { TokenRefused, type ClientTokenAuth } from '../auth/tokenAuth.js';
import type { ServerTls } from '../tls/serverTls.js';
import { adminAccess } from '../admin/adminConsole.js';
import { fakeScramVerifier, ScramServerExchange, type ScramVerifier } from '../auth/scramServer.js';
import { verifyMd5Response } from '../auth/md5.js';
import { tlsServerEndPoint } from '../auth/channelBinding.js';
import {
  parseStartupPacket,
  ProtocolViolation,
  readPasswordBody,
  readSaslInitialResponse,
} from '../protocol/clientMessages.js';
import {
  authenticationCleartext,
  authenticationMd5,
  authenticationOk,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  errorResponse,
  negotiateProtocolVersion,
} from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import type { Clock } from '../runtime/clock.js';
import { closeWithError } from './closeWithError.js';
import type { Greeting } from './greeting.js';
import type { SessionContext } from './sessionContext.js';
import { ClientGone, SocketReader } from './socketReader.js';

/** PostgreSQL's authentication_timeout default. */
const STARTUP_TIMEOUT_MS = 60_000;
export const ADMIN_DATABASE = 'dbproxy';
const SCRAM_SHA_256_PLUS = 'SCRAM-SHA-256-PLUS';

class AuthFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly metric: string,
  ) {
    super(message);
  }
}

/** What a login may use of the proxy, per endpoint; the session it hands over to has its own seam (SessionContext). */
export interface LoginContext {
  /** The config in force (a reload replaces it). */
  readonly config: ProxyConfig;
  /** Client passwords (a reload replaces them). */
  readonly credentials: CredentialStore;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  readonly clock: Clock;
  /** Keys the fake SCRAM verifiers of unknown users, so they look like real ones. */
  readonly authSecret: Buffer;
  readonly shuttingDown: boolean;
  clientCount(): number;
  /** Routes a CancelRequest to the session it names; `source` is the sender's address, for the rate limit. */
  cancel(pid: number, secret: number, source: string | undefined): Promise<void>;
  /** Hands a logged-in client of the admin database over to the admin console. */
  startAdminSession(socket: net.Socket, user: string, leftover: Buffer): void;
  /** Greets a logged-in client and starts its pooled session... */
  readonly greeting: Greeting;
  /** ...which borrows from this endpoint's pool. */
  readonly endpoint: SessionContext;
}

/** What the process offers beyond passwords: TLS and token logins. Both optional. */
export interface ClientSecurity {
  tls?: ServerTls;
  tokens?: ClientTokenAuth;
}

export async function handleClientConnection(rawSocket: net.Socket, ctx: LoginContext, security: ClientSecurity = {}): Promise<void> {
  let socket: net.Socket = rawSocket;
  let encrypted = false;
  socket.setNoDelay(true);
  socket.setKeepAlive(true, 60_000);
  socket.on('error', () => {
    /* reported through 'close'; a reset client is not an error of ours */
  });
  let reader = new SocketReader(socket);
  const timer = ctx.clock.setTimeout(() => {
    ctx.metrics.clientRejections.inc({ reason: 'startup_timeout' });
    socket.destroy();
  }, STARTUP_TIMEOUT_MS);
  const fatal = (code: string, message: string, metric: string): void => {
    ctx.metrics.clientRejections.inc({ reason: metric });
    try {
      reader.detach();
    } catch {
      /* whatever the client sent beyond the limit is dropped with the connection */
    }
    closeWithError(socket, errorResponse({ severity: 'FATAL', code, message }), ctx.clock);
  };
  try {
    let params: Map<string, string> | undefined;
    while (!params) {
      const packet = parseStartupPacket(await reader.readStartupPacket());
      switch (packet.kind) {
        case 'ssl': {
          if (encrypted) throw new ProtocolViolation('SSLRequest received on an encrypted connection');
          if (!security.tls) {
            // No TLS configured: the client may go on in plaintext (or give up, if it insists).
            socket.write('N');
            break;
          }
          // Bytes sent before the handshake would be trusted as if encrypted (CVE-2021-23214).
          const early = reader.detach();
          if (early.length > 0) throw new ProtocolViolation('received unencrypted data after SSL request');
          let handshake: Promise<tls.TLSSocket>;
          try {
            handshake = security.tls.accept(rawSocket);
          } catch (e) {
            ctx.log.error({ err: (e as Error).message }, 'TLS certificate unusable; answering SSLRequest with N');
            reader = new SocketReader(rawSocket);
            socket.write('N');
            break;
          }
          let secure: tls.TLSSocket;
          try {
            secure = await handshake;
          } catch (e) {
            ctx.metrics.clientRejections.inc({ reason: 'tls_handshake' });
            ctx.log.info({ remote: rawSocket.remoteAddress, err: (e as Error).message }, 'client TLS handshake failed');
            rawSocket.destroy();
            return;
          }
          secure.on('error', () => {
            /* reported through 'close', like the plaintext socket's */
          });
          socket = secure;
          encrypted = true;
          reader = new SocketReader(secure);
          break;
        }
        case 'gssenc':
          if (encrypted) throw new ProtocolViolation('GSSENCRequest received on an encrypted connection');
          // No GSS encryption: the client may go on (and ask for TLS next).
          socket.write('N');
          break;
        case 'cancel': {
          // Read before destroy(): a destroyed socket no longer knows its peer.
          const source = rawSocket.remoteAddress;
          reader.detach();
          socket.destroy();
          await ctx.cancel(packet.processId, packet.secretKey, source);
          return;
        }
        case 'startup':
          if (packet.major !== 3) {
            fatal(SQLSTATE.featureNotSupported, `unsupported frontend protocol ${packet.major}.${packet.minor}: server supports 3.0 to 3.0`, 'protocol_version');
            return;
          }
          {
            const unknown = [...packet.params.keys()].filter((k) => k.startsWith('_pq_.'));
            if (packet.minor > 0 || unknown.length > 0) socket.write(negotiateProtocolVersion(0, unknown));
          }
          params = packet.params;
          break;
      }
    }
    const user = params.get('user');
    if (!user) {
      fatal(SQLSTATE.invalidAuthorizationSpecification, 'no PostgreSQL user name specified in startup packet', 'no_user');
      return;
    }
    if (params.has('replication') && params.get('replication') !== 'false' && params.get('replication') !== 'off') {
      fatal(SQLSTATE.featureNotSupported, 'replication connections are not supported by dbproxy', 'replication');
      return;
    }
    const database = params.get('database') || user;
    if (ctx.config.tls.requireTLS && !encrypted) {
      ctx.log.info({ user, database, remote: socket.remoteAddress }, 'plaintext client refused (tls.requireTLS)');
      fatal(SQLSTATE.invalidAuthorizationSpecification, `dbproxy requires TLS: connection for user "${user}", database "${database}" refused because SSL is off (use sslmode=require)`, 'tls_required');
      return;
    }
    const untrusted = encrypted ? untrustedCertificate(socket as tls.TLSSocket) : undefined;
    if (untrusted !== undefined) {
      // PostgreSQL with ssl_ca_file fails the handshake on such a certificate, whoever the user.
      ctx.log.info({ user, database, remote: socket.remoteAddress, err: untrusted }, 'client certificate refused: it does not chain to tls.clientCaFile');
      fatal(SQLSTATE.invalidAuthorizationSpecification, `client certificate verify failed: ${untrusted}`, 'certificate_untrusted');
      return;
    }
    if (ctx.shuttingDown) {
      fatal(SQLSTATE.cannotConnectNow, 'the proxy is shutting down', 'shutting_down');
      return;
    }
    if (ctx.clientCount() >= ctx.config.pool.maxClientConnections) {
      fatal(SQLSTATE.tooManyConnections, `sorry, too many clients already (maxClientConnections is ${ctx.config.pool.maxClientConnections})`, 'too_many_clients');
      return;
    }

    try {
      await authenticate(socket, reader, ctx, user, { encrypted, tokens: security.tokens });
    } catch (e) {
      if (!(e instanceof AuthFailure)) throw e;
      // The same delay whatever went wrong, so timing does not tell which users exist.
      await new Promise<void>((r) => ctx.clock.setTimeout(r, ctx.config.clientAuth.failureDelay));
      ctx.log.info({ user, database, remote: socket.remoteAddress, reason: e.metric }, 'client authentication failed');
      fatal(e.code, e.message, e.metric);
      return;
    }
    // Like PgBouncer, only after the password: who is in adminUsers is nobody else's business.
    if (database === ADMIN_DATABASE && adminAccess(ctx.config, user) === 'none') {
      ctx.log.info({ user, remote: socket.remoteAddress }, 'admin database login refused: user is not in adminUsers or statsUsers');
      fatal(SQLSTATE.invalidAuthorizationSpecification, `user "${user}" is not allowed to use the admin database "${ADMIN_DATABASE}" (not in adminUsers or statsUsers)`, 'admin_not_allowed');
      return;
    }
    const leftover = reader.detach();
    socket.write(authenticationOk());
    ctx.clock.clearTimeout(timer);
    if (database === ADMIN_DATABASE) {
      ctx.startAdminSession(socket, user, leftover);
      return;
    }
    await ctx.greeting.start(ctx.endpoint, socket, { user, database }, params, leftover);
  } catch (e) {
    if (e instanceof ClientGone) {
      socket.destroy();
    } else if (e instanceof ProtocolViolation) {
      ctx.metrics.protocolErrors.inc();
      fatal(e.code, e.message, 'protocol_violation');
    } else {
      ctx.log.error({ err: (e as Error).message }, 'client connection failed during startup');
      fatal(SQLSTATE.internalError, 'internal error in dbproxy during connection startup', 'internal_error');
    }
  } finally {
    ctx.clock.clearTimeout(timer);
  }
}

async function expectPassword(reader: SocketReader): Promise<Buffer> {
  const { type, msg } = await reader.readMessage();
  if (type !== 'p') throw new ProtocolViolation(`expected password response, got message type "${type}"`);
  return msg;
}

async function authenticate(
  socket: net.Socket,
  reader: SocketReader,
  ctx: LoginContext,
  user: string,
  opts: { encrypted: boolean; tokens: ClientTokenAuth | undefined },
): Promise<void> {
  if (ctx.config.users.find((u) => u.name === user)?.clientAuth === 'cert') {
    authenticateWithCertificate(socket, ctx, user, opts.encrypted);
    return;
  }
  const iamAuth = ctx.config.iamAuth;
  const tokens = iamAuth === 'DISABLED' ? undefined : opts.tokens;
  if (tokens && (iamAuth === 'REQUIRED' || tokens.mapsUser(user))) {
    if (opts.encrypted) return authenticateWithToken(socket, reader, ctx, user, tokens);
    if (iamAuth === 'REQUIRED') {
      throw new AuthFailure(SQLSTATE.invalidAuthorizationSpecification, `IAM authentication for user "${user}" requires TLS (use sslmode=require)`, 'token_without_tls');
    }
    // OPTIONAL over plaintext: tokens are not accepted here, the password is, by the usual method.
  }
  const known = ctx.credentials.has(user);
  let password: string | undefined;
  if (known) {
    try {
      password = ctx.credentials.password(user);
    } catch (e) {
      ctx.log.error({ user, err: (e as Error).message }, 'password for user is not readable');
    }
  }
  // PostgreSQL answers an unknown role exactly like a wrong password (after a mock exchange), so
  // that logins cannot probe which users exist; only the metric and the log tell them apart.
  const refuse = (): never => {
    throw new AuthFailure(SQLSTATE.invalidPassword, `password authentication failed for user "${user}"`, known ? 'wrong_password' : 'unknown_user');
  };

  if (ctx.config.clientAuth.method === 'md5') {
    const salt = randomBytes(4);
    socket.write(authenticationMd5(salt));
    const body = readPasswordBody(await expectPassword(reader));
    const response = body.toString('utf8', 0, Math.max(0, body.indexOf(0)));
    if (password === undefined || !verifyMd5Response(user, password, salt, response)) refuse();
    return;
  }

  // Over TLS, as PostgreSQL: SCRAM-SHA-256-PLUS too, bound to the certificate the proxy presented.
  const certificate = opts.encrypted ? (socket as tls.TLSSocket).getCertificate?.() : null;
  const der = certificate && 'raw' in certificate ? (certificate.raw as Buffer | undefined) : undefined;
  const endPoint = der ? tlsServerEndPoint(der) : undefined;
  socket.write(authenticationSasl(endPoint ? [SCRAM_SHA_256_PLUS, 'SCRAM-SHA-256'] : ['SCRAM-SHA-256']));
  const initial = readSaslInitialResponse(await expectPassword(reader));
  const plus = initial.mechanism === SCRAM_SHA_256_PLUS && endPoint !== undefined;
  if ((initial.mechanism !== 'SCRAM-SHA-256' && !plus) || initial.data === null) {
    throw new ProtocolViolation(`client selected an invalid SASL authentication mechanism "${initial.mechanism}"`);
  }
  let verifier: ScramVerifier = fakeScramVerifier(user, ctx.authSecret);
  if (password !== undefined) verifier = ctx.credentials.scramVerifier(user);
  const exchange = new ScramServerExchange(verifier, randomBytes(18).toString('base64'), { offered: endPoint !== undefined, ...(plus ? { data: endPoint } : {}) });
  const first = exchange.handleClientFirst(initial.data);
  if (!first.ok) throw new ProtocolViolation(`malformed SCRAM message: ${first.reason}`);
  socket.write(authenticationSaslContinue(first.serverFirst));
  const final = exchange.handleClientFinal(readPasswordBody(await expectPassword(reader)).toString('utf8'));
  if (!final.ok || password === undefined) refuse();
  if (final.ok) socket.write(authenticationSaslFinal(final.serverFinal));
}

function readCleartext(msg: Buffer): string {
  const body = readPasswordBody(msg);
  const end = body.indexOf(0);
  return body.toString('utf8', 0, end < 0 ? body.length : end);
}

/**
 * Token logins: the client's password is an STS token or a ServiceAccount token, asked for in
 * cleartext (over TLS only). With iamAuth OPTIONAL the user's ordinary password works too.
 */
async function authenticateWithToken(socket: net.Socket, reader: SocketReader, ctx: LoginContext, user: string, tokens: ClientTokenAuth): Promise<void> {
  socket.write(authenticationCleartext());
  const secret = readCleartext(await expectPassword(reader));
  if (tokens.looksLikeToken(secret)) {
    let identity;
    try {
      identity = await tokens.verify(secret);
    } catch (e) {
      if (e instanceof TokenRefused) {
        throw new AuthFailure(SQLSTATE.invalidPassword, `IAM authentication failed for user "${user}": ${e.message}`, `token_${e.check}`);
      }
      throw e;
    }
    if (!identity.users.includes(user)) {
      throw new AuthFailure(
        SQLSTATE.invalidPassword,
        `IAM authentication failed for user "${user}": identity ${identity.identity} is not mapped to user "${user}"`,
        'token_unmapped',
      );
    }
    ctx.log.info({ user, identity: identity.identity, kind: identity.kind }, 'client authenticated with a token');
    return;
  }
  if (ctx.config.iamAuth === 'REQUIRED') {
    throw new AuthFailure(SQLSTATE.invalidPassword, `IAM authentication failed for user "${user}": password logins are disabled (iamAuth REQUIRED); send an STS or ServiceAccount token`, 'token_required');
  }
  let expected: string | undefined;
  if (ctx.credentials.has(user)) {
    try {
      expected = ctx.credentials.password(user);
    } catch (e) {
      ctx.log.error({ user, err: (e as Error).message }, 'password for user is not readable');
    }
  }
  // Compare digests, so neither the length nor the content leaks through timing.
  const digest = (v: string): Buffer => createHash('sha256').update(v, 'utf8').digest();
  if (expected === undefined || !timingSafeEqual(digest(expected), digest(secret))) {
    throw new AuthFailure(SQLSTATE.invalidPassword, `password authentication failed for user "${user}"`, ctx.credentials.has(user) ? 'wrong_password' : 'unknown_user');
  }
}

/** The certificate the client presented in the handshake; Node gives an empty object for none. */
function presentedCertificate(socket: tls.TLSSocket): tls.PeerCertificate | undefined {
  const peer = socket.getPeerCertificate();
  return peer && Object.keys(peer).length > 0 ? peer : undefined;
}

/** Why a certificate the client presented was not accepted, or undefined (none presented, or trusted). */
function untrustedCertificate(socket: tls.TLSSocket): string | undefined {
  if (socket.authorized || presentedCertificate(socket) === undefined) return undefined;
  const err = socket.authorizationError as unknown;
  return err instanceof Error ? err.message : String(err ?? 'not trusted');
}

/**
 * PostgreSQL's cert method: a client certificate, already chained to tls.clientCaFile in the
 * handshake, whose subject CN is the user name. Same SQLSTATE and messages as PostgreSQL.
 */
function authenticateWithCertificate(socket: net.Socket, ctx: LoginContext, user: string, encrypted: boolean): void {
  const secure = encrypted ? (socket as tls.TLSSocket) : undefined;
  const peer = secure?.authorized ? presentedCertificate(secure) : undefined;
  if (!peer) {
    throw new AuthFailure(SQLSTATE.invalidAuthorizationSpecification, 'connection requires a valid client certificate', encrypted ? 'certificate_missing' : 'certificate_without_tls');
  }
  const cn: unknown = peer.subject?.CN;
  const name = Array.isArray(cn) ? (cn[0] as unknown) : cn;
  if (typeof name !== 'string' || name === '') {
    throw new AuthFailure(SQLSTATE.invalidAuthorizationSpecification, `certificate authentication failed for user "${user}": client certificate contains no user name`, 'certificate_no_name');
  }
  if (name !== user) {
    // As PostgreSQL: the names go to the log, the client learns only that it failed.
    ctx.log.info({ user, certificateName: name }, `provided user name (${user}) and authenticated user name (${name}) do not match`);
    throw new AuthFailure(SQLSTATE.invalidAuthorizationSpecification, `certificate authentication failed for user "${user}"`, 'certificate_wrong_user');
  }
}
