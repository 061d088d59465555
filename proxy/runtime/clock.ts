// Time at the edge: actors get a Clock instead of reading Date.now() or calling setTimeout deep
// inside, so tests can drive time and the policy stays pure. One Clock type for the whole
// repository: the proxy's pool, health checks and logins, and the operator's work queue, leader
// election, informers and status rate limiting all take this one. It lives at the bottom (proxy/
// runtime imports nothing of the project), so the operator may import it without reaching into
// proxy internals.

export interface TimerHandle {
  unref?(): unknown;
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/**
 * The proxy's clock: time from the monotonic performance clock (offset to the epoch), so pool
 * timing (borrow timeouts, lifetimes, idle trims) does not jump when the wall clock is stepped.
 * Timers keep the process alive, as the proxy's work does.
 */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * The operator's clock: wall-clock time, because its timestamps go into API objects other nodes
 * read (Lease renewTime, Event eventTime); and unref'd timers, because its timers are retries and
 * backoffs that must not keep a stopping process (or a test run) alive.
 */
export const wallClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Resolves after `ms` on `clock`, or at once when `signal` aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      resolve();
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A fake clock's timer handle: an object, as real handles are, carrying the timer's id. */
interface FakeTimer extends TimerHandle {
  readonly id: number;
}

/** A clock that moves only when told to (unit tests). */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = Date.parse('2025-01-01T00:00:00Z')) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    const handle: FakeTimer = { id };
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete((handle as FakeTimer).id);
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = [...this.timers].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }

  pendingTimers(): number {
    return this.timers.size;
  }
}
