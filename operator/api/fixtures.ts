// Example DatabaseProxy objects for tests (here, so every folder's tests start from the same ones).
import { API_VERSION, KIND, withDefaults, type DatabaseProxy, type DatabaseProxySpecInput } from './v1alpha1.js';

export const minimalSpec: DatabaseProxySpecInput = {
  target: { host: 'orders.cluster-abc.eu-west-1.rds.amazonaws.com' },
  users: [{ name: 'app', passwordSecretRef: { name: 'orders-app' } }],
};

/** A DatabaseProxy named "orders" in "shop", defaulted like the API server would; `spec` replaces fields of minimalSpec. */
export function exampleProxy(spec: Partial<DatabaseProxySpecInput> = {}, meta: { name?: string; namespace?: string; generation?: number } = {}): DatabaseProxy {
  return withDefaults({
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: meta.name ?? 'orders',
      namespace: meta.namespace ?? 'shop',
      uid: '6f1c2a9e-0d4b-4c59-9b1e-2f3a4b5c6d7e',
      generation: meta.generation ?? 1,
    },
    spec: { ...minimalSpec, ...spec },
  });
}

/** A spec using every feature that adds files, TLS or token logins to the proxy config (a valid combination). */
export const allFeatures: Partial<DatabaseProxySpecInput> = {
  users: [
    { name: 'app', passwordSecretRef: { name: 'orders-app' } },
    { name: 'report', passwordSecretRef: { name: 'orders-report', key: 'pw' } },
    // No password at all: a client certificate in, a certificate of its own to the database.
    { name: 'batch', clientAuth: 'cert', backendCertificate: { secretName: 'orders-batch-cert' } },
  ],
  tls: {
    secretName: 'orders-tls',
    requireTLS: true,
    clientCaSecretRef: { name: 'client-ca', key: 'bundle.pem' },
    backend: { mode: 'verify-full', caSecretRef: { name: 'rds-ca', key: 'global-bundle.pem' } },
  },
  backendAuth: { password: { secretName: 'db-passwords' } },
  serviceAccountName: 'orders-proxy',
  clientAuth: {
    iamAuth: 'REQUIRED',
    awsIam: { mappings: [{ arn: 'arn:aws:iam::123456789012:role/orders-api', user: 'app' }] },
    serviceAccounts: { audience: 'dbproxy:shop/orders', mappings: [{ namespace: 'shop', serviceAccount: 'orders-api', user: 'app' }] },
  },
};
