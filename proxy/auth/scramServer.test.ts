import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  SCRAM_SHA_256,
  ScramServerExchange,
  fakeScramVerifier,
  makeScramVerifier,
} from './scramServer.js';
import type { ScramVerifier } from './scramServer.js';

// node-postgres's SCRAM client: an independent implementation to interoperate with.
interface PgSaslSession {
  response: string;
}
interface PgSasl {
  startSession(mechanisms: string[], stream?: object): PgSaslSession;
  continueSession(session: PgSaslSession, password: string, serverData: string, stream?: object): Promise<void>;
  finalizeSession(session: PgSaslSession, serverData: string): void;
}
const pgSasl = createRequire(import.meta.url)('pg/lib/crypto/sasl.js') as PgSasl;

// RFC 7677 section 3
const RFC = {
  salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'),
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal:
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};
const rfcVerifier = makeScramVerifier('pencil', RFC.salt, 4096);

// Independent client-final computation, so tests can vary gs2 header, binding data and extensions.
function clientFinalFor(opts: {
  password: string;
  clientFirstBare: string;
  serverFirst: string;
  gs2Header: string;
  cbindData?: Buffer;
  extra?: string;
}): string {
  const attrs = new Map(opts.serverFirst.split(',').map((a) => [a[0], a.slice(2)] as const));
  const sp = pbkdf2Sync(opts.password, Buffer.from(attrs.get('s')!, 'base64'), Number(attrs.get('i')), 32, 'sha256');
  const ck = createHmac('sha256', sp).update('Client Key').digest();
  const sk = createHash('sha256').update(ck).digest();
  const cbind = Buffer.concat([Buffer.from(opts.gs2Header), opts.cbindData ?? Buffer.alloc(0)]);
  const withoutProof = `c=${cbind.toString('base64')},r=${attrs.get('r')}${opts.extra ?? ''}`;
  const sig = createHmac('sha256', sk).update(`${opts.clientFirstBare},${opts.serverFirst},${withoutProof}`).digest();
  const proof = Buffer.from(ck.map((b, i) => b ^ sig[i]!));
  return `${withoutProof},p=${proof.toString('base64')}`;
}

function started(verifier: ScramVerifier = rfcVerifier, clientFirst = RFC.clientFirst): ScramServerExchange {
  const ex = new ScramServerExchange(verifier, RFC.serverNonce);
  expect(ex.handleClientFirst(clientFirst).ok).toBe(true);
  return ex;
}

test('mechanism name', () => {
  expect(SCRAM_SHA_256).toBe('SCRAM-SHA-256');
});

