// The operator's Kubernetes API client: @kubernetes/client-node's KubeConfig for finding the API
// server and its credentials (kubeconfig file, or in-cluster ServiceAccount token that it re-reads
// as it rotates), and a small REST layer on node:https for the few calls the operator makes:
// list, watch (streamed), server-side apply (one field manager, force), create, update, delete.
// Every call is reported to `onRequest` as an RBAC (verb, resource) pair, which the tests use to
// check that the chart's ClusterRole grants exactly what the operator does.
//
// Why not client-node's KubernetesObjectApi for the verbs (README, Design notes): it passed the
// apply probe (server-side apply with field manager and force; request middleware sees method,
// URL and status), but the watch below has to stay hand-written (see informer.ts), and one
// transport for both keeps one connection pool, one error type (ApiError: isGone/isConflict)
// and RBAC recording at the call site, where (verb, resource) is known; middleware sees only URLs
// and never sees watches (client-node's Watch calls fetch directly). KubernetesObjectApi also
// adds a discovery GET per API version, has no status subresource (the DatabaseProxy status
// apply would need CustomObjectsApi) and serializes built-in kinds through its models, dropping
// fields the models do not know.
import { KubeConfig } from '@kubernetes/client-node';
import http from 'node:http';
import https from 'node:https';
import { apiVersionOf, resourcePath, type KubeList, type KubeObject, type Resource } from './resources.js';

/** The one field manager for every server-side apply the operator makes, spec and status alike. */
export const FIELD_MANAGER = 'dbproxy-operator';

export type Verb = 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete';

export interface RequestRecord {
  verb: Verb;
  /** RBAC resource: plural, or plural/subresource. */
  resource: string;
  group: string;
  namespace?: string;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ApiError && e.code === 404;
export const isConflict = (e: unknown): boolean => e instanceof ApiError && e.code === 409;
/** 410 Gone / Expired: a resourceVersion too old to watch from, or an expired continue token. */
export const isGone = (e: unknown): boolean => e instanceof ApiError && e.code === 410;

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface KubeClientOptions {
  /** Path of a kubeconfig file. Default: $KUBECONFIG, ~/.kube/config, or in-cluster. */
  kubeconfig?: string;
  /** Use the in-cluster ServiceAccount (KUBERNETES_SERVICE_HOST and the mounted token). */
  inCluster?: boolean;
  /** Per-request timeout for everything but watches. Default 30 s. */
  requestTimeoutMs?: number;
  onRequest?: (r: RequestRecord) => void;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
}

export interface WatchOptions extends ListOptions {
  resourceVersion: string;
  /** The server ends the watch after this long (the caller re-watches). Default 300 s. */
  timeoutSeconds?: number;
  /** No bytes for this long (bookmarks come about every minute): assume the connection is dead. Default 150 s. */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
}

interface RawResponse {
  status: number;
  body: string;
}

function statusError(method: string, path: string, r: RawResponse): ApiError {
  let reason = http.STATUS_CODES[r.status] ?? 'Error';
  let message = r.body.trim().slice(0, 2000);
  let details: unknown;
  try {
    const s = JSON.parse(r.body) as { kind?: string; reason?: string; message?: string; details?: unknown };
    if (s.kind === 'Status') {
      reason = s.reason || reason;
      message = s.message || message;
      details = s.details;
    }
  } catch {
    // not JSON: keep the text
  }
  return new ApiError(r.status, reason, `${method} ${path}: ${r.status} ${reason}: ${message}`, details);
}

export class KubeClient {
  private readonly requestTimeoutMs: number;
  private readonly onRequest: ((r: RequestRecord) => void) | undefined;
  private agent: https.Agent | undefined;

  constructor(
    readonly kubeConfig: KubeConfig,
    opts: Pick<KubeClientOptions, 'requestTimeoutMs' | 'onRequest'> = {},
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.onRequest = opts.onRequest;
  }

  static create(opts: KubeClientOptions = {}): KubeClient {
    const kc = new KubeConfig();
    if (opts.inCluster) kc.loadFromCluster();
    else if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
    if (!kc.getCurrentCluster()) throw new Error('no Kubernetes cluster configured (kubeconfig has no current context, and not running in a cluster)');
    return new KubeClient(kc, opts);
  }

  /** The API server URL. */
  get server(): string {
    return this.kubeConfig.getCurrentCluster()!.server;
  }

  /** The default namespace of the kubeconfig context (in-cluster: the pod's namespace). */
  get contextNamespace(): string | undefined {
    const ctx = this.kubeConfig.getContextObject(this.kubeConfig.getCurrentContext());
    return ctx?.namespace;
  }

