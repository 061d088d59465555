// Builds the token verifiers the config asks for (iam: STS tokens; serviceAccountAuth:
// ServiceAccount tokens) behind one TokenAuth, which caches verified identities by token hash.
import type { Logger } from 'pino';
import type { ProxyConfig } from '../contract/config.js';
import { WatchedFiles } from '../tls/watchedFiles.js';
import { ServiceAccountVerifier } from './serviceAccountVerifier.js';
import { StsVerifier } from './stsVerifier.js';
import { TokenAuth, type TokenVerifier } from './tokenAuth.js';

export function buildTokenAuth(config: ProxyConfig, log: Logger): TokenAuth {
  const verifiers: TokenVerifier[] = [];
  const iam = config.iam;
  if (iam) {
    let extraCa: (() => Buffer) | undefined;
    if (iam.stsCaFile) {
      const files = new WatchedFiles<Buffer>({
        files: [iam.stsCaFile],
        build: ([b]) => b!,
        recheckMs: 5000,
        onError: (e) => log.error({ err: e.message }, 'iam.stsCaFile reload failed'),
      });
      files.load();
      extraCa = () => files.current();
    }
    verifiers.push(new StsVerifier({ proxyId: iam.proxyId, stsHosts: iam.stsHosts, roleMappings: iam.roleMappings, timeoutMs: iam.timeout, extraCa }));
  }
  const sa = config.serviceAccountAuth;
  if (sa) {
    verifiers.push(new ServiceAccountVerifier({ audience: sa.audience, mappings: sa.mappings, kubeconfig: sa.kubeconfig, timeoutMs: sa.timeout }));
  }
  return new TokenAuth({
    verifiers,
    cacheTtlMs: (kind) => (kind === 'sts' ? (iam?.cacheTtl ?? 0) : (sa?.cacheTtl ?? 0)),
  });
}
