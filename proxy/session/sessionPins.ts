// Why a client session holds on to one backend: the reasons, each counted once per session and
// logged once with a normalized digest of the statement (never a literal value). The digest is
// built only here, when a pin is actually logged.
import type { Logger } from 'pino';
import { describePinReason, type PinReason } from '../classify/pinReasons.js';

export interface PinContext {
  log: Logger;
  /** Counts a pin by reason (metrics). */
  counted(reason: PinReason): void;
  client: number;
  user: string;
  database: string;
}

export class SessionPins {
  private readonly reasons = new Set<PinReason>();

  constructor(private readonly ctx: PinContext) {}

  get pinned(): boolean {
    return this.reasons.size > 0;
  }

  has(reason: PinReason): boolean {
    return this.reasons.has(reason);
  }

  get list(): PinReason[] {
    return [...this.reasons];
  }

  /** Adds a reason; true when the session was not pinned before. */
  pin(reason: PinReason, digest: () => string): boolean {
    if (this.reasons.has(reason)) return false;
    const first = this.reasons.size === 0;
    this.reasons.add(reason);
    this.ctx.counted(reason);
    this.ctx.log.info(
      { client: this.ctx.client, user: this.ctx.user, database: this.ctx.database, reason, statement: digest().slice(0, 200) },
      `session pinned: ${describePinReason(reason)}`,
    );
    return first;
  }
}
