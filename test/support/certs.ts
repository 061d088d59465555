// Certificates made by the test with the openssl CLI: a throwaway CA and leaf certificates for
// the proxy (client-facing TLS), PostgreSQL (backend TLS) and the local STS.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCa {
  dir: string;
  certFile: string;
  keyFile: string;
  pem: string;
}

export interface LeafCert {
  certFile: string;
  keyFile: string;
  cert: string;
  key: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makeCa(name = 'dbproxy test CA', dir = mkdtempSync(join(tmpdir(), 'dbproxy-ca-'))): TestCa {
  const keyFile = join(dir, 'ca.key');
  const certFile = join(dir, 'ca.crt');
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { dir, certFile, keyFile, pem: readFileSync(certFile, 'utf8') };
}

/**
 * A leaf certificate signed by `ca`, valid for the given DNS names and IP addresses, written as
 * `<name>.crt` and `<name>.key` in `dir` (default: the CA's directory). usage client: a client
 * certificate (extendedKeyUsage clientAuth), whose CN is the user name it logs in as.
 */
export function makeLeaf(ca: TestCa, name: string, opts: { dns?: string[]; ips?: string[]; cn?: string; dir?: string; usage?: 'server' | 'client' } = {}): LeafCert {
  const dir = opts.dir ?? ca.dir;
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  const sans = [...(opts.dns ?? []).map((d) => `DNS:${d}`), ...(opts.ips ?? []).map((i) => `IP:${i}`)];
  writeFileSync(ext, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=${opts.usage === 'client' ? 'clientAuth' : 'serverAuth'}\n${sans.length ? `subjectAltName=${sans.join(',')}\n` : ''}`);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${opts.cn ?? name}`], dir);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext], dir);
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

/** The certificate's serial number, as openssl prints it (to tell two certificates apart). */
export function serialOf(certPem: string): string {
  return execFileSync('openssl', ['x509', '-noout', '-serial'], { input: certPem }).toString().trim().replace(/^serial=/, '');
}

/**
 * PostgreSQL server settings for TLS with a new leaf of `ca` (for the given names), written to a
 * directory of its own that PostgreSQL can read: as root the tests run the server as the postgres
 * user, and it refuses a key it does not own.
 */
export function postgresTlsSettings(ca: TestCa, names: { dns?: string[]; ips?: string[] }): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'dbproxy-pg-tls-'));
  const leaf = makeLeaf(ca, 'postgres', { ...names, dir });
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres:postgres', dir]);
  return { ssl: 'on', ssl_cert_file: `'${leaf.certFile}'`, ssl_key_file: `'${leaf.keyFile}'` };
}
