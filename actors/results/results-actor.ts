/**
 * Results writer: one `scans` document per job, the font catalogue by SHA-256, and the
 * outcome on the domain (next scan, retry, or parked). Keyed writes make redelivery harmless.
 * With licensing, each successful scan also gets the licence verdict of every font it used, the
 * domain a compliance summary with what changed since its previous scan, and downstream systems a
 * `compliance-verdict` event on `compliance.<region>`.
 */
import type { ActorDefinition } from "../../cluster/actor.ts";
import { PoisonError } from "../../cluster/errors.ts";
import { instruments } from "../../cluster/metrics.ts";
import { withSpan } from "../../cluster/telemetry.ts";
import { consumers, msgIds, streams, subjects, type ComplianceVerdict, type ScanResult } from "../../protocol/mod.ts";
import type { Stores } from "../store/database.ts";
import type { DomainDoc, FontDoc, ScanDoc, ScanSummary } from "../store/documents.ts";
import { refreshLookupView } from "../store/lookup-view.ts";
import { indexScan } from "../store/scan-index.ts";
import type { DomainStore } from "../frontier/domain-store.ts";
import {
  assessScan,
  complianceEvent,
  countVerdicts,
  diffVerdicts,
  type ComplianceSummary,
  type LicensingDeps,
} from "../licensing/compliance.ts";
import type { FontVerdict } from "../licensing/verdict.ts";
import { checkLease } from "./lease-check.ts";

export function summarise(result: ScanResult): ScanSummary {
  const { report } = result;
  const used = new Set(report.faces.filter((f) => f.used).map((f) => f.family));
  const declaredOnly = new Set(report.faces.filter((f) => !f.used && !used.has(f.family)).map((f) => f.family));
  return {
    jobId: result.jobId,
    status: report.status,
    failureKind: report.failure?.kind ?? null,
    failureMessage: report.failure?.message ?? null,
    finishedAt: new Date(report.finishedAt),
    path: report.path,
    usedFamilies: [...used].sort(),
    declaredOnlyFamilies: [...declaredOnly].sort(),
    fileCount: report.files.length,
  };
}

export interface RecordedScan {
  lease: "current" | "stale";
  /** The event to publish, when the scan was assessed. */
  compliance: ComplianceVerdict | null;
  /** False when the lookup view could not be written (Redis unavailable): lookups lag until its entry expires. */
  viewed: boolean;
}

/**
 * Verdicts for a scan, compared with the domain's previous assessed scan (by finish time, so a
 * redelivered or late result compares with what came before it, not with itself).
 */
async function assess(
  collections: Stores,
  licensing: LicensingDeps,
  result: ScanResult,
  domain: DomainDoc | null,
  now: Date,
): Promise<{ verdicts: FontVerdict[]; summary: ComplianceSummary }> {
  const verdicts = await assessScan(licensing, result, now);
  const previous = await previousAssessed(collections, result, domain);
  const changes = diffVerdicts(previous ? { jobId: previous._id, verdicts: previous.verdicts ?? [] } : null, verdicts);
  return { verdicts, summary: { counts: countVerdicts(verdicts), changes, assessedAt: now } };
}

/**
 * The domain's assessed scan before this one: usually the scan its `assessed` field names, one
 * read by `_id`. A redelivered or late result (the named scan is this one or newer), or a domain
 * scanned before that field existed, is looked up by domain and time instead, which the default
 * server (see store/server-adapter.ts) answers by scanning every stored scan; so only then.
 */
async function previousAssessed(
  collections: Stores,
  result: ScanResult,
  domain: DomainDoc | null,
): Promise<Pick<ScanDoc, "_id" | "verdicts"> | null> {
  const finishedAt = new Date(result.report.finishedAt);
  const projection = { _id: 1, verdicts: 1 } as const;
  const named = domain?.assessed;
  if (named && named.jobId !== result.jobId && named.finishedAt < finishedAt) {
    return collections.scans.findOne({ _id: named.jobId }, { projection });
  }
  if (!named && !domain?.scanCount) return null; // never scanned: nothing to compare with
  return collections.scans.findOne(
    { domain: result.domain, _id: { $ne: result.jobId }, finishedAt: { $lt: finishedAt }, verdicts: { $exists: true } },
    { sort: { finishedAt: -1 }, projection },
  );
}

