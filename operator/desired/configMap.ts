// The proxy config, rendered from the DatabaseProxy spec into the shape proxy/contract/config.ts
// parses, and the ConfigMap that carries it. Pure.
import { createHash } from 'node:crypto';
import { parse as parseYaml, stringify } from 'yaml';
import { ConfigError, parseConfig, type ProxyConfigInput } from '../../proxy/contract/config.js';
import type { DatabaseProxy, UserSpec } from '../api/v1alpha1.js';
import type { ConfigMap } from '../runtime/types.js';
import { ADMIN_PORT, POSTGRES_PORT, READERS_PORT, childMeta, childNames, paths, readersEnabled } from './common.js';
import { peerDnsName } from './service.js';

export interface ConfigFacts {
  /** pool.divisor: what each pod divides the pool budget by (poolDivisor). */
  poolDivisor: number;
}

export interface RenderedConfig {
  config: ProxyConfigInput;
  /** config.yaml as written to the ConfigMap. */
  yaml: string;
  /**
   * Hash of everything in the config except what the proxy applies on reload (LIVE_FIELDS). It
   * goes on the pod template, so a config change rolls the pods; the divisor (changes on every
   * scale), pausing, the log level and the admin database's users are reloaded in place.
   */
  hash: string;
  /**
   * Why the proxy would refuse this config (its own parser's messages, fields named as in the
   * config file); empty when it accepts it. The CRD's CEL rules refuse such specs up front, so this
   * is a backstop (objects stored before a rule existed): never roll out a config the proxy rejects.
   */
  unsupported: string[];
}

/**
 * Config fields every running proxy applies when the mounted file changes (ProxyServer.reload), so
 * changing them must not roll the pods: a pause would otherwise restart the fleet it pauses, and a
 * log level raised to debug a pod would replace that pod.
 */
export const LIVE_FIELDS = ['pool.divisor', 'paused', 'logLevel', 'adminUsers', 'statsUsers'] as const;

/** host:port, with IPv6 literals in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The id client IAM tokens are bound to when spec.clientAuth.awsIam.proxyId is not set. */
export function defaultProxyId(dbp: DatabaseProxy): string {
  return `${dbp.metadata.namespace}/${dbp.metadata.name}`;
}

type UserConfigInput = ProxyConfigInput['users'][number];

function renderUser(dbp: DatabaseProxy, u: UserSpec): UserConfigInput {
  const { backendAuth } = dbp.spec;
  const out: UserConfigInput = { name: u.name, ...(u.maxConnections !== undefined ? { maxConnections: u.maxConnections } : {}) };
  if (u.passwordSecretRef) out.passwordFile = paths.userPasswordFile(u.name);
  if (u.clientAuth === 'cert') out.clientAuth = 'cert';
  // A user's own certificate for the database replaces spec.backendAuth for that user.
  if (u.backendCertificate) out.backendAuth = { method: 'cert', certFile: paths.backendCertFile(u.name), keyFile: paths.backendKeyFile(u.name) };
  else if (backendAuth.iam) out.backendAuth = { method: 'iam', region: backendAuth.iam.region };
  // The separate Secret is mounted whole: its key named like the user is that user's file.
  else if (backendAuth.password?.secretName) out.backendAuth = { method: 'password', passwordFile: paths.backendPasswordFile(u.name) };
  return out;
}

/** Client-facing TLS and TLS to the database, from spec.tls; undefined parts keep the proxy's defaults (off). */
function renderTls(dbp: DatabaseProxy): Pick<ProxyConfigInput, 'tls' | 'backendTls'> {
  const t = dbp.spec.tls;
  const out: Pick<ProxyConfigInput, 'tls' | 'backendTls'> = {};
  if (t?.secretName) {
    out.tls = {
      certFile: paths.tlsCertFile,
      keyFile: paths.tlsKeyFile,
      requireTLS: t.requireTLS,
      ...(t.minVersion ? { minVersion: t.minVersion } : {}),
      ...(t.clientCaSecretRef ? { clientCaFile: paths.clientCaFile } : {}),
    };
  }
  if (t?.backend && t.backend.mode !== 'disable') {
    // Without caSecretRef, verification uses the public CAs Node.js ships (the proxy's default).
    out.backendTls = { mode: t.backend.mode, ...(t.backend.caSecretRef ? { caFile: paths.backendCaFile } : {}) };
  }
  return out;
}

/** Token logins (iamAuth, iam, serviceAccountAuth); nothing while iamAuth is DISABLED, so mappings can stay in the spec as a kill switch. */
function renderTokenAuth(dbp: DatabaseProxy): Pick<ProxyConfigInput, 'iamAuth' | 'iam' | 'serviceAccountAuth'> {
  const c = dbp.spec.clientAuth;
  if (c.iamAuth === 'DISABLED') return {};
  const out: Pick<ProxyConfigInput, 'iamAuth' | 'iam' | 'serviceAccountAuth'> = { iamAuth: c.iamAuth };
  if (c.awsIam) {
    out.iam = {
      proxyId: c.awsIam.proxyId ?? defaultProxyId(dbp),
      roleMappings: c.awsIam.mappings.map((m) => ({ arn: m.arn, user: m.user })),
      ...(c.awsIam.stsHosts ? { stsHosts: [...c.awsIam.stsHosts] } : {}),
    };
  }
  if (c.serviceAccounts) {
    // No kubeconfig: the proxy uses the in-cluster config (KUBERNETES_SERVICE_HOST and the pod's
    // mounted token; buildDeployment mounts it exactly when this section is rendered).
    out.serviceAccountAuth = {
      audience: c.serviceAccounts.audience,
      mappings: c.serviceAccounts.mappings.map((m) => ({ namespace: m.namespace, serviceAccount: m.serviceAccount, user: m.user })),
    };
  }
  return out;
}

