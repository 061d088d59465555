// Client half of SCRAM-SHA-256: the proxy authenticating to a PostgreSQL backend. The proxy never
// negotiates channel binding with the backend, so its gs2 header is always "n,,"; tests use the
// optional channel binding (SCRAM-SHA-256-PLUS, tls-server-end-point) to log in to the proxy.
import { timingSafeEqual } from 'node:crypto';
import {
  SCRAM_KEY_LEN,
  decodeBase64,
  hmacSha256,
  isPrintable,
  parseAttributes,
  randomNonce,
  scramKeys,
  scramSaltedPassword,
  xorBuffers,
} from './scramCommon.js';


type State =
  | { kind: 'initial' }
  | { kind: 'sentFirst' }
  | { kind: 'sentFinal'; serverSignature: Buffer }
  | { kind: 'done' };

export class ScramClientExchange {
  private state: State = { kind: 'initial' };
  private readonly password: string;
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private readonly gs2Header: string;

  /** `binding`: the flag to send ('n' none, 'y' could but not offered) or the tls-server-end-point data to bind to. */
  constructor(
    password: string,
    clientNonce: string = randomNonce(),
    private readonly binding: 'n' | 'y' | Buffer = 'n',
  ) {
    this.gs2Header = Buffer.isBuffer(binding) ? 'p=tls-server-end-point,,' : `${binding},,`;
    if (password.length === 0) throw new Error('SCRAM: password must not be empty');
    if (!isPrintable(clientNonce)) {
      throw new Error('SCRAM: client nonce must be non-empty printable ASCII without ","');
    }
    this.password = password;
    this.clientNonce = clientNonce;
    // PostgreSQL ignores the SCRAM username (it uses the startup packet's), and libpq sends it empty.
    this.clientFirstBare = `n=,r=${clientNonce}`;
  }

  clientFirst(): string {
    if (this.state.kind !== 'initial') throw new Error('SCRAM: client-first-message already sent');
    this.state = { kind: 'sentFirst' };
    return this.gs2Header + this.clientFirstBare;
  }

  /** Returns the client-final-message. PBKDF2 runs here, synchronously. */
  handleServerFirst(msg: string): string {
    if (this.state.kind !== 'sentFirst') throw new Error('SCRAM: unexpected server-first-message');
    this.state = { kind: 'done' };

    const attrs = parseAttributes(msg);
    if (attrs === null) throw new Error('SCRAM: malformed server-first-message');
    if (attrs[0]?.name === 'm') throw new Error('SCRAM: server requires an unsupported mandatory extension');
    const [r, s, i] = attrs;
    if (r?.name !== 'r' || s?.name !== 's' || i?.name !== 'i') {
      throw new Error('SCRAM: server-first-message must start with r=, s=, i= attributes');
    }
    if (!isPrintable(r.value)) throw new Error('SCRAM: server nonce contains invalid characters');
    if (!r.value.startsWith(this.clientNonce)) {
      throw new Error('SCRAM: server nonce does not start with the client nonce');
    }
    if (r.value.length === this.clientNonce.length) {
      throw new Error('SCRAM: server nonce adds nothing to the client nonce');
    }
    const salt = decodeBase64(s.value);
    if (salt === null || salt.length === 0) throw new Error('SCRAM: server salt is not valid base64');
    if (!/^\d+$/.test(i.value)) throw new Error(`SCRAM: invalid iteration count "${i.value}"`);
    const iterations = Number(i.value);
    if (!Number.isSafeInteger(iterations) || iterations < 1) {
      throw new Error(`SCRAM: iteration count must be a positive integer, got "${i.value}"`);
    }

    const { clientKey, storedKey, serverKey } = scramKeys(
      scramSaltedPassword(this.password, salt, iterations),
    );
    const cbind = Buffer.concat([Buffer.from(this.gs2Header), Buffer.isBuffer(this.binding) ? this.binding : Buffer.alloc(0)]);
    const withoutProof = `c=${cbind.toString('base64')},r=${r.value}`;
    const authMessage = `${this.clientFirstBare},${msg},${withoutProof}`;
    const proof = xorBuffers(clientKey, hmacSha256(storedKey, authMessage));
    this.state = { kind: 'sentFinal', serverSignature: hmacSha256(serverKey, authMessage) };
    return `${withoutProof},p=${proof.toString('base64')}`;
  }

  /** Throws unless the server proved it knows the password's verifier. */
  verifyServerFinal(msg: string): void {
    const st = this.state;
    if (st.kind !== 'sentFinal') throw new Error('SCRAM: unexpected server-final-message');
    this.state = { kind: 'done' };

    const attrs = parseAttributes(msg);
    if (attrs === null || attrs.length === 0) throw new Error('SCRAM: malformed server-final-message');
    const first = attrs[0]!;
    if (first.name === 'e') throw new Error(`SCRAM: server reported error "${first.value}"`);
    if (first.name !== 'v') throw new Error('SCRAM: server-final-message has no verifier');
    const signature = decodeBase64(first.value);
    if (signature === null || signature.length !== SCRAM_KEY_LEN) {
      throw new Error('SCRAM: malformed server signature');
    }
    if (!timingSafeEqual(signature, st.serverSignature)) {
      throw new Error('SCRAM: server signature does not match');
    }
  }
}
