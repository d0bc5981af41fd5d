/**
 * Each domain's scans in finish order, for its scan history (GET /v1/domains/{domain}/scans),
 * read and written by `_id` only: FerretDB v1 answers a query of `scans` by domain by reading every
 * stored scan. Pages of PAGE_SIZE entries are documents `<domain>|<n>` of `scan_index`; page 0
 * also says which page is the last (`last`) and whether the index holds every scan of the domain
 * (`complete`: false for a domain that had scans before the index existed; its history is then
 * read from `scans` as before).
 */
import type { Collection, Filter } from "mongodb";
import { mapLimit } from "../../cluster/async.ts";
import type { Collections } from "./database.ts";
import type { ScanDoc } from "./documents.ts";

export const PAGE_SIZE = 100;

export interface ScanIndexDoc {
  _id: string;
  /** Scans of this page: job id and finish time, oldest first. */
  e: Array<{ j: string; f: Date }>;
  /** Page 0 only: the number of the last page. */
  last?: number;
  /** Page 0 only: whether every scan of the domain is listed. */
  complete?: boolean;
}

export type IndexedScan = { jobId: string; finishedAt: Date };

const pageId = (domain: string, n: number) => `${domain}|${n}`;
const newerFirst = (a: IndexedScan, b: IndexedScan) =>
  b.finishedAt.getTime() - a.finishedAt.getTime() || (b.jobId < a.jobId ? -1 : b.jobId > a.jobId ? 1 : 0);

/**
 * Adds a stored scan to its domain's index; a job already listed is not added again (redelivery).
 * `firstScan`: the domain had no scan before this one, so the index is complete from the start.
 */
export async function indexScan(
  col: Collection<ScanIndexDoc>,
  domain: string,
  scan: IndexedScan,
  firstScan: boolean,
): Promise<void> {
  const head = await col.findOne({ _id: pageId(domain, 0) });
  const entry = { j: scan.jobId, f: scan.finishedAt };
  if (!head) {
    await col.updateOne(
      { _id: pageId(domain, 0) },
      { $setOnInsert: { e: [entry], last: 0, complete: firstScan } },
      { upsert: true },
    );
    return;
  }
  const last = head.last ?? 0;
  const page = last === 0 ? head : await col.findOne({ _id: pageId(domain, last) });
  // A redelivered result's job sits on the last page, or on the one before when a page began since.
  const rolledOver = last > 0 && (page?.e.length ?? 0) < PAGE_SIZE / 2;
  const before = rolledOver ? await col.findOne({ _id: pageId(domain, last - 1) }) : null;
  if ([page, before].some((p) => p?.e.some((x) => x.j === scan.jobId))) return;
  if (page && page.e.length < PAGE_SIZE) {
    await col.updateOne({ _id: page._id }, { $push: { e: entry } });
    return;
  }
  await col.updateOne({ _id: pageId(domain, last + 1) }, { $setOnInsert: { e: [entry] } }, { upsert: true });
  await col.updateOne({ _id: pageId(domain, 0) }, { $set: { last: last + 1 } });
}

/**
 * The domain's scans newest first, after `after` (exclusive) when given, up to `limit`; null when
 * the index does not hold every scan of the domain (the caller then asks `scans`).
 */
export async function indexedScans(
  col: Collection<ScanIndexDoc>,
  domain: string,
  limit: number,
  after: { at: Date; id: string } | null,
): Promise<IndexedScan[] | null> {
  const head = await col.findOne({ _id: pageId(domain, 0) });
  if (!head?.complete) return null;
  const isAfter = (s: IndexedScan) =>
    !after || s.finishedAt < after.at || (s.finishedAt.getTime() === after.at.getTime() && s.jobId < after.id);
  const found: IndexedScan[] = [];
  // Pages hold scans in arrival order. For one domain (one lease at a time) that is finish order,
  // except for a late result of an expired lease, which can arrive after scans that finished
  // before it: the walk reads one page (100 scans) past the point where it has enough.
  let spare = 1;
  for (let n = head.last ?? 0; n >= 0; n--) {
    const page = n === 0 ? head : await col.findOne({ _id: pageId(domain, n) });
    for (const x of page?.e ?? []) {
      const s = { jobId: x.j, finishedAt: x.f };
      if (isAfter(s)) found.push(s);
    }
    if (found.length >= limit && spare-- <= 0) break;
  }
  return found.sort(newerFirst).slice(0, limit);
}

const HISTORY_PROJECTION = { pages: 0, verdicts: 0 } as const;

/**
 * A domain's scans newest first after the cursor: by `_id` through the scan index, or, for a
 * domain scanned before the index existed, by a query on `scans` (on FerretDB a read of every scan).
 */
export async function scanHistory(
  c: Pick<Collections, "scans" | "scanIndex">,
  domain: string,
  limit: number,
  after: { at: Date; id: string } | null,
): Promise<ScanDoc[]> {
  const { scans, scanIndex } = c;
  const listed = await indexedScans(scanIndex, domain, limit, after);
  if (listed) {
    const found = await mapLimit(listed, 8, (s) => scans.findOne({ _id: s.jobId }, { projection: HISTORY_PROJECTION }));
    return found.filter((s): s is ScanDoc => s !== null);
  }
  const filter: Filter<ScanDoc> = after
    ? { domain, $or: [{ finishedAt: { $lt: after.at } }, { finishedAt: after.at, _id: { $lt: after.id } }] }
    : { domain };
  return scans
    .find(filter, { projection: HISTORY_PROJECTION })
    .sort({ finishedAt: -1, _id: -1 })
    .limit(limit)
    .toArray();
}
