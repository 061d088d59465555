// PostgreSQL's md5 password authentication:
//   "md5" || md5hex(md5hex(password || user) || salt)
// where salt is the 4 random bytes from AuthenticationMD5Password.
import { createHash, timingSafeEqual } from 'node:crypto';

export const MD5_SALT_LEN = 4;

function md5hex(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

export function md5PasswordHash(user: string, password: string, salt: Buffer): string {
  if (salt.length !== MD5_SALT_LEN) {
    throw new RangeError(`md5 salt must be ${MD5_SALT_LEN} bytes, got ${salt.length}`);
  }
  const inner = md5hex(Buffer.from(password + user, 'utf8'));
  return 'md5' + md5hex(Buffer.concat([Buffer.from(inner, 'latin1'), salt]));
}

/** Constant-time check of a client's PasswordMessage against the expected md5 response. */
export function verifyMd5Response(user: string, password: string, salt: Buffer, response: string): boolean {
  const expected = Buffer.from(md5PasswordHash(user, password, salt), 'latin1');
  // Byte length, not string length: a multi-byte response must not reach timingSafeEqual unequal.
  const actual = Buffer.from(response, 'utf8');
  if (actual.length !== expected.length) return false;
  return timingSafeEqual(actual, expected);
}
