import { exampleProxy } from '../api/fixtures.js';
import { buildConfigMap } from '../desired/index.js';
import { divisorInConfigMap } from './observed.js';

describe('divisorInConfigMap', () => {
  test('reads pool.replicas from a rendered ConfigMap', () => {
    expect(divisorInConfigMap(buildConfigMap(exampleProxy(), { poolDivisor: 7 }).configMap)).toBe(7);
  });
  test.each([[undefined], [{ metadata: { name: 'x' } }], [{ metadata: { name: 'x' }, data: { 'config.yaml': ': not yaml: [' } }], [{ metadata: { name: 'x' }, data: { 'config.yaml': 'pool: {replicas: 0}' } }]])(
    'is undefined when unreadable: %j',
    (cm) => {
      expect(divisorInConfigMap(cm)).toBeUndefined();
    },
  );
});