/** The scan document of a result: its report, its lease's standing, its verdicts when assessed. */
function scanDocOf(
  result: ScanResult,
  current: DomainDoc | null,
  assessed: { verdicts: FontVerdict[]; summary: ComplianceSummary } | null,
  now: Date,
): ScanDoc {
  const { report } = result;
  return {
    _id: result.jobId,
    domain: result.domain,
    region: result.region,
    attempt: result.attempt,
    scannerNode: result.scannerNode,
    leaseToken: result.leaseToken,
    onCurrentLease: current?.leaseToken === result.leaseToken,
    status: report.status,
    failure: report.failure,
    path: report.path,
    pages: report.pages,
    faces: report.faces,
    blocked: report.blocked ?? [],
    renderedFonts: report.renderedFonts ?? [],
    // Metadata lives once in the catalogue; the scan keeps the family for quick reading.
    files: report.files.map(({ metadata, ...file }) => ({ ...file, family: metadata?.family ?? null })),
    startedAt: new Date(report.startedAt),
    finishedAt: new Date(report.finishedAt),
    durationMs: Date.parse(report.finishedAt) - Date.parse(report.startedAt),
    recordedAt: now,
    ...(assessed ? { verdicts: assessed.verdicts, compliance: assessed.summary } : {}),
  };
}

/** The font catalogue keeps the first parse of each file's bytes, and when it was last seen. */
async function catalogueFonts(collections: Stores, files: ScanResult["report"]["files"], now: Date): Promise<void> {
  if (files.length === 0) return;
  await collections.fonts.bulkWrite(
    files.map((f) => ({
      updateOne: {
        filter: { _id: f.sha256 },
        update: {
          $setOnInsert: {
            bytes: f.bytes,
            metadata: f.metadata,
            parseError: f.parseError,
            firstSeenAt: now,
            firstUrl: f.url,
          },
          $set: { lastSeenAt: now },
        },
        upsert: true,
      },
    })),
    { ordered: false },
  );
}

export async function recordScan(
  collections: Stores,
  store: DomainStore,
  result: ScanResult,
  now = new Date(),
  licensing?: LicensingDeps,
): Promise<RecordedScan> {
  const { report } = result;
  const current = await store.get(result.domain);
  const assessed =
    licensing && report.status === "ok"
      ? await withSpan("check licences", { "glyphscan.fonts.files": report.files.length }, () =>
          assess(collections, licensing, result, current, now),
        )
      : null;
  const scan = scanDocOf(result, current, assessed, now);
  await withSpan("store scan", { "db.collection.name": "scans", "glyphscan.job.id": scan._id }, async () => {
    await collections.scans.replaceOne({ _id: scan._id }, scan, { upsert: true });
    await indexScan(
      collections.scanIndex,
      scan.domain,
      { jobId: scan._id, finishedAt: scan.finishedAt },
      !current?.scanCount,
    );
  });
  await catalogueFonts(collections, report.files, now);
  const summary = assessed ? { ...summarise(result), compliance: assessed.summary } : summarise(result);
  const lease = await store.recordOutcome(result, summary, now);
  // The lookup view after MongoDB: from the scan just stored and its files' metadata (the catalogue
  // keeps the first parse of identical bytes, so the same), reading only the domain's new state.
  const fonts: FontDoc[] = report.files.map((f) => ({
    _id: f.sha256,
    bytes: f.bytes,
    metadata: f.metadata,
    parseError: f.parseError,
    firstSeenAt: now,
    lastSeenAt: now,
    firstUrl: f.url,
  }));
  const viewed = await withSpan("store lookup view", { "glyphscan.job.id": scan._id }, () =>
    refreshLookupView(collections, result.domain, { scan, fonts }),
  );
  return {
    lease,
    compliance: assessed ? complianceEvent(result, assessed.verdicts, assessed.summary) : null,
    viewed,
  };
}

export function resultsActor(
  region: string,
  collections: Stores,
  store: DomainStore,
  licensing: LicensingDeps | undefined,
  opts: { leaseMs: number },
): ActorDefinition<"scan-result"> {
  return {
    name: `results-${region}`,
    stage: "results",
    stream: streams.results(region),
    consumer: consumers.resultsWriter,
    accept: ["scan-result"],
    concurrency: 8,
    async handle(result, ctx) {
      const now = new Date();
      const [domain, stored] = await Promise.all([
        store.get(result.domain),
        collections.scans.findOne(
          { _id: result.jobId },
          { projection: { leaseToken: 1, finishedAt: 1, scannerNode: 1 } },
        ),
      ]);
      const check = checkLease(result, { domain, stored, leaseMs: opts.leaseMs, now });
      if (!check.accept) throw new PoisonError(`scan result refused: ${check.reason}`, "rejected-input");
      const { lease, compliance, viewed } = await recordScan(collections, store, result, now, licensing);
      if (!viewed) ctx.log.warn({ domain: result.domain }, "lookup view not written (redis unavailable)");
      for (const [verdict, n] of Object.entries(compliance?.counts ?? {}))
        if (n > 0) instruments().verdicts.add(n, { region: result.region, verdict });
      // Published after the writes: a redelivery recomputes the same event and the msg id drops the copy.
      if (compliance)
        await ctx.publish({
          subject: subjects.compliance(result.region),
          schema: "compliance-verdict",
          body: compliance,
          msgId: msgIds.compliance(result.jobId),
        });
      ctx.log.info(
        { domain: result.domain, status: result.report.status, lease, verdicts: compliance?.counts },
        "scan recorded",
      );
    },
  };
}
