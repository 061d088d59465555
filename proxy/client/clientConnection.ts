// A client connection's first act: the startup packet (SSL/GSS requests, cancel requests,
// protocol version), then password authentication (SCRAM-SHA-256 or md5) against the user's
// configured password, then the hand-over to a pooled session or to the admin console.
import { randomBytes } from 'node:crypto';
import type net from 'node:net';
import { fakeScramVerifier, ScramServerExchange, type ScramVerifier } from '../auth/scramServer.js';
import { verifyMd5Response } from '../auth/md5.js';
import {
  parseStartupPacket,
  ProtocolViolation,
  readPasswordBody,
  readSaslInitialResponse,
} from '../protocol/clientMessages.js';
import {
  authenticationMd5,
  authenticationOk,
  authenticationSasl,
  authenticationSaslContinue,
  authenticationSaslFinal,
  errorResponse,
  negotiateProtocolVersion,
} from '../protocol/serverMessages.js';
import { SQLSTATE } from '../protocol/sqlstate.js';
import type { ProxyContext } from '../proxyContext.js';
import { ClientGone, SocketReader } from './socketReader.js';

/** PostgreSQL's authentication_timeout default. */
const STARTUP_TIMEOUT_MS = 60_000;
export const ADMIN_DATABASE = 'dbproxy';

class AuthFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly metric: string,
  ) {
    super(message);
  }
}

export async function handleClientConnection(socket: net.Socket, ctx: ProxyContext): Promise<void> {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, 60_000);
  socket.on('error', () => {
    /* reported through 'close'; a reset client is not an error of ours */
  });
  const reader = new SocketReader(socket);
  const timer = ctx.clock.setTimeout(() => {
    ctx.metrics.clientRejections.inc({ reason: 'startup_timeout' });
    socket.destroy();
  }, STARTUP_TIMEOUT_MS);
  const fatal = (code: string, message: string, metric: string): void => {
    ctx.metrics.clientRejections.inc({ reason: metric });
    if (socket.writable) socket.end(errorResponse({ severity: 'FATAL', code, message }));
    else socket.destroy();
  };
  try {
    let params: Map<string, string> | undefined;
    while (!params) {
      const packet = parseStartupPacket(await reader.readStartupPacket());
      switch (packet.kind) {
        case 'ssl':
        case 'gssenc':
          // No TLS or GSS encryption configured: the client may go on in plaintext.
          socket.write('N');
          break;
        case 'cancel':
          reader.detach();
          socket.destroy();
          await ctx.cancel(packet.processId, packet.secretKey);
          return;
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
    if (ctx.shuttingDown) {
      fatal(SQLSTATE.cannotConnectNow, 'the proxy is shutting down', 'shutting_down');
      return;
    }
    if (ctx.clientCount() >= ctx.config.pool.maxClientConnections) {
      fatal(SQLSTATE.tooManyConnections, `sorry, too many clients already (maxClientConnections is ${ctx.config.pool.maxClientConnections})`, 'too_many_clients');
      return;
    }

    try {
      await authenticate(socket, reader, ctx, user);
    } catch (e) {
      if (!(e instanceof AuthFailure)) throw e;
      // The same delay whatever went wrong, so timing does not tell which users exist.
      await new Promise<void>((r) => ctx.clock.setTimeout(r, ctx.config.clientAuth.failureDelay));
      ctx.log.info({ user, database, remote: socket.remoteAddress, reason: e.metric }, 'client authentication failed');
      fatal(e.code, e.message, e.metric);
      return;
    }
    socket.write(authenticationOk());
    ctx.clock.clearTimeout(timer);
    const leftover = reader.detach();
    if (database === ADMIN_DATABASE) {
      ctx.startAdminSession(socket, user, leftover);
      return;
    }
    await ctx.startSession(socket, { user, database }, params, leftover);
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

async function authenticate(socket: net.Socket, reader: SocketReader, ctx: ProxyContext, user: string): Promise<void> {
  const known = ctx.credentials.has(user);
  let password: string | undefined;
  if (known) {
    try {
      password = ctx.credentials.password(user);
    } catch (e) {
      ctx.log.error({ user, err: (e as Error).message }, 'password for user is not readable');
    }
  }
  const refuse = (): never => {
    if (!known) throw new AuthFailure(SQLSTATE.invalidAuthorizationSpecification, `role "${user}" does not exist`, 'unknown_user');
    throw new AuthFailure(SQLSTATE.invalidPassword, `password authentication failed for user "${user}"`, 'wrong_password');
  };

  if (ctx.config.clientAuth.method === 'md5') {
    const salt = randomBytes(4);
    socket.write(authenticationMd5(salt));
    const body = readPasswordBody(await expectPassword(reader));
    const response = body.toString('utf8', 0, Math.max(0, body.indexOf(0)));
    if (password === undefined || !verifyMd5Response(user, password, salt, response)) refuse();
    return;
  }

  socket.write(authenticationSasl(['SCRAM-SHA-256']));
  const initial = readSaslInitialResponse(await expectPassword(reader));
  if (initial.mechanism !== 'SCRAM-SHA-256' || initial.data === null) {
    throw new ProtocolViolation(`client selected an invalid SASL authentication mechanism "${initial.mechanism}"`);
  }
  let verifier: ScramVerifier = fakeScramVerifier(user, ctx.authSecret);
  if (password !== undefined) verifier = ctx.credentials.scramVerifier(user);
  const exchange = new ScramServerExchange(verifier, randomBytes(18).toString('base64'));
  const first = exchange.handleClientFirst(initial.data);
  if (!first.ok) throw new ProtocolViolation(`malformed SCRAM message: ${first.reason}`);
  socket.write(authenticationSaslContinue(first.serverFirst));
  const final = exchange.handleClientFinal(readPasswordBody(await expectPassword(reader)).toString('utf8'));
  if (!final.ok || password === undefined) refuse();
  if (final.ok) socket.write(authenticationSaslFinal(final.serverFinal));
}