/** The AWS identity check: on when the pods use AWS credentials, with IRSA's role as the expected identity. */
function renderAwsIdentity(dbp: DatabaseProxy): Pick<ProxyConfigInput, 'awsIdentity'> {
  const roleArn = dbp.spec.iam?.roleArn;
  if (!roleArn && !dbp.spec.backendAuth.iam) return {};
  return { awsIdentity: roleArn ? { expectedRoleArn: roleArn } : {} };
}

/** The read-only listener (spec.readers.enabled), behind the <name>-ro Service; nothing otherwise. */
function renderReaders(dbp: DatabaseProxy): Pick<ProxyConfigInput, 'readers'> {
  const r = dbp.spec.readers;
  if (!r || !readersEnabled(dbp)) return {};
  return { readers: { listen: `0.0.0.0:${READERS_PORT}`, maxReplicationLag: r.maxReplicationLag, fallbackToWriter: r.fallbackToWriter } };
}

/**
 * The divisor a rendered ConfigMap carries (pool.divisor), if readable: the previous divisor, which
 * a scale must move from in safe steps. pool.replicas is the same number in a ConfigMap an older
 * operator rendered; without it, the first reconcile after an upgrade would start from nothing.
 */
export function divisorInConfigMap(cm: { data?: Record<string, string> } | undefined): number | undefined {
  const text = cm?.data?.[paths.configKey];
  if (!text) return undefined;
  try {
    const doc = parseYaml(text) as { pool?: { divisor?: unknown; replicas?: unknown } } | null;
    const v = doc?.pool?.divisor ?? doc?.pool?.replicas;
    return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The config without LIVE_FIELDS, for the hash. */
function withoutLiveFields(config: ProxyConfigInput): unknown {
  const { paused: _p, logLevel: _l, adminUsers: _a, statsUsers: _s, pool, ...rest } = config;
  const { divisor: _d, ...poolRest } = pool ?? {};
  return { ...rest, pool: poolRest };
}

/** Renders the proxy config. Only keys the proxy's schema knows are written (it rejects others). */
export function renderProxyConfig(dbp: DatabaseProxy, facts: ConfigFacts): RenderedConfig {
  const { spec } = dbp;
  const targets = spec.target.endpoints ?? (spec.target.host !== undefined ? [hostPort(spec.target.host, spec.target.port)] : []);
  const pool: NonNullable<ProxyConfigInput['pool']> = {
    maxConnectionsPercent: spec.pool.maxConnectionsPercent,
    ...(spec.pool.maxIdleConnectionsPercent !== undefined ? { maxIdleConnectionsPercent: spec.pool.maxIdleConnectionsPercent } : {}),
    divisor: Math.max(1, Math.floor(facts.poolDivisor)),
    borrowTimeout: spec.pool.borrowTimeout,
    idleClientTimeout: spec.pool.idleClientTimeout,
    maxConnectionLifetime: spec.pool.maxConnectionLifetime,
    idleConnectionTimeout: spec.pool.idleConnectionTimeout,
    maxClientConnections: spec.pool.maxClientConnections,
    connectTimeout: spec.pool.connectTimeout,
    idleTransactionTimeout: spec.pool.idleTransactionTimeout,
    queryTimeout: spec.pool.queryTimeout,
    ...(spec.pool.initQuery ? { initQuery: spec.pool.initQuery } : {}),
  };
  const config: ProxyConfigInput = {
    listen: `0.0.0.0:${POSTGRES_PORT}`,
    adminListen: `0.0.0.0:${ADMIN_PORT}`,
    targets,
    users: spec.users.map((u) => renderUser(dbp, u)),
    clientAuth: { method: spec.clientAuth.method },
    pool,
    healthCheck: {
      interval: spec.healthCheck.interval,
      ...(spec.healthCheck.user !== undefined ? { user: spec.healthCheck.user } : {}),
      database: spec.target.database,
    },
    session: {
      trackSettings: spec.session.trackSettings,
      untrackedParameters: [...(spec.session.untrackedParameters ?? [])],
      maxPreparedStatements: spec.session.maxPreparedStatements,
    },
    adminUsers: [...(spec.adminUsers ?? [])],
    statsUsers: [...(spec.statsUsers ?? [])],
    cancelRateLimit: { ...spec.cancelRateLimit },
    // Cancel requests that land on the wrong pod go to the others through the headless peer Service.
    peers: { dns: peerDnsName(dbp), adminPort: ADMIN_PORT },
    shutdownGracePeriod: spec.shutdownGracePeriod,
    logLevel: spec.logLevel,
    paused: spec.paused,
    ...renderTls(dbp),
    ...renderTokenAuth(dbp),
    ...renderAwsIdentity(dbp),
    ...renderReaders(dbp),
  };
  const yaml = `# Rendered by the dbproxy operator from DatabaseProxy ${dbp.metadata.namespace}/${dbp.metadata.name}; edits are overwritten.\n${stringify(config, { lineWidth: 0 })}`;
  const hash = createHash('sha256')
    .update(JSON.stringify(withoutLiveFields(config)))
    .digest('hex')
    .slice(0, 16);
  return { config, yaml, hash, unsupported: proxyRefuses(config) };
}

/** The proxy's own parser on the rendered config: its messages, or none. */
function proxyRefuses(config: ProxyConfigInput): string[] {
  try {
    parseConfig(config);
    return [];
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `the proxy would refuse its config: ${p}`);
    throw e;
  }
}

export interface DesiredConfigMap {
  configMap: ConfigMap;
  /** For the Deployment's dbproxy.io/config-hash annotation. */
  hash: string;
  /** RenderedConfig.unsupported: non-empty means do not roll out. */
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
