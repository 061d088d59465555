// Jest global teardown: stops the control plane global setup started (if it started one).
import { rm } from 'node:fs/promises';

type GlobalWithControlPlane = typeof globalThis & {
  __dbproxyControlPlane?: { stop(): Promise<void> };
  __dbproxyGcProbe?: { stop(): Promise<void> };
  __dbproxySetupDir?: string;
};

export default async function teardown(): Promise<void> {
  const g = globalThis as GlobalWithControlPlane;
  await g.__dbproxyGcProbe?.stop();
  g.__dbproxyGcProbe = undefined;
  const cp = g.__dbproxyControlPlane;
  g.__dbproxyControlPlane = undefined;
  if (cp) await cp.stop();
  if (g.__dbproxySetupDir) await rm(g.__dbproxySetupDir, { recursive: true, force: true });
}