  private record(verb: Verb, r: Resource, namespace?: string, subresource?: string): void {
    this.onRequest?.({ verb, resource: subresource ? `${r.plural}/${subresource}` : r.plural, group: r.group, ...(namespace ? { namespace } : {}) });
  }

  /** TLS material and headers for one request; the token is re-read by KubeConfig as it rotates. */
  private async requestOptions(): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = {};
    await this.kubeConfig.applyToHTTPSOptions(opts);
    if (!this.agent) {
      this.agent = new https.Agent({
        keepAlive: true,
        maxFreeSockets: 4,
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.cert ? { cert: opts.cert } : {}),
        ...(opts.key ? { key: opts.key } : {}),
        ...(opts.rejectUnauthorized !== undefined ? { rejectUnauthorized: opts.rejectUnauthorized } : {}),
        ...(opts.servername ? { servername: opts.servername } : {}),
      });
    }
    return { headers: { ...((opts.headers ?? {}) as http.OutgoingHttpHeaders) }, agent: this.agent, ...(opts.auth ? { auth: opts.auth } : {}) };
  }

  private url(path: string, query: Record<string, string | number | boolean | undefined> = {}): URL {
    const u = new URL(this.server.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') u.searchParams.set(k, String(v));
    return u;
  }

  private async send(
    method: string,
    url: URL,
    opts: { body?: unknown; contentType?: string; timeoutMs?: number } = {},
  ): Promise<RawResponse> {
    const base = await this.requestOptions();
    const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
    const headers: http.OutgoingHttpHeaders = { ...(base.headers as http.OutgoingHttpHeaders), Accept: 'application/json' };
    if (payload) {
      headers['Content-Type'] = opts.contentType ?? 'application/json';
      headers['Content-Length'] = payload.length;
    }
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise<RawResponse>((resolve, reject) => {
      const req = mod.request(url, { ...base, ...(url.protocol === 'http:' ? { agent: undefined } : {}), method, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.setTimeout(opts.timeoutMs ?? this.requestTimeoutMs, () => req.destroy(new Error(`${method} ${url.pathname}: timed out`)));
      req.on('error', (e) => reject(new Error(`${method} ${url.pathname}: ${e.message}`)));
      req.end(payload);
    });
  }

  private async json<T>(method: string, path: string, query: Record<string, string | number | boolean | undefined>, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.send(method, this.url(path, query), { body, ...(contentType ? { contentType } : {}) });
    if (r.status < 200 || r.status >= 300) throw statusError(method, path, r);
    return (r.body ? JSON.parse(r.body) : {}) as T;
  }

  /**
   * Any other call, for callers outside the operator's fixed set of verbs (test infrastructure
   * binds pods, requests ServiceAccount tokens, merge-patches pod status): path as in the API
   * reference, body sent as JSON with `contentType`.
   */
  async request<T>(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown, contentType?: string): Promise<T> {
    return this.json<T>(method, path, {}, body, contentType);
  }

  /** One page of a list. */
  async listPage<T>(r: Resource, opts: ListOptions & { limit?: number; continue?: string } = {}): Promise<KubeList<T>> {
    this.record('list', r, opts.namespace);
    return this.json<KubeList<T>>('GET', resourcePath(r, { namespace: opts.namespace }), {
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      limit: opts.limit,
      continue: opts.continue,
    });
  }

  /** Every item, page by page; the resourceVersion is the first page's (a consistent snapshot). */
  async list<T>(r: Resource, opts: ListOptions = {}): Promise<KubeList<T>> {
    const items: T[] = [];
    let cont: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.listPage<T>(r, { ...opts, limit: 500, ...(cont ? { continue: cont } : {}) });
      items.push(...page.items);
      resourceVersion ??= page.metadata.resourceVersion;
      cont = page.metadata.continue || undefined;
    } while (cont);
    return { metadata: resourceVersion ? { resourceVersion } : {}, items };
  }

  async get<T>(r: Resource, namespace: string | undefined, name: string): Promise<T> {
    this.record('get', r, namespace);
    return this.json<T>('GET', resourcePath(r, { namespace, name }), {});
  }

  async create<T>(r: Resource, namespace: string | undefined, body: unknown): Promise<T> {
    this.record('create', r, namespace);
    return this.json<T>('POST', resourcePath(r, { namespace }), { fieldManager: FIELD_MANAGER }, body);
  }

  /** PUT: optimistic concurrency through metadata.resourceVersion in the body (409 on conflict). */
  async update<T>(r: Resource, namespace: string | undefined, name: string, body: unknown): Promise<T> {
    this.record('update', r, namespace);
    return this.json<T>('PUT', resourcePath(r, { namespace, name }), { fieldManager: FIELD_MANAGER }, body);
  }

  /**
   * Server-side apply with the operator's field manager, forcing ownership of the fields in `obj`:
   * fields others set and `obj` leaves out are untouched. `subresource: 'status'` applies the status.
   */
  async apply<T>(r: Resource, obj: { metadata: { name: string; namespace?: string; uid?: string }; [field: string]: unknown }, opts: { subresource?: 'status' } = {}): Promise<T> {
    const namespace = obj.metadata.namespace;
    this.record('patch', r, namespace, opts.subresource);
    const body = { apiVersion: apiVersionOf(r), kind: r.kind, ...obj };
    const path = resourcePath(r, { namespace, name: obj.metadata.name, ...(opts.subresource ? { subresource: opts.subresource } : {}) });
    const res = await this.send('PATCH', this.url(path, { fieldManager: FIELD_MANAGER, force: true }), {
      body,
      contentType: 'application/apply-patch+yaml', // JSON is YAML
    });
    if (res.status < 200 || res.status >= 300) throw statusError('PATCH', path, res);
    // An apply that creates the object is authorized as create as well as patch.
    if (res.status === 201) this.record('create', r, namespace, opts.subresource);
    return JSON.parse(res.body) as T;
  }

  /** DELETE, optionally only if the object still has `uid` (a precondition). 404 counts as done. */
  async delete(r: Resource, namespace: string | undefined, name: string, opts: { uid?: string; propagationPolicy?: 'Background' | 'Foreground' | 'Orphan' } = {}): Promise<void> {
    this.record('delete', r, namespace);
    const body = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      ...(opts.uid ? { preconditions: { uid: opts.uid } } : {}),
      ...(opts.propagationPolicy ? { propagationPolicy: opts.propagationPolicy } : {}),
    };
    try {
      await this.json('DELETE', resourcePath(r, { namespace, name }), {}, body);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /**
   * Streams watch events to `onEvent` until the server ends the watch, the connection breaks or
   * goes idle, or `signal` aborts; then resolves. A non-200 answer rejects with ApiError (410 when
   * the resourceVersion is too old). An ERROR event (e.g. 410 Expired mid-stream) rejects too.
   */
  async watch<T>(r: Resource, opts: WatchOptions, onEvent: (e: WatchEvent<T>) => void): Promise<void> {
    this.record('watch', r, opts.namespace);
    const path = resourcePath(r, { namespace: opts.namespace });
    const url = this.url(path, {
      watch: true,
      allowWatchBookmarks: true,
      resourceVersion: opts.resourceVersion,
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
      timeoutSeconds: opts.timeoutSeconds ?? 300,
    });
    const base = await this.requestOptions();
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise<void>((resolve, reject) => {
      if (opts.signal?.aborted) return resolve();
      let settled = false;
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        req.destroy();
        if (err) reject(err);
        else resolve();
      };
      const onAbort = (): void => finish();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const req = mod.request(url, { ...base, ...(url.protocol === 'http:' ? { agent: undefined } : {}), method: 'GET', headers: { ...(base.headers as http.OutgoingHttpHeaders), Accept: 'application/json' } }, (res) => {
        if (res.statusCode !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => finish(statusError('WATCH', path, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })));
          res.on('error', (e) => finish(e));
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (!line) continue;
            let ev: WatchEvent<T>;
            try {
              ev = JSON.parse(line) as WatchEvent<T>;
            } catch {
              return finish(new Error(`WATCH ${path}: unparsable event`));
            }
            if (ev.type === 'ERROR') {
              const s = ev.object as unknown as { code?: number; reason?: string; message?: string };
              return finish(new ApiError(s.code ?? 500, s.reason ?? 'Error', `WATCH ${path}: ${s.code} ${s.reason}: ${s.message}`));
            }
            try {
              onEvent(ev);
            } catch (e) {
              return finish(e as Error);
            }
          }
        });
        res.on('end', () => finish());
        res.on('close', () => finish());
        res.on('error', () => finish());
      });
      // Idle: nothing (not even a bookmark) for a long time means a dead connection; end quietly, re-watch.
      req.setTimeout(opts.idleTimeoutMs ?? 150_000, () => finish());
      req.on('error', (e) => finish(new Error(`WATCH ${path}: ${e.message}`)));
      req.end();
    });
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }
}

export type { KubeObject };
