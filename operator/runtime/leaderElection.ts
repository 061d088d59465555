// Leader election with a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it:
// the leader renews spec.renewTime every retry period; a candidate takes the Lease over only when
// the record has not changed for a whole lease duration by its own clock (so clock skew between
// nodes does not matter); updates carry the resourceVersion, so two candidates cannot both win.
// A leader that cannot renew within the renew deadline steps down. stop() releases the Lease, so a
// standby takes over at once instead of after the lease duration.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { isConflict, isNotFound, type KubeClient } from './client.js';
import { kubeResources } from './resources.js';
import { wallClock, sleep, type Clock } from '../../proxy/runtime/clock.js';

export interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}

export interface LeaderElectionOptions {
  client: KubeClient;
  namespace: string;
  /** Name of the Lease. */
  name: string;
  /** This candidate; default <hostname>_<random>. */
  identity?: string;
  /** How long a Lease is honoured without renewal. Default 15 s. */
  leaseDurationMs?: number;
  /** A leader that has not renewed for this long steps down. Default 10 s. */
  renewDeadlineMs?: number;
  /** How often to try to acquire or renew. Default 2 s. */
  retryPeriodMs?: number;
  clock?: Clock;
  log: Logger;
  onStartedLeading: () => void | Promise<void>;
  onStoppedLeading: () => void | Promise<void>;
}

/** metav1.MicroTime */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function defaultIdentity(): string {
  return `${process.env.POD_NAME || hostname()}_${randomBytes(4).toString('hex')}`;
}

export class LeaderElector {
  readonly identity: string;
  private readonly clock: Clock;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private leading = false;
  private lease: Lease | undefined;
  private observedKey = '';
  private observedAt = 0;

  constructor(private readonly opts: LeaderElectionOptions) {
    this.identity = opts.identity ?? defaultIdentity();
    this.clock = opts.clock ?? wallClock;
    this.leaseDurationMs = opts.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs)) {
      throw new Error('leader election needs leaseDuration > renewDeadline > retryPeriod');
    }
  }

  isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Stops campaigning; a leader steps down and (unless release is false, as in a crash) gives the Lease up. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.abort.abort();
    await this.loop;
    if (this.leading) {
      if (opts.release !== false) await this.release();
      await this.stepDown();
    }
  }

  private async stepDown(): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.opts.log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.identity }, 'stopped leading');
    await this.opts.onStoppedLeading();
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const { log } = this.opts;
    let lastRenew = 0;
    while (!signal.aborted) {
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (e) {
        log.warn({ err: (e as Error).message, lease: `${this.opts.namespace}/${this.opts.name}` }, 'leader election: lease request failed');
      }
      if (signal.aborted) break;
      const now = this.clock.now();
      if (ok) {
        lastRenew = now;
        if (!this.leading) {
          this.leading = true;
          log.info({ lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.identity }, 'started leading');
          try {
            await this.opts.onStartedLeading();
          } catch (e) {
            log.error({ err: (e as Error).message }, 'starting as leader failed; stepping down');
            await this.release().catch(() => {});
            await this.stepDown();
          }
        }
      } else if (this.leading && now - lastRenew >= this.renewDeadlineMs) {
        log.warn({ lease: `${this.opts.namespace}/${this.opts.name}` }, 'could not renew the lease within the renew deadline');
        await this.stepDown();
      }
      await sleep(this.clock, this.retryPeriodMs, signal);
    }
  }

  private observe(lease: Lease): void {
    const key = `${lease.spec.holderIdentity ?? ''}|${lease.spec.renewTime ?? ''}|${lease.spec.leaseDurationSeconds ?? ''}`;
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = this.clock.now();
    }
    this.lease = lease;
  }

  /** One round: create, renew or take over the Lease. True when this candidate holds it now. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { client, namespace, name } = this.opts;
    const now = this.clock.now();
    const durationSeconds = Math.max(1, Math.ceil(this.leaseDurationMs / 1000));
    let current: Lease;
    try {
      current = await client.get<Lease>(kubeResources.leases, namespace, name);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      const fresh: Lease = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec: { holderIdentity: this.identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
      };
      try {
        this.observe(await client.create<Lease>(kubeResources.leases, namespace, fresh));
        return true;
      } catch (err) {
        if (isConflict(err) || (err as { code?: number }).code === 409) return false;
        throw err;
      }
    }
    this.observe(current);
    const holder = current.spec.holderIdentity ?? '';
    const mine = holder === this.identity;
    const heldDurationMs = (current.spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder && !mine && this.observedAt + heldDurationMs > now) return false;
    const next: Lease = {
      ...current,
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine && current.spec.acquireTime ? current.spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: (current.spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
      },
    };
    try {
      this.observe(await client.update<Lease>(kubeResources.leases, namespace, name, next));
      return true;
    } catch (e) {
      if (isConflict(e)) return false;
      throw e;
    }
  }

  /** Gives the Lease up: an empty holder with a 1 s duration, so a standby takes over at once. */
  private async release(): Promise<void> {
    const { client, namespace, name, log } = this.opts;
    try {
      const current = await client.get<Lease>(kubeResources.leases, namespace, name);
      if (current.spec.holderIdentity !== this.identity) return;
      const now = microTime(this.clock.now());
      await client.update<Lease>(kubeResources.leases, namespace, name, {
        ...current,
        spec: { ...current.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: now, acquireTime: now },
      });
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'could not release the lease');
    }
  }

  /** The Lease as last seen (for tests and /readyz details). */
  get observedLease(): Lease | undefined {
    return this.lease;
  }
}
