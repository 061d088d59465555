// What a kubelet writes into a pod's volumes, computed from the pod spec and the objects it names:
// a list of files (relative path, content, mode) per volume. Pure apart from the injected lookups,
// so the pod runner can re-run it whenever a ConfigMap or Secret changes and rewrite only what
// differs (as the kubelet's atomic writer does, a rotated Secret shows up in the running pod).
import type { V1DownwardAPIVolumeFile, V1KeyToPath, V1Pod, V1Volume } from '@kubernetes/client-node';

export interface VolumeFile {
  /** Path inside the volume, e.g. "app/password". */
  path: string;
  content: Buffer;
  mode: number;
}

/** A volume as the runner materializes it: a directory of files, or an empty scratch dir. */
export interface MaterializedVolume {
  name: string;
  kind: 'files' | 'emptyDir';
  files: VolumeFile[];
}

/** The objects a pod's volumes read, fetched by the runner (undefined: not found). */
export interface VolumeSources {
  configMap(namespace: string, name: string): Promise<{ data?: Record<string, string>; binaryData?: Record<string, string> } | undefined>;
  secret(namespace: string, name: string): Promise<{ data?: Record<string, string> } | undefined>;
  /** A bound ServiceAccount token (TokenRequest API) for this pod. */
  serviceAccountToken(pod: V1Pod, opts: { audience?: string; expirationSeconds: number }): Promise<string>;
}

export class VolumeError extends Error {}

const DEFAULT_MODE = 0o644;

/** The pod's value for a downward API fieldRef (the subset kubelets support for files and env). */
export function fieldValue(pod: V1Pod, fieldPath: string, podIp: string, nodeName: string): string {
  const meta = pod.metadata ?? {};
  const label = /^metadata\.labels\['(.+)'\]$/.exec(fieldPath);
  if (label) return meta.labels?.[label[1]!] ?? '';
  const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(fieldPath);
  if (annotation) return meta.annotations?.[annotation[1]!] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return meta.name ?? '';
    case 'metadata.namespace':
      return meta.namespace ?? '';
    case 'metadata.uid':
      return meta.uid ?? '';
    case 'spec.nodeName':
      return nodeName;
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs':
      return podIp;
    case 'status.hostIP':
    case 'status.hostIPs':
      return '127.0.0.1';
    default:
      throw new VolumeError(`fieldRef ${fieldPath} is not supported by the local pod runner`);
  }
}

/** Keys of a ConfigMap/Secret as files: all keys, or the listed items (a missing listed key is an error unless optional). */
function keyFiles(
  what: string,
  data: Record<string, Buffer>,
  items: V1KeyToPath[] | undefined,
  mode: number,
  optional: boolean,
): VolumeFile[] {
  if (!items || items.length === 0) return Object.entries(data).map(([key, content]) => ({ path: key, content, mode }));
  const out: VolumeFile[] = [];
  for (const item of items) {
    const content = data[item.key];
    if (content === undefined) {
      if (optional) continue;
      throw new VolumeError(`${what} has no key ${item.key}`);
    }
    out.push({ path: item.path, content, mode: item.mode ?? mode });
  }
  return out;
}

function configMapData(cm: { data?: Record<string, string>; binaryData?: Record<string, string> }): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm.data ?? {})) out[k] = Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

function secretData(s: { data?: Record<string, string> }): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

function downwardFiles(pod: V1Pod, items: V1DownwardAPIVolumeFile[], mode: number, podIp: string, nodeName: string): VolumeFile[] {
  return items.map((item) => {
    if (!item.fieldRef) throw new VolumeError(`downwardAPI item ${item.path}: only fieldRef is supported by the local pod runner`);
    return { path: item.path, content: Buffer.from(fieldValue(pod, item.fieldRef.fieldPath, podIp, nodeName)), mode: item.mode ?? mode };
  });
}

async function configMapFiles(src: VolumeSources, ns: string, name: string, items: V1KeyToPath[] | undefined, mode: number, optional: boolean): Promise<VolumeFile[]> {
  const cm = await src.configMap(ns, name);
  if (!cm) {
    if (optional) return [];
    throw new VolumeError(`configmap "${name}" not found`);
  }
  return keyFiles(`configmap "${name}"`, configMapData(cm), items, mode, optional);
}

async function secretFiles(src: VolumeSources, ns: string, name: string, items: V1KeyToPath[] | undefined, mode: number, optional: boolean): Promise<VolumeFile[]> {
  const s = await src.secret(ns, name);
  if (!s) {
    if (optional) return [];
    throw new VolumeError(`secret "${name}" not found`);
  }
  return keyFiles(`secret "${name}"`, secretData(s), items, mode, optional);
}

/** Materializes one volume. Throws VolumeError for what the runner cannot provide (the pod then waits, as with a kubelet). */
export async function materializeVolume(pod: V1Pod, volume: V1Volume, src: VolumeSources, podIp: string, nodeName: string): Promise<MaterializedVolume> {
  const ns = pod.metadata?.namespace ?? 'default';
  const files = (f: VolumeFile[]): MaterializedVolume => ({ name: volume.name, kind: 'files', files: f });
  if (volume.emptyDir) return { name: volume.name, kind: 'emptyDir', files: [] };
  if (volume.configMap) {
    const v = volume.configMap;
    return files(await configMapFiles(src, ns, v.name!, v.items, v.defaultMode ?? DEFAULT_MODE, v.optional ?? false));
  }
  if (volume.secret) {
    const v = volume.secret;
    return files(await secretFiles(src, ns, v.secretName!, v.items, v.defaultMode ?? DEFAULT_MODE, v.optional ?? false));
  }
  if (volume.downwardAPI) return files(downwardFiles(pod, volume.downwardAPI.items ?? [], volume.downwardAPI.defaultMode ?? DEFAULT_MODE, podIp, nodeName));
  if (volume.projected) {
    const mode = volume.projected.defaultMode ?? DEFAULT_MODE;
    const out: VolumeFile[] = [];
    for (const source of volume.projected.sources ?? []) {
      if (source.configMap) out.push(...(await configMapFiles(src, ns, source.configMap.name!, source.configMap.items, mode, source.configMap.optional ?? false)));
      else if (source.secret) out.push(...(await secretFiles(src, ns, source.secret.name!, source.secret.items, mode, source.secret.optional ?? false)));
      else if (source.downwardAPI) out.push(...downwardFiles(pod, source.downwardAPI.items ?? [], mode, podIp, nodeName));
      else if (source.serviceAccountToken) {
        const t = source.serviceAccountToken;
        const token = await src.serviceAccountToken(pod, { ...(t.audience ? { audience: t.audience } : {}), expirationSeconds: t.expirationSeconds ?? 3607 });
        out.push({ path: t.path, content: Buffer.from(token), mode });
      } else throw new VolumeError(`volume ${volume.name}: a projected source kind the local pod runner does not support`);
    }
    return files(out);
  }
  const kind = Object.keys(volume).find((k) => k !== 'name') ?? 'unknown';
  throw new VolumeError(`volume ${volume.name}: ${kind} volumes are not supported by the local pod runner`);
}
