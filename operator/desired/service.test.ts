import { exampleProxy } from '../api/fixtures.js';
import type { DatabaseProxySpecInput } from '../api/v1alpha1.js';
import { buildPeerService, buildReaderService, buildService, peerDnsName, readerServiceEndpoint, serviceEndpoint } from './service.js';

describe('buildService', () => {
  test.each<[string, Partial<DatabaseProxySpecInput>, { type: string; port: number; annotations?: Record<string, string>; endpoint: string }]>([
    ['defaults: ClusterIP on 5432', {}, { type: 'ClusterIP', port: 5432, endpoint: 'orders.shop.svc:5432' }],
    [
      'LoadBalancer with annotations',
      { service: { type: 'LoadBalancer', annotations: { 'service.beta.kubernetes.io/aws-load-balancer-internal': 'true' } } },
      { type: 'LoadBalancer', port: 5432, annotations: { 'service.beta.kubernetes.io/aws-load-balancer-internal': 'true' }, endpoint: 'orders.shop.svc:5432' },
    ],
    ['another port', { service: { port: 6432 } }, { type: 'ClusterIP', port: 6432, endpoint: 'orders.shop.svc:6432' }],
    ['NodePort', { service: { type: 'NodePort' } }, { type: 'NodePort', port: 5432, endpoint: 'orders.shop.svc:5432' }],
  ])('%s', (_name, spec, expected) => {
    const dbp = exampleProxy(spec);
    const svc = buildService(dbp);
    expect(svc.metadata.name).toBe('orders');
    expect(svc.metadata.annotations).toEqual(expected.annotations);
    expect(svc.spec).toEqual({
      type: expected.type,
      selector: { 'app.kubernetes.io/name': 'dbproxy', 'app.kubernetes.io/instance': 'orders' },
      ports: [{ name: 'postgres', port: expected.port, targetPort: 5432, protocol: 'TCP' }],
    });
    expect(svc.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'DatabaseProxy', name: 'orders', controller: true, blockOwnerDeletion: true });
    expect(serviceEndpoint(dbp)).toBe(expected.endpoint);
  });
});

describe('buildPeerService', () => {
  test('headless over the admin port, selecting the proxy pods, not-ready pods included', () => {
    const dbp = exampleProxy();
    const svc = buildPeerService(dbp);
    expect(svc.metadata.name).toBe(`${dbp.metadata.name}-peers`);
    expect(svc.spec).toEqual({
      type: 'ClusterIP',
      clusterIP: 'None',
      publishNotReadyAddresses: true,
      selector: buildService(dbp).spec.selector,
      ports: [{ name: 'admin', port: 9090, targetPort: 9090, protocol: 'TCP' }],
    });
    expect(svc.metadata.ownerReferences?.[0]?.kind).toBe('DatabaseProxy');
    expect(peerDnsName(dbp)).toBe(`${dbp.metadata.name}-peers.${dbp.metadata.namespace}.svc`);
  });
});

describe('buildReaderService', () => {
  test.each<[string, Partial<DatabaseProxySpecInput>, { type: string; port: number; annotations?: Record<string, string>; endpoint: string } | undefined]>([
    ['no spec.readers: none', {}, undefined],
    ['readers.enabled false: none (the reconciler deletes one it made)', { readers: { enabled: false } }, undefined],
    ['enabled: ClusterIP on 5432, to the read-only listener', { readers: { enabled: true } }, { type: 'ClusterIP', port: 5432, endpoint: 'orders-ro.shop.svc:5432' }],
    [
      'type, port and annotations follow spec.service',
      { readers: { enabled: true }, service: { type: 'LoadBalancer', port: 6432, annotations: { 'service.beta.kubernetes.io/aws-load-balancer-internal': 'true' } } },
      { type: 'LoadBalancer', port: 6432, annotations: { 'service.beta.kubernetes.io/aws-load-balancer-internal': 'true' }, endpoint: 'orders-ro.shop.svc:6432' },
    ],
  ])('%s', (_name, spec, expected) => {
    const dbp = exampleProxy(spec);
    const svc = buildReaderService(dbp);
    if (!expected) {
      expect(svc).toBeUndefined();
      return;
    }
    expect(svc!.metadata.name).toBe('orders-ro');
    expect(svc!.metadata.annotations).toEqual(expected.annotations);
    expect(svc!.metadata.labels).toEqual(buildService(dbp).metadata.labels);
    // The same pods as the main Service, on the same port, to the other listener.
    expect(svc!.spec).toEqual({
      type: expected.type,
      selector: buildService(dbp).spec.selector,
      ports: [{ name: 'postgres-ro', port: expected.port, targetPort: 5433, protocol: 'TCP' }],
    });
    expect(svc!.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'DatabaseProxy', name: 'orders', controller: true, blockOwnerDeletion: true });
    expect(readerServiceEndpoint(dbp)).toBe(expected.endpoint);
  });
});
