// What each end-to-end test stands on: the shared test control plane, two fresh namespaces (one
// for the operator, one for the application), the local pod runner serving both, and the
// operator installed into the first with `helm upgrade --install` of charts/dbproxy, reconciling
// the second only (the shared control plane has other tests' objects). The CRD is installed by
// the jest global setup.
import { installOperator, startPodRunner, type ClusterAccess } from '../../hack/demo/localStack.js';
import type { PodRunner } from '../../hack/podRunner/podRunner.js';
import { createNamespace, deleteNamespace, sharedCluster, sharedClusterInfo, type TestCluster } from '../operator/support/cluster.js';

export interface E2eStack {
  cluster: TestCluster;
  access: ClusterAccess;
  operatorNamespace: string;
  appNamespace: string;
  runner: PodRunner;
  /** Stops the pod runner (its pods' processes) and deletes both namespaces. */
  stop(): Promise<void>;
}

export async function startE2eStack(o: { prefix: string; operatorReplicas?: number }): Promise<E2eStack> {
  const cluster = sharedCluster();
  const info = sharedClusterInfo();
  const access: ClusterAccess = { kubeconfigPath: info.kubeconfigPath, apiUrl: info.apiUrl, binDir: info.binDir };
  const namespaces: string[] = [];
  let runner: PodRunner | undefined;
  const stop = async (): Promise<void> => {
    await runner?.stop();
    for (const ns of namespaces) await deleteNamespace(cluster, ns);
  };
  try {
    const operatorNamespace = await createNamespace(cluster, `${o.prefix}-operator`);
    namespaces.push(operatorNamespace);
    const appNamespace = await createNamespace(cluster, `${o.prefix}-app`);
    namespaces.push(appNamespace);
    const log = process.env.DBPROXY_TEST_LOGS === '1' ? (m: string) => process.stderr.write(`[pod runner] ${m}\n`) : undefined;
    runner = await startPodRunner(access, namespaces, log);
    await installOperator(access, {
      release: operatorNamespace,
      namespace: operatorNamespace,
      installCrds: false,
      watchNamespace: appNamespace,
      statusInterval: '1s',
      ...(o.operatorReplicas !== undefined ? { replicas: o.operatorReplicas } : {}),
    });
    return { cluster, access, operatorNamespace, appNamespace, runner, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
