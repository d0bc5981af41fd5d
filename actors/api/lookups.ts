/**
 * Where a lookup's answer comes from: the in-process LookupCache (hot keys, at most
 * api.lookupCacheTtlMs old), else the lookup view in Redis (store/lookup-view.ts), else MongoDB, whose
 * answer then fills the view (only if still absent, so it never replaces a writer's newer entry).
 * Answers are JSON text, served as they are: no serialisation per request.
 */
import type { Database } from "../store/database.ts";
import { readLatestScan } from "../store/latest-scan.ts";
import { lookupEntry, type LookupEntry, type LookupView } from "../store/lookup-view.ts";
import { LookupCache } from "./lookup-cache.ts";

export class Lookups {
  readonly cache: LookupCache<LookupEntry | null>;
  readonly view: LookupView | null;
  readonly #db: Database;

  constructor(db: Database, opts: { ttlMs: number; maxEntries: number; useView: boolean }) {
    this.#db = db;
    this.view = opts.useView ? (db.collections.lookupView ?? null) : null;
    this.cache = new LookupCache<LookupEntry | null>(opts);
  }

  /** The domain's answer; null when the domain is unknown (not kept in the view: admissions do not write it). */
  entry(domain: string): Promise<LookupEntry | null> {
    return this.cache.get(domain, () => this.#load(domain));
  }

  async #load(domain: string): Promise<LookupEntry | null> {
    const viewed = this.view ? await this.view.get(domain) : undefined;
    if (viewed) return viewed;
    const latest = await readLatestScan(this.#db.collections, domain);
    if (!latest) return null;
    const entry = lookupEntry(latest);
    // Not awaited: the answer does not wait for the fill; a failed fill is just the next miss.
    if (this.view) void this.view.put(domain, entry, { ifAbsent: true });
    return entry;
  }

  /** After this process changed a domain (and rewrote its view entry): drop the cached answer. */
  forget(domain: string): void {
    this.cache.delete(domain);
  }
}
