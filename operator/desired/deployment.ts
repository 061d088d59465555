// The proxy Deployment: restricted Pod Security, probes on the admin port, a graceful drain, the
// config hash on the pod template (a config change rolls the pods), Secrets mounted as files (a
// rotated Secret is picked up in place, no restart), and the rolling-update strategy that the pool
// budget rule (poolDivisor.ts) counts on. Pure.
import { parseDuration } from '../../proxy/contract/config.js';
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { Container, Deployment, EnvVar, KeyToPath, PodSpec, Volume, VolumeMount } from '../runtime/types.js';
import {
  ADMIN_PORT,
  CONFIG_HASH_ANNOTATION,
  CONTAINER_NAME,
  POSTGRES_PORT,
  READERS_PORT,
  childMeta,
  childNames,
  commonLabels,
  paths,
  podServiceAccountName,
  readersEnabled,
  selectorLabels,
  usesServiceAccountTokens,
} from './common.js';
import { PRESTOP_SLEEP_SECONDS, podTimings, rolloutStrategy, type PodTimings } from './poolDivisor.js';

export interface DeploymentFacts {
  /** Image when spec.image is not set: the operator's own. */
  defaultImage: string;
  /** From buildConfigMap: rolls the pods when the config changes. */
  configHash: string;
  /** Replicas to apply now (replicasToApply); defaults to spec.replicas. */
  replicas?: number;
  /**
   * Whether the cluster's nodes carry topology.kubernetes.io/zone: then the default spread is over
   * zones too. (Not by default everywhere: a constraint whose key no node has makes the scheduler
   * ignore every node when scoring, which would also lose the spread over nodes.)
   */
  zoneSpread?: boolean;
}

/** Node label of the zone, set by cloud providers. */
export const ZONE_LABEL = 'topology.kubernetes.io/zone';

/** The grace period and minReadySeconds that go with spec.shutdownGracePeriod (the CRD pattern guarantees it parses). */
export function timingsOf(dbp: DatabaseProxy): PodTimings {
  return podTimings(parseDuration(dbp.spec.shutdownGracePeriod) ?? 0);
}

/** The unprivileged user and group of the proxy (the distroless "nonroot" ids). */
export const RUN_AS_USER = 65532;
/** Secret files: readable by the pod's group (fsGroup) only. */
const SECRET_FILE_MODE = 0o440;

