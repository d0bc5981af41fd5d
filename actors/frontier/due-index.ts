/**
 * The due index: which domains are due when, read by `_id` point reads only, so finding a round's
 * due domains costs about the batch, not the frontier (FerretDB v1 serves nothing but `_id`
 * equality from an index; the `{region, nextScanAt <= now}` query sorted by priority reads every
 * domain).
 *
 * Documents in `frontier_due` (a time wheel per region and rank):
 *  - entries `<region>|<rank>|<bucket>|<n>`  `e`: entries `"<dueMs>|<domain>"` due in that bucket;
 *            n = 0, 1, 2, ... without gaps, one document per write (at most one batch of entries);
 *  - cursor  `<region>|<rank>|c`             `from`: the oldest bucket that may hold entries.
 * bucket = floor(due / dueBucketMs); rank = `m` (manual rescans, read first), else the priority,
 * highest first. A reader walks each rank's buckets from its cursor up to now's bucket, each
 * bucket's documents from n = 0 until one is missing.
 *
 * Writers only insert (a new n; a duplicate key means another writer took it: the next n): FerretDB
 * v1 updates a document by read-modify-write, so two writers updating one document lose one
 * write, while `_id` uniqueness is atomic. Only the reader (the region's leader) empties entry
 * documents, and deletes a bucket's documents once all are used and the bucket is older than a
 * grace of one bucket.
 *
 * The domain document stays the truth. An entry is valid only while the domain's nextScanAt equals
 * its due time and is not in the future: every write that moves nextScanAt adds the new entry first
 * (before the domain write), so a crash in between leaves a stale entry, which the reader drops,
 * never a missing one. Writers lower the cursor (`$min`) to their bucket, so an entry written into
 * a bucket the reader has passed is still read. Entries still missing (a crash inside admit's
 * upsert path, a direct write to `domains`, a writer stalled past the grace) are put back by
 * {@link DueIndex.repair}, the slow sweep over the domains.
 */
import { mapLimit } from "../../cluster/async.ts";
import { MongoBulkWriteError, MongoServerError, type AnyBulkWriteOperation, type Collection } from "mongodb";

export interface DueDoc {
  _id: string;
  /** Entry document: entries `"<dueMs>|<domain>"` (emptied by the reader once used). */
  e?: string[];
  /** Cursor: the oldest bucket that may hold entries. */
  from?: number;
}

export interface DueEntry {
  region: string;
  rank: string;
  domain: string;
  due: Date;
}

export interface DueIndexOptions {
  bucketMs: number;
  /** Ranks in dispatch order: `m` first, then priorities highest first. */
  priorities: readonly number[];
}

/** A due entry the reader found and validated against its domain document. */
export interface DueCandidate<D> {
  doc: D;
  rank: string;
  due: number;
  docId: string;
  entry: string;
}

/** What the reader needs of a domain document to validate an entry. */
export type DueCheck = { _id: string; region: string; nextScanAt: Date | null };

/** Point operations of one round, for the bench and the bounded-cost test. */
export interface DueRoundStats {
  /** `_id` reads of index documents (cursors, entry documents, and the missing one ending a bucket). */
  indexReads: number;
  /** `_id` reads of domain documents (validating entries). */
  domainReads: number;
  /** Entries dropped as stale (the domain moved on or is gone). */
  stale: number;
}

const READ_PARALLEL = 32;
/**
 * Entries due longer ago than this go into the bucket this long ago: a reader walking from a
 * cursor set by some ancient due time (a domain written with nextScanAt 1970) would otherwise read
 * every empty bucket since then.
 */
const MAX_OVERDUE_MS = 7 * 24 * 3600_000;

export class DueIndex {
  readonly #col: Collection<DueDoc>;
  readonly #bucketMs: number;
  readonly #priorities: number[];
  readonly ranks: string[];
  /** Cursors this instance has lowered: a write due from about now on needs no `$min` (see add). */
  readonly #cursorsSeen = new Set<string>();
  /** Writer: the next free n per bucket key, as last seen. */
  readonly #next = new Map<string, number>();
  /** Reader: per bucket key, the first n whose document may still hold entries (the ones before are emptied). */
  readonly #firstLive = new Map<string, number>();

