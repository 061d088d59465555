// The proxy config, rendered from the DatabaseProxy spec into the shape proxy/contract/config.ts
// parses, and the ConfigMap that carries it. Pure.
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import type { ProxyConfigInput } from '../../proxy/contract/config.js';
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { ConfigMap } from '../k8s/types.js';
import { ADMIN_PORT, POSTGRES_PORT, childMeta, childNames, paths } from './common.js';
import { peerDnsName } from './service.js';
import { SHUTDOWN_GRACE_SECONDS } from './poolDivisor.js';

export interface ConfigFacts {
  /** pool.replicas: what each pod divides the pool budget by (poolDivisor). */
  poolDivisor: number;
}

export interface RenderedConfig {
  config: ProxyConfigInput;
  /** config.yaml as written to the ConfigMap. */
  yaml: string;
  /**
   * Hash of everything in the config except pool.replicas. It goes on the pod template, so a
   * config change rolls the pods; the divisor changes on every scale and is reloaded in place.
   */
  hash: string;
  /** Spec fields the proxy cannot honour yet (not expressible in its config): do not roll out silently. */
  unsupported: string[];
}

/** host:port, with IPv6 literals in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

function unsupportedFeatures(dbp: DatabaseProxy): string[] {
  const s = dbp.spec;
  const out: string[] = [];
  if (s.tls?.secretName || s.tls?.requireTLS) out.push('spec.tls.secretName/requireTLS: the proxy cannot terminate client TLS yet');
  if (s.tls?.backend && s.tls.backend.mode !== 'disable') out.push(`spec.tls.backend.mode=${s.tls.backend.mode}: the proxy cannot use TLS to the database yet`);
  if (s.backendAuth.iam) out.push('spec.backendAuth.iam: the proxy cannot sign RDS IAM tokens yet');
  if (s.backendAuth.password?.secretName) out.push('spec.backendAuth.password.secretName: the proxy cannot use separate database passwords yet');
  if (s.clientAuth.iamAuth !== 'DISABLED') out.push(`spec.clientAuth.iamAuth=${s.clientAuth.iamAuth}: the proxy cannot authenticate clients with IAM tokens yet`);
  return out;
}

/** Renders the proxy config. Only keys the proxy's schema knows are written (it rejects others). */
export function renderProxyConfig(dbp: DatabaseProxy, facts: ConfigFacts): RenderedConfig {
  const { spec } = dbp;
  const targets = spec.target.endpoints ?? (spec.target.host !== undefined ? [hostPort(spec.target.host, spec.target.port)] : []);
  const pool: NonNullable<ProxyConfigInput['pool']> = {
    maxConnectionsPercent: spec.pool.maxConnectionsPercent,
    ...(spec.pool.maxIdleConnectionsPercent !== undefined ? { maxIdleConnectionsPercent: spec.pool.maxIdleConnectionsPercent } : {}),
    replicas: Math.max(1, Math.floor(facts.poolDivisor)),
    borrowTimeout: spec.pool.borrowTimeout,
    idleClientTimeout: spec.pool.idleClientTimeout,
    ...(spec.pool.initQuery ? { initQuery: spec.pool.initQuery } : {}),
  };
  const config: ProxyConfigInput = {
    listen: `0.0.0.0:${POSTGRES_PORT}`,
    adminListen: `0.0.0.0:${ADMIN_PORT}`,
    targets,
    users: spec.users.map((u) => ({ name: u.name, passwordFile: paths.userPasswordFile(u.name) })),
    clientAuth: { method: spec.clientAuth.method },
    pool,
    healthCheck: { database: spec.target.database },
    // Cancel requests that land on the wrong pod go to the others through the headless peer Service.
    peers: { dns: peerDnsName(dbp), adminPort: ADMIN_PORT },
    shutdownGracePeriod: `${SHUTDOWN_GRACE_SECONDS}s`,
  };
  const yaml = `# Rendered by the dbproxy operator from DatabaseProxy ${dbp.metadata.namespace}/${dbp.metadata.name}; edits are overwritten.\n${stringify(config, { lineWidth: 0 })}`;
  const { replicas: _divisor, ...poolWithoutDivisor } = pool;
  const hash = createHash('sha256')
    .update(JSON.stringify({ ...config, pool: poolWithoutDivisor }))
    .digest('hex')
    .slice(0, 16);
  return { config, yaml, hash, unsupported: unsupportedFeatures(dbp) };
}

export interface DesiredConfigMap {
  configMap: ConfigMap;
  /** For the Deployment's dbproxy.io/config-hash annotation. */
  hash: string;
  unsupported: string[];
}

export function buildConfigMap(dbp: DatabaseProxy, facts: ConfigFacts): DesiredConfigMap {
  const r = renderProxyConfig(dbp, facts);
  return {
    configMap: { apiVersion: 'v1', kind: 'ConfigMap', metadata: childMeta(dbp, childNames(dbp).configMap), data: { [paths.configKey]: r.yaml } },
    hash: r.hash,
    unsupported: r.unsupported,
  };
}