function volumes(dbp: DatabaseProxy): { volumes: Volume[]; mounts: VolumeMount[] } {
  const { spec } = dbp;
  const vols: Volume[] = [
    { name: 'config', configMap: { name: childNames(dbp).configMap, items: [{ key: paths.configKey, path: paths.configKey }] } },
  ];
  const mounts: VolumeMount[] = [{ name: 'config', mountPath: paths.configDir, readOnly: true }];

  // One projected volume for every user's password: <user>/password, one source per Secret.
  // (Users without one log in with tokens or certificates only, and reach the database with IAM or a certificate.)
  const bySecret = new Map<string, KeyToPath[]>();
  for (const u of spec.users) {
    if (!u.passwordSecretRef) continue;
    const items = bySecret.get(u.passwordSecretRef.name) ?? [];
    items.push({ key: u.passwordSecretRef.key, path: `${u.name}/password` });
    bySecret.set(u.passwordSecretRef.name, items);
  }
  if (bySecret.size > 0) {
    vols.push({
      name: 'users',
      projected: { defaultMode: SECRET_FILE_MODE, sources: [...bySecret].map(([name, items]) => ({ secret: { name, items } })) },
    });
    mounts.push({ name: 'users', mountPath: paths.usersDir, readOnly: true });
  }

  if (spec.tls?.secretName) {
    vols.push({
      name: 'tls',
      secret: { secretName: spec.tls.secretName, defaultMode: SECRET_FILE_MODE, items: [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }] },
    });
    mounts.push({ name: 'tls', mountPath: paths.tlsDir, readOnly: true });
  }
  // Client certificates are checked against this CA bundle; only with client-facing TLS (the CRD
  // refuses it without tls.secretName, and the config renders clientCaFile only then).
  const clientCa = spec.tls?.clientCaSecretRef;
  if (clientCa && spec.tls?.secretName) {
    vols.push({ name: 'client-ca', secret: { secretName: clientCa.name, defaultMode: SECRET_FILE_MODE, items: [{ key: clientCa.key, path: 'ca.crt' }] } });
    mounts.push({ name: 'client-ca', mountPath: paths.clientCaDir, readOnly: true });
  }
  const ca = spec.tls?.backend?.caSecretRef;
  if (ca && spec.tls?.backend?.mode !== 'disable') {
    vols.push({ name: 'backend-ca', secret: { secretName: ca.name, defaultMode: SECRET_FILE_MODE, items: [{ key: ca.key, path: 'ca.crt' }] } });
    mounts.push({ name: 'backend-ca', mountPath: paths.backendCaDir, readOnly: true });
  }
  // One projected volume for every user's certificate for the database: <user>/tls.crt and
  // <user>/tls.key, one source per Secret (kubernetes.io/tls, e.g. cert-manager's).
  const certs = spec.users.filter((u) => u.backendCertificate);
  if (certs.length > 0) {
    const byCertSecret = new Map<string, KeyToPath[]>();
    for (const u of certs) {
      const name = u.backendCertificate!.secretName;
      const items = byCertSecret.get(name) ?? [];
      items.push({ key: 'tls.crt', path: `${u.name}/tls.crt` }, { key: 'tls.key', path: `${u.name}/tls.key` });
      byCertSecret.set(name, items);
    }
    vols.push({
      name: 'backend-certs',
      projected: { defaultMode: SECRET_FILE_MODE, sources: [...byCertSecret].map(([name, items]) => ({ secret: { name, items } })) },
    });
    mounts.push({ name: 'backend-certs', mountPath: paths.backendCertsDir, readOnly: true });
  }
  const backendPasswords = spec.backendAuth.password?.secretName;
  if (backendPasswords) {
    vols.push({ name: 'backend-passwords', secret: { secretName: backendPasswords, defaultMode: SECRET_FILE_MODE } });
    mounts.push({ name: 'backend-passwords', mountPath: paths.backendPasswordsDir, readOnly: true });
  }
  // The root filesystem is read-only; give the runtime a small scratch directory.
  vols.push({ name: 'tmp', emptyDir: { sizeLimit: '64Mi' } });
  mounts.push({ name: 'tmp', mountPath: paths.tmpDir });
  return { volumes: vols, mounts };
}

function env(dbp: DatabaseProxy): EnvVar[] {
  const fromField = (name: string, fieldPath: string): EnvVar => ({ name, valueFrom: { fieldRef: { fieldPath } } });
  const out: EnvVar[] = [fromField('POD_NAME', 'metadata.name'), fromField('POD_NAMESPACE', 'metadata.namespace'), fromField('POD_IP', 'status.podIP')];
  const region = dbp.spec.backendAuth.iam?.region;
  if (region) out.push({ name: 'AWS_REGION', value: region });
  // The user's variables come last and replace ours of the same name (the CRD refuses the POD_* ones).
  const extra = dbp.spec.pod?.env ?? [];
  const mine = out.filter((e) => !extra.some((x) => x.name === e.name));
  return [...mine, ...extra.map((e): EnvVar => ({ name: e.name, ...(e.value !== undefined ? { value: e.value } : {}), ...(e.valueFrom ? { valueFrom: structuredClone(e.valueFrom) } : {}) }))];
}

