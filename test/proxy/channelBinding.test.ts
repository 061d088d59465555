import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { makeCa, makeLeaf } from '../support/certs.js';
import { endPointHash, tlsServerEndPoint } from '../../proxy/auth/channelBinding.js';

test('the hash follows the certificate signature, MD5 and SHA-1 becoming SHA-256 (RFC 5929)', () => {
  expect(endPointHash('sha256WithRSAEncryption')).toBe('sha256');
  expect(endPointHash('sha1WithRSAEncryption')).toBe('sha256');
  expect(endPointHash('md5WithRSAEncryption')).toBe('sha256');
  expect(endPointHash('ecdsa-with-SHA384')).toBe('sha384');
  expect(endPointHash('sha512WithRSAEncryption')).toBe('sha512');
});

test('tls-server-end-point of a real certificate is the hash of its DER', () => {
  const leaf = makeLeaf(makeCa(), 'proxy', { dns: ['localhost'] });
  const der = new X509Certificate(readFileSync(leaf.certFile)).raw;
  expect(tlsServerEndPoint(der)).toEqual(createHash('sha256').update(der).digest());
  expect(tlsServerEndPoint(der)).toEqual(createHash('sha256').update(der).digest());
});
