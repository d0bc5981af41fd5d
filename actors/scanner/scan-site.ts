/**
 * Scans one site: SSRF check, render in the browser pool, extract fonts, and turn every site
 * problem into a failed report. Never throws: the result is always a valid scanReportV1.
 */
import { scanReportV1, type FailureKind, type ScanReport } from "../../protocol/messages.ts";
import { BrowserCrashError, JobTimeoutError, type BrowserPool } from "./browser-pool.ts";
import { extractFonts, type PageExtraction } from "./extract-fonts.ts";
import { resolvePublicAddress } from "./ssrf.ts";
import { staticScan } from "./static-path.ts";

export type ScanSiteOptions = {
  allowHosts: string[];
  hostMap?: Record<string, string>;
  maxFontBytes: number;
  /** Budget of the page load; capped at the pool's page timeout. */
  navigationTimeoutMs: number;
  settleMs: number;
  /**
   * Try the static fast path (HTTP + CSS, no browser) first; it answers only pages whose fonts
   * no script can change, and escalates the rest to the browser. Default false.
   */
  fastPath?: boolean;
  /** Budget of the static attempt before the browser takes over; default 5000 ms. */
  fastPathTimeoutMs?: number;
  /** Called with the reason whenever the fast path hands a page to the browser. */
  onEscalate?: (reason: string) => void;
};

type Failure = { kind: FailureKind; message: string };

export async function scanSite(pool: BrowserPool, target: { url: string }, opts: ScanSiteOptions): Promise<ScanReport> {
  const startedAt = new Date().toISOString();
  const finish = (failure: Failure | null, page?: PageExtraction, path: ScanReport["path"] = "browser"): ScanReport =>
    validated({
      status: failure ? "failed" : "ok",
      failure,
      path,
      pages: page ? [{ url: target.url, finalUrl: page.finalUrl, httpStatus: page.httpStatus }] : [],
      faces: page?.faces ?? [],
      files: page?.files ?? [],
      startedAt,
      finishedAt: new Date().toISOString(),
    });
  const policy = { allowHosts: opts.allowHosts, hostMap: opts.hostMap ?? {} };

  let url: URL;
  try {
    url = new URL(target.url);
  } catch {
    return finish({ kind: "navigation", message: `invalid URL: ${target.url}` });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return finish({ kind: "blocked-address", message: `scheme ${url.protocol} is not scanned` });
  }
  const check = await resolvePublicAddress(url.hostname, policy);
  if (!check.ok)
    return finish({ kind: check.reason.startsWith("dns:") ? "dns" : "blocked-address", message: check.reason });

  if (opts.fastPath) {
    const timeoutMs = Math.min(opts.fastPathTimeoutMs ?? 5_000, opts.navigationTimeoutMs);
    const quick = await staticScan(url.href, { policy, maxFontBytes: opts.maxFontBytes, timeoutMs });
    if (quick.answered) return finish(null, quick.page, "static");
    opts.onEscalate?.(quick.reason);
  }

  let page: PageExtraction;
  try {
    const extractOpts = {
      maxFontBytes: opts.maxFontBytes,
      navigationTimeoutMs: Math.min(opts.navigationTimeoutMs, pool.pageTimeoutMs),
      settleMs: opts.settleMs,
    };
    page = await pool.run(url.href, (p) => extractFonts(p, url.href, extractOpts));
  } catch (err) {
    return finish(classify(err));
  }

  // Redirects are followed inside Chromium, so the landing host is checked after the fact; what
  // a refused host served is dropped rather than reported.
  const final = URL.canParse(page.finalUrl) ? new URL(page.finalUrl) : null;
  if (!final || (final.protocol !== "http:" && final.protocol !== "https:")) {
    return finish({ kind: "navigation", message: `landed on ${page.finalUrl}` });
  }
  if (final.hostname !== url.hostname) {
    const landed = await resolvePublicAddress(final.hostname, policy);
    if (!landed.ok) {
      const message = `redirected to ${final.host}: ${landed.reason}`;
      return finish({ kind: "blocked-address", message }, { ...page, faces: [], files: [] });
    }
  }
  if (page.httpStatus !== null && page.httpStatus >= 400) {
    return finish({ kind: "http-status", message: `landing page answered HTTP ${page.httpStatus}` }, page);
  }
  return finish(null, page);
}

/** Maps a navigation or browser error to the protocol's failure kinds. */
export function classify(err: unknown): Failure {
  const message = err instanceof Error ? err.message : String(err);
  const kind = ((): FailureKind => {
    if (err instanceof BrowserCrashError) return "browser-crash";
    if (err instanceof JobTimeoutError || (err instanceof Error && err.name === "TimeoutError")) return "timeout";
    if (/net::ERR_NAME_NOT_RESOLVED|net::ERR_NAME_RESOLUTION_FAILED/.test(message)) return "dns";
    if (/net::ERR_(CERT_|SSL_|BAD_SSL_)/.test(message)) return "tls";
    if (/net::ERR_TOO_MANY_REDIRECTS/.test(message)) return "redirect-loop";
    if (/net::ERR_(TIMED_OUT|CONNECTION_TIMED_OUT)|took over \d+ ms|timeout/i.test(message)) return "timeout";
    // A page that keeps navigating by script outruns the inventory's retries.
    if (/net::ERR_|Execution context was destroyed/.test(message)) return "navigation";
    return "internal";
  })();
  return { kind, message: message.slice(0, 2_000) };
}

/** A report that fails its own schema is a scanner bug; say so instead of publishing it. */
function validated(report: ScanReport): ScanReport {
  const parsed = scanReportV1.safeParse(report);
  if (parsed.success) return parsed.data;
  const message = `report failed validation: ${parsed.error.issues.map((i) => i.message).join("; ")}`.slice(0, 2_000);
  return { ...report, status: "failed", failure: { kind: "internal", message }, pages: [], faces: [], files: [] };
}
