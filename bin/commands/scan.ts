/**
 * `glyphscan scan <url>... [--json] [--allow-host PATTERN[=ADDRESS]]`: scan sites now, in this
 * process, without the cluster (no NATS, Redis or MongoDB): the scanner's own scanSite on its
 * BrowserPool behind the SSRF egress proxy, configured as a scanner node is. `--json` prints
 * each site's scanReportV1, exactly what a scanner publishes and the results writer stores, one
 * per line. The table adds licence verdicts from the rules that need no store (open-licence
 * catalogue, name fields, providers); the registry and the external licensing service are not
 * asked, so a font they would decide shows as pending, never as unlicensed.
 */
import { isIP } from "node:net";
import { InputError } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { normaliseSubmission } from "../../actors/coordinator/normalise-url.ts";
import { fontUses } from "../../actors/licensing/compliance.ts";
import { lazyCatalogue } from "../../actors/licensing/open-licence.ts";
import { decideVerdict, type FontVerdict } from "../../actors/licensing/verdict.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { hostResolverRules } from "../../actors/scanner/scanner-actor.ts";
import type { ScanReport } from "../../protocol/mod.ts";

export type ScanRequest = { urls: string[]; json: boolean; allowHosts: string[]; hostMap: Record<string, string> };

export const UNAVAILABLE_SOURCES = ["licence registry (MongoDB)", "external licensing service"] as const;

/** Checks the URLs and `--allow-host PATTERN[=ADDRESS]` values. */
export function parseScanFlags(urls: readonly string[], opts: { json?: boolean; allowHost?: string[] }): ScanRequest {
  if (urls.length === 0) throw new InputError("scan: give at least one URL");
  for (const url of urls) {
    const parsed = URL.canParse(url) ? new URL(url) : null;
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:"))
      throw new InputError(`scan: not an http(s) URL: ${url}`);
  }
  const allowHosts: string[] = [];
  const hostMap: Record<string, string> = {};
  for (const value of opts.allowHost ?? []) {
    const [pattern, address, ...rest] = value.split("=");
    if (!pattern || !/^(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*$/i.test(pattern) || rest.length > 0)
      throw new InputError(`scan: --allow-host wants PATTERN[=ADDRESS] (e.g. *.test=127.0.0.1), got ${value}`);
    if (address !== undefined && isIP(address) === 0)
      throw new InputError(`scan: --allow-host ${pattern}: ${address} is not an IP address`);
    allowHosts.push(pattern);
    if (address !== undefined) hostMap[pattern] = address;
  }
  return { urls: [...urls], json: opts.json === true, allowHosts, hostMap };
}

export type ScannedSite = { url: string; report: ScanReport; verdicts: FontVerdict[] };

/** Scans every URL (as many at once as the scanner's concurrency) and decides what can be decided without a store. */
export async function scanNow(config: Config, request: ScanRequest): Promise<ScannedSite[]> {
  const { scanner } = config;
  const allowHosts = [...scanner.allowHosts, ...request.allowHosts];
  const hostMap = { ...scanner.hostMap, ...request.hostMap };
  const rules = hostResolverRules(hostMap);
  const pool = await BrowserPool.launch({
    executablePath: scanner.chromiumPath,
    concurrency: scanner.concurrency,
    pageTimeoutMs: scanner.navigationTimeoutMs,
    ...(rules ? { hostResolverRules: rules } : {}),
    egress: { policy: { allowHosts, hostMap }, maxResponseBytes: scanner.maxResponseBytes },
  });
  const catalogue = lazyCatalogue();
  const external = { status: "unavailable", reason: "not asked: scanned without the cluster" } as const;
  try {
    return await Promise.all(
      request.urls.map(async (url) => {
        const report = await scanSite(
          pool,
          { url },
          {
            allowHosts,
            hostMap,
            maxFontBytes: scanner.maxFontBytes,
            navigationTimeoutMs: scanner.navigationTimeoutMs,
            settleMs: scanner.settleMs,
            fastPath: scanner.fastPath,
            extraPages: scanner.extraPages,
          },
        );
        const n = normaliseSubmission(url, { allowHosts });
        const domain = n.ok ? n.domain : new URL(url).hostname;
        const now = new Date();
        const verdicts =
          report.status === "ok"
            ? fontUses(report).map((use) => decideVerdict(use, { domain, now, licences: [], catalogue, external }))
            : [];
        return { url, report, verdicts };
      }),
    );
  } finally {
    await pool.close();
  }
}

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd(),
  );
}

/** One site as a human table: faces, then files with their verdicts. */
export function formatScan(site: ScannedSite): string {
  const { report } = site;
  const lines = [
    `${site.url}  ${report.status}${report.failure ? ` (${report.failure.kind}: ${report.failure.message})` : ""}, ${report.path} path, ${report.pages.length} page(s)`,
  ];
  if (report.faces.length > 0) {
    lines.push("", "faces:");
    const rows = report.faces.map((f) => [
      f.used ? "used" : "declared",
      f.family,
      f.weight,
      f.style,
      f.declaredIn,
      f.fileSha256.map((h) => h.slice(0, 12)).join(","),
    ]);
    lines.push(...table([["", "family", "weight", "style", "declared in", "files"], ...rows]).map((l) => `  ${l}`));
  }
  if (report.files.length > 0) {
    const bySha = new Map(site.verdicts.map((v) => [v.sha256, v]));
    lines.push("", "files:");
    const rows = report.files.map((f) => {
      const v = bySha.get(f.sha256);
      const name = f.metadata
        ? `${f.metadata.family ?? "?"} ${f.metadata.subfamily ?? ""}`.trim()
        : (f.parseError ?? "unparsed");
      return [
        f.sha256.slice(0, 12),
        String(f.bytes),
        cut(name, 32),
        v?.verdict ?? "-",
        v?.licence ?? "",
        cut(f.url, 70),
      ];
    });
    lines.push(...table([["sha256", "bytes", "font", "verdict", "licence", "url"], ...rows]).map((l) => `  ${l}`));
  }
  if (report.blocked?.length)
    lines.push(
      "",
      `blocked: ${report.blocked.length} request(s), e.g. ${cut(report.blocked[0]!.url, 80)} (${report.blocked[0]!.reason})`,
    );
  return lines.join("\n");
}

export function formatScans(sites: readonly ScannedSite[]): string {
  const note = `verdicts from the open-licence catalogue, name fields and provider rules; not available without the cluster: ${UNAVAILABLE_SOURCES.join(", ")} (fonts only they could decide show as pending)`;
  return [...sites.map(formatScan), note].join("\n\n");
}
