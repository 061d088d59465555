// Jest global setup: starts ONE test control plane (etcd, kube-apiserver, kube-controller-manager;
// hack/controlplane) for the whole run when any operator test is selected, installs the CRD and
// the Helm chart's RBAC, and writes an RBAC-limited kubeconfig for the operator. Test files run in
// other processes: they find it all in the JSON file named by $DBPROXY_TEST_CONTROLPLANE
// (test/operator/support/cluster.ts reads it). Runs that select no operator test (e.g.
// `npm test -- proxy/`) start nothing. DBPROXY_TEST_CONTROLPLANE_START=always|never overrides.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Config } from '@jest/types';

type GlobalWithControlPlane = typeof globalThis & {
  __dbproxyControlPlane?: { stop(): Promise<void> };
  __dbproxyGcProbe?: { stop(): Promise<void> };
  __dbproxySetupDir?: string;
};

/**
 * Imports a TypeScript module of this repo from global setup. Jest imports an ESM global setup
 * natively (no ts-jest transform; Node only strips this file's types), so the modules it needs
 * are transpiled here (no type check; `make build` does that), following relative imports, into
 * a directory under .tmp/ (inside the repo, so packages resolve from node_modules).
 */
async function importTs(rootDir: string, outDir: string, entry: string): Promise<any> {
  const ts = (await import('typescript')).default;
  const pending = [resolve(rootDir, entry)];
  const done = new Set<string>();
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (done.has(file)) continue;
    done.add(file);
    const source = readFileSync(file, 'utf8');
    const out = ts.transpileModule(source, {
      fileName: file,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023, verbatimModuleSyntax: true, sourceMap: false },
    }).outputText;
    const target = join(outDir, relative(rootDir, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, out);
    for (const { fileName } of ts.preProcessFile(source, true, true).importedFiles) {
      if (/^\.{1,2}\/.*\.js$/.test(fileName)) pending.push(resolve(dirname(file), fileName.replace(/\.js$/, '.ts')));
    }
  }
  return import(pathToFileURL(join(outDir, entry).replace(/\.ts$/, '.js')).href);
}

function operatorTestsSelected(globalConfig: Config.GlobalConfig): boolean {
  const override = process.env.DBPROXY_TEST_CONTROLPLANE_START;
  if (override === 'always') return true;
  if (override === 'never') return false;
  // Operator tests and the end-to-end tests on the local pod runner (test/e2e) use the control
  // plane; the end-to-end tests on kind (test/kind) bring their own cluster.
  const files = ['operator', 'e2e'].flatMap((sub) => {
    const dir = join(globalConfig.rootDir, 'test', sub);
    try {
      return readdirSync(dir)
        .filter((f) => f.endsWith('.test.ts'))
        .map((f) => join(dir, f));
    } catch {
      return [];
    }
  });
  if (files.length === 0) return false;
  const patterns = globalConfig.testPathPatterns;
  if (!patterns || !patterns.isSet()) return files.length > 0;
  const matcher = patterns.toExecutor({ rootDir: globalConfig.rootDir });
  return files.some((f) => {
    try {
      return matcher.isMatch(f);
    } catch {
      return true;
    }
  });
}

export default async function setup(globalConfig: Config.GlobalConfig): Promise<void> {
  if (globalConfig.watch || globalConfig.watchAll || !operatorTestsSelected(globalConfig)) return;
  const g = globalThis as GlobalWithControlPlane;
  const t0 = Date.now();
  const outDir = join(globalConfig.rootDir, '.tmp', `jest-global-setup-${process.pid}`);
  g.__dbproxySetupDir = outDir;
  try {
    const { startControlPlane } = await importTs(globalConfig.rootDir, outDir, 'hack/controlplane/controlPlane.ts');
    const { CONTROLPLANE_ENV, CONTROL_PLANE_EXTRA_API_ARGS, installChartPrerequisites, operatorGroups, startGarbageCollectorProbe } = await importTs(
      globalConfig.rootDir,
      outDir,
      'test/operator/support/cluster.ts',
    );
    const cp = await startControlPlane({
      extraApiServerArgs: CONTROL_PLANE_EXTRA_API_ARGS,
      keepDir: process.env.DBPROXY_TEST_KEEP_CONTROLPLANE === '1', // logs for post-mortems
      log: process.env.DBPROXY_TEST_LOGS === '1' ? (m: string) => process.stderr.write(`[controlplane] ${m}\n`) : undefined,
    });
    g.__dbproxyControlPlane = cp;
    const { operatorUser } = await installChartPrerequisites(cp);
    const operatorKubeconfigPath = await cp.userKubeconfig({ user: operatorUser, groups: operatorGroups(), path: join(cp.dir, 'operator.kubeconfig') });
    const file = join(cp.dir, 'test-controlplane.json');
    const gcReadyFile = join(cp.dir, 'gc-ready');
    await writeFile(
      file,
      JSON.stringify({ kubeconfigPath: cp.kubeconfigPath, operatorKubeconfigPath, operatorUser, apiUrl: cp.apiUrl, binDir: cp.binDir, dir: cp.dir, gcReadyFile }, null, 2),
    );
    // Runs in this (the jest parent) process while the tests run; teardown stops it.
    g.__dbproxyGcProbe = startGarbageCollectorProbe(cp, gcReadyFile);
    // Workers are forked after global setup, so they inherit this.
    process.env[CONTROLPLANE_ENV] = file;
  } catch (e) {
    // Jest skips global teardown when setup fails: clean up here.
    await g.__dbproxyControlPlane?.stop();
    g.__dbproxyControlPlane = undefined;
    throw e;
  } finally {
    // Everything needed is loaded by now.
    await rm(outDir, { recursive: true, force: true });
  }
  if (process.env.DBPROXY_TEST_LOGS === '1') process.stderr.write(`[globalSetup] control plane ready in ${Date.now() - t0} ms\n`);
}
