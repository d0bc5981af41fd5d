/**
 * `glyphscan views rebuild`: fills the lookup view (lookup-view.ts) from MongoDB, for a view that
 * was flushed, lost or written by an older dictionary.
 */
import type { DomainDoc, FontDoc, ScanDoc } from "./documents.ts";
import { lookupEntry, type LookupEntry, type ViewStores } from "./lookup-view.ts";

export interface ViewRebuildSummary {
  /** Domains in MongoDB (estimated count) when the rebuild started. */
  total: number;
  /** Entries written. */
  written: number;
  /** Entries not written (Redis refused the batch). */
  failed: number;
  ms: number;
}

/**
 * Fills the view from MongoDB. The default server streams a whole collection several times faster than it
 * answers `_id` reads one by one (and `$in` is a full scan per query), so the rebuild reads in
 * passes: up to `chunk` domains from `domains`, then one pass over `scans` picking those domains'
 * latest scans; catalogue entries by `_id` (remembered: few fonts serve many domains). Memory is
 * bounded by `chunk` domains; each chunk costs one pass over `scans`. Safe while writers run: an
 * entry a writer rewrites meanwhile may be put back as read here, never older than when this
 * rebuild read it (and bounded by the entry TTL like any other).
 */
export async function rebuildLookupView(
  c: ViewStores,
  opts: { batch?: number; chunk?: number; progress?: { write(line: string): unknown } } = {},
): Promise<ViewRebuildSummary> {
  const view = c.lookupView;
  if (!view) throw new Error("the lookup view is off (api.lookupView: false)");
  if (!(await view.ready())) throw new Error("Redis is unavailable");
  const started = performance.now();
  const batchSize = opts.batch ?? 1000;
  const chunkSize = Math.max(opts.chunk ?? 100_000, batchSize);
  const total = await c.domains.estimatedDocumentCount();
  const fontCache = new Map<string, Promise<FontDoc | null>>();
  const font = (sha256: string) => {
    let f = fontCache.get(sha256);
    if (!f) {
      if (fontCache.size >= 100_000) fontCache.clear();
      f = c.fonts.findOne({ _id: sha256 });
      fontCache.set(sha256, f);
    }
    return f;
  };
  let written = 0;
  let failed = 0;
  let read = 0;
  const write = async (entries: Array<[string, LookupEntry]>) => {
    let ok = false;
    // A batch Redis refused (busy past the command timeout, a reconnect) is tried again before it counts as failed.
    for (let attempt = 0; attempt < 3 && !ok; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 500 * attempt));
      ok = await view.putMany(entries);
    }
    if (ok) written += entries.length;
    else failed += entries.length;
    read += entries.length;
    opts.progress?.write(`views rebuild: ${read}/${total} domains, ${written} written, ${failed} failed\n`);
  };
  const entryOf = async (doc: DomainDoc, scan: ScanDoc | null): Promise<[string, LookupEntry]> => {
    const hashes = [...new Set(scan?.files.map((f) => f.sha256) ?? [])];
    const fonts = (await Promise.all(hashes.map(font))).filter((f): f is FontDoc => f !== null);
    return [doc._id, lookupEntry({ domain: doc, scan, fonts })];
  };
  const runChunk = async (docs: DomainDoc[]) => {
    // Never scanned: nothing to wait for.
    let entries: Array<[string, LookupEntry]> = [];
    const byJob = new Map<string, DomainDoc>();
    for (const doc of docs) {
      if (doc.latest) byJob.set(doc.latest.jobId, doc);
      else entries.push(await entryOf(doc, null));
    }
    for await (const scan of c.scans.find({}).batchSize(batchSize)) {
      const doc = byJob.get(scan._id);
      if (!doc) continue;
      byJob.delete(scan._id);
      entries.push(await entryOf(doc, scan));
      if (entries.length >= batchSize) {
        await write(entries);
        entries = [];
      }
      if (byJob.size === 0) break;
    }
    // A latest scan not found (deleted meanwhile): the domain without it, as a lookup would show it.
    for (const doc of byJob.values()) entries.push(await entryOf(doc, null));
    if (entries.length > 0) await write(entries);
  };
  let docs: DomainDoc[] = [];
  for await (const doc of c.domains.find({}).batchSize(batchSize)) {
    docs.push(doc);
    if (docs.length >= chunkSize) {
      await runChunk(docs);
      docs = [];
    }
  }
  if (docs.length > 0) await runChunk(docs);
  return { total, written, failed, ms: performance.now() - started };
}
