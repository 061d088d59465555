import { ScramClientExchange } from './scramClient.js';
import { ScramServerExchange, makeScramVerifier } from './scramServer.js';

// RFC 7677 section 3 values. The RFC client sends "n=user"; ours sends "n=" like libpq, so the
// proof and server signature below were computed independently (Python hashlib/hmac) for "n=".
const CLIENT_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const SERVER_NONCE = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const SALT = 'W22ZaJ0SNY7soEsUEjb6gQ==';
const SERVER_FIRST = `r=${CLIENT_NONCE}${SERVER_NONCE},s=${SALT},i=4096`;
const CLIENT_FINAL = `c=biws,r=${CLIENT_NONCE}${SERVER_NONCE},p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=`;
const SERVER_FINAL = 'v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=';

function afterFirst(password = 'pencil'): ScramClientExchange {
  const c = new ScramClientExchange(password, CLIENT_NONCE);
  c.clientFirst();
  return c;
}

function afterFinal(): ScramClientExchange {
  const c = afterFirst();
  c.handleServerFirst(SERVER_FIRST);
  return c;
}

describe('ScramClientExchange', () => {
  test('known-answer exchange (RFC 7677 password, salt and nonces)', () => {
    const c = new ScramClientExchange('pencil', CLIENT_NONCE);
    expect(c.clientFirst()).toBe(`n,,n=,r=${CLIENT_NONCE}`);
    expect(c.handleServerFirst(SERVER_FIRST)).toBe(CLIENT_FINAL);
    expect(() => c.verifyServerFinal(SERVER_FINAL)).not.toThrow();
  });

  test('authenticates against the server half, with SASLprep', () => {
    const verifier = makeScramVerifier('I\u00ADX', Buffer.from('saltsaltsaltsalt'), 4096);
    const server = new ScramServerExchange(verifier, 'c2VydmVy');
    const c = new ScramClientExchange('IX');
    const first = server.handleClientFirst(c.clientFirst());
    if (!first.ok) throw new Error(first.reason);
    const final = server.handleClientFinal(c.handleServerFirst(first.serverFirst));
    if (!final.ok) throw new Error(final.reason);
    expect(() => c.verifyServerFinal(final.serverFinal)).not.toThrow();
  });

  test('the server half refuses a wrong password', () => {
    const server = new ScramServerExchange(makeScramVerifier('pencil', Buffer.from(SALT, 'base64')), SERVER_NONCE);
    const c = new ScramClientExchange('pencil!', CLIENT_NONCE);
    const first = server.handleClientFirst(c.clientFirst());
    if (!first.ok) throw new Error(first.reason);
    expect(server.handleClientFinal(c.handleServerFirst(first.serverFirst))).toEqual({
      ok: false,
      reason: 'password authentication failed',
    });
  });

  test('generates a fresh printable nonce by default', () => {
    const a = new ScramClientExchange('pw').clientFirst();
    const b = new ScramClientExchange('pw').clientFirst();
    expect(a).toMatch(/^n,,n=,r=[\x21-\x2b\x2d-\x7e]{24}$/);
    expect(a).not.toBe(b);
  });

  test('ignores extensions after i= in server-first', () => {
    const c = afterFirst();
    expect(c.handleServerFirst(`${SERVER_FIRST},x=ext`)).toMatch(/^c=biws,r=.*,p=/);
  });

  test('constructor rejects an empty password or a bad nonce', () => {
    expect(() => new ScramClientExchange('')).toThrow(/password must not be empty/);
    expect(() => new ScramClientExchange('pw', '')).toThrow(/client nonce/);
    expect(() => new ScramClientExchange('pw', 'a,b')).toThrow(/client nonce/);
    expect(() => new ScramClientExchange('pw', 'a b')).toThrow(/client nonce/);
  });

  describe('malformed server-first-message', () => {
    test.each([
      ['', /malformed server-first-message/],
      ['garbage', /malformed server-first-message/],
      [`${SERVER_FIRST},`, /malformed server-first-message/],
      [`m=ext,${SERVER_FIRST}`, /mandatory extension/],
      [`s=${SALT},r=${CLIENT_NONCE}x,i=4096`, /must start with r=, s=, i=/],
      [`r=${CLIENT_NONCE}x,s=${SALT}`, /must start with r=, s=, i=/],
      [`r=${CLIENT_NONCE}x,i=4096`, /must start with r=, s=, i=/],
      [`r=${CLIENT_NONCE}\u00E9,s=${SALT},i=4096`, /invalid characters/],
      [`r=other${SERVER_NONCE},s=${SALT},i=4096`, /does not start with the client nonce/],
      [`r=${CLIENT_NONCE.slice(1)}x,s=${SALT},i=4096`, /does not start with the client nonce/],
      [`r=${CLIENT_NONCE},s=${SALT},i=4096`, /adds nothing/],
      [`r=${CLIENT_NONCE}x,s=,i=4096`, /salt is not valid base64/],
      [`r=${CLIENT_NONCE}x,s=not*base64,i=4096`, /salt is not valid base64/],
      [`r=${CLIENT_NONCE}x,s=${SALT},i=0`, /iteration count must be a positive integer/],
      [`r=${CLIENT_NONCE}x,s=${SALT},i=-1`, /invalid iteration count/],
      [`r=${CLIENT_NONCE}x,s=${SALT},i=`, /invalid iteration count/],
      [`r=${CLIENT_NONCE}x,s=${SALT},i=1e3`, /invalid iteration count/],
      [`r=${CLIENT_NONCE}x,s=${SALT},i=4096.5`, /invalid iteration count/],
      [`r=${CLIENT_NONCE}x,s=${SALT},i=99999999999999999999`, /iteration count must be a positive integer/],
    ])('%j', (msg, error) => {
      const c = afterFirst();
      expect(() => c.handleServerFirst(msg)).toThrow(error);
      // a failed exchange cannot be resumed
      expect(() => c.handleServerFirst(SERVER_FIRST)).toThrow(/unexpected server-first-message/);
    });
  });

  describe('server-final-message', () => {
    test.each([
      ['e=invalid-proof', /server reported error "invalid-proof"/],
      ['', /malformed server-final-message/],
      ['v', /malformed server-final-message/],
      ['x=1', /no verifier/],
      ['v=', /malformed server signature/],
      ['v=not base64', /malformed server signature/],
      ['v=3HO6Qt1M4MKJrmlKaoOqLAI0', /malformed server signature/],
      ['v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=', /server signature does not match/],
      [`v=${Buffer.alloc(32).toString('base64')}`, /server signature does not match/],
    ])('%j is refused', (msg, error) => {
      const c = afterFinal();
      expect(() => c.verifyServerFinal(msg)).toThrow(error);
      expect(() => c.verifyServerFinal(SERVER_FINAL)).toThrow(/unexpected server-final-message/);
    });

    test('accepts trailing extensions after v=', () => {
      expect(() => afterFinal().verifyServerFinal(`${SERVER_FINAL},x=ext`)).not.toThrow();
    });
  });

  test('calls out of order throw', () => {
    const c = new ScramClientExchange('pencil', CLIENT_NONCE);
    expect(() => c.handleServerFirst(SERVER_FIRST)).toThrow(/unexpected server-first-message/);
    expect(() => c.verifyServerFinal(SERVER_FINAL)).toThrow(/unexpected server-final-message/);
    c.clientFirst();
    expect(() => c.clientFirst()).toThrow(/already sent/);
    expect(() => c.verifyServerFinal(SERVER_FINAL)).toThrow(/unexpected server-final-message/);
    const d = afterFinal();
    d.verifyServerFinal(SERVER_FINAL);
    expect(() => d.verifyServerFinal(SERVER_FINAL)).toThrow(/unexpected server-final-message/);
  });
});
