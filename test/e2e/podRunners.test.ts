// The end-to-end test files run in parallel on the one shared control plane, each with its own pod
// runner. A runner deletes its Node when it stops, and the control plane garbage-collects the pods
// bound to a Node that no longer exists. Runners sharing a Node name therefore let the first file
// to finish take the other file's pods down mid-test: its operator and proxy pods force-deleted
// and recreated during the scale test, thousands of client errors, new pods doing their first
// health check at random moments.
import { startPodRunner, type ClusterAccess } from '../../hack/demo/localStack.js';
import type { PodRunner } from '../../hack/podRunner/podRunner.js';
import { createNamespace, deleteNamespace, getJson, sharedCluster, sharedClusterInfo } from '../operator/support/cluster.js';

test('two pod runners on the shared control plane: stopping one leaves the other its Node', async () => {
  const cluster = sharedCluster();
  const info = sharedClusterInfo();
  const access: ClusterAccess = { kubeconfigPath: info.kubeconfigPath, apiUrl: info.apiUrl, binDir: info.binDir };
  const namespaces = [await createNamespace(cluster, 'runner-a'), await createNamespace(cluster, 'runner-b')];
  const runners: PodRunner[] = [];
  try {
    for (const ns of namespaces) runners.push(await startPodRunner(access, [ns]));
    const [a, b] = runners as [PodRunner, PodRunner];
    expect(a.nodeName).not.toBe(b.nodeName);
    await a.stop();
    expect(await getJson(cluster, ['node', a.nodeName])).toBeUndefined();
    expect(await getJson(cluster, ['node', b.nodeName])).toMatchObject({ metadata: { name: b.nodeName } });
  } finally {
    for (const r of runners) await r.stop();
    for (const ns of namespaces) await deleteNamespace(cluster, ns);
  }
});
