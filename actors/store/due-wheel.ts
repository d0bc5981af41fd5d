/**
 * The due queue as a time wheel read by `_id` point reads only, so finding a round's due domains
 * costs about the batch, not the frontier, on a server that serves nothing but `_id` equality from
 * an index (server-adapter.ts picks it there; the `{region, nextScanAt <= now}` query sorted by
 * priority would read every domain).
 *
 * Documents in `frontier_due` (a wheel per region and rank), ids built by {@link wheelIds}:
 *  - entry pages `<region>|<rank>|<bucket>|<n>`: `dueEntries`, strings `"<dueMs>|<domain>"` due in
 *    that bucket; n = 0, 1, 2, ... without gaps, one page per write (at most one batch of entries);
 *  - cursors `<region>|<rank>|c`: `oldestBucket`, the oldest bucket that may hold entries.
 * bucket = floor(due / bucketMs). A reader walks each rank's buckets from its cursor up to now's
 * bucket, each bucket's pages from n = 0 until one is missing.
 *
 * Writers only insert (a new n; a duplicate key means another writer took it: the next n): such a
 * server updates a document by read-modify-write, so two writers updating one document lose one
 * write, while `_id` uniqueness is atomic. Only the reader (the region's leader) empties pages, and
 * deletes a bucket's pages once all are used and the bucket is older than a grace of one bucket.
 *
 * Writers lower the cursor (`$min`) to their bucket, so an entry written into a bucket the reader
 * has passed is still read. Entries still missing (a crash inside admit's upsert path, a direct
 * write to `domains`, a writer stalled past the grace) are put back by {@link DueWheel.repair}.
 */
import { MongoBulkWriteError, MongoServerError, type AnyBulkWriteOperation, type Collection } from "mongodb";
import { mapLimit } from "../../cluster/async.ts";
import type { DueWheelDoc, FrontierDoc } from "./documents.ts";
import {
  DUE_PROJECTION,
  DueOrder,
  type DueBatch,
  type DueDomain,
  type DueEntry,
  type DueItem,
  type DueQueue,
  type DueQueueOptions,
  type DueRoundStats,
} from "./due-queue.ts";
import { walkDue, wheelEntry, wheelIds, type WheelRound } from "./due-wheel-round.ts";

export { wheelEntry, wheelIds };

const READ_PARALLEL = 32;
/**
 * Entries due longer ago than this go into the bucket this long ago: a reader walking from a
 * cursor set by some ancient due time (a domain written with nextScanAt 1970) would otherwise read
 * every empty bucket since then.
 */
const MAX_OVERDUE_MS = 7 * 24 * 3600_000;

export class DueWheel implements DueQueue {
  readonly #col: Collection<DueWheelDoc>;
  readonly #domains: Collection<FrontierDoc>;
  readonly #bucketMs: number;
  readonly #order: DueOrder;
  /** Cursors this instance has lowered: a write due from about now on needs no `$min` (see push). */
  readonly #cursorsSeen = new Set<string>();
  /** Writer: the next free n per bucket key, as last seen. */
  readonly #next = new Map<string, number>();
  /** Reader: per bucket key, the first n whose page may still hold entries (the ones before are emptied). */
  readonly firstLive = new Map<string, number>();

  constructor(col: Collection<DueWheelDoc>, domains: Collection<FrontierDoc>, opts: DueQueueOptions) {
    this.#col = col;
    this.#domains = domains;
    this.#bucketMs = opts.bucketMs;
    this.#order = new DueOrder(opts);
  }

  get ranks(): readonly string[] {
    return this.#order.ranks;
  }

  rankOf(doc: { manual?: boolean | undefined; priority?: number | undefined }): string {
    return this.#order.rankOf(doc);
  }

  bucketOf(ms: number): number {
    return Math.floor(ms / this.#bucketMs);
  }

  /** The bucket an entry goes to, its bucket key and its rank's cursor. */
  #place(e: DueEntry): { key: string; cursorId: string; bucket: number } {
    const bucket = Math.max(this.bucketOf(e.due.getTime()), this.bucketOf(Date.now() - MAX_OVERDUE_MS));
    return { key: wheelIds.bucket(e.region, e.rank, bucket), cursorId: wheelIds.cursor(e.region, e.rank), bucket };
  }

