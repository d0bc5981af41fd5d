/**
 * Compliance rows for export: one per font file per domain, from the domain's latest assessed scan
 * (its latest scan, or, when that one failed, the newest scan that has verdicts). Read as a stream:
 * a cursor over `domains` (plain find with a filter and a projection, which every server serves
 * without sorting the collection) and each domain's scan by `_id`, a few domains at a time, so
 * memory stays the same however many domains there are. Rows come in storage order.
 */
import type { Filter } from "mongodb";
import { VERDICT_KINDS } from "../../protocol/mod.ts";
import type { Collections } from "./collections.ts";
import type { DomainDoc, FontVerdict, ScanDoc, Verdict, VerdictEvidence } from "./documents.ts";

export interface ExportFilter {
  /** Only these verdicts (empty or absent: all). */
  verdicts?: readonly Verdict[] | undefined;
  region?: string | undefined;
  /** Scans that finished at or after this instant. */
  since?: Date | undefined;
  /** Scans that finished before this instant. */
  until?: Date | undefined;
}

export interface ExportRow {
  domain: string;
  region: string;
  /** When the scan finished. */
  scannedAt: string;
  /** When its verdicts were decided (later than the scan when pending verdicts were decided afterwards). */
  assessedAt: string | null;
  jobId: string;
  family: string | null;
  sha256: string;
  provider: string | null;
  verdict: Verdict;
  licence: string | null;
  reason: string;
  /** The evidence in one line: licence record, service reference, catalogue entry, name fields, rejected records. */
  evidence: string;
}

export const EXPORT_COLUMNS = [
  "domain",
  "region",
  "scannedAt",
  "assessedAt",
  "jobId",
  "family",
  "sha256",
  "provider",
  "verdict",
  "licence",
  "reason",
  "evidence",
] as const satisfies ReadonlyArray<keyof ExportRow>;

export const isVerdict = (v: string): v is Verdict => (VERDICT_KINDS as readonly string[]).includes(v);

const clip = (s: string, max = 120) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

export function evidenceSummary(e: VerdictEvidence): string {
  const parts: string[] = [];
  if (e.licenseId) parts.push(`licence record ${e.licenseId}${e.licensee ? ` (${e.licensee})` : ""}`);
  if (e.externalReference) parts.push(`licensing service reference ${e.externalReference}`);
  if (e.catalogue) parts.push(`catalogue ${e.catalogue.id} (${e.catalogue.licence})`);
  for (const f of e.nameFields) parts.push(`${f.field}: ${clip(f.value.replace(/\s+/g, " ").trim())}`);
  for (const r of e.rejected) parts.push(`rejected ${r.licenseId}: ${r.why}`);
  return parts.join("; ");
}

/**
 * The domains to read: never scanned ones are left out, and a domain whose latest scan was assessed
 * is read only if it can hold a wanted verdict. One whose latest scan failed is read whatever it holds,
 * since its verdicts are on an older scan. The scan's own finish time decides `since` and `until`.
 */
export function domainQuery(f: ExportFilter): Filter<DomainDoc> {
  const q: Filter<DomainDoc> & Record<string, unknown> = { latest: { $ne: null } };
  if (f.region) q["region"] = f.region;
  // The assessed scan finished no later than the latest one (lastScanAt).
  if (f.since) q["lastScanAt"] = { $gte: f.since };
  if (f.verdicts && f.verdicts.length > 0 && f.verdicts.length < VERDICT_KINDS.length)
    q["$or"] = [
      ...f.verdicts.map((v) => ({ [`latest.compliance.counts.${v}`]: { $gt: 0 } })),
      { "latest.compliance": null },
    ];
  return q;
}

type ScanVerdicts = Pick<ScanDoc, "_id" | "domain" | "region" | "finishedAt" | "verdicts" | "compliance">;
const SCAN_PROJECTION = { _id: 1, domain: 1, region: 1, finishedAt: 1, verdicts: 1, compliance: 1 } as const;

/**
 * The domain's latest scan with verdicts: by `_id` when its latest scan was assessed or the domain
 * names its assessed scan; by a query (on the default server a read of every scan) only for a domain whose
 * latest scan failed and that was scanned before domains named their assessed scan.
 */
async function assessedScan(
  c: Collections,
  d: Pick<DomainDoc, "_id" | "latest" | "assessed">,
): Promise<ScanVerdicts | null> {
  if (!d.latest) return null;
  if (d.latest.compliance)
    return c.scans.findOne<ScanVerdicts>({ _id: d.latest.jobId }, { projection: SCAN_PROJECTION });
  if (d.assessed) return c.scans.findOne<ScanVerdicts>({ _id: d.assessed.jobId }, { projection: SCAN_PROJECTION });
  return c.scans.findOne<ScanVerdicts>(
    { domain: d._id, verdicts: { $exists: true } },
    { sort: { finishedAt: -1 }, projection: SCAN_PROJECTION },
  );
}

export function rowsOf(scan: ScanVerdicts, f: ExportFilter): ExportRow[] {
  if (f.since && scan.finishedAt < f.since) return [];
  if (f.until && scan.finishedAt >= f.until) return [];
  const wanted = f.verdicts && f.verdicts.length > 0 ? new Set<Verdict>(f.verdicts) : null;
  const assessedAt = scan.compliance?.assessedAt ? new Date(scan.compliance.assessedAt).toISOString() : null;
  return (scan.verdicts ?? [])
    .filter((v: FontVerdict) => !wanted || wanted.has(v.verdict))
    .map((v) => ({
      domain: scan.domain,
      region: scan.region,
      scannedAt: scan.finishedAt.toISOString(),
      assessedAt,
      jobId: scan._id,
      family: v.family,
      sha256: v.sha256,
      provider: v.evidence.provider,
      verdict: v.verdict,
      licence: v.licence,
      reason: v.reason,
      evidence: evidenceSummary(v.evidence),
    }));
}

export interface ExportProgress {
  /** Domains read so far (with rows or not). */
  domains: number;
}

/** How many domains the export will read (for a progress bar's total). */
export function countExportDomains(c: Collections, f: ExportFilter): Promise<number> {
  return c.domains.countDocuments(domainQuery(f));
}

/**
 * The rows, in order, read `parallel` domains at a time; a domain's rows come together. Breaking out
 * of the loop closes the cursor. `progress` counts each domain before its rows are yielded.
 */
export async function* exportRows(
  c: Collections,
  f: ExportFilter,
  progress: ExportProgress = { domains: 0 },
  parallel = 16,
): AsyncGenerator<ExportRow, ExportProgress> {
  const cursor = c.domains.find(domainQuery(f), {
    projection: { _id: 1, latest: 1, assessed: 1 },
    batchSize: 256,
  });
  try {
    let chunk: Array<Pick<DomainDoc, "_id" | "latest" | "assessed">> = [];
    const flush = async function* () {
      const scans = await Promise.all(chunk.map((d) => assessedScan(c, d)));
      for (const scan of scans) {
        progress.domains++;
        if (scan) yield* rowsOf(scan, f);
      }
      chunk = [];
    };
    for await (const d of cursor) {
      chunk.push(d);
      if (chunk.length >= parallel) yield* flush();
    }
    yield* flush();
    return progress;
  } finally {
    await cursor.close();
  }
}
