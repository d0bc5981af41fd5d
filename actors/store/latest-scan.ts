/** The read behind every lookup: a domain, its latest scan, and the catalogue entries of that scan's files. */
import type { Collections } from "./collections.ts";
import type { DomainDoc, FontDoc, ScanDoc } from "./documents.ts";

export interface LatestScan {
  domain: DomainDoc;
  scan: ScanDoc | null;
  fonts: FontDoc[];
}

/** Null when the domain is unknown; all three reads are by `_id`, the one kind every server answers without a scan. */
export async function readLatestScan(c: Collections, domain: string): Promise<LatestScan | null> {
  const doc = await c.domains.findOne({ _id: domain });
  if (!doc) return null;
  const scan = doc.latest ? await c.scans.findOne({ _id: doc.latest.jobId }) : null;
  const hashes = [...new Set(scan?.files.map((f) => f.sha256) ?? [])];
  // One findOne per file rather than `$in`: the default server answers only `_id` equality from
  // an index, and `$in` read the whole catalogue on every lookup (30 ms at 400 fonts, queued per connection).
  const found = await Promise.all(hashes.map((sha256) => c.fonts.findOne({ _id: sha256 })));
  const fonts = found.filter((f): f is FontDoc => f !== null);
  return { domain: doc, scan, fonts };
}
