// SCRAM channel binding of type tls-server-end-point (RFC 5929), as PostgreSQL implements it for
// SCRAM-SHA-256-PLUS: the binding data is a hash of the server's own certificate (DER), with the
// hash function of the certificate's signature algorithm, SHA-256 where that is MD5 or SHA-1.
// The proxy terminates its clients' TLS, so it binds to the certificate it presents: a client
// that requires channel binding then knows no one between it and the proxy relayed its login.
import { createHash, X509Certificate } from 'node:crypto';

export const TLS_SERVER_END_POINT = 'tls-server-end-point';

let last: { der: Buffer; hash: Buffer } | null = null;

/** The tls-server-end-point binding data of a certificate (DER). */
export function tlsServerEndPoint(der: Buffer): Buffer {
  // Every connection presents the same certificate until it is rotated: hash it once.
  if (last !== null && last.der.equals(der)) return last.hash;
  const hash = createHash(endPointHash(new X509Certificate(der).signatureAlgorithm ?? '')).update(der).digest();
  last = { der: Buffer.from(der), hash };
  return hash;
}

/** RFC 5929 section 4.1: the signature's hash, except MD5 and SHA-1, which become SHA-256. */
export function endPointHash(signatureAlgorithm: string): string {
  const a = signatureAlgorithm.toLowerCase();
  if (a.includes('sha512')) return 'sha512';
  if (a.includes('sha384')) return 'sha384';
  if (a.includes('sha224')) return 'sha224';
  return 'sha256';
}
