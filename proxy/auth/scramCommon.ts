// Primitives shared by the SCRAM-SHA-256 server and client halves (RFC 5802 / RFC 7677).
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { saslprepPassword } from './saslprep.js';

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';
export const SCRAM_KEY_LEN = 32;
/** PostgreSQL's default scram_iterations. */
export const SCRAM_DEFAULT_ITERATIONS = 4096;
/** PostgreSQL's SCRAM_DEFAULT_SALT_LEN; fake verifiers must match it to be indistinguishable. */
export const SCRAM_SALT_LEN = 16;

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function hmacSha256(key: Buffer, data: string | Buffer): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** SaltedPassword := Hi(SASLprep(password), salt, i) */
export function scramSaltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  if (!Number.isSafeInteger(iterations) || iterations < 1) {
    throw new RangeError(`SCRAM iteration count must be a positive integer, got ${iterations}`);
  }
  return pbkdf2Sync(Buffer.from(saslprepPassword(password), 'utf8'), salt, iterations, SCRAM_KEY_LEN, 'sha256');
}

export interface ScramKeys {
  clientKey: Buffer;
  storedKey: Buffer;
  serverKey: Buffer;
}

export function scramKeys(saltedPassword: Buffer): ScramKeys {
  const clientKey = hmacSha256(saltedPassword, 'Client Key');
  return {
    clientKey,
    storedKey: sha256(clientKey),
    serverKey: hmacSha256(saltedPassword, 'Server Key'),
  };
}

export function xorBuffers(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new RangeError('xorBuffers: length mismatch');
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict RFC 4648 base64 decode. Buffer.from(s, 'base64') silently skips garbage, which would let
 * malformed peer input through, so anything non-canonical yields null.
 */
export function decodeBase64(text: string): Buffer | null {
  if (!BASE64.test(text)) return null;
  return Buffer.from(text, 'base64');
}

/** RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. visible ASCII without ','. Nonces must be this. */
export function isPrintable(text: string): boolean {
  return /^[\x21-\x2b\x2d-\x7e]+$/.test(text);
}

/** A fresh nonce: 18 random bytes, base64 (24 printable chars, no padding), as libpq does. */
export function randomNonce(): string {
  return randomBytes(18).toString('base64');
}

export interface ScramAttribute {
  name: string;
  value: string;
}

/**
 * Splits "a=x,b=y" into attributes, preserving order (SCRAM attribute order is significant).
 * Returns null when any part is not `<letter>=<value>`.
 */
export function parseAttributes(text: string): ScramAttribute[] | null {
  const out: ScramAttribute[] = [];
  for (const part of text.split(',')) {
    if (!/^[A-Za-z]=/.test(part)) return null;
    out.push({ name: part[0]!, value: part.slice(2) });
  }
  return out;
}
