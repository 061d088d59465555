import { exampleProxy } from '../api/fixtures.js';
import type { DatabaseProxySpecInput } from '../api/v1alpha1.js';
import { buildServiceAccount } from './serviceAccount.js';

describe('buildServiceAccount', () => {
  test.each<[string, Partial<DatabaseProxySpecInput>, { name: string; annotations?: Record<string, string> } | undefined]>([
    ['default: a ServiceAccount without annotations', {}, { name: 'orders' }],
    [
      'iam.roleArn: the IRSA annotation',
      { iam: { roleArn: 'arn:aws:iam::123456789012:role/orders-proxy' } },
      { name: 'orders', annotations: { 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/orders-proxy' } },
    ],
    ['iam without roleArn: no annotation', { iam: {} }, { name: 'orders' }],
    ['serviceAccountName: none (the user brings their own)', { serviceAccountName: 'shared-db-clients' }, undefined],
  ])('%s', (_name, spec, expected) => {
    const sa = buildServiceAccount(exampleProxy(spec));
    if (expected === undefined) {
      expect(sa).toBeUndefined();
      return;
    }
    expect(sa).toBeDefined();
    expect(sa!.metadata.name).toBe(expected.name);
    expect(sa!.metadata.namespace).toBe('shop');
    expect(sa!.metadata.annotations).toEqual(expected.annotations);
    expect(sa!.automountServiceAccountToken).toBe(false);
    expect(sa!.metadata.ownerReferences).toEqual([
      { apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', name: 'orders', uid: '6f1c2a9e-0d4b-4c59-9b1e-2f3a4b5c6d7e', controller: true, blockOwnerDeletion: true },
    ]);
  });

  test('only the annotation it owns is set (server-side apply leaves the others alone)', () => {
    const sa = buildServiceAccount(exampleProxy({ iam: { roleArn: 'arn:aws:iam::123456789012:role/r' } }))!;
    expect(Object.keys(sa.metadata.annotations ?? {})).toEqual(['eks.amazonaws.com/role-arn']);
  });
});
