// When the operator writes a computed status: only when it differs in more than timestamps, at
// once when it matters (a condition moved, a new writer or generation), otherwise at most once per
// interval so that counts changing every poll do not flood the API server. Pure.
import type { DatabaseProxyStatus } from '../api/v1alpha1.js';

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, x]) => [k, canonical(x)]),
    );
  }
  return v;
}

function withoutTimestamps(s: DatabaseProxyStatus | undefined): unknown {
  if (!s) return undefined;
  const conditions = [...(s.conditions ?? [])].map(({ lastTransitionTime: _t, ...c }) => c).sort((a, b) => a.type.localeCompare(b.type));
  return canonical({ ...s, conditions });
}

/** Whether the status differs in anything but condition timestamps (and order). */
export function statusChanged(prev: DatabaseProxyStatus | undefined, next: DatabaseProxyStatus): boolean {
  return JSON.stringify(withoutTimestamps(prev)) !== JSON.stringify(withoutTimestamps(next));
}

/**
 * Whether a change is worth writing at once, whatever the rate limit: a new observedGeneration, a
 * condition whose status or reason moved, or a new writer. Count-only changes can wait.
 */
export function isUrgentChange(prev: DatabaseProxyStatus | undefined, next: DatabaseProxyStatus): boolean {
  if (!prev) return true;
  if (prev.observedGeneration !== next.observedGeneration || prev.writer !== next.writer) return true;
  const key = (s: DatabaseProxyStatus) =>
    JSON.stringify(
      (s.conditions ?? [])
        .map((c) => [c.type, c.status, c.reason])
        .sort((a, b) => a[0]!.localeCompare(b[0]!)),
    );
  return key(prev) !== key(next);
}

const ms = (t: Date | number): number => (typeof t === 'number' ? t : t.getTime());

/** Rate limit: write a changed status at most once per minIntervalMs. */
export function shouldWrite(lastWriteAt: Date | number | undefined, now: Date | number, minIntervalMs = 10_000, changed = true): boolean {
  if (!changed) return false;
  return lastWriteAt === undefined || ms(now) - ms(lastWriteAt) >= minIntervalMs;
}

/** How long until a held-back write may happen (0: now). The reconciler requeues after it, so the last change is never lost. */
export function writeDelayMs(lastWriteAt: Date | number | undefined, now: Date | number, minIntervalMs = 10_000): number {
  return lastWriteAt === undefined ? 0 : Math.max(0, minIntervalMs - (ms(now) - ms(lastWriteAt)));
}
