/**
 * A small in-process cache of lookups, so popular domains do not each cost a store read: entries
 * live at most `ttlMs` counted from when their read started (an answer is never older than that),
 * at most `maxEntries` are kept (least recently used go first), and concurrent misses on one key
 * share a single read. Unknown domains are cached too (a domain admitted meanwhile shows within
 * the TTL). `ttlMs` 0 turns caching off: every lookup reads the store.
 */
export class LookupCache<V> {
  readonly ttlMs: number;
  readonly maxEntries: number;
  hits = 0;
  misses = 0;
  readonly #entries = new Map<string, { value: V; until: number }>();
  readonly #inflight = new Map<string, Promise<V>>();

  constructor(opts: { ttlMs: number; maxEntries: number }) {
    this.ttlMs = opts.ttlMs;
    this.maxEntries = opts.maxEntries;
  }

  get size(): number {
    return this.#entries.size;
  }

  async get(key: string, load: () => Promise<V>): Promise<V> {
    if (this.ttlMs === 0) return load();
    const now = Date.now();
    const entry = this.#entries.get(key);
    if (entry) {
      this.#entries.delete(key);
      if (entry.until > now) {
        this.#entries.set(key, entry); // most recently used last
        this.hits++;
        return entry.value;
      }
    }
    this.misses++;
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const read = load()
      .then((value) => {
        this.#entries.set(key, { value, until: now + this.ttlMs });
        for (const oldest of this.#entries.keys()) {
          if (this.#entries.size <= this.maxEntries) break;
          this.#entries.delete(oldest);
        }
        return value;
      })
      .finally(() => this.#inflight.delete(key));
    this.#inflight.set(key, read);
    return read;
  }

  /** Drops a key, e.g. after this process changed the domain. */
  delete(key: string): void {
    this.#entries.delete(key);
  }
}
