// A bounded map that forgets the least recently used entry. Hand-written because the usual trick
// with a JavaScript Map (delete and re-insert on every hit) costs two hash operations per lookup on
// the hot path; here a hit is one Map lookup and a few pointer moves in a doubly linked list.

interface Entry<K, V> {
  key: K;
  value: V;
  newer: Entry<K, V> | null;
  older: Entry<K, V> | null;
}

export class LruMap<K, V> {
  private readonly map = new Map<K, Entry<K, V>>();
  private newest: Entry<K, V> | null = null;
  private oldest: Entry<K, V> | null = null;

  constructor(public capacity: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The value, marked most recently used. */
  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    this.touch(e);
    return e.value;
  }

  /** The value, without marking it used. */
  peek(key: K): V | undefined {
    return this.map.get(key)?.value;
  }

  has(key: K): boolean {
    return this.map.has(key);
  }

  /** Sets the value (most recently used); returns the entries evicted to stay within capacity. */
  set(key: K, value: V): Array<[K, V]> {
    const e = this.map.get(key);
    if (e !== undefined) {
      e.value = value;
      this.touch(e);
      return [];
    }
    const entry: Entry<K, V> = { key, value, newer: null, older: this.newest };
    if (this.newest) this.newest.newer = entry;
    this.newest = entry;
    if (!this.oldest) this.oldest = entry;
    this.map.set(key, entry);
    const evicted: Array<[K, V]> = [];
    while (this.map.size > this.capacity && this.oldest) {
      const old = this.oldest;
      this.unlink(old);
      this.map.delete(old.key);
      evicted.push([old.key, old.value]);
    }
    return evicted;
  }

  delete(key: K): boolean {
    const e = this.map.get(key);
    if (e === undefined) return false;
    this.unlink(e);
    this.map.delete(key);
    return true;
  }

  clear(): void {
    this.map.clear();
    this.newest = null;
    this.oldest = null;
  }

  /** Keys from least to most recently used. */
  *keys(): IterableIterator<K> {
    for (let e = this.oldest; e; e = e.newer) yield e.key;
  }

  private touch(e: Entry<K, V>): void {
    if (this.newest === e) return;
    this.unlink(e);
    e.older = this.newest;
    e.newer = null;
    if (this.newest) this.newest.newer = e;
    this.newest = e;
    if (!this.oldest) this.oldest = e;
  }

  private unlink(e: Entry<K, V>): void {
    if (e.newer) e.newer.older = e.older;
    else this.newest = e.older;
    if (e.older) e.older.newer = e.newer;
    else this.oldest = e.newer;
    e.newer = null;
    e.older = null;
  }
}