  async #exists(_id: string): Promise<boolean> {
    return (await this.#col.findOne({ _id }, { projection: { _id: 1 } })) !== null;
  }

  /** The first missing n of a bucket at or after `from` (pages 0..n-1 exist): galloping, then halving. */
  async #firstMissing(key: string, from: number): Promise<number> {
    if (!(await this.#exists(wheelIds.page(key, from)))) return from;
    let lo = from; // exists
    let step = 1;
    while (await this.#exists(wheelIds.page(key, lo + step))) {
      lo += step;
      step *= 2;
    }
    let hi = lo + step; // missing
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (await this.#exists(wheelIds.page(key, mid))) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  /** Inserts one entry page at the bucket's next free n. */
  async #append(key: string, bucket: number, dueEntries: string[]): Promise<void> {
    // A remembered n is trusted only where the reader cannot have deleted the bucket meanwhile.
    let n = bucket >= this.bucketOf(Date.now() - this.#bucketMs) ? (this.#next.get(key) ?? 0) : 0;
    if (n > 0 && !(await this.#exists(wheelIds.page(key, n - 1)))) n = 0;
    for (;;) {
      try {
        await this.#col.insertOne({ _id: wheelIds.page(key, n), dueEntries });
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
   * Adds entries: one inserted page per bucket touched, and a `$min` on each rank's cursor. A
   * reader moves a cursor only past buckets a grace of one bucket old, so an entry due from about
   * now on cannot land behind an existing cursor: its `$min` is skipped once this instance has
   * written that cursor (one write less per admission). Adding an entry twice is harmless.
   */
  async push(entries: readonly DueEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const buckets = new Map<string, { bucket: number; dueEntries: string[] }>();
    const cursors = new Map<string, number>();
    const recent = Date.now() - this.#bucketMs / 2;
    for (const e of entries) {
      const { key, cursorId, bucket } = this.#place(e);
      const group = buckets.get(key) ?? { bucket, dueEntries: [] };
      group.dueEntries.push(wheelEntry.of(e));
      buckets.set(key, group);
      if (this.#cursorsSeen.has(cursorId) && e.due.getTime() >= recent) continue;
      cursors.set(cursorId, Math.min(bucket, cursors.get(cursorId) ?? Infinity));
    }
    await mapLimit([...buckets], 8, ([key, g]) => this.#append(key, g.bucket, g.dueEntries));
    if (cursors.size === 0) return;
    await this.#upsert(
      [...cursors].map(([_id, oldestBucket]) => ({
        updateOne: { filter: { _id }, update: { $min: { oldestBucket } }, upsert: true },
      })),
    );
    for (const id of cursors.keys()) this.#cursorsSeen.add(id);
  }

  /**
   * Runs upserts; those that lost an insert race on the same `_id` (such a server reports a
   * duplicate key where MongoDB retries by itself) run again, and then find the document.
   */
  async #upsert(ops: AnyBulkWriteOperation<DueWheelDoc>[]): Promise<void> {
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

  /** Point reads of wheel documents (pages, cursors), a few at once. */
  readMany(ids: readonly string[]): Promise<Array<DueWheelDoc | null>> {
    return mapLimit(ids, READ_PARALLEL, (_id) => this.#col.findOne({ _id }));
  }

  /** Point reads of the domains entries name, for validation. */
  loadDomains(domains: readonly string[]): Promise<Array<DueDomain | null>> {
    return mapLimit(domains, READ_PARALLEL, (_id) =>
      this.#domains.findOne<DueDomain>({ _id }, { projection: DUE_PROJECTION }),
    );
  }

  /**
   * Reads a region's entries in dispatch order (rank, then bucket, then due time), validating each
   * against its domain, until `limit` valid ones are found or now's bucket is passed; see
   * due-wheel-round.ts. An entry that does not match its domain is stale and dropped, unless it is
   * due within the last bucket (its domain write may still be on its way).
   */
  async due(region: string, limit: number, now: Date): Promise<DueBatch> {
    const round = await walkDue(this, { region, limit, now, graceMs: this.#bucketMs });
    return {
      items: [...round.items].sort(this.#order.compare),
      stats: round.stats,
      remove: (handled) => this.#settle(round, handled),
    };
  }

  /**
   * Takes handled and stale entries out of their pages, deletes fully used buckets older than the
   * grace and moves the cursors past them.
   */
  async #settle(round: WheelRound, handled: Iterable<DueItem>): Promise<void> {
    for (const item of handled) round.drop(item);
    const ops: AnyBulkWriteOperation<DueWheelDoc>[] = [];
    for (const [_id, { size, pulled }] of round.pages) {
      if (pulled.size === 0) continue;
      const update = pulled.size === size ? { $set: { dueEntries: [] } } : { $pullAll: { dueEntries: [...pulled] } };
      ops.push({ updateOne: { filter: { _id }, update } });
    }
    if (ops.length > 0) await this.#col.bulkWrite(ops, { ordered: false });
    const lastUsable = this.bucketOf(round.now.getTime() - this.#bucketMs) - 1;
    for (const walk of round.walks) {
      const { oldestBucket, deletes } = round.usedBuckets(walk, lastUsable, this.firstLive);
      if (this.firstLive.size > 10_000) this.firstLive.clear();
      if (oldestBucket === walk.from) continue;
      if (deletes.length > 0) {
        await this.#col.bulkWrite(
          deletes.map((_id) => ({ deleteOne: { filter: { _id } } })),
          { ordered: false },
        );
      }
      // Only `_id` in the filter (anything more is a scan there); a writer's `$min` into a passed
      // bucket racing with this is put right by the sweep.
      await this.#col.updateOne({ _id: walk.cursorId }, { $max: { oldestBucket } });
    }
  }

  /**
   * The sweep: every domain of the region with a nextScanAt must have its entry in a bucket at or
   * after its rank's cursor; missing ones are added (which also lowers the cursor). Reads the
   * domains once (streamed) and each bucket's pages once; returns how many entries were added.
   */
  async repair(region: string): Promise<number> {
    const cursors = new Map<string, number | undefined>();
    for (const rank of this.ranks) {
      cursors.set(rank, (await this.#col.findOne({ _id: wheelIds.cursor(region, rank) }))?.oldestBucket);
    }
    const known = new Map<string, Set<string>>();
    let batch: DueEntry[] = [];
    let added = 0;
    const flush = async () => {
      await this.#loadBuckets(known, batch);
      const missing = batch.filter((e) => {
        const { key, bucket } = this.#place(e);
        const from = cursors.get(e.rank);
        return !(from !== undefined && bucket >= from && (known.get(key)?.has(wheelEntry.of(e)) ?? false));
      });
      await this.push(missing);
      for (const e of missing) {
        const { key, bucket } = this.#place(e);
        known.get(key)?.add(wheelEntry.of(e));
        cursors.set(e.rank, Math.min(bucket, cursors.get(e.rank) ?? Infinity));
      }
      added += missing.length;
      batch = [];
    };
    const projection = { _id: 1, nextScanAt: 1, manual: 1, priority: 1 };
    for await (const d of this.#domains.find({ region }, { projection }).batchSize(1000)) {
      if (!d.nextScanAt) continue;
      batch.push({ region, rank: this.rankOf(d), domain: d._id, due: d.nextScanAt });
      if (batch.length >= 1000) await flush();
    }
    await flush();
    return added;
  }

  /** Reads the entries of the buckets `batch` falls in that `known` lacks (bounded memory). */
  async #loadBuckets(known: Map<string, Set<string>>, batch: readonly DueEntry[]): Promise<void> {
    const keys = [...new Set(batch.map((e) => this.#place(e).key).filter((k) => !known.has(k)))];
    if (known.size + keys.length > 5_000) known.clear();
    const found = await mapLimit(keys, READ_PARALLEL, async (key) => {
      const out = new Set<string>();
      for (let n = 0; ; n++) {
        const page = await this.#col.findOne({ _id: wheelIds.page(key, n) });
        if (!page) return out;
        for (const e of page.dueEntries ?? []) out.add(e);
      }
    });
    keys.forEach((k, i) => known.set(k, found[i]!));
  }
}

export type { DueRoundStats };
