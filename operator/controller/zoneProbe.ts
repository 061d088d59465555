// Whether the cluster's nodes carry the zone label, for the default topology spread
// (operator/desired/deployment.ts): one cheap list of at most one node with the label, remembered
// for a while. Nodes rarely gain or lose zones, so a stale answer for a few minutes costs nothing.
import type { Logger } from 'pino';
import { ZONE_LABEL } from '../desired/deployment.js';
import type { KubeClient } from '../runtime/client.js';
import { resources } from './resources.js';
import type { Clock } from '../../proxy/runtime/clock.js';

/** How long an answer is reused. */
export const ZONE_PROBE_TTL_MS = 5 * 60_000;

export class ZoneProbe {
  private known: { zoned: boolean; at: number } | undefined;
  private inflight: Promise<boolean | undefined> | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly ttlMs = ZONE_PROBE_TTL_MS,
    /** The node label that means "zones"; another one only in tests, which must not touch the real one on a shared cluster. */
    private readonly label = ZONE_LABEL,
  ) {}

  /** True or false, or undefined when the API has not answered yet (the caller keeps what it has). */
  async zoned(): Promise<boolean | undefined> {
    if (this.known && this.clock.now() - this.known.at < this.ttlMs) return this.known.zoned;
    this.inflight ??= this.probe().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async probe(): Promise<boolean | undefined> {
    try {
      const page = await this.client.listPage(resources.nodes, { labelSelector: this.label, limit: 1 });
      const zoned = page.items.length > 0;
      if (this.known?.zoned !== zoned) this.log.info({ zoned }, zoned ? 'nodes have zones: proxy pods spread over zones by default' : 'nodes have no zone label: proxy pods spread over nodes only');
      this.known = { zoned, at: this.clock.now() };
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not list nodes to find zones; keeping the previous topology spread');
    }
    return this.known?.zoned;
  }
}
