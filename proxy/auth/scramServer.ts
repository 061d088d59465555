// Server half of SCRAM-SHA-256 as PostgreSQL speaks it: the proxy authenticates its clients.
// Over TLS the proxy also offers SCRAM-SHA-256-PLUS with channel binding tls-server-end-point
// (channelBinding.ts), and, as PostgreSQL, then refuses a client's "y" flag (it could bind and
// thinks the server cannot: someone in between removed the offer).
import { timingSafeEqual } from 'node:crypto';
import { TLS_SERVER_END_POINT } from './channelBinding.js';
import {
  SCRAM_DEFAULT_ITERATIONS,
  SCRAM_KEY_LEN,
  SCRAM_SALT_LEN,
  decodeBase64,
  hmacSha256,
  isPrintable,
  parseAttributes,
  scramKeys,
  scramSaltedPassword,
  sha256,
  xorBuffers,
} from './scramCommon.js';

export { SCRAM_SHA_256 } from './scramCommon.js';

export interface ScramVerifier {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function makeScramVerifier(
  password: string,
  salt: Buffer,
  iterations: number = SCRAM_DEFAULT_ITERATIONS,
): ScramVerifier {
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
  const { storedKey, serverKey } = scramKeys(scramSaltedPassword(password, salt, iterations));
  return { salt: Buffer.from(salt), iterations, storedKey, serverKey };
}

/**
 * A verifier for a user that does not exist. It is stable per user, so probing the same name twice
 * yields the same salt, and has the same shape as a real one, so the exchange cannot tell a missing
 * user from a wrong password. Its keys are HMAC outputs, not derived from any password, so no proof
 * can match them.
 */
export function fakeScramVerifier(
  user: string,
  secret: Buffer,
  iterations: number = SCRAM_DEFAULT_ITERATIONS,
): ScramVerifier {
  if (secret.length < 16) throw new RangeError('fakeScramVerifier secret must be at least 16 bytes');
  if (!Number.isSafeInteger(iterations) || iterations < 1) {
    throw new RangeError(`SCRAM iteration count must be a positive integer, got ${iterations}`);
  }
  const derive = (label: string): Buffer => hmacSha256(secret, `${label}\0${user}`);
  return {
    salt: derive('salt').subarray(0, SCRAM_SALT_LEN),
    iterations,
    storedKey: derive('stored'),
    serverKey: derive('server'),
  };
}

export type ScramServerFirstResult = { ok: true; serverFirst: string } | { ok: false; reason: string };
export type ScramServerFinalResult = { ok: true; serverFinal: string } | { ok: false; reason: string };

type State =
  | { kind: 'awaitClientFirst' }
  | {
      kind: 'awaitClientFinal';
      gs2Header: string;
      nonce: string;
      clientFirstBare: string;
      serverFirst: string;
    }
  | { kind: 'done' };

/** What the SASL negotiation said about channel binding. */
export interface ChannelBindingOptions {
  /** SCRAM-SHA-256-PLUS was offered (the connection is TLS): a "y" flag is a downgrade. */
  offered: boolean;
  /** The client chose SCRAM-SHA-256-PLUS: the tls-server-end-point data it must bind to. */
  data?: Buffer;
}

export class ScramServerExchange {
  private state: State = { kind: 'awaitClientFirst' };
  private readonly verifier: ScramVerifier;
  private readonly serverNonce: string;

  constructor(
    verifier: ScramVerifier,
    nonce: string,
    private readonly binding: ChannelBindingOptions = { offered: false },
  ) {
    if (!isPrintable(nonce)) throw new TypeError('SCRAM server nonce must be non-empty printable ASCII without ","');
    if (verifier.storedKey.length !== SCRAM_KEY_LEN || verifier.serverKey.length !== SCRAM_KEY_LEN) {
      throw new RangeError(`SCRAM verifier keys must be ${SCRAM_KEY_LEN} bytes`);
    }
    if (verifier.salt.length === 0) throw new RangeError('SCRAM verifier salt must not be empty');
    if (!Number.isSafeInteger(verifier.iterations) || verifier.iterations < 1) {
      throw new RangeError('SCRAM verifier iteration count must be a positive integer');
    }
    this.verifier = verifier;
    this.serverNonce = nonce;
  }

