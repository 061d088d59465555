import { exampleProxy } from '../api/fixtures.js';
import { childNames, desiredChildren, selectorString } from './index.js';

describe('desiredChildren', () => {
  test('every child is owned by the DatabaseProxy, in its namespace, with the common labels', () => {
    const dbp = exampleProxy({ iam: { roleArn: 'arn:aws:iam::123456789012:role/x' } });
    const c = desiredChildren(dbp, { defaultImage: 'img', poolDivisor: 3 });
    const children = [c.serviceAccount!, c.configMap, c.deployment, c.service, c.podDisruptionBudget];
    expect(children.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ServiceAccount/orders',
      'ConfigMap/orders-config',
      'Deployment/orders',
      'Service/orders',
      'PodDisruptionBudget/orders',
    ]);
    for (const o of children) {
      expect(o.metadata.namespace).toBe('shop');
      expect(o.metadata.ownerReferences).toEqual([
        { apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', name: 'orders', uid: dbp.metadata.uid, controller: true, blockOwnerDeletion: true },
      ]);
      expect(o.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('dbproxy-operator');
    }
    expect(c.deployment.spec.template.metadata.annotations?.['dbproxy.io/config-hash']).toBe(c.configHash);
    expect(c.unsupported).toEqual([]);
  });

  test('no ServiceAccount with serviceAccountName; replicas from the gate', () => {
    const c = desiredChildren(exampleProxy({ serviceAccountName: 'mine', replicas: 4 }), { defaultImage: 'img', poolDivisor: 5, replicas: 2 });
    expect(c.serviceAccount).toBeUndefined();
    expect(c.deployment.spec.replicas).toBe(2);
  });

  test('the read-only endpoint\'s Service only with spec.readers.enabled', () => {
    expect(desiredChildren(exampleProxy(), { defaultImage: 'img', poolDivisor: 3 }).readerService).toBeUndefined();
    expect(desiredChildren(exampleProxy({ readers: { enabled: false } }), { defaultImage: 'img', poolDivisor: 3 }).readerService).toBeUndefined();
    const c = desiredChildren(exampleProxy({ readers: { enabled: true } }), { defaultImage: 'img', poolDivisor: 3 });
    expect(c.readerService?.metadata.name).toBe('orders-ro');
    expect(c.unsupported).toEqual([]);
  });

  test('names and selector', () => {
    const dbp = exampleProxy();
    expect(childNames(dbp)).toEqual({ deployment: 'orders', service: 'orders', peerService: 'orders-peers', readerService: 'orders-ro', serviceAccount: 'orders', configMap: 'orders-config', podDisruptionBudget: 'orders' });
    expect(selectorString(dbp)).toBe('app.kubernetes.io/name=dbproxy,app.kubernetes.io/instance=orders');
  });
});