describe('makeScramVerifier', () => {
  // Verifiers produced by PostgreSQL 15 (CREATE ROLE ... PASSWORD; pg_authid.rolpassword), covering
  // SASLprep mapping, NFKC, and the prohibited-falls-back-to-raw cases.
  const postgresVerifiers: Array<[string, string]> = [
    ['pencil', 'SCRAM-SHA-256$4096:QRXS43yxHbAI6rbxRYj4gg==$tFSXCcjlm9Yoi8UY31K9qIAySOtlO9ndGtwR6hNMaDw=:aGGv/VEJiuv2Mb3NzEsUH6zAmf1a4ET4ar80ieSmdAo='],
    ['pass word', 'SCRAM-SHA-256$4096:8sFgSk4V0Xo3ICP0YXq6Pg==$x3FKam1Im14iiP1ykgqn3P/4UChIFQv6pG7NNLUo6oM=:n70AaEZhA3iw4uyyRxdMyNVTuNhwM1+nUhzNgP46vEQ='],
    ['I\u00ADX', 'SCRAM-SHA-256$4096:HB7PjB12MJqJSvfSgoG7EA==$5p52ebZfCnyRMfiqGJJdV+yArUnjwmaQ1KIq9qlRCR8=:dE3U8B0pKs2mRvitEb1t1bFNB/FwhDGsKAwxxkVADJo='],
    ['\u2168', 'SCRAM-SHA-256$4096:aKREHBw0NQqjqvceeXmBiQ==$fS5uiqVOGZCFpXuwF77Ls3mHbrtY2Qegd7jEpiTih2I=:rC+XsqyFhchfyNzm/DbM33rvUXpbqMfRzrx/k1XGUi8='],
    ['a\u00A0b', 'SCRAM-SHA-256$4096:erOorW7grVMf7sIMJoNAjw==$GyBA9LkPqwNrD7sCOU81tl3ZjCi8JNrtJ8g9yg42KQs=:PZmi6R9NRWw9bIvSujjvOcnwWzDoIWEl/DvOFwtekp0='],
    ['\u00E9\u0007', 'SCRAM-SHA-256$4096:LjR14hYq7Ktn5vWU+hu8cw==$or20ZCwlA31necsJSs5iOCaPM2ZvpgqmH4JFlpDdR1M=:ZJ9Yd2Ko51uPtlG8Ch8b4TzhdbQqbUYneS5v1EctKds='],
    ['\u0627\uFB01', 'SCRAM-SHA-256$4096:X9XHgvbaC0j0vvd4QknkbA==$bEhnnsCogQsQORchJ/ZvP/ErUwaNMyUatZ3DO6RHgdY=:LQoya7+RcVdzTYt3/LkMQ2sUt8VcSWgx+Zw3fFNs/y0='],
    ['\u00AD', 'SCRAM-SHA-256$4096:nPtPsiSe/sJIcRf1DpCWAQ==$a3Z0MXiPSkXQLq1nCrcGlLz0yawDVN0I8DlVDLLmVc4=:F4NlpDC4jhX/8p7/B1HnIXJDXaeaTlmx5vCMGsuygRU='],
    ['\u{1F600}\u2168', 'SCRAM-SHA-256$4096:+3n71ZWoJ/nzZZaWvyfZMA==$v07c+nI4loZJEkPq9DQ+rUi9vbloIbAG9vxxqQXchyA=:Hf7ofvig3zdEOwHkSLQ52BT3i9vnjkpDdPu4Aab41hI='],
    ['x\u0301\u00C5', 'SCRAM-SHA-256$4096:krZaEjg6Si/LDyNvKLb74w==$ymOmRgX0vmErr2dyFF7MdPfV+T5yNhwhYka/KHaigEw=:YEqIRSvqKT6LlvQiB2kmE/3st9s6KoOdTLIFSrWpRtg='],
    ['\u0627\u0628', 'SCRAM-SHA-256$4096:9MCteKqFvVAHmIGJfQbbqQ==$VFrBZqVE211k0mLM0R+aZAPM+gbBN9xvQflf4L4YraU=:sBn4gC7Rb+tTHrBFGtAUXPXyREOVgV1CYI9EJ0nZwR8='],
    ['\u05D0\u2168\u05D1', 'SCRAM-SHA-256$4096:DpKbnd0bI0foDJIfN1xSrA==$r8alyDw1KMZNK8gG6V+IGKVpCsaU8XZGdKE3jqxQLFY=:Ct1ZsJyZM/5wA33Rq9gYFYfvjSodCs9S5jpqL0GbY3s='],
    ['ab\u00DF', 'SCRAM-SHA-256$4096:w0C6gQWJ7wlYiOmtSH206A==$fEYoXeAQyeHq/DrqxrquXFge0o2OUhXZbrGZyhecBE4=:t+BxL5eUzhRTu32bVKy73feCtL8Q7vxdEmTKJZ2KhZY='],
    ['\u{1F600}', 'SCRAM-SHA-256$4096:wHXJm8Yp92YpMVMP5pC/VA==$v59RQRM922pjfkyxGMkc5/jVK6ARHdEfwq2xBjzHO4I=:Sq/fcANZqnPuPlGQ2eKnPWQpYDKKn76zGkO2otFm58g='],
    ['x\u{1F600}\u00A0', 'SCRAM-SHA-256$4096:KK52gqHzfWetcpPEVsZCGg==$TYwKScwwznBasFeQWWB/sJ96pcMl+HEDSB3hMeinKOc=:c3Ps/fU6wMXSCnhhJgp2bGVzs3HTODAxoWYTK5dT56A='],
    ['\u0221\u2168', 'SCRAM-SHA-256$4096:HzRCxDQTAwv0Ihnf6w3/uw==$LsHso0OajNVRkmZb35GGS7GA+UVIR7ieitXLBiPr6yk=:uDDtR0AXym4GfYuM+G4kXrdfu9x1DdgbBemnkVtT9zU='],
    ['a\u0009\u00E9', 'SCRAM-SHA-256$4096:iIk52MixwhJKN+AeNM6K9w==$F+q9TXWqxamzv0NoUzg4WJ4/K5Raotz0m5hwY6sHfVY=:zGrvb5REFpk9iZhIGfL7vYeBPlFrsHiirSIEwthXFUM='],
    ['\uFB01\u05D0', 'SCRAM-SHA-256$4096:jPHLIniI9t+y1W4Rtd7NbQ==$Z23lwh8crthzNC7MGKZ8etoDpy8JB5UPDkNT4eM656I=:AxqsHu2DnX6yymrHhqwJT3h7AxTEL63Ia6ARaqto05s='],
  ];

  test.each(postgresVerifiers)('matches PostgreSQL for password %j', (password, stored) => {
    const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(stored)!;
    const v = makeScramVerifier(password, Buffer.from(m[2]!, 'base64'), Number(m[1]));
    expect(v.storedKey.toString('base64')).toBe(m[3]);
    expect(v.serverKey.toString('base64')).toBe(m[4]);
    expect(v.iterations).toBe(4096);
  });

  test('defaults to 4096 iterations and copies the salt', () => {
    const salt = Buffer.from('0123456789abcdef');
    const v = makeScramVerifier('pencil', salt);
    salt.fill(0);
    expect(v.iterations).toBe(4096);
    expect(v.salt.toString()).toBe('0123456789abcdef');
    expect(v.storedKey).toHaveLength(32);
    expect(v.serverKey).toHaveLength(32);
  });

  test('rejects an empty salt and bad iteration counts', () => {
    expect(() => makeScramVerifier('pencil', Buffer.alloc(0))).toThrow(RangeError);
    expect(() => makeScramVerifier('pencil', RFC.salt, 0)).toThrow(RangeError);
    expect(() => makeScramVerifier('pencil', RFC.salt, 2.5)).toThrow(RangeError);
  });
});

