/**
 * One read of the time wheel (due-wheel.ts): walks each rank's buckets from its cursor to now's
 * bucket, reads each bucket's pages a few at a time and validates their due entries against the
 * domains, stopping once `limit` valid ones are found. It remembers what it read, so the wheel can
 * take the used entries out afterwards and move the cursors past buckets it emptied.
 */
import type { DueWheelDoc } from "./documents.ts";
import type { DueDomain, DueEntry, DueItem, DueRoundStats } from "./due-queue.ts";

/** Every `_id` of the wheel, built here only. */
export const wheelIds = {
  bucket: (region: string, rank: string, bucket: number) => `${region}|${rank}|${bucket}`,
  page: (bucketKey: string, n: number) => `${bucketKey}|${n}`,
  cursor: (region: string, rank: string) => `${region}|${rank}|c`,
};

/** An entry's stored form, and back. */
export const wheelEntry = {
  of: (e: Pick<DueEntry, "domain" | "due">) => `${e.due.getTime()}|${e.domain}`,
  parse(entry: string): { due: number; domain: string } {
    const bar = entry.indexOf("|");
    return { due: Number(entry.slice(0, bar)), domain: entry.slice(bar + 1) };
  },
};

/** What a round needs of the wheel. */
export interface WheelReader {
  readonly ranks: readonly string[];
  readonly firstLive: ReadonlyMap<string, number>;
  bucketOf(ms: number): number;
  readMany(ids: readonly string[]): Promise<Array<DueWheelDoc | null>>;
  loadDomains(domains: readonly string[]): Promise<Array<DueDomain | null>>;
}

/** A bucket as a round walked it. */
interface WalkedBucket {
  bucket: number;
  key: string;
  /** The first n read (the ones before were emptied in earlier rounds). */
  first: number;
  /** Ids of the pages read, in order. */
  pageIds: string[];
  /** The first missing n, once reached. */
  end: number | null;
  /** Whether every entry of the pages read was due and looked at. */
  whole: boolean;
}

interface WalkedRank {
  cursorId: string;
  from: number;
  buckets: WalkedBucket[];
}

interface ReadEntry {
  pageId: string;
  entry: string;
  due: number;
  domain: string;
}

export interface WheelRound {
  readonly now: Date;
  readonly items: DueItem[];
  readonly stats: DueRoundStats;
  /** Per page read: its entry count and those taken out this round. */
  readonly pages: Map<string, { size: number; pulled: Set<string> }>;
  readonly walks: WalkedRank[];
  /** Marks an item's entry as taken out. */
  drop(item: DueItem): void;
  /** The buckets of a walk at the front that are fully used and past `lastUsable`; updates `firstLive`. */
  usedBuckets(
    walk: WalkedRank,
    lastUsable: number,
    firstLive: Map<string, number>,
  ): { oldestBucket: number; deletes: string[] };
}

interface Walk {
  wheel: WheelReader;
  region: string;
  limit: number;
  nowMs: number;
  graceMs: number;
  round: WheelRound;
  /** The stored entry of each item found. */
  refs: Map<DueItem, { pageId: string; entry: string }>;
  picked: Set<string>;
}

export async function walkDue(
  wheel: WheelReader,
  opts: { region: string; limit: number; now: Date; graceMs: number },
): Promise<WheelRound> {
  const refs = new Map<DueItem, { pageId: string; entry: string }>();
  const pages = new Map<string, { size: number; pulled: Set<string> }>();
  const round: WheelRound = {
    now: opts.now,
    items: [],
    stats: { indexReads: 0, domainReads: 0, stale: 0 },
    pages,
    walks: [],
    drop(item) {
      const ref = refs.get(item);
      if (ref) pages.get(ref.pageId)?.pulled.add(ref.entry);
    },
    usedBuckets: (walked, lastUsable, firstLive) => usedBuckets(pages, walked, lastUsable, firstLive),
  };
  const walk: Walk = { wheel, ...opts, nowMs: opts.now.getTime(), round, refs, picked: new Set() };
  for (const rank of wheel.ranks) {
    if (round.items.length >= opts.limit) break;
    await walkRank(walk, rank);
  }
  return round;
}

async function walkRank(w: Walk, rank: string): Promise<void> {
  const cursorId = wheelIds.cursor(w.region, rank);
  w.round.stats.indexReads++;
  const [cursor] = await w.wheel.readMany([cursorId]);
  if (typeof cursor?.oldestBucket !== "number") return;
  const walked: WalkedRank = { cursorId, from: cursor.oldestBucket, buckets: [] };
  w.round.walks.push(walked);
  const nowBucket = w.wheel.bucketOf(w.nowMs);
  for (let b = walked.from; b <= nowBucket && w.round.items.length < w.limit; b++) {
    const key = wheelIds.bucket(w.region, rank, b);
    const bucket: WalkedBucket = {
      bucket: b,
      key,
      first: w.wheel.firstLive.get(key) ?? 0,
      pageIds: [],
      end: null,
      whole: true,
    };
    walked.buckets.push(bucket);
    await walkBucket(w, rank, bucket);
  }
}

