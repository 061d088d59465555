// Refusing a client after a FATAL error, as PostgreSQL does: used by login and by the greeting.
import type net from 'node:net';
import type { Clock } from '../runtime/clock.js';

/** How long a refused client gets to take in its ErrorResponse before its socket is destroyed anyway. */
const FATAL_FLUSH_TIMEOUT_MS = 5_000;

/**
 * What PostgreSQL does after a FATAL: send the ErrorResponse, then close the connection for good.
 * A half-close would leave the socket open for as long as the client keeps its end open — holding
 * the listener's slot and reading whatever it sends — so the socket is destroyed once the error is
 * flushed (or after a bounded wait for a client that does not read). The caller has stopped
 * reading; anything still arriving is discarded.
 */
export function closeWithError(socket: net.Socket, error: Buffer, clock: Clock): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const timer = clock.setTimeout(() => socket.destroy(), FATAL_FLUSH_TIMEOUT_MS);
  timer.unref?.();
  socket.end(error, () => {
    clock.clearTimeout(timer);
    socket.destroy();
  });
  // Flowing without a 'data' listener drops what arrives, so the peer's data neither piles up in
  // memory nor turns the close into a reset before the error has gone out.
  socket.resume();
}
