// The Service applications connect to: named like the DatabaseProxy, so the address is
// <name>.<namespace>.svc:<port>. Pure.
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { Service } from '../k8s/types.js';
import { POSTGRES_PORT, childMeta, childNames, selectorLabels } from './common.js';

export function buildService(dbp: DatabaseProxy): Service {
  const svc = dbp.spec.service;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMeta(dbp, childNames(dbp).service, svc.annotations),
    spec: {
      type: svc.type,
      selector: selectorLabels(dbp),
      ports: [{ name: 'postgres', port: svc.port, targetPort: POSTGRES_PORT, protocol: 'TCP' }],
    },
  };
}

/** The in-cluster endpoint, as status.endpoint reports it. */
export function serviceEndpoint(dbp: DatabaseProxy): string {
  return `${childNames(dbp).service}.${dbp.metadata.namespace}.svc:${dbp.spec.service.port}`;
}
