/**
 * Scans one site: SSRF check, render in the browser pool, extract fonts, and turn every site
 * problem into a failed report. Never throws: the result is always a valid scanReportV1.
 */
import { scanReportV1, type FailureKind, type ScanReport } from "../../protocol/messages.ts";
import { BrowserCrashError, JobTimeoutError, type BrowserPool } from "./browser-pool.ts";
import { extractFonts, type PageExtraction } from "./extract-fonts.ts";
import { RefusedError } from "./page-guards.ts";
import { mergePages, sameSitePages } from "./same-site.ts";
import { resolvePublicAddress, type AddressPolicy } from "./ssrf.ts";
import { staticScan } from "./static-path.ts";
import { withSpan } from "../../cluster/telemetry.ts";

export type ScanSiteOptions = {
  allowHosts: string[];
  hostMap?: Record<string, string>;
  maxFontBytes: number;
  /** Budget of the page load; capped at the pool's page timeout. */
  navigationTimeoutMs: number;
  settleMs: number;
  /** Quiet time that ends the browser's settle (scanner.settleQuietMs); default 300 ms. */
  settleQuietMs?: number;
  /** Longest browser settle (scanner.settleBudgetMs), within the navigation budget; default 10 000 ms. */
  settleBudgetMs?: number;
  /**
   * Try the static fast path (HTTP + CSS, no browser) first; it answers only pages whose fonts
   * no script can change, and escalates the rest to the browser. Default false.
   */
  fastPath?: boolean;
  /** Budget of the static attempt before the browser takes over; default 5000 ms. */
  fastPathTimeoutMs?: number;
  /** Called with the reason whenever the fast path hands a page to the browser. */
  onEscalate?: (reason: string) => void;
  /** Same-site pages linked from the landing page that are scanned too (scanner.extraPages); default 0. */
  extraPages?: number;
};

type Failure = { kind: FailureKind; message: string };

export async function scanSite(pool: BrowserPool, target: { url: string }, opts: ScanSiteOptions): Promise<ScanReport> {
  const startedAt = new Date().toISOString();
  const finish = (failure: Failure | null, pages: Scanned[] = [], path: ScanReport["path"] = "browser"): ScanReport => {
    const merged = mergePages(pages.flatMap((p) => (p.page ? [p.page] : [])));
    return validated({
      status: failure ? "failed" : "ok",
      failure,
      path,
      pages: pages.flatMap((p) =>
        p.page ? [{ url: p.url, finalUrl: p.page.finalUrl, httpStatus: p.page.httpStatus, ...settleOf(p.page) }] : [],
      ),
      faces: merged.faces,
      files: merged.files,
      ...(merged.blocked && merged.blocked.length > 0 ? { blocked: merged.blocked } : {}),
      ...(merged.renderedFonts ? { renderedFonts: merged.renderedFonts } : {}),
      // The landing host's address from the SSRF check: the frontier's per-IP politeness.
      ...(pages[0]?.address ? { address: pages[0].address } : {}),
      ...(pages[0]?.escalation ? { escalation: pages[0].escalation } : {}),
      startedAt,
      finishedAt: new Date().toISOString(),
    });
  };
  const policy = { allowHosts: opts.allowHosts, hostMap: opts.hostMap ?? {} };

  let url: URL;
  try {
    url = new URL(target.url);
  } catch {
    return finish({ kind: "navigation", message: `invalid URL: ${target.url}` });
  }
  const landing = await scanPage(pool, url.href, opts, policy);
  const pages: Scanned[] = [{ url: target.url, ...landing }];
  if (landing.failure) return finish(landing.failure, pages, landing.path);

  // A few same-site pages the landing page links to; their failures do not fail the site.
  for (const extra of sameSitePages(landing.page!.finalUrl, landing.page!.links ?? [], opts.extraPages ?? 0)) {
    const scanned = await scanPage(pool, extra, opts, policy);
    if (scanned.page && !scanned.failure) pages.push({ url: extra, ...scanned });
  }
  return finish(null, pages, landing.path);
}

const settleOf = (page: PageExtraction) => (page.settle ? { settle: page.settle } : {});

type Scanned = {
  url: string;
  page?: PageExtraction;
  failure?: Failure;
  path: ScanReport["path"];
  address?: string;
  escalation?: ScanReport["escalation"];
};