describe('fakeScramVerifier', () => {
  const secret = Buffer.alloc(32, 1);

  test('is deterministic per user and secret, and shaped like a real verifier', () => {
    const a = fakeScramVerifier('alice', secret);
    expect(fakeScramVerifier('alice', secret)).toEqual(a);
    expect(fakeScramVerifier('bob', secret).salt).not.toEqual(a.salt);
    expect(fakeScramVerifier('alice', Buffer.alloc(32, 2)).salt).not.toEqual(a.salt);
    expect(a.salt).toHaveLength(16);
    expect(a.storedKey).toHaveLength(32);
    expect(a.serverKey).toHaveLength(32);
    expect(a.iterations).toBe(4096);
    expect(fakeScramVerifier('alice', secret, 10000).iterations).toBe(10000);
  });

  test('does not separate user from label ambiguously', () => {
    expect(fakeScramVerifier('', secret).salt).not.toEqual(fakeScramVerifier('\0', secret).salt);
  });

  test('runs an ordinary-looking exchange that always fails', () => {
    const v = fakeScramVerifier('ghost', secret);
    const ex = new ScramServerExchange(v, RFC.serverNonce);
    const first = ex.handleClientFirst('n,,n=,r=abc');
    expect(first).toEqual({ ok: true, serverFirst: `r=abc${RFC.serverNonce},s=${v.salt.toString('base64')},i=4096` });
    if (!first.ok) throw new Error('unreachable');
    const final = clientFinalFor({ password: '', clientFirstBare: 'n=,r=abc', serverFirst: first.serverFirst, gs2Header: 'n,,' });
    expect(ex.handleClientFinal(final)).toEqual({ ok: false, reason: 'password authentication failed' });
  });

  test('rejects a short secret or bad iterations', () => {
    expect(() => fakeScramVerifier('alice', Buffer.alloc(15))).toThrow(RangeError);
    expect(() => fakeScramVerifier('alice', secret, 0)).toThrow(RangeError);
  });
});

