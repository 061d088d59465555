// Kubernetes Events (events.k8s.io/v1) about the objects a controller manages, with CamelCase reasons, so
// `kubectl describe` tells what the controller did and why. Identical events within the dedup
// window are sent once; failures to record are logged, never fatal.
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { KubeClient } from './client.js';
import { apiVersionOf, kubeResources, type KubeObject, type Resource } from './resources.js';
import { wallClock, type Clock } from '../../proxy/runtime/clock.js';
import { microTime } from './leaderElection.js';

export const REPORTING_CONTROLLER = 'dbproxy.io/operator';

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  client: KubeClient;
  identity: string;
  log: Logger;
  clock?: Clock;
  /** Identical events (object, type, reason, note) within this window are sent once. Default 10 min. */
  dedupWindowMs?: number;
}

export class EventRecorder {
  private readonly clock: Clock;
  private readonly recent = new Map<string, number>();
  private pending = new Set<Promise<void>>();

  constructor(private readonly opts: EventRecorderOptions) {
    this.clock = opts.clock ?? wallClock;
  }

  /** Records an event about `obj`; returns at once (the write happens in the background). */
  record(resource: Resource, obj: KubeObject, type: EventType, reason: string, note: string, action = 'Reconcile'): void {
    if (!/^[A-Z][A-Za-z0-9]*$/.test(reason)) throw new Error(`event reason must be CamelCase: ${reason}`);
    const now = this.clock.now();
    const window = this.opts.dedupWindowMs ?? 600_000;
    const key = `${obj.metadata.uid}|${type}|${reason}|${note}`;
    const last = this.recent.get(key);
    if (last !== undefined && now - last < window) return;
    this.recent.set(key, now);
    if (this.recent.size > 1000) for (const [k, t] of this.recent) if (now - t >= window) this.recent.delete(k);

    const namespace = obj.metadata.namespace ?? 'default';
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${obj.metadata.name}.${now.toString(16)}${randomBytes(3).toString('hex')}`, namespace },
      eventTime: microTime(now),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.opts.identity.slice(0, 128),
      action,
      reason,
      note: note.slice(0, 1024),
      type,
      regarding: {
        apiVersion: apiVersionOf(resource),
        kind: resource.kind,
        name: obj.metadata.name,
        namespace,
        ...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
        ...(obj.metadata.resourceVersion ? { resourceVersion: obj.metadata.resourceVersion } : {}),
      },
    };
    this.opts.log.info({ object: `${namespace}/${obj.metadata.name}`, type, reason, note }, 'event');
    const p = this.opts.client
      .create(kubeResources.events, namespace, event)
      .then(() => undefined)
      .catch((e: Error) => this.opts.log.warn({ err: e.message, reason }, 'could not record event'))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  /** Waits for events being written (before shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
