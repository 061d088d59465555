import { createHash, createHmac } from 'node:crypto';
import {
  decodeBase64,
  hmacSha256,
  isPrintable,
  parseAttributes,
  randomNonce,
  scramKeys,
  scramSaltedPassword,
  sha256,
  xorBuffers,
} from './scramCommon.js';

describe('scramSaltedPassword', () => {
  test('is PBKDF2-HMAC-SHA256 (RFC 7914 section 11 vector)', () => {
    expect(scramSaltedPassword('passwd', Buffer.from('salt'), 1).toString('hex')).toBe(
      '55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc',
    );
  });

  test('applies SASLprep to the password', () => {
    const salt = Buffer.from('salt');
    expect(scramSaltedPassword('I\u00ADX', salt, 2)).toEqual(scramSaltedPassword('IX', salt, 2));
  });

  test.each([0, -1, 1.5, Number.NaN])('rejects iteration count %p', (i) => {
    expect(() => scramSaltedPassword('x', Buffer.from('salt'), i)).toThrow(RangeError);
  });
});

describe('scramKeys', () => {
  test('derives ClientKey, StoredKey and ServerKey per RFC 5802', () => {
    const sp = Buffer.alloc(32, 7);
    const ck = createHmac('sha256', sp).update('Client Key').digest();
    expect(scramKeys(sp)).toEqual({
      clientKey: ck,
      storedKey: createHash('sha256').update(ck).digest(),
      serverKey: createHmac('sha256', sp).update('Server Key').digest(),
    });
  });
});

describe('hash helpers', () => {
  test('sha256 and hmacSha256 known answers', () => {
    expect(sha256(Buffer.from('abc')).toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    // RFC 4231 test case 2
    expect(hmacSha256(Buffer.from('Jefe'), 'what do ya want for nothing?').toString('hex')).toBe(
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
  });

  test('xorBuffers', () => {
    expect(xorBuffers(Buffer.from([0xf0, 0x0f]), Buffer.from([0xff, 0xff]))).toEqual(Buffer.from([0x0f, 0xf0]));
    expect(() => xorBuffers(Buffer.alloc(1), Buffer.alloc(2))).toThrow(RangeError);
  });
});

describe('decodeBase64', () => {
  test.each([
    ['', ''],
    ['biws', '6e2c2c'],
    ['eSws', '792c2c'],
    ['YQ==', '61'],
    ['YWI=', '6162'],
  ])('decodes %j', (text, hex) => {
    expect(decodeBase64(text)?.toString('hex')).toBe(hex);
  });

  test.each(['biw', 'b!ws', 'YQ=', 'YQ===', ' biws', 'biws\n', 'bi-_', 'YQ==YQ=='])('rejects %j', (text) => {
    expect(decodeBase64(text)).toBeNull();
  });
});

describe('isPrintable', () => {
  test('accepts visible ASCII except comma', () => {
    expect(isPrintable('abc!~%$)')).toBe(true);
  });
  test.each(['', 'a,b', 'a b', 'a\u00E9', 'a\tb', '\x7f'])('rejects %j', (s) => {
    expect(isPrintable(s)).toBe(false);
  });
});

describe('randomNonce', () => {
  test('is printable, 24 chars and fresh each time', () => {
    const a = randomNonce();
    expect(isPrintable(a)).toBe(true);
    expect(a).toHaveLength(24);
    expect(randomNonce()).not.toBe(a);
  });
});

describe('parseAttributes', () => {
  test('keeps order and allows empty values', () => {
    expect(parseAttributes('n=,r=abc,x=1=2')).toEqual([
      { name: 'n', value: '' },
      { name: 'r', value: 'abc' },
      { name: 'x', value: '1=2' },
    ]);
  });
  test.each(['', 'n', 'n=,', 'nn=1', '1=x', 'n=a,,r=b', '=x'])('rejects %j', (s) => {
    expect(parseAttributes(s)).toBeNull();
  });
});