function container(dbp: DatabaseProxy, facts: DeploymentFacts, mounts: VolumeMount[]): Container {
  const c: Container = {
    name: CONTAINER_NAME,
    image: dbp.spec.image ?? facts.defaultImage,
    args: ['proxy', '--config', paths.configFile],
    env: env(dbp),
    ports: [
      { name: 'postgres', containerPort: POSTGRES_PORT, protocol: 'TCP' },
      // The read-only listener, behind the <name>-ro Service. The pod's readiness stays the
      // writer's (/readyz): readiness is per pod, and both Services select the same pods.
      ...(readersEnabled(dbp) ? [{ name: 'postgres-ro', containerPort: READERS_PORT, protocol: 'TCP' as const }] : []),
      { name: 'admin', containerPort: ADMIN_PORT, protocol: 'TCP' },
    ],
    volumeMounts: mounts,
    startupProbe: { httpGet: { path: '/healthz', port: 'admin' }, periodSeconds: 2, timeoutSeconds: 2, failureThreshold: 30 },
    livenessProbe: { httpGet: { path: '/healthz', port: 'admin' }, periodSeconds: 10, timeoutSeconds: 2, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: '/readyz', port: 'admin' }, periodSeconds: 5, timeoutSeconds: 2, failureThreshold: 2 },
    // Give endpoint controllers time to take the pod out of the Service before SIGTERM; the proxy
    // then stops accepting, lets transactions finish and closes clients between transactions.
    lifecycle: { preStop: { sleep: { seconds: PRESTOP_SLEEP_SECONDS } } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: RUN_AS_USER,
      runAsGroup: RUN_AS_USER,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  const res = dbp.spec.resources;
  if (res && (res.limits || res.requests)) c.resources = { ...(res.limits ? { limits: { ...res.limits } } : {}), ...(res.requests ? { requests: { ...res.requests } } : {}) };
  return c;
}

function podSpec(dbp: DatabaseProxy, facts: DeploymentFacts): PodSpec {
  const { volumes: vols, mounts } = volumes(dbp);
  const pod = dbp.spec.pod;
  const spec: PodSpec = {
    serviceAccountName: podServiceAccountName(dbp),
    // The proxy calls the Kubernetes API only to verify client ServiceAccount tokens (TokenReview,
    // in-cluster config: KUBERNETES_SERVICE_HOST, which the kubelet sets even without service
    // links, and the mounted token). Otherwise no API token in the pod. (IRSA's webhook projects
    // its own AWS token either way.)
    automountServiceAccountToken: usesServiceAccountTokens(dbp),
    enableServiceLinks: false,
    securityContext: { runAsNonRoot: true, runAsUser: RUN_AS_USER, runAsGroup: RUN_AS_USER, fsGroup: RUN_AS_USER, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [container(dbp, facts, mounts)],
    volumes: vols,
    terminationGracePeriodSeconds: timingsOf(dbp).terminationGracePeriodSeconds,
  };
  if (pod?.affinity) spec.affinity = structuredClone(pod.affinity);
  if (pod?.tolerations) spec.tolerations = structuredClone(pod.tolerations);
  const selector = { matchLabels: selectorLabels(dbp) };
  spec.topologySpreadConstraints = pod?.topologySpreadConstraints
    ? pod.topologySpreadConstraints.map((c) => ({ ...structuredClone(c), labelSelector: c.labelSelector ?? selector }))
    : [
        // Spread over zones and nodes when possible; never block scheduling for it.
        ...(facts.zoneSpread ? [{ maxSkew: 1, topologyKey: ZONE_LABEL, whenUnsatisfiable: 'ScheduleAnyway', labelSelector: selector }] : []),
        { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: selector },
      ];
  if (pod?.priorityClassName) spec.priorityClassName = pod.priorityClassName;
  if (pod?.nodeSelector && Object.keys(pod.nodeSelector).length > 0) spec.nodeSelector = { ...pod.nodeSelector };
  if (pod?.imagePullSecrets && pod.imagePullSecrets.length > 0) spec.imagePullSecrets = pod.imagePullSecrets.map((s) => ({ name: s.name }));
  return spec;
}

export function buildDeployment(dbp: DatabaseProxy, facts: DeploymentFacts): Deployment {
  const replicas = facts.replicas ?? dbp.spec.replicas;
  const pod = dbp.spec.pod;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: childMeta(dbp, childNames(dbp).deployment),
    spec: {
      replicas,
      selector: { matchLabels: selectorLabels(dbp) },
      // At least the grace period: the pool budget rule needs it (see poolDivisor.ts).
      minReadySeconds: timingsOf(dbp).minReadySeconds,
      revisionHistoryLimit: 5,
      strategy: { type: 'RollingUpdate', rollingUpdate: rolloutStrategy(replicas) },
      template: {
        metadata: {
          // The operator's labels win: they select the pods.
          labels: { ...(pod?.labels ?? {}), ...commonLabels(dbp) },
          annotations: { ...(pod?.annotations ?? {}), [CONFIG_HASH_ANNOTATION]: facts.configHash },
        },
        spec: podSpec(dbp, facts),
      },
    },
  };
}
