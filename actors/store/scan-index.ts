/**
 * Each domain's scans in finish order, for its scan history (GET /v1/domains/{domain}/scans),
 * read and written by `_id` only: the default server answers a query of `scans` by domain by reading every
 * stored scan. Pages of PAGE_SIZE entries are documents `<domain>|<n>` of `scan_index`; page 0
 * also says which page is the last (`last`) and whether the index holds every scan of the domain
 * (`complete`: false for a domain that had scans before the index existed; its history is then
 * read from `scans` as before).
 */
import type { Collection, Filter } from "mongodb";
import { mapLimit } from "../../cluster/async.ts";
import type { Collections } from "./collections.ts";
import type { ScanDoc, ScanIndexDoc } from "./documents.ts";
import type { ServerAdapter } from "./server-adapter.ts";

export const PAGE_SIZE = 100;

export type { ScanIndexDoc };

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
async function indexedScans(
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
 * domain scanned before the index existed, by a query on `scans` (on the default server a read of every scan).
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

export type ReindexSummary = { scans: number; domains: number; indexed: number; assessed: number; ms: number };

/**
 * `glyphscan scans reindex`: lists every stored scan in its domain's scan index and names each
 * domain's newest assessed scan, for data stored before either existed. One pass over `scans`
 * (held per domain in memory: about 100 bytes a scan); each domain whose index is incomplete gets
 * its pages rewritten in finish order, merged with what the index already held, page 0 last, so
 * it counts as complete only once every page is written. A result written for that domain in the
 * instant between its index read and rewrite is not listed: run it again while results writers run.
 */
export async function reindexScans(
  c: Pick<Collections, "scans" | "scanIndex" | "domains"> & { server: ServerAdapter },
  opts: { batch?: number; progress?: { write(line: string): unknown } } = {},
): Promise<ReindexSummary> {
  const started = performance.now();
  const byDomain = new Map<string, IndexedScan[]>();
  const newestAssessed = new Map<string, IndexedScan>();
  let scans = 0;
  const cursor = c.scans
    .find({}, { projection: { _id: 1, domain: 1, finishedAt: 1, compliance: 1 } })
    .batchSize(opts.batch ?? 1000);
  for await (const s of cursor) {
    scans++;
    const entry = { jobId: s._id, finishedAt: s.finishedAt };
    const list = byDomain.get(s.domain) ?? [];
    list.push(entry);
    byDomain.set(s.domain, list);
    const best = newestAssessed.get(s.domain);
    if (s.compliance && (!best || newerFirst(entry, best) < 0)) newestAssessed.set(s.domain, entry);
  }
  opts.progress?.write(`scans reindex: ${scans} scans of ${byDomain.size} domains read\n`);
  let indexed = 0;
  let assessed = 0;
  await mapLimit([...byDomain], 8, async ([domain, found]) => {
    if (await rewriteIndex(c.scanIndex, domain, found)) indexed++;
    const best = newestAssessed.get(domain);
    const doc = best ? await c.domains.findOne({ _id: domain }, { projection: { assessed: 1 } }) : null;
    if (best && doc && !doc.assessed) {
      if (await c.server.updateIf(c.domains, domain, { assessed: null }, { $set: { assessed: best } })) assessed++;
    }
  });
  return { scans, domains: byDomain.size, indexed, assessed, ms: performance.now() - started };
}

/** Rewrites an incomplete index with `found` merged in; false when the index was complete already. */
async function rewriteIndex(col: Collection<ScanIndexDoc>, domain: string, found: IndexedScan[]): Promise<boolean> {
  const head = await col.findOne({ _id: pageId(domain, 0) });
  if (head?.complete) return false;
  const byJob = new Map(found.map((s) => [s.jobId, s]));
  for (let n = head?.last ?? 0; n > 0; n--) {
    const page = await col.findOne({ _id: pageId(domain, n) });
    for (const x of page?.e ?? []) byJob.set(x.j, { jobId: x.j, finishedAt: x.f });
  }
  for (const x of head?.e ?? []) byJob.set(x.j, { jobId: x.j, finishedAt: x.f });
  const all = [...byJob.values()].sort((a, b) => newerFirst(b, a));
  const pages: Array<ScanIndexDoc["e"]> = [];
  for (let i = 0; i < all.length; i += PAGE_SIZE)
    pages.push(all.slice(i, i + PAGE_SIZE).map((s) => ({ j: s.jobId, f: s.finishedAt })));
  for (let n = pages.length - 1; n >= 1; n--) {
    await col.replaceOne({ _id: pageId(domain, n) }, { e: pages[n]! }, { upsert: true });
  }
  const first = { e: pages[0] ?? [], last: Math.max(0, pages.length - 1), complete: true };
  await col.replaceOne({ _id: pageId(domain, 0) }, first, { upsert: true });
  return true;
}
