// The proxy's ServiceAccount, carrying the IRSA role annotation. None when the user names their
// own ServiceAccount. Server-side apply with the operator's field manager owns only the fields
// set here, so annotations others add (or had) are left alone. Pure.
import type { DatabaseProxy } from '../api/v1alpha1.js';
import type { ServiceAccount } from '../runtime/types.js';
import { IRSA_ROLE_ANNOTATION, childMeta, childNames } from './common.js';

/** The ServiceAccount to apply, or undefined when spec.serviceAccountName names the user's own. */
export function buildServiceAccount(dbp: DatabaseProxy): ServiceAccount | undefined {
  if (dbp.spec.serviceAccountName) return undefined;
  const roleArn = dbp.spec.iam?.roleArn;
  return {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: childMeta(dbp, childNames(dbp).serviceAccount, roleArn ? { [IRSA_ROLE_ANNOTATION]: roleArn } : undefined),
    automountServiceAccountToken: false,
  };
}
