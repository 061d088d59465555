// Desired children of a DatabaseProxy: pure functions of (spec, observed facts). The reconciler
// applies them with server-side apply (one field manager), ConfigMap before Deployment.
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { ConfigMap, Deployment, PodDisruptionBudget, Service, ServiceAccount } from '../runtime/types.js';
import { buildConfigMap } from './configMap.js';
import { buildDeployment } from './deployment.js';
import { buildPodDisruptionBudget } from './podDisruptionBudget.js';
import { buildPeerService, buildReaderService, buildService } from './service.js';
import { buildServiceAccount } from './serviceAccount.js';

export * from './common.js';
export { buildConfigMap, divisorInConfigMap, hostPort, LIVE_FIELDS, renderProxyConfig, type ConfigFacts, type DesiredConfigMap, type RenderedConfig } from './configMap.js';
export { buildDeployment, RUN_AS_USER, timingsOf, ZONE_LABEL, type DeploymentFacts } from './deployment.js';
export { buildPodDisruptionBudget } from './podDisruptionBudget.js';
export { buildPeerService, buildReaderService, buildService, peerDnsName, readerServiceEndpoint, serviceEndpoint } from './service.js';
export { buildServiceAccount } from './serviceAccount.js';
export * from './poolDivisor.js';

export interface ChildFacts {
  /** The image when spec.image is unset (the operator's own). */
  defaultImage: string;
  /** poolDivisor(...).divisor */
  poolDivisor: number;
  /** replicasToApply(...).replicas; defaults to spec.replicas. */
  replicas?: number;
  /** Whether the cluster's nodes have zones (DeploymentFacts.zoneSpread). */
  zoneSpread?: boolean;
}

export interface DesiredChildren {
  /** Undefined when spec.serviceAccountName names the user's own (delete one the operator made earlier). */
  serviceAccount?: ServiceAccount;
  configMap: ConfigMap;
  deployment: Deployment;
  service: Service;
  /** Headless, over the admin port: how replicas find each other to forward cancel requests. */
  peerService: Service;
  /** <name>-ro, the read-only endpoint: only with spec.readers.enabled (delete one the operator made earlier otherwise). */
  readerService?: Service;
  podDisruptionBudget: PodDisruptionBudget;
  configHash: string;
  /** Why the proxy would refuse the rendered config (a backstop behind the CRD's CEL rules); non-empty means: do not roll out, report UnsupportedSpec. */
  unsupported: string[];
}

export function desiredChildren(dbp: DatabaseProxy, facts: ChildFacts): DesiredChildren {
  const cm = buildConfigMap(dbp, { poolDivisor: facts.poolDivisor });
  const children: DesiredChildren = {
    configMap: cm.configMap,
    deployment: buildDeployment(dbp, {
      defaultImage: facts.defaultImage,
      configHash: cm.hash,
      ...(facts.replicas !== undefined ? { replicas: facts.replicas } : {}),
      ...(facts.zoneSpread !== undefined ? { zoneSpread: facts.zoneSpread } : {}),
    }),
    service: buildService(dbp),
    peerService: buildPeerService(dbp),
    podDisruptionBudget: buildPodDisruptionBudget(dbp),
    configHash: cm.hash,
    unsupported: cm.unsupported,
  };
  const sa = buildServiceAccount(dbp);
  if (sa) children.serviceAccount = sa;
  const ro = buildReaderService(dbp);
  if (ro) children.readerService = ro;
  return children;
}
