import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { md5PasswordHash, verifyMd5Response } from './md5.js';

// node-postgres's client-side implementation, as an independent cross-check.
interface PgCryptoUtils {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
}
const pgUtils = createRequire(import.meta.url)('pg/lib/crypto/utils.js') as PgCryptoUtils;

const md5hex = (s: string | Buffer): string => createHash('md5').update(s).digest('hex');

describe('md5PasswordHash', () => {
  test.each([
    // computed independently with Python hashlib
    ['postgres', 'postgres', '01020304', 'md568be9ed08db75f318087ab337aaea044'],
    ['md5user', 'secret', 'deadbeef', 'md5cd861fedfd4a6ff1adf08b190b2b4e47'],
    ['j\u00F6rg', 'p\u00E4ss', '00000000', 'md5716d11d812ba5af6813703e578b880d5'],
  ])('known answer user=%j password=%j salt=%s', (user, password, salt, expected) => {
    expect(md5PasswordHash(user, password, Buffer.from(salt, 'hex'))).toBe(expected);
  });

  test("follows PostgreSQL's documented formula, starting from a pg_authid md5 hash", () => {
    // pg_authid.rolpassword for role md5user / password "secret", as stored by PostgreSQL 15,
    // and the documented response: concat('md5', md5(concat(md5(concat(password, username)), salt)))
    const stored = 'md52aea419619857e8a27f0f7aa641db0c6';
    expect(md5hex('secretmd5user')).toBe(stored.slice(3));
    const salt = Buffer.from([0x9a, 0x00, 0xff, 0x10]);
    expect(md5PasswordHash('md5user', 'secret', salt)).toBe(
      'md5' + md5hex(Buffer.concat([Buffer.from(stored.slice(3)), salt])),
    );
  });

  test('agrees with node-postgres, including non-ASCII and random salts', async () => {
    for (const [user, password] of [['app', 'pw'], ['\u00FCser', 'p\u00E4ss \u{1F600}'], ['a', '']]) {
      const salt = randomBytes(4);
      expect(md5PasswordHash(user!, password!, salt)).toBe(await pgUtils.postgresMd5PasswordHash(user!, password!, salt));
    }
  });

  test.each([0, 3, 5, 16])('rejects a %d-byte salt', (n) => {
    expect(() => md5PasswordHash('u', 'p', Buffer.alloc(n))).toThrow(RangeError);
  });
});

describe('verifyMd5Response', () => {
  const salt = Buffer.from('01020304', 'hex');
  const good = 'md568be9ed08db75f318087ab337aaea044';

  test('accepts the right response', () => {
    expect(verifyMd5Response('postgres', 'postgres', salt, good)).toBe(true);
  });

  test.each([
    ['wrong password', 'postgres', 'postgres!', salt, good],
    ['wrong user', 'postgre', 'postgres', salt, good],
    ['wrong salt', 'postgres', 'postgres', Buffer.from('01020305', 'hex'), good],
    ['upper-case hex', 'postgres', 'postgres', salt, good.toUpperCase()],
    ['missing prefix', 'postgres', 'postgres', salt, good.slice(3)],
    ['empty', 'postgres', 'postgres', salt, ''],
    ['truncated', 'postgres', 'postgres', salt, good.slice(0, -1)],
    ['trailing NUL', 'postgres', 'postgres', salt, good + '\0'],
    ['trailing newline', 'postgres', 'postgres', salt, good + '\n'],
    ['multi-byte char of same string length', 'postgres', 'postgres', salt, good.slice(0, -1) + '\u00E9'],
    ['plain password', 'postgres', 'postgres', salt, 'postgres'],
  ])('rejects %s', (_label, user, password, s, response) => {
    expect(verifyMd5Response(user, password, s, response)).toBe(false);
  });

  test('a bad salt is a programming error, not a failed login', () => {
    expect(() => verifyMd5Response('u', 'p', Buffer.alloc(2), good)).toThrow(RangeError);
  });
});