/** One page: SSRF check, static fast path or the browser, redirect check. Never throws. */
async function scanPage(
  pool: BrowserPool,
  href: string,
  opts: ScanSiteOptions,
  policy: AddressPolicy,
): Promise<Omit<Scanned, "url">> {
  let address: string | undefined = undefined;
  let escalation: ScanReport["escalation"] = undefined;
  const fail = (failure: Failure, page?: PageExtraction, path: ScanReport["path"] = "browser") => ({
    failure,
    path,
    ...(page ? { page } : {}),
    ...(address ? { address } : {}),
    ...(escalation ? { escalation } : {}),
  });
  const url = new URL(href);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return fail({ kind: "blocked-address", message: `scheme ${url.protocol} is not scanned` });
  }
  const check = await resolvePublicAddress(url.hostname, policy);
  if (!check.ok)
    return fail({ kind: check.reason.startsWith("dns:") ? "dns" : "blocked-address", message: check.reason });
  address = check.address;

  if (opts.fastPath) {
    const timeoutMs = Math.min(opts.fastPathTimeoutMs ?? 5_000, opts.navigationTimeoutMs);
    const quick = await withSpan("static scan", { "url.full": href }, async (span) => {
      const outcome = await staticScan(href, { policy, maxFontBytes: opts.maxFontBytes, timeoutMs });
      span?.setAttribute("glyphscan.static.answered", outcome.answered);
      return outcome;
    });
    if (quick.answered) return { page: quick.page, path: "static", address };
    const { reason, rule, script } = quick;
    escalation = {
      reason: reason.slice(0, 500),
      rule: rule.slice(0, 64),
      ...(script ? { script: script.slice(0, 2_048) } : {}),
    };
    opts.onEscalate?.(quick.reason);
  }

  let page: PageExtraction;
  try {
    const extractOpts = {
      maxFontBytes: opts.maxFontBytes,
      navigationTimeoutMs: Math.min(opts.navigationTimeoutMs, pool.pageTimeoutMs),
      settleMs: opts.settleMs,
      settleQuietMs: opts.settleQuietMs,
      settleBudgetMs: opts.settleBudgetMs,
      refusalFor: (u: string) => pool.refusalFor(u),
    };
    page = await pool.run(url.href, (p) => extractFonts(p, url.href, extractOpts));
  } catch (err) {
    return fail(classify(err));
  }

  // Redirects are followed inside Chromium, so the landing host is checked after the fact (the
  // egress proxy, when the pool has one, has refused every hop already); what a refused host
  // served is dropped rather than reported.
  const final = URL.canParse(page.finalUrl) ? new URL(page.finalUrl) : null;
  if (!final || (final.protocol !== "http:" && final.protocol !== "https:")) {
    return fail({ kind: "navigation", message: `landed on ${page.finalUrl}` });
  }
  if (final.hostname !== url.hostname) {
    const landed = await resolvePublicAddress(final.hostname, policy);
    if (!landed.ok) {
      const message = `redirected to ${final.host}: ${landed.reason}`;
      return fail({ kind: "blocked-address", message }, { ...page, faces: [], files: [] });
    }
  }
  if (page.httpStatus !== null && page.httpStatus >= 400) {
    return fail({ kind: "http-status", message: `landing page answered HTTP ${page.httpStatus}` }, page);
  }
  return { page, path: "browser", address, ...(escalation ? { escalation } : {}) };
}

/** Maps a navigation or browser error to the protocol's failure kinds. */
export function classify(err: unknown): Failure {
  const message = err instanceof Error ? err.message : String(err);
  const kind = ((): FailureKind => {
    if (err instanceof BrowserCrashError) return "browser-crash";
    if (err instanceof RefusedError) {
      return err.reason.startsWith("dns:")
        ? "dns"
        : err.reason.startsWith("connect:")
          ? "navigation"
          : "blocked-address";
    }
    if (err instanceof JobTimeoutError || (err instanceof Error && err.name === "TimeoutError")) return "timeout";
    if (/net::ERR_NAME_NOT_RESOLVED|net::ERR_NAME_RESOLUTION_FAILED/.test(message)) return "dns";
    if (/net::ERR_(?:CERT_|SSL_|BAD_SSL_)/.test(message)) return "tls";
    if (/net::ERR_TOO_MANY_REDIRECTS/.test(message)) return "redirect-loop";
    if (/net::ERR_(?:TIMED_OUT|CONNECTION_TIMED_OUT)|took over \d+ ms|timeout/i.test(message)) return "timeout";
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