  handleClientFirst(message: string): ScramServerFirstResult {
    if (this.state.kind !== 'awaitClientFirst') return this.abort('unexpected client-first-message');

    // gs2-header = gs2-cbind-flag "," [ authzid ] ","; gs2-cbind-flag = "p=" cb-name / "n" / "y"
    const flag = message[0];
    let at: number;
    if (flag === 'p') {
      if (this.binding.data === undefined) return this.abort('the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data');
      if (message[1] !== '=') return this.abort('malformed gs2 header');
      const comma = message.indexOf(',', 2);
      if (comma < 0) return this.abort('malformed gs2 header');
      if (message.slice(2, comma) !== TLS_SERVER_END_POINT) return this.abort(`unsupported SCRAM channel-binding type "${message.slice(2, comma)}"`);
      at = comma + 1;
    } else if ((flag === 'n' || flag === 'y') && message[1] === ',') {
      if (this.binding.data !== undefined) return this.abort('the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data');
      // The client can bind and believes the server cannot, though it offered to: a downgrade.
      if (flag === 'y' && this.binding.offered) return this.abort('SCRAM channel binding negotiation error');
      at = 2;
    } else {
      return this.abort('malformed gs2 header');
    }
    if (message[at] === 'a') return this.abort('authorization identity is not supported');
    if (message[at] !== ',') return this.abort('malformed gs2 header');
    const gs2Header = message.slice(0, at + 1);
    const clientFirstBare = message.slice(at + 1);

    const attrs = parseAttributes(clientFirstBare);
    if (attrs === null) return this.abort('malformed client-first-message');
    if (attrs[0]?.name === 'm') return this.abort('mandatory extension is not supported');
    // The username attribute is required by the grammar but ignored: PostgreSQL takes the user from
    // the startup packet, and libpq sends "n=" (node-postgres sends "n=*").
    if (attrs[0]?.name !== 'n') return this.abort('missing username attribute');
    const nonceAttr = attrs[1];
    if (nonceAttr?.name !== 'r') return this.abort('missing nonce attribute');
    if (!isPrintable(nonceAttr.value)) return this.abort('invalid client nonce');
    // Any further attributes are optional extensions, which RFC 5802 says to ignore.

    const nonce = nonceAttr.value + this.serverNonce;
    const v = this.verifier;
    const serverFirst = `r=${nonce},s=${v.salt.toString('base64')},i=${v.iterations}`;
    this.state = { kind: 'awaitClientFinal', gs2Header, nonce, clientFirstBare, serverFirst };
    return { ok: true, serverFirst };
  }

  handleClientFinal(message: string): ScramServerFinalResult {
    const st = this.state;
    if (st.kind !== 'awaitClientFinal') return this.abort('unexpected client-final-message');

    const attrs = parseAttributes(message);
    if (attrs === null || attrs.length < 3) return this.abort('malformed client-final-message');
    const [cb, nonceAttr] = attrs;
    const proofAttr = attrs[attrs.length - 1]!;
    if (cb?.name !== 'c') return this.abort('missing channel binding attribute');
    if (nonceAttr?.name !== 'r') return this.abort('missing nonce attribute');
    if (proofAttr.name !== 'p') return this.abort('missing proof attribute');

    // c= is the gs2 header the client sent, byte for byte, then (with -PLUS) the binding data.
    const cbData = decodeBase64(cb.value);
    const expected = Buffer.concat([Buffer.from(st.gs2Header, 'utf8'), this.binding.data ?? Buffer.alloc(0)]);
    if (cbData === null || !cbData.equals(expected)) {
      return this.abort('channel binding mismatch');
    }
    if (nonceAttr.value !== st.nonce) return this.abort('nonce mismatch');
    const proof = decodeBase64(proofAttr.value);
    if (proof === null || proof.length !== SCRAM_KEY_LEN) return this.abort('malformed client proof');

    const withoutProof = message.slice(0, message.length - proofAttr.value.length - 3);
    const authMessage = `${st.clientFirstBare},${st.serverFirst},${withoutProof}`;
    const v = this.verifier;
    const clientSignature = hmacSha256(v.storedKey, authMessage);
    const clientKey = xorBuffers(proof, clientSignature);
    const valid = timingSafeEqual(sha256(clientKey), v.storedKey);
    if (!valid) return this.abort('password authentication failed');

    this.state = { kind: 'done' };
    return { ok: true, serverFinal: `v=${hmacSha256(v.serverKey, authMessage).toString('base64')}` };
  }

  // Any failure ends the exchange: a retry on the same state would let a client probe proofs
  // against one server nonce.
  private abort(reason: string): { ok: false; reason: string } {
    this.state = { kind: 'done' };
    return { ok: false, reason };
  }
}
