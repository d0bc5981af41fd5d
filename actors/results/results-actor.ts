/**
 * Results writer: one `scans` document per job, the font catalogue by SHA-256, and the
 * outcome on the domain (next scan, retry, or parked). Keyed writes make redelivery harmless.
 */
import type { ActorDefinition } from "../../cluster/actor.ts";
import { consumers, streams, type ScanResult } from "../../protocol/mod.ts";
import type { Collections } from "../store/database.ts";
import type { ScanDoc, ScanSummary } from "../store/documents.ts";
import type { DomainStore } from "../frontier/domain-store.ts";

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

export async function recordScan(
  collections: Collections,
  store: DomainStore,
  result: ScanResult,
  now = new Date(),
): Promise<"current" | "stale"> {
  const { report } = result;
  const current = await store.get(result.domain);
  const scan: ScanDoc = {
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
    // Metadata lives once in the catalogue; the scan keeps the family for quick reading.
    files: report.files.map(({ metadata, ...file }) => ({ ...file, family: metadata?.family ?? null })),
    startedAt: new Date(report.startedAt),
    finishedAt: new Date(report.finishedAt),
    durationMs: Date.parse(report.finishedAt) - Date.parse(report.startedAt),
    recordedAt: now,
  };
  await collections.scans.replaceOne({ _id: scan._id }, scan, { upsert: true });
  if (report.files.length > 0) {
    await collections.fonts.bulkWrite(
      report.files.map((f) => ({
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
  return store.recordOutcome(result, summarise(result), now);
}

export function resultsActor(
  region: string,
  collections: Collections,
  store: DomainStore,
): ActorDefinition<"scan-result"> {
  return {
    name: `results-${region}`,
    stage: "results",
    stream: streams.results(region),
    consumer: consumers.resultsWriter,
    accept: ["scan-result"],
    concurrency: 8,
    async handle(result, ctx) {
      const lease = await recordScan(collections, store, result);
      ctx.log.info({ domain: result.domain, status: result.report.status, lease }, "scan recorded");
    },
  };
}