  constructor(col: Collection<DueDoc>, opts: DueIndexOptions) {
    this.#col = col;
    this.#bucketMs = opts.bucketMs;
    this.#priorities = [...new Set(opts.priorities)].sort((a, b) => b - a);
    this.ranks = ["m", ...this.#priorities.map(String)];
  }

  /** The rank of a domain: manual rescans first, else its priority (an unlisted one: the next lower listed). */
  rankOf(doc: { manual?: boolean | undefined; priority?: number | undefined }, defaultPriority: number): string {
    if (doc.manual === true) return "m";
    const p = doc.priority ?? defaultPriority;
    return String(this.#priorities.find((q) => q <= p) ?? this.#priorities[this.#priorities.length - 1]!);
  }

  bucketOf(ms: number): number {
    return Math.floor(ms / this.#bucketMs);
  }

  /** The bucket an entry goes to, its bucket key `<region>|<rank>|<bucket>` and its rank's cursor. */
  #place(e: DueEntry): { key: string; cursorId: string; bucket: number } {
    const bucket = Math.max(this.bucketOf(e.due.getTime()), this.bucketOf(Date.now() - MAX_OVERDUE_MS));
    return { key: `${e.region}|${e.rank}|${bucket}`, cursorId: `${e.region}|${e.rank}|c`, bucket };
  }

  static entryOf(e: Pick<DueEntry, "domain" | "due">): string {
    return `${e.due.getTime()}|${e.domain}`;
  }

  async #exists(_id: string): Promise<boolean> {
    return (await this.#col.findOne({ _id }, { projection: { _id: 1 } })) !== null;
  }

  /** The first missing n of a bucket at or after `from` (documents 0..n-1 exist): galloping, then halving. */
  async #firstMissing(key: string, from: number): Promise<number> {
    if (!(await this.#exists(`${key}|${from}`))) return from;
    let lo = from; // exists
    let step = 1;
    while (await this.#exists(`${key}|${lo + step}`)) {
      lo += step;
      step *= 2;
    }
    let hi = lo + step; // missing
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await this.#exists(`${key}|${mid}`)) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  /** Inserts one entry document at the bucket's next free n. */
  async #append(key: string, bucket: number, e: string[]): Promise<void> {
    // A remembered n is trusted only where the reader cannot have deleted the bucket meanwhile.
    let n = bucket >= this.bucketOf(Date.now() - this.#bucketMs) ? (this.#next.get(key) ?? 0) : 0;
    if (n > 0 && !(await this.#exists(`${key}|${n - 1}`))) n = 0;
    for (;;) {
      try {
        await this.#col.insertOne({ _id: `${key}|${n}`, e });
        if (this.#next.size > 10_000) this.#next.clear();
        this.#next.set(key, n + 1);
        return;
      } catch (err) {
        if (!(err instanceof MongoServerError) || err.code !== 11000) throw err;
        n = await this.#firstMissing(key, n + 1);
      }
    }
  }

  /**
   * Adds entries: one inserted document per bucket touched, and a `$min` on each rank's cursor.
   * A reader moves a cursor only past buckets a grace of one bucket old, so an entry due from about
   * now on cannot land behind an existing cursor: its `$min` is skipped once this instance has
   * written that cursor (one write less per admission). Adding an entry twice is harmless.
   */
  async add(entries: readonly DueEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const buckets = new Map<string, { bucket: number; e: string[] }>();
    const cursors = new Map<string, number>();
    const recent = Date.now() - this.#bucketMs / 2;
    for (const e of entries) {
      const { key, cursorId, bucket } = this.#place(e);
      const group = buckets.get(key) ?? { bucket, e: [] };
      group.e.push(DueIndex.entryOf(e));
      buckets.set(key, group);
      if (this.#cursorsSeen.has(cursorId) && e.due.getTime() >= recent) continue;
      cursors.set(cursorId, Math.min(bucket, cursors.get(cursorId) ?? Infinity));
    }
    await mapLimit([...buckets], 8, ([key, { bucket, e }]) => this.#append(key, bucket, e));
    if (cursors.size === 0) return;
    await this.#upsert(
      [...cursors].map(([_id, from]) => ({ updateOne: { filter: { _id }, update: { $min: { from } }, upsert: true } })),
    );
    for (const id of cursors.keys()) this.#cursorsSeen.add(id);
  }

  /**
   * Runs upserts; those that lost an insert race on the same `_id` (FerretDB reports a duplicate key
   * where MongoDB retries by itself) run again, and then find the document.
   */
  async #upsert(ops: AnyBulkWriteOperation<DueDoc>[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#col.bulkWrite(ops, { ordered: false });
        return;
      } catch (err) {
        if (!(err instanceof MongoBulkWriteError) || attempt >= 5) throw err;
        const errors: Array<{ code: number; index: number }> = [err.writeErrors].flat();
        if (errors.length === 0 || errors.some((e) => e.code !== 11000)) throw err;
        ops = errors.map((e) => ops[e.index]!);
      }
    }
  }

  /**
   * Reads a region's due entries in dispatch order (rank, then bucket, then due time) and validates
   * each against its domain document (`load`, a point read), until `limit` valid ones are found or
   * now's bucket is passed. An entry that does not match its domain is stale and dropped, unless it
   * is due within the last `graceMs` (its domain write may still be on its way). Returns the valid
   * candidates and a `commit` that takes the entries the caller handled out of the index (with the
   * stale ones), deletes fully used buckets older than `graceMs`, and moves the cursors past them.
   */
  async round<D extends DueCheck>(
    region: string,
    limit: number,
    now: Date,
    load: (domain: string) => Promise<D | null>,
    graceMs: number,
  ): Promise<{
    candidates: DueCandidate<D>[];
    stats: DueRoundStats;
    commit(handled: Iterable<DueCandidate<D>>): Promise<void>;
  }> {
    const stats: DueRoundStats = { indexReads: 0, domainReads: 0, stale: 0 };
    const nowMs = now.getTime();
    const nowBucket = this.bucketOf(nowMs);
    const candidates: DueCandidate<D>[] = [];
    const picked = new Set<string>();
    /** Per entry document read: its entries, and those taken out this round. */
    const docs = new Map<string, { size: number; pulled: Set<string> }>();
    const drop = (docId: string, entry: string) => docs.get(docId)!.pulled.add(entry);
    type Walked = { b: number; key: string; first: number; ids: string[]; end: number | null; whole: boolean };
    const walked: Array<{ cursorId: string; from: number; buckets: Walked[] }> = [];
    for (const rank of this.ranks) {
      if (candidates.length >= limit) break;
      const cursorId = `${region}|${rank}|c`;
      stats.indexReads++;
      const cursor = await this.#col.findOne({ _id: cursorId });
      if (typeof cursor?.from !== "number") continue;
      const walk = { cursorId, from: cursor.from, buckets: [] as Walked[] };
      walked.push(walk);
      for (let b = cursor.from; b <= nowBucket && candidates.length < limit; b++) {
        const key = `${region}|${rank}|${b}`;
        const first = this.#firstLive.get(key) ?? 0;
        const w: Walked = { b, key, first, ids: [], end: null, whole: true };
        walk.buckets.push(w);
        let n = first;
        // Documents are read a few at a time (one first: most buckets are empty), entries checked as they come.
        while (w.end === null && candidates.length < limit) {
          const ids = Array.from({ length: w.ids.length === 0 ? 1 : 8 }, (_, i) => `${key}|${n + i}`);
          stats.indexReads += ids.length;
          const read = await mapLimit(ids, READ_PARALLEL, (_id) => this.#col.findOne({ _id }));
          const entries: Array<{ docId: string; entry: string; due: number; domain: string }> = [];
          for (const [i, d] of read.entries()) {
            if (!d) {
              w.end = n + i;
              break;
            }
            w.ids.push(d._id);
            docs.set(d._id, { size: d.e?.length ?? 0, pulled: new Set() });
            for (const entry of d.e ?? []) {
              const bar = entry.indexOf("|");
              entries.push({ docId: d._id, entry, due: Number(entry.slice(0, bar)), domain: entry.slice(bar + 1) });
            }
          }
          n += ids.length;
          entries.sort((x, y) => x.due - y.due || (x.domain < y.domain ? -1 : 1));
          const dueNow = entries.filter((x) => x.due <= nowMs);
          if (dueNow.length < entries.length) w.whole = false;
          let checked = 0;
          // Validates in chunks sized by what is still needed, so a huge bucket is not read whole.
          while (checked < dueNow.length && candidates.length < limit) {
            const chunk = dueNow.slice(checked, checked + Math.max(16, Math.ceil((limit - candidates.length) * 1.25)));
            stats.domainReads += chunk.length;
            const loaded = await mapLimit(chunk, READ_PARALLEL, (x) => load(x.domain));
            for (const [i, x] of chunk.entries()) {
              // Never more than `limit`: the rest stay in the index for the next round.
              if (candidates.length >= limit) break;
              checked++;
              const doc = loaded[i];
              const valid =
                doc !== null &&
                doc !== undefined &&
                doc.region === region &&
                doc.nextScanAt?.getTime() === x.due &&
                !picked.has(x.domain);
              if (!valid) {
                // A recent entry may be ahead of its domain write (the entry goes first): kept, checked again.
                if (!picked.has(x.domain) && x.due > nowMs - graceMs) {
                  w.whole = false;
                  continue;
                }
                stats.stale++;
                drop(x.docId, x.entry);
                continue;
              }
              picked.add(x.domain);
              candidates.push({ doc, rank, due: x.due, docId: x.docId, entry: x.entry });
            }
          }
          if (checked < dueNow.length) w.whole = false;
        }
        if (w.end === null) w.whole = false;
      }
    }
    const lastUsable = this.bucketOf(nowMs - graceMs) - 1;
    const commit = async (handled: Iterable<DueCandidate<D>>) => {
      for (const c of handled) drop(c.docId, c.entry);
      const ops: AnyBulkWriteOperation<DueDoc>[] = [];
      for (const [_id, { size, pulled }] of docs) {
        if (pulled.size === 0) continue;
        const update = pulled.size === size ? { $set: { e: [] } } : { $pullAll: { e: [...pulled] } };
        ops.push({ updateOne: { filter: { _id }, update } });
      }
      if (ops.length > 0) await this.#col.bulkWrite(ops, { ordered: false });
      for (const walk of walked) {
        let from = walk.from;
        let advancing = true;
        const deletes: string[] = [];
        for (const w of walk.buckets) {
          const emptied = (id: string) => docs.get(id)!.pulled.size === docs.get(id)!.size;
          // Emptied documents at the front are not read again by this reader.
          const live = w.ids.findIndex((id) => !emptied(id));
          const firstLive = live < 0 ? (w.end ?? w.first + w.ids.length) : w.first + live;
          if (firstLive > 0) this.#firstLive.set(w.key, firstLive);
          const used = w.whole && w.end !== null && live < 0;
          if (!advancing || w.b > lastUsable || !used) {
            advancing = false;
            continue;
          }
          deletes.push(...Array.from({ length: w.end! }, (_, i) => `${w.key}|${i}`));
          this.#firstLive.delete(w.key);
          from = w.b + 1;
        }
        if (this.#firstLive.size > 10_000) this.#firstLive.clear();
        if (from === walk.from) continue;
        if (deletes.length > 0) {
          await this.#col.bulkWrite(
            deletes.map((_id) => ({ deleteOne: { filter: { _id } } })),
            { ordered: false },
          );
        }
        // Only `_id` in the filter (FerretDB would scan otherwise); a writer's `$min` into a passed
        // bucket racing with this is put right by the sweep.
        await this.#col.updateOne({ _id: walk.cursorId }, { $max: { from } });
      }
    };
    return { candidates, stats, commit };
  }

  /**
   * The sweep: every domain of the region with a nextScanAt must have its entry in a bucket at or
   * after its rank's cursor; missing ones are added (which also lowers the cursor). Reads the
   * domains once (streamed) and each bucket's documents once; returns how many entries were added.
   */
  async repair(
    region: string,
    domains: AsyncIterable<{ _id: string; nextScanAt: Date | null; manual?: boolean; priority?: number }>,
    defaultPriority: number,
  ): Promise<number> {
    const cursors = new Map<string, number | undefined>();
    for (const rank of this.ranks) {
      const c = await this.#col.findOne({ _id: `${region}|${rank}|c` });
      cursors.set(rank, c?.from);
    }
    const cache = new Map<string, Set<string>>();
    const bucketEntries = async (key: string) => {
      const out = new Set<string>();
      for (let n = 0; ; n++) {
        const d = await this.#col.findOne({ _id: `${key}|${n}` });
        if (!d) return out;
        for (const e of d.e ?? []) out.add(e);
      }
    };
    let batch: DueEntry[] = [];
    let added = 0;
    const flush = async () => {
      const keys = [...new Set(batch.map((e) => this.#place(e).key).filter((k) => !cache.has(k)))];
      if (cache.size + keys.length > 5_000) cache.clear();
      const found = await mapLimit(keys, READ_PARALLEL, bucketEntries);
      keys.forEach((k, i) => cache.set(k, found[i]!));
      const missing = batch.filter((e) => {
        const { key, bucket } = this.#place(e);
        const from = cursors.get(e.rank);
        return !(from !== undefined && bucket >= from && (cache.get(key)?.has(DueIndex.entryOf(e)) ?? false));
      });
      await this.add(missing);
      for (const e of missing) {
        const { key, bucket } = this.#place(e);
        cache.get(key)?.add(DueIndex.entryOf(e));
        cursors.set(e.rank, Math.min(bucket, cursors.get(e.rank) ?? Infinity));
      }
      added += missing.length;
      batch = [];
    };
    for await (const d of domains) {
      if (!d.nextScanAt) continue;
      batch.push({ region, rank: this.rankOf(d, defaultPriority), domain: d._id, due: d.nextScanAt });
      if (batch.length >= 1000) await flush();
    }
    await flush();
    return added;
  }
}