describe('ScramServerExchange', () => {
  test('RFC 7677 test vector', () => {
    const ex = new ScramServerExchange(rfcVerifier, RFC.serverNonce);
    expect(ex.handleClientFirst(RFC.clientFirst)).toEqual({ ok: true, serverFirst: RFC.serverFirst });
    expect(ex.handleClientFinal(RFC.clientFinal)).toEqual({ ok: true, serverFinal: RFC.serverFinal });
  });

  test('interoperates with node-postgres (gs2 "n" and "y")', async () => {
    for (const stream of [undefined, {}]) {
      const session = pgSasl.startSession([SCRAM_SHA_256], stream);
      const ex = new ScramServerExchange(rfcVerifier, 'c2VydmVybm9uY2U=');
      const first = ex.handleClientFirst(session.response);
      if (!first.ok) throw new Error(first.reason);
      await pgSasl.continueSession(session, 'pencil', first.serverFirst, stream);
      const final = ex.handleClientFinal(session.response);
      if (!final.ok) throw new Error(final.reason);
      expect(() => pgSasl.finalizeSession(session, final.serverFinal)).not.toThrow();
    }
  });

  test('node-postgres with the wrong password is refused', async () => {
    const session = pgSasl.startSession([SCRAM_SHA_256]);
    const ex = new ScramServerExchange(rfcVerifier, 'c2VydmVybm9uY2U=');
    const first = ex.handleClientFirst(session.response);
    if (!first.ok) throw new Error(first.reason);
    await pgSasl.continueSession(session, 'pencil2', first.serverFirst);
    expect(ex.handleClientFinal(session.response)).toEqual({ ok: false, reason: 'password authentication failed' });
  });

  test('SASLprep applies on both sides', () => {
    const v = makeScramVerifier('I\u00ADX', RFC.salt);
    const ex = started(v, 'n,,n=,r=abc');
    const serverFirst = `r=abc${RFC.serverNonce},s=${RFC.salt.toString('base64')},i=4096`;
    expect(ex.handleClientFinal(clientFinalFor({ password: 'IX', clientFirstBare: 'n=,r=abc', serverFirst, gs2Header: 'n,,' })).ok).toBe(true);
  });

  test('accepts gs2 "y" with c=eSws, extensions, and any username', () => {
    const ex = started(rfcVerifier, 'y,,n=somebody,r=abc,x=ext');
    const serverFirst = `r=abc${RFC.serverNonce},s=${RFC.salt.toString('base64')},i=4096`;
    const final = clientFinalFor({
      password: 'pencil',
      clientFirstBare: 'n=somebody,r=abc,x=ext',
      serverFirst,
      gs2Header: 'y,,',
      extra: ',z=ext',
    });
    expect(final.startsWith('c=eSws,')).toBe(true);
    expect(ex.handleClientFinal(final).ok).toBe(true);
  });

  describe('client-first-message errors', () => {
    test.each([
      ['', 'malformed gs2 header'],
      ['p=tls-server-end-point,,n=,r=abc', 'the client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data'],
      ['x,,n=,r=abc', 'malformed gs2 header'],
      ['n', 'malformed gs2 header'],
      ['n;,n=,r=abc', 'malformed gs2 header'],
      ['n,', 'malformed gs2 header'],
      ['n,x,n=,r=abc', 'malformed gs2 header'],
      ['n,a=bob,n=,r=abc', 'authorization identity is not supported'],
      ['n,,', 'malformed client-first-message'],
      ['n,,m=ext,n=,r=abc', 'mandatory extension is not supported'],
      ['n,,r=abc', 'missing username attribute'],
      ['n,,n=', 'missing nonce attribute'],
      ['n,,n=,s=abc', 'missing nonce attribute'],
      ['n,,n=,r=', 'invalid client nonce'],
      ['n,,n=,r=ab\u00E9', 'invalid client nonce'],
      ['n,,n=,r=ab c', 'invalid client nonce'],
      ['n,,n=,r=abc,', 'malformed client-first-message'],
      ['n,,n=,,r=abc', 'malformed client-first-message'],
    ])('%j -> %s', (msg, reason) => {
      const ex = new ScramServerExchange(rfcVerifier, RFC.serverNonce);
      expect(ex.handleClientFirst(msg)).toEqual({ ok: false, reason });
      // a failed exchange is over
      expect(ex.handleClientFirst(RFC.clientFirst)).toEqual({ ok: false, reason: 'unexpected client-first-message' });
    });
  });

  describe('client-final-message errors', () => {
    const proof = RFC.clientFinal.slice(RFC.clientFinal.indexOf(',p=') + 3);
    const nonce = 'rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
    test.each([
      ['', 'malformed client-final-message'],
      ['garbage', 'malformed client-final-message'],
      [`c=biws,r=${nonce}`, 'malformed client-final-message'],
      [`r=${nonce},c=biws,p=${proof}`, 'missing channel binding attribute'],
      [`c=biws,x=1,p=${proof}`, 'missing nonce attribute'],
      [`c=biws,r=${nonce},x=1`, 'missing proof attribute'],
      [`c=biws,r=${nonce},p=${proof},x=1`, 'missing proof attribute'],
      [`c=eSws,r=${nonce},p=${proof}`, 'channel binding mismatch'],
      [`c=biw,r=${nonce},p=${proof}`, 'channel binding mismatch'],
      [`c=,r=${nonce},p=${proof}`, 'channel binding mismatch'],
      [`c=biws,r=${nonce}x,p=${proof}`, 'nonce mismatch'],
      [`c=biws,r=rOprNGfwEbeRWgbNEkqO,p=${proof}`, 'nonce mismatch'],
      [`c=biws,r=${nonce},p=`, 'malformed client proof'],
      [`c=biws,r=${nonce},p=${proof.slice(0, -4)}`, 'malformed client proof'],
      [`c=biws,r=${nonce},p=not base64!`, 'malformed client proof'],
      [`c=biws,r=${nonce},p=${Buffer.alloc(32).toString('base64')}`, 'password authentication failed'],
      [`c=biws,r=${nonce},x=1,p=${proof}`, 'password authentication failed'], // extension alters AuthMessage
    ])('%j -> %s', (msg, reason) => {
      const ex = started();
      expect(ex.handleClientFinal(msg)).toEqual({ ok: false, reason });
      // no second attempt against the same nonce
      expect(ex.handleClientFinal(RFC.clientFinal)).toEqual({ ok: false, reason: 'unexpected client-final-message' });
    });

    test('c= must echo the header actually sent ("y" client answering "n")', () => {
      const ex = started(rfcVerifier, 'y,,n=user,r=rOprNGfwEbeRWgbNEkqO');
      expect(ex.handleClientFinal(RFC.clientFinal)).toEqual({ ok: false, reason: 'channel binding mismatch' });
    });
  });

  describe('SCRAM-SHA-256-PLUS (tls-server-end-point)', () => {
    const endPoint = createHash('sha256').update('the certificate').digest();
    const serverFirst = `r=abc${RFC.serverNonce},s=${RFC.salt.toString('base64')},i=4096`;
    const plus = (): ScramServerExchange => new ScramServerExchange(rfcVerifier, RFC.serverNonce, { offered: true, data: endPoint });

    test('binds to the certificate hash', () => {
      const ex = plus();
      expect(ex.handleClientFirst('p=tls-server-end-point,,n=,r=abc')).toEqual({ ok: true, serverFirst });
      const final = clientFinalFor({ password: 'pencil', clientFirstBare: 'n=,r=abc', serverFirst, gs2Header: 'p=tls-server-end-point,,', cbindData: endPoint });
      expect(ex.handleClientFinal(final).ok).toBe(true);
    });

    test('other binding data (a certificate someone in between presented) is refused', () => {
      const ex = plus();
      expect(ex.handleClientFirst('p=tls-server-end-point,,n=,r=abc').ok).toBe(true);
      const final = clientFinalFor({ password: 'pencil', clientFirstBare: 'n=,r=abc', serverFirst, gs2Header: 'p=tls-server-end-point,,', cbindData: Buffer.alloc(32) });
      expect(ex.handleClientFinal(final)).toEqual({ ok: false, reason: 'channel binding mismatch' });
    });

    test.each([
      ['p=tls-unique,,n=,r=abc', 'unsupported SCRAM channel-binding type "tls-unique"'],
      ['p=tls-server-end-point,a=x,n=,r=abc', 'authorization identity is not supported'],
      ['n,,n=,r=abc', 'the client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data'],
      ['p,,n=,r=abc', 'malformed gs2 header'],
    ])('%j -> %s', (msg, reason) => {
      expect(plus().handleClientFirst(msg)).toEqual({ ok: false, reason });
    });

    test('"y" (the client could bind but saw no offer) is refused when the offer was made: a downgrade', () => {
      const offered = new ScramServerExchange(rfcVerifier, RFC.serverNonce, { offered: true });
      expect(offered.handleClientFirst('y,,n=,r=abc')).toEqual({ ok: false, reason: 'SCRAM channel binding negotiation error' });
      // "n" (the client does not bind at all) is the client's choice, as on PostgreSQL.
      expect(new ScramServerExchange(rfcVerifier, RFC.serverNonce, { offered: true }).handleClientFirst('n,,n=,r=abc').ok).toBe(true);
    });
  });

  test('messages out of order are refused', () => {
    const ex = new ScramServerExchange(rfcVerifier, RFC.serverNonce);
    expect(ex.handleClientFinal(RFC.clientFinal)).toEqual({ ok: false, reason: 'unexpected client-final-message' });

    const ex2 = started();
    expect(ex2.handleClientFirst(RFC.clientFirst)).toEqual({ ok: false, reason: 'unexpected client-first-message' });

    const ex3 = started();
    expect(ex3.handleClientFinal(RFC.clientFinal).ok).toBe(true);
    expect(ex3.handleClientFinal(RFC.clientFinal)).toEqual({ ok: false, reason: 'unexpected client-final-message' });
  });

  test('constructor rejects a bad nonce or verifier', () => {
    expect(() => new ScramServerExchange(rfcVerifier, '')).toThrow(TypeError);
    expect(() => new ScramServerExchange(rfcVerifier, 'a,b')).toThrow(TypeError);
    expect(() => new ScramServerExchange({ ...rfcVerifier, storedKey: Buffer.alloc(31) }, 'abc')).toThrow(RangeError);
    expect(() => new ScramServerExchange({ ...rfcVerifier, serverKey: Buffer.alloc(33) }, 'abc')).toThrow(RangeError);
    expect(() => new ScramServerExchange({ ...rfcVerifier, salt: Buffer.alloc(0) }, 'abc')).toThrow(RangeError);
    expect(() => new ScramServerExchange({ ...rfcVerifier, iterations: 0 }, 'abc')).toThrow(RangeError);
  });
});
