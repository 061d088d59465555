// An informer: list, then watch from the list's resourceVersion, keeping a local cache and telling
// handlers what changed. It survives what real API servers do to watches:
//   - the server ends a watch (timeoutSeconds, shutdown, restart): re-watch from the last
//     resourceVersion seen (bookmarks keep it fresh);
//   - 410 Gone / Expired (the resourceVersion fell out of the watch window, e.g. after a restart):
//     list again and diff the new list against the cache, so deletions missed meanwhile are seen;
//   - the server is unreachable or answers errors: retry with exponential backoff.
//
// Hand-written rather than client-node's ListWatch, which failed test/operator/apiRestart.test.ts'
// case in a probe against the same control plane: after a graceful or a crash restart of the API
// server, ListWatch reports an error and stops, so the spec change made after the restart was
// never seen; restarted from its error handler it recovers, but at a fixed delay through the
// starting server's 403s and 429s. It also asks for no bookmarks and its Watch gives up after a
// fixed 30 s without bytes, so a quiet resource is re-watched every 30 s (4 watches in 95 s)
// where this one re-watches every 240-360 s. Its 410 Gone relist passed.
import type { Logger } from 'pino';
import { wallClock, sleep, type Clock } from '../../proxy/runtime/clock.js';
import { isGone, type KubeClient, type WatchEvent } from './client.js';
import { objectKey, type KubeObject, type Resource } from './resources.js';

export type InformerEvent = 'add' | 'update' | 'delete';
export type InformerHandler<T> = (type: InformerEvent, obj: T, old?: T) => void;

export interface InformerOptions {
  client: KubeClient;
  resource: Resource;
  /** Watch one namespace; default all. */
  namespace?: string;
  labelSelector?: string;
  log: Logger;
  clock?: Clock;
  /** Retry delays after errors: base x 2^n up to max. Default 200 ms .. 30 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Server-side watch timeout (the informer re-watches). Default 240-360 s, randomized. */
  watchTimeoutSeconds?: number;
  /** Called when the informer lists again (reason 'initial', 'gone', 'error'). */
  onRelist?: (reason: 'initial' | 'gone') => void;
  /** Called when a watch ends and is re-established (reason 'closed' or 'error'). */
  onRewatch?: (reason: 'closed' | 'error') => void;
  /** Test hook: watch from this resourceVersion first instead of listing (to provoke 410 Gone). */
  initialResourceVersion?: string;
}

export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T>();
  private readonly handlers: Array<InformerHandler<T>> = [];
  private readonly clock: Clock;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private synced = false;
  private syncWaiters: Array<() => void> = [];
  private resourceVersion: string | undefined;
  private failures = 0;
  /** Number of lists done (initial one included); for tests and metrics. */
  relists = 0;

  constructor(private readonly opts: InformerOptions) {
    this.clock = opts.clock ?? wallClock;
    this.resourceVersion = opts.initialResourceVersion;
    if (opts.initialResourceVersion) this.synced = false;
  }

  get resource(): Resource {
    return this.opts.resource;
  }

  onChange(handler: InformerHandler<T>): void {
    this.handlers.push(handler);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list is in the cache (or the informer is stopped). */
  waitForSync(): Promise<void> {
    if (this.synced || this.abort.signal.aborted) return Promise.resolve();
    return new Promise((r) => this.syncWaiters.push(r));
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.store.get(namespace ? `${namespace}/${name}` : name);
  }

  list(filter?: (o: T) => boolean): T[] {
    const all = [...this.store.values()];
    return filter ? all.filter(filter) : all;
  }

  private emit(type: InformerEvent, obj: T, old?: T): void {
    for (const h of this.handlers) {
      try {
        h(type, obj, old);
      } catch (e) {
        this.opts.log.error({ err: (e as Error).message, resource: this.opts.resource.plural }, 'informer handler failed');
      }
    }
  }

  private async relist(reason: 'initial' | 'gone'): Promise<void> {
    const { client, resource, namespace, labelSelector } = this.opts;
    const list = await client.list<T>(resource, { ...(namespace ? { namespace } : {}), ...(labelSelector ? { labelSelector } : {}) });
    this.relists++;
    this.opts.onRelist?.(reason);
    const seen = new Set<string>();
    for (const item of list.items) {
      const key = objectKey(item);
      seen.add(key);
      const old = this.store.get(key);
      this.store.set(key, item);
      if (!old) this.emit('add', item);
      else if (old.metadata.resourceVersion !== item.metadata.resourceVersion) this.emit('update', item, old);
    }
    for (const [key, old] of [...this.store]) {
      if (!seen.has(key)) {
        this.store.delete(key);
        this.emit('delete', old);
      }
    }
    this.resourceVersion = list.metadata.resourceVersion;
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private apply(ev: WatchEvent<T>): void {
    const obj = ev.object;
    if (obj?.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
    if (ev.type === 'BOOKMARK') return;
    const key = objectKey(obj);
    const old = this.store.get(key);
    if (ev.type === 'DELETED') {
      this.store.delete(key);
      this.emit('delete', old ?? obj);
    } else {
      this.store.set(key, obj);
      this.emit(old ? 'update' : 'add', obj, old);
    }
  }

  private async run(): Promise<void> {
    const { client, resource, namespace, labelSelector, log } = this.opts;
    const signal = this.abort.signal;
    let listReason: 'initial' | 'gone' = 'initial';
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === undefined) await this.relist(listReason);
        const timeoutSeconds = this.opts.watchTimeoutSeconds ?? 240 + Math.floor(Math.random() * 120);
        const started = this.clock.now();
        await client.watch<T>(
          resource,
          {
            resourceVersion: this.resourceVersion!,
            timeoutSeconds,
            signal,
            ...(namespace ? { namespace } : {}),
            ...(labelSelector ? { labelSelector } : {}),
          },
          (ev) => {
            this.apply(ev);
            this.failures = 0;
          },
        );
        if (signal.aborted) break;
        // The server closed the watch. Re-watch at once, unless it closes immediately over and over.
        this.opts.onRewatch?.('closed');
        if (this.clock.now() - started < 1000) await sleep(this.clock, this.backoffMs(), signal);
        else this.failures = 0;
      } catch (e) {
        if (signal.aborted) break;
        if (isGone(e)) {
          log.info({ resource: resource.plural, resourceVersion: this.resourceVersion }, 'watch expired (410 Gone); listing again');
          this.resourceVersion = undefined;
          listReason = 'gone';
          continue;
        }
        const delay = this.backoffMs();
        log.warn({ resource: resource.plural, err: (e as Error).message, retryInMs: delay }, 'list/watch failed; retrying');
        this.opts.onRewatch?.('error');
        await sleep(this.clock, delay, signal);
      }
    }
  }

  private backoffMs(): number {
    const base = this.opts.backoffBaseMs ?? 200;
    const max = this.opts.backoffMaxMs ?? 30_000;
    const d = Math.min(max, base * 2 ** Math.min(this.failures, 20));
    this.failures++;
    return d;
  }
}
