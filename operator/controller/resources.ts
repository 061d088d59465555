// The API resources this operator touches: its own DatabaseProxy and the built-in kinds it reads
// and writes. One table, so the controller, the informers and the RBAC check (permissions.ts)
// agree on names.
import { GROUP, KIND, PLURAL, VERSION } from '../api/v1alpha1.js';
import { kubeResources, type Resource } from '../runtime/resources.js';

export const resources = {
  databaseProxies: { group: GROUP, version: VERSION, plural: PLURAL, kind: KIND, namespaced: true },
  ...kubeResources,
} as const satisfies Record<string, Resource>;