/** Reads a bucket's pages, one first (most buckets are empty) then eight at a time, checking entries as they come. */
async function walkBucket(w: Walk, rank: string, bucket: WalkedBucket): Promise<void> {
  let n = bucket.first;
  while (bucket.end === null && w.round.items.length < w.limit) {
    const ids = Array.from({ length: bucket.pageIds.length === 0 ? 1 : 8 }, (_, i) => wheelIds.page(bucket.key, n + i));
    w.round.stats.indexReads += ids.length;
    const entries = readPages(w, bucket, n, await w.wheel.readMany(ids));
    n += ids.length;
    entries.sort((x, y) => x.due - y.due || (x.domain < y.domain ? -1 : 1));
    const dueNow = entries.filter((x) => x.due <= w.nowMs);
    if (dueNow.length < entries.length) bucket.whole = false;
    if ((await validate(w, rank, bucket, dueNow)) < dueNow.length) bucket.whole = false;
  }
  if (bucket.end === null) bucket.whole = false;
}

/** Records the pages read (up to the first missing one) and returns their entries. */
function readPages(w: Walk, bucket: WalkedBucket, n: number, read: Array<DueWheelDoc | null>): ReadEntry[] {
  const entries: ReadEntry[] = [];
  for (const [i, page] of read.entries()) {
    if (!page) {
      bucket.end = n + i;
      break;
    }
    bucket.pageIds.push(page._id);
    w.round.pages.set(page._id, { size: page.dueEntries?.length ?? 0, pulled: new Set() });
    for (const entry of page.dueEntries ?? []) entries.push({ pageId: page._id, entry, ...wheelEntry.parse(entry) });
  }
  return entries;
}

/**
 * Validates due entries in chunks sized by what is still needed (a huge bucket is not read whole):
 * an entry counts while its domain's nextScanAt is its due time. Returns how many were looked at.
 */
async function validate(w: Walk, rank: string, bucket: WalkedBucket, dueNow: ReadEntry[]): Promise<number> {
  const { round, picked } = w;
  let checked = 0;
  while (checked < dueNow.length && round.items.length < w.limit) {
    const chunk = dueNow.slice(checked, checked + Math.max(16, Math.ceil((w.limit - round.items.length) * 1.25)));
    round.stats.domainReads += chunk.length;
    const loaded = await w.wheel.loadDomains(chunk.map((x) => x.domain));
    for (const [i, x] of chunk.entries()) {
      // Never more than `limit`: the rest stay in the wheel for the next round.
      if (round.items.length >= w.limit) break;
      checked++;
      const doc = loaded[i];
      if (doc && doc.region === w.region && doc.nextScanAt?.getTime() === x.due && !picked.has(x.domain)) {
        picked.add(x.domain);
        const item = { doc, rank, due: x.due };
        w.refs.set(item, { pageId: x.pageId, entry: x.entry });
        round.items.push(item);
        continue;
      }
      // A recent entry may be ahead of its domain write (the entry goes first): kept, checked again.
      if (!picked.has(x.domain) && x.due > w.nowMs - w.graceMs) {
        bucket.whole = false;
        continue;
      }
      round.stats.stale++;
      round.pages.get(x.pageId)!.pulled.add(x.entry);
    }
  }
  return checked;
}

function usedBuckets(
  pages: WheelRound["pages"],
  walk: WalkedRank,
  lastUsable: number,
  firstLive: Map<string, number>,
): { oldestBucket: number; deletes: string[] } {
  const emptied = (id: string) => pages.get(id)!.pulled.size === pages.get(id)!.size;
  let oldestBucket = walk.from;
  let advancing = true;
  const deletes: string[] = [];
  for (const b of walk.buckets) {
    // Emptied pages at the front are not read again by this reader.
    const live = b.pageIds.findIndex((id) => !emptied(id));
    const first = live < 0 ? (b.end ?? b.first + b.pageIds.length) : b.first + live;
    if (first > 0) firstLive.set(b.key, first);
    const used = b.whole && b.end !== null && live < 0;
    if (!advancing || b.bucket > lastUsable || !used) {
      advancing = false;
      continue;
    }
    deletes.push(...Array.from({ length: b.end! }, (_, i) => wheelIds.page(b.key, i)));
    firstLive.delete(b.key);
    oldestBucket = b.bucket + 1;
  }
  return { oldestBucket, deletes };
}
