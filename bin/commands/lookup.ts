/** `glyphscan lookup <domain>`: the latest scan of a domain, its fonts, when and how it went. */
import type { Config } from "../../config/mod.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { readLatestScan, type LatestScan } from "../../actors/store/latest-scan.ts";
import { normaliseSubmission } from "../../actors/coordinator/normalise-url.ts";

export type LookupResult = LatestScan;

/** Accepts a domain or any URL of it. */
export function domainOf(input: string, config: Config): string {
  const n = normaliseSubmission(input, { allowHosts: config.coordinator.allowHosts });
  return n.ok ? n.domain : input.trim().toLowerCase();
}

export async function lookupDomain(config: Config, input: string): Promise<LookupResult | null> {
  const db = await openDatabase(config);
  try {
    return await readLatestScan(db.collections, domainOf(input, config));
  } finally {
    await db.close();
  }
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : "-");

export function formatLookup(r: LookupResult): string {
  const { domain: d, scan } = r;
  const lines = [
    `domain      ${d._id}`,
    `region      ${d.region}`,
    `state       ${d.state}`,
    `sources     ${d.sources.join(", ")}`,
    `last scan   ${iso(d.lastScanAt)}${d.latest ? ` (${d.latest.status}${d.latest.failureKind ? `: ${d.latest.failureKind} ${d.latest.failureMessage ?? ""}` : ""}, ${d.latest.path} path)` : ""}`,
    `next scan   ${iso(d.nextScanAt)}`,
  ];
  if (!scan) return [...lines, "fonts       not scanned yet"].join("\n");
  const byHash = new Map(r.fonts.map((f) => [f._id, f]));
  lines.push(`used        ${d.latest?.usedFamilies.join(", ") || "-"}`);
  if (d.latest?.declaredOnlyFamilies.length)
    lines.push(`declared    ${d.latest.declaredOnlyFamilies.join(", ")} (never loaded)`);
  lines.push("", "faces:");
  for (const f of scan.faces) {
    lines.push(`  ${f.used ? "used    " : "declared"} ${f.family} ${f.weight} ${f.style} [${f.declaredIn}]`);
  }
  lines.push("", "files:");
  for (const f of scan.files) {
    const meta = byHash.get(f.sha256)?.metadata;
    const name = meta
      ? `${meta.family ?? "?"} ${meta.subfamily ?? ""} ${meta.version ?? ""}`.trim()
      : (f.parseError ?? "unparsed");
    lines.push(`  ${f.sha256}  ${String(f.bytes).padStart(8)} B  ${name}  ${f.url.slice(0, 100)}`);
  }
  lines.push("", ...formatCompliance(scan));
  return lines.join("\n");
}

/** The licence verdict of each font file and the scan's summary (counts, changes since the previous scan). */
function formatCompliance(scan: NonNullable<LookupResult["scan"]>): string[] {
  const c = scan.compliance;
  const verdicts = scan.verdicts ?? [];
  if (!c && verdicts.length === 0) return ["compliance  not assessed"];
  const lines: string[] = [];
  if (c) {
    const counts = Object.entries(c.counts)
      .filter(([, n]) => n > 0)
      .map(([v, n]) => `${n} ${v}`);
    lines.push(`compliance  ${counts.join(", ") || "no fonts used"} (assessed ${iso(c.assessedAt)})`);
    if (c.changes) {
      const { added, removed, changed, sinceJobId } = c.changes;
      const what = [
        added.length ? `${added.length} added` : "",
        removed.length ? `${removed.length} removed` : "",
        ...changed.map((x) => `${x.sha256.slice(0, 12)} ${x.from} → ${x.to}`),
      ].filter((x) => x !== "");
      lines.push(`changes     ${what.join(", ") || "none"} since ${sinceJobId}`);
    }
  }
  lines.push("", "verdicts:");
  const width = Math.max(0, ...verdicts.map((v) => v.verdict.length));
  for (const v of verdicts) {
    lines.push(
      `  ${v.verdict.padEnd(width)}  ${v.sha256.slice(0, 12)}  ${v.family ?? (v.cssFamilies.join("/") || "?")}  ${v.licence ?? "-"}  ${v.reason}`,
    );
  }
  return lines;
}
