// FIFO of clients waiting for a backend connection, with O(1) removal when a waiter gives up
// (borrow timeout, client disconnect). A Map keeps insertion order, which is the FIFO order.

export interface Waiter<T> {
  readonly seq: number;
  readonly enqueuedAt: number;
  resolve(value: T): void;
  reject(err: Error): void;
}

export class BorrowQueue<T> {
  private readonly waiters = new Map<number, Waiter<T>>();

  get size(): number {
    return this.waiters.size;
  }

  push(w: Waiter<T>): void {
    this.waiters.set(w.seq, w);
  }

  /** The longest-waiting waiter, without removing it. */
  peek(): Waiter<T> | undefined {
    for (const w of this.waiters.values()) return w;
    return undefined;
  }

  shift(): Waiter<T> | undefined {
    const w = this.peek();
    if (w) this.waiters.delete(w.seq);
    return w;
  }

  remove(seq: number): boolean {
    return this.waiters.delete(seq);
  }

  drain(): Waiter<T>[] {
    const all = [...this.waiters.values()];
    this.waiters.clear();
    return all;
  }
}
