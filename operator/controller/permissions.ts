// Every Kubernetes API permission the operator needs, and nothing more. charts/dbproxy's
// ClusterRole and leader-election Role must list exactly these (test/operator/chart.test.ts), and
// the operator's requests in the tests must stay within them (test/operator/children.test.ts).
// No access to Secrets: the proxy pods mount them; the operator never reads them.
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** Cluster-wide (the operator may watch every namespace). */
export const CLUSTER_RULES: PolicyRule[] = [
  // Informer on DatabaseProxy objects; the spec is never written.
  { apiGroups: ['dbproxy.io'], resources: ['databaseproxies'], verbs: ['list', 'watch'] },
  // Status: server-side apply on the status subresource.
  { apiGroups: ['dbproxy.io'], resources: ['databaseproxies/status'], verbs: ['patch'] },
  // Owner references with blockOwnerDeletion need this where the OwnerReferencesPermissionEnforcement
  // admission plugin is on (OpenShift, hardened clusters; the test control plane turns it on).
  { apiGroups: ['dbproxy.io'], resources: ['databaseproxies/finalizers'], verbs: ['update'] },
  // Children: informers, and server-side apply (a patch; one that creates the object is also
  // authorized as create).
  { apiGroups: ['apps'], resources: ['deployments'], verbs: ['list', 'watch', 'create', 'patch'] },
  { apiGroups: [''], resources: ['configmaps'], verbs: ['list', 'watch', 'create', 'patch'] },
  // The read-only endpoint's Service (<name>-ro) it made is deleted when spec.readers is turned off.
  { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  // The ServiceAccount it made is deleted when the user switches to their own (serviceAccountName).
  { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['list', 'watch', 'create', 'patch', 'delete'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['list', 'watch', 'create', 'patch'] },
  // Pods: which exist (terminating ones count for the pool budget), which are ready, their IPs for /stats.
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
  // Whether any node has a zone label (at most one node, labels only used): the default topology spread.
  { apiGroups: [''], resources: ['nodes'], verbs: ['list'] },
];

/** In the operator's own namespace: the leader-election Lease. */
export const LEADER_ELECTION_RULES: PolicyRule[] = [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] }];

/** Rules as sorted "group/resource:verb" strings, for comparing rule lists. */
export function flattenRules(rules: PolicyRule[]): string[] {
  const out = new Set<string>();
  for (const r of rules) for (const g of r.apiGroups) for (const res of r.resources) for (const v of r.verbs) out.add(`${g}/${res}:${v}`);
  return [...out].sort();
}
