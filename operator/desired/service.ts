// The Service applications connect to: named like the DatabaseProxy, so the address is
// <name>.<namespace>.svc:<port>. Pure.
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { Service } from '../runtime/types.js';
import { ADMIN_PORT, POSTGRES_PORT, READERS_PORT, childMeta, childNames, readersEnabled, selectorLabels } from './common.js';

export function buildService(dbp: DatabaseProxy): Service {
  return clientService(dbp, childNames(dbp).service, 'postgres', POSTGRES_PORT);
}

/**
 * The read-only endpoint, <name>-ro: the same pods as the main Service, on the same port (type and
 * annotations from spec.service too), leading to the proxy's read-only listener. Undefined unless
 * spec.readers.enabled; the reconciler then deletes one it made earlier.
 */
export function buildReaderService(dbp: DatabaseProxy): Service | undefined {
  return readersEnabled(dbp) ? clientService(dbp, childNames(dbp).readerService, 'postgres-ro', READERS_PORT) : undefined;
}

/** A Service clients connect to, as spec.service describes it, leading to one of the pods' listeners. */
function clientService(dbp: DatabaseProxy, name: string, portName: string, targetPort: number): Service {
  const svc = dbp.spec.service;
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMeta(dbp, name, svc.annotations),
    spec: {
      type: svc.type,
      selector: selectorLabels(dbp),
      ports: [{ name: portName, port: svc.port, targetPort, protocol: 'TCP' }],
    },
  };
}

/**
 * A headless Service over the proxy pods' admin port: its DNS name resolves to every pod, which is
 * how a replica finds its peers to forward a cancel request that landed on the wrong pod. Not-ready
 * pods are included: a draining pod still runs queries that may need cancelling.
 */
export function buildPeerService(dbp: DatabaseProxy): Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: childMeta(dbp, childNames(dbp).peerService),
    spec: {
      type: 'ClusterIP',
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: selectorLabels(dbp),
      ports: [{ name: 'admin', port: ADMIN_PORT, targetPort: ADMIN_PORT, protocol: 'TCP' }],
    },
  };
}

/** The name peers resolve, as the proxy config's peers.dns. */
export function peerDnsName(dbp: DatabaseProxy): string {
  return `${childNames(dbp).peerService}.${dbp.metadata.namespace}.svc`;
}

/** The read-only endpoint in the cluster, as status.readers.endpoint reports it. */
export function readerServiceEndpoint(dbp: DatabaseProxy): string {
  return `${childNames(dbp).readerService}.${dbp.metadata.namespace}.svc:${dbp.spec.service.port}`;
}

/** The in-cluster endpoint, as status.endpoint reports it. */
export function serviceEndpoint(dbp: DatabaseProxy): string {
  return `${childNames(dbp).service}.${dbp.metadata.namespace}.svc:${dbp.spec.service.port}`;
}
