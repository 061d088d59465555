// One proxy pod down at a time for voluntary disruptions (node drains); pods that are not ready
// may always be evicted, so a broken pod never blocks a drain. Pure.
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { PodDisruptionBudget } from '../runtime/types.js';
import { childMeta, childNames, selectorLabels } from './common.js';

export function buildPodDisruptionBudget(dbp: DatabaseProxy): PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: childMeta(dbp, childNames(dbp).podDisruptionBudget),
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorLabels(dbp) }, unhealthyPodEvictionPolicy: 'AlwaysAllow' },
  };
}
