import { exampleProxy } from '../api/fixtures.js';
import { buildPodDisruptionBudget } from './podDisruptionBudget.js';

describe('buildPodDisruptionBudget', () => {
  test.each([[{}], [{ replicas: 1 }], [{ replicas: 10 }]])('maxUnavailable 1 whatever the replicas: %j', (spec) => {
    const pdb = buildPodDisruptionBudget(exampleProxy(spec));
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(pdb.metadata.name).toBe('orders');
    expect(pdb.spec).toEqual({
      maxUnavailable: 1,
      selector: { matchLabels: { 'app.kubernetes.io/name': 'dbproxy', 'app.kubernetes.io/instance': 'orders' } },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    });
    expect(pdb.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'DatabaseProxy', controller: true });
  });
});
