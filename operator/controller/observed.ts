// What one reconcile of a DatabaseProxy sees: the objects as the informer caches hold them, the
// running pods' /stats and whether nodes have zones. The reconciler gathers it (the only I/O before
// acting); plan() decides from it alone, so a decision can be tested from a literal. The readers
// here are pure: they turn cached objects into the facts the builders and the status take.
import { parse as parseYaml } from 'yaml';
import type { ProxyStats } from '../../proxy/contract/stats.js';
import type { DatabaseProxy, DatabaseProxyInput, DatabaseProxyStatus } from '../api/v1alpha1.js';
import { paths, ZONE_LABEL } from '../desired/index.js';
import type { DeploymentStatus } from '../runtime/types.js';
import type { KubeObject } from '../runtime/resources.js';
import type { ObservedDeployment, ObservedPod } from '../status/status.js';

export interface DatabaseProxyObject extends KubeObject {
  spec: DatabaseProxyInput['spec'];
  status?: DatabaseProxyStatus;
}

export interface DeploymentObject extends KubeObject {
  spec?: {
    replicas?: number;
    progressDeadlineSeconds?: number;
    template?: { metadata?: { annotations?: Record<string, string> }; spec?: { topologySpreadConstraints?: Array<{ topologyKey?: string }> } };
  };
  status?: DeploymentStatus;
}

export interface ConfigMapObject extends KubeObject {
  data?: Record<string, string>;
}

export interface PodObject extends KubeObject {
  status?: ObservedPod['status'] & { podIP?: string };
}

/** One running pod and its /stats; `stats` is undefined when the read failed (not listening yet, timed out). */
export interface PolledPod {
  pod: PodObject;
  stats?: ProxyStats;
}

export interface Observed {
  /** The DatabaseProxy with the API's defaults filled in: what the builders read. */
  proxy: DatabaseProxy;
  /** The DatabaseProxy as cached: events are recorded on it, and its status is the last one written if this process has not written since. */
  object: DatabaseProxyObject;
  // The cached objects under the children's names, whoever owns them: plan() decides what is ours.
  configMap?: ConfigMapObject;
  deployment?: DeploymentObject;
  serviceAccount?: KubeObject;
  readerService?: KubeObject;
  /** Every pod of this proxy, terminating ones included: they still hold backend connections. */
  pods: PodObject[];
  /** The running, not terminating pods with an IP, each with what its /stats answered. */
  polled: PolledPod[];
  /** Whether the cluster's nodes have zones; undefined until the API has answered. */
  zoned: boolean | undefined;
}

/** Whether `o` exists and this DatabaseProxy (by uid) is its controller. */
export const isOwnedBy = (o: KubeObject | undefined, uid: string | undefined): boolean =>
  !!o && !!uid && (o.metadata.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true);

/** `o` if this DatabaseProxy controls it: a same-named object someone else made is never read as ours. */
export function owned<T extends KubeObject>(o: T | undefined, uid: string | undefined): T | undefined {
  return isOwnedBy(o, uid) ? o : undefined;
}

// The divisor a rendered ConfigMap carries: read by the function that renders it (desired/configMap.ts).
export { divisorInConfigMap } from '../desired/index.js';

/** Whether the Deployment's pods spread over zones now. */
export function hasZoneSpread(dep: DeploymentObject | undefined): boolean {
  return (dep?.spec?.template?.spec?.topologySpreadConstraints ?? []).some((c) => c.topologyKey === ZONE_LABEL);
}

/**
 * The Deployment's facts both the divisor rule and the status read (the divisor ignores the
 * progress deadline); undefined when there is none.
 */
export function observedDeployment(dep: DeploymentObject | undefined): ObservedDeployment | undefined {
  if (!dep) return undefined;
  return {
    ...(dep.metadata.generation !== undefined ? { generation: dep.metadata.generation } : {}),
    ...(dep.spec?.replicas !== undefined ? { specReplicas: dep.spec.replicas } : {}),
    ...(dep.spec?.progressDeadlineSeconds !== undefined ? { progressDeadlineSeconds: dep.spec.progressDeadlineSeconds } : {}),
    ...(dep.status ? { status: dep.status } : {}),
  };
}
