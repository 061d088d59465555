// What every child object shares: names, labels, the owner reference, and the file layout inside
// the proxy pod (the ConfigMap renders these paths, the Deployment mounts them).
import { API_VERSION, KIND, type DatabaseProxy } from '../api/v1alpha1.js';
import type { ObjectMeta, OwnerReference } from '../runtime/types.js';

export const LABEL_NAME = 'app.kubernetes.io/name';
export const LABEL_INSTANCE = 'app.kubernetes.io/instance';
export const LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const LABEL_COMPONENT = 'app.kubernetes.io/component';
export const APP_NAME = 'dbproxy';
export const MANAGED_BY = 'dbproxy-operator';

/** Pod-template annotation holding the config hash: a new hash rolls the pods. */
export const CONFIG_HASH_ANNOTATION = 'dbproxy.io/config-hash';
/** ServiceAccount annotation read by the EKS pod identity webhook (IRSA). */
export const IRSA_ROLE_ANNOTATION = 'eks.amazonaws.com/role-arn';

export const POSTGRES_PORT = 5432;
/** The read-only listener inside the pods (the proxy's readers.listen), behind the <name>-ro Service. */
export const READERS_PORT = 5433;
export const ADMIN_PORT = 9090;
export const CONTAINER_NAME = 'proxy';

/** Names of the children of a DatabaseProxy. */
export function childNames(dbp: DatabaseProxy): {
  deployment: string;
  service: string;
  peerService: string;
  /** The read-only endpoint's Service (spec.readers.enabled). */
  readerService: string;
  serviceAccount: string;
  configMap: string;
  podDisruptionBudget: string;
} {
  const n = dbp.metadata.name;
  return { deployment: n, service: n, peerService: `${n}-peers`, readerService: `${n}-ro`, serviceAccount: n, configMap: `${n}-config`, podDisruptionBudget: n };
}

/** The ServiceAccount the pods run as: the user's own, or the one the operator creates. */
export function podServiceAccountName(dbp: DatabaseProxy): string {
  return dbp.spec.serviceAccountName ?? childNames(dbp).serviceAccount;
}

/** Whether the proxy verifies ServiceAccount tokens (TokenReview): the config says how, and the pods then need an API token. */
export function usesServiceAccountTokens(dbp: DatabaseProxy): boolean {
  return dbp.spec.clientAuth.iamAuth !== 'DISABLED' && dbp.spec.clientAuth.serviceAccounts !== undefined;
}

/** Whether the read-only endpoint is asked for: its listener, container port and Service exist only then. */
export function readersEnabled(dbp: DatabaseProxy): boolean {
  return dbp.spec.readers?.enabled === true;
}

/** Labels that select this proxy's pods (immutable in the Deployment: keep them few and stable). */
export function selectorLabels(dbp: DatabaseProxy): Record<string, string> {
  return { [LABEL_NAME]: APP_NAME, [LABEL_INSTANCE]: dbp.metadata.name };
}

/** The selector as a string, for status.selector (the scale subresource). */
export function selectorString(dbp: DatabaseProxy): string {
  return Object.entries(selectorLabels(dbp))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** Labels on every child and on the pods. */
export function commonLabels(dbp: DatabaseProxy): Record<string, string> {
  return { ...selectorLabels(dbp), [LABEL_COMPONENT]: 'proxy', [LABEL_MANAGED_BY]: MANAGED_BY };
}

/** Makes the DatabaseProxy the controlling owner: children are garbage-collected with it. */
export function ownerReference(dbp: DatabaseProxy): OwnerReference {
  return { apiVersion: API_VERSION, kind: KIND, name: dbp.metadata.name, uid: dbp.metadata.uid, controller: true, blockOwnerDeletion: true };
}

/** Metadata of a child: name, namespace, common labels, owner reference, optional annotations. */
export function childMeta(dbp: DatabaseProxy, name: string, annotations?: Record<string, string>): ObjectMeta {
  const meta: ObjectMeta = { name, namespace: dbp.metadata.namespace, labels: commonLabels(dbp), ownerReferences: [ownerReference(dbp)] };
  if (annotations && Object.keys(annotations).length > 0) meta.annotations = { ...annotations };
  return meta;
}

/** Where things live inside the proxy container. */
export const paths = {
  configDir: '/etc/dbproxy',
  configKey: 'config.yaml',
  configFile: '/etc/dbproxy/config.yaml',
  usersDir: '/var/run/secrets/dbproxy/users',
  /** One file per user: the key of its passwordSecretRef, projected as <user>/password. */
  userPasswordFile: (user: string): string => `/var/run/secrets/dbproxy/users/${user}/password`,
  /** spec.tls.secretName, its tls.crt and tls.key. */
  tlsDir: '/var/run/secrets/dbproxy/tls',
  tlsCertFile: '/var/run/secrets/dbproxy/tls/tls.crt',
  tlsKeyFile: '/var/run/secrets/dbproxy/tls/tls.key',
  /** spec.tls.backend.caSecretRef's key, projected as ca.crt. */
  backendCaDir: '/var/run/secrets/dbproxy/backend-ca',
  backendCaFile: '/var/run/secrets/dbproxy/backend-ca/ca.crt',
  /** spec.tls.clientCaSecretRef's key, projected as ca.crt. */
  clientCaDir: '/var/run/secrets/dbproxy/client-ca',
  clientCaFile: '/var/run/secrets/dbproxy/client-ca/ca.crt',
  /** spec.users[].backendCertificate: one projected volume, <user>/tls.crt and <user>/tls.key per user. */
  backendCertsDir: '/var/run/secrets/dbproxy/backend-certs',
  backendCertFile: (user: string): string => `/var/run/secrets/dbproxy/backend-certs/${user}/tls.crt`,
  backendKeyFile: (user: string): string => `/var/run/secrets/dbproxy/backend-certs/${user}/tls.key`,
  /** spec.backendAuth.password.secretName, mounted whole: one file per key, i.e. per user name. */
  backendPasswordsDir: '/var/run/secrets/dbproxy/backend-passwords',
  backendPasswordFile: (user: string): string => `/var/run/secrets/dbproxy/backend-passwords/${user}`,
  tmpDir: '/tmp',
} as const;
