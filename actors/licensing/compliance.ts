/**
 * Compliance of one scan: the verdict of every font file the site used, with one registry query
 * per scan, a summary by verdict, and what changed since the domain's previous scan.
 */
import type { ComplianceVerdict, ScanResult } from "../../protocol/mod.ts";
import type { ComplianceSummary, VerdictChanges, VerdictCounts } from "../store/documents.ts";
import type { LicenseRegistry } from "./registry.ts";
import type { OpenCatalogue } from "./open-licence.ts";
import {
  decideVerdict,
  VERDICTS,
  type ExternalAnswer,
  type FontUse,
  type FontVerdict,
  type Verdict,
} from "./verdict.ts";

export type { ComplianceSummary, VerdictChanges, VerdictCounts };

export interface LicensingDeps {
  registry: LicenseRegistry;
  catalogue: OpenCatalogue;
  /** Asks the external licensing service about fonts not decided otherwise; absent: not configured. */
  external?: (domain: string, uses: FontUse[]) => Promise<Map<string, ExternalAnswer>>;
}

const providerOf = (x: object): string | null => {
  const p = (x as { provider?: unknown }).provider;
  return typeof p === "string" ? p : null;
};

/** One entry per distinct file the page used, with the CSS families that named it. */
export function fontUses(report: ScanResult["report"]): FontUse[] {
  const byFile = new Map<string, FontUse>();
  for (const file of report.files) {
    if (byFile.has(file.sha256)) continue;
    const faces = report.faces.filter((f) => f.fileSha256.includes(file.sha256));
    byFile.set(file.sha256, {
      sha256: file.sha256,
      url: file.url,
      cssFamilies: [...new Set(faces.map((f) => f.family))],
      metadata: file.metadata,
      // The scanner's provider of the file, else of a face that loaded it; absent in older reports.
      provider: providerOf(file) ?? faces.map(providerOf).find((p) => p !== null) ?? null,
    });
  }
  return [...byFile.values()];
}

export function countVerdicts(verdicts: ReadonlyArray<{ verdict: Verdict }>): VerdictCounts {
  const counts = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as VerdictCounts;
  for (const v of verdicts) counts[v.verdict]++;
  return counts;
}

export function diffVerdicts(
  previous: { jobId: string; verdicts: ReadonlyArray<{ sha256: string; verdict: Verdict }> } | null,
  next: ReadonlyArray<{ sha256: string; verdict: Verdict }>,
): VerdictChanges | null {
  if (!previous) return null;
  const before = new Map(previous.verdicts.map((v) => [v.sha256, v.verdict]));
  const after = new Map(next.map((v) => [v.sha256, v.verdict]));
  return {
    sinceJobId: previous.jobId,
    added: [...after.keys()].filter((s) => !before.has(s)).sort(),
    removed: [...before.keys()].filter((s) => !after.has(s)).sort(),
    changed: [...after]
      .flatMap(([sha256, to]) => {
        const from = before.get(sha256);
        return from !== undefined && from !== to ? [{ sha256, from, to }] : [];
      })
      .sort((a, b) => (a.sha256 < b.sha256 ? -1 : 1)),
  };
}

/**
 * The verdict of every font file of a scan: one registry query for the domain, then one question
 * to the licensing service (when configured) about the fonts nothing else decided.
 */
export async function assessScan(deps: LicensingDeps, result: ScanResult, now = new Date()): Promise<FontVerdict[]> {
  const uses = fontUses(result.report);
  if (uses.length === 0) return [];
  const licences = (await deps.registry.coveringDomains([result.domain])).get(result.domain) ?? [];
  const decide = (use: FontUse, external?: ExternalAnswer) =>
    decideVerdict(use, { domain: result.domain, now, licences, catalogue: deps.catalogue, external });
  const first = uses.map((use) => decide(use));
  const undecided = uses.filter((_, i) => first[i]!.verdict === "unlicensed" || first[i]!.verdict === "unknown");
  if (!deps.external || undecided.length === 0) return first;
  const answers = await deps.external(result.domain, undecided);
  return uses.map((use, i) => {
    const answer = answers.get(use.sha256);
    return answer ? decide(use, answer) : first[i]!;
  });
}

export function complianceEvent(
  result: ScanResult,
  verdicts: readonly FontVerdict[],
  summary: ComplianceSummary,
): ComplianceVerdict {
  return {
    jobId: result.jobId,
    domain: result.domain,
    region: result.region,
    scannedAt: result.report.finishedAt,
    counts: summary.counts,
    fonts: verdicts.slice(0, 1000).map((v) => ({
      sha256: v.sha256,
      family: v.family,
      verdict: v.verdict,
      licence: v.licence,
      provider: v.evidence.provider,
      reason: v.reason,
    })),
    changes: summary.changes,
  };
}
