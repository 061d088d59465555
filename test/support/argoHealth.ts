// Argo CD's verdict on a DatabaseProxy: docs/argocd/health.lua run by luahealth (hack/lua), which
// is gopher-lua in the sandbox Argo CD gives custom health checks, with the object converted to a
// Lua table the way Argo CD converts it. Tests and the end-to-end run call argoHealth() on the
// objects they see, so what users paste into argocd-cm is what gets tested.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../../hack/repoRoot.js';

export interface ArgoHealth {
  /** Healthy, Progressing, Degraded, Suspended, Missing or Unknown (as Argo CD records it). */
  status: string;
  message?: string;
}

/** docs/argocd/health.lua: the script the docs tell users to install. */
export const HEALTH_SCRIPT = (): string => join(repoRoot(), 'docs', 'argocd', 'health.lua');

let binary: string | undefined;

/** Builds luahealth if needed (instant when cached, seconds otherwise); returns its path. */
export function luaHealthBinary(): string {
  if (binary) return binary;
  const r = spawnSync('bash', [join(repoRoot(), 'hack', 'lua', 'install.sh'), '--quiet'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`hack/lua/install.sh failed (exit ${r.status})`);
  const path = r.stdout.trim().split('\n').pop()!;
  if (!existsSync(path)) throw new Error(`hack/lua/install.sh printed ${path}, which does not exist`);
  binary = path;
  return path;
}

/** Runs any health script on obj in Argo CD's sandbox. Rejects when the script fails or returns no table, as Argo CD would report an error. */
export function runHealthScript(scriptPath: string, obj: unknown): Promise<ArgoHealth> {
  const bin = luaHealthBinary();
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [scriptPath], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`luahealth ${scriptPath} exited with ${code}: ${stderr.trim()}`));
        return;
      }
      try {
        const out = JSON.parse(stdout) as { status?: string; message?: string };
        resolve({ status: out.status ?? '', ...(out.message !== undefined ? { message: out.message } : {}) });
      } catch (e) {
        reject(new Error(`luahealth printed something other than JSON (${(e as Error).message}): ${stdout}`));
      }
    });
    child.stdin.end(JSON.stringify(obj));
  });
}

/** Argo CD's health of a DatabaseProxy object (as read from the API, or built in a test). */
export async function argoHealth(obj: unknown): Promise<{ status: string; message?: string }> {
  return runHealthScript(HEALTH_SCRIPT(), obj);
}
