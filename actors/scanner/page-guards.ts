/**
 * What a hostile page must not be able to do to a scan, armed on a page before it navigates:
 * - requests the egress proxy refused (SSRF guard, size cap) are recorded with the reason, and a
 *   refused navigation of the main frame ends the page with a RefusedError;
 * - alert/confirm/prompt are dismissed (they would block the page), beforeunload lets it go;
 * - downloads are denied: nothing is written, the navigation that asked for one aborts.
 */
import type { CDPSession, Dialog, HTTPRequest, HTTPResponse, Page } from "puppeteer-core";
import type { ScanReport } from "../../protocol/messages.ts";
import { REFUSED_HEADER } from "./egress-proxy.ts";

export type Blocked = NonNullable<ScanReport["blocked"]>[number];

/** Blocked requests kept per page. */
export const MAX_BLOCKED = 100;

/** The egress proxy refused the page itself (or a later navigation of its main frame). */
export class RefusedError extends Error {
  override name = "RefusedError";
  readonly reason: string;
  constructor(url: string, reason: string) {
    super(`refused ${url.slice(0, 300)}: ${reason}`);
    this.reason = reason;
  }
}

export type PageGuards = {
  /** Refused requests so far, in order, each URL once. */
  readonly blocked: Blocked[];
  /** Throws RefusedError when a main-frame navigation was refused. */
  throwIfRefused(): void;
  stop: () => void;
};

/**
 * `refusalFor` is the proxy's memory (BrowserPool.refusalFor): a refused https tunnel reaches the
 * page only as ERR_TUNNEL_CONNECTION_FAILED, without the reason.
 */
export async function armPageGuards(
  page: Page,
  cdp: CDPSession,
  refusalFor: ((url: string) => string | null) | undefined,
): Promise<PageGuards> {
  const blocked: Blocked[] = [];
  let navRefusal: { url: string; reason: string } | null = null;
  const isMainNavigation = (req: HTTPRequest): boolean => {
    try {
      return req.isNavigationRequest() && req.frame() === page.mainFrame();
    } catch {
      return false;
    }
  };
  const refused = (req: HTTPRequest, url: string, reason: string): void => {
    if (isMainNavigation(req)) navRefusal = { url, reason };
    const short = shortUrl(url).slice(0, 2_048);
    if (blocked.length < MAX_BLOCKED && !blocked.some((b) => b.url === short)) {
      blocked.push({ url: short, reason: reason.slice(0, 500) });
    }
  };
  const onResponse = (resp: HTTPResponse): void => {
    const refusal = resp.headers()[REFUSED_HEADER];
    if (refusal !== undefined && !refusal.startsWith("connect:")) refused(resp.request(), resp.url(), refusal);
  };
  const onFailed = (req: HTTPRequest): void => {
    const reason = refusalFor?.(req.url()) ?? null;
    if (reason === null || reason.startsWith("connect:")) return;
    // A refused tunnel (ERR_TUNNEL_CONNECTION_FAILED), a response the proxy cut at its size cap, or a
    // refusal the page saw only as a CORS failure (ERR_FAILED: fonts and fetches are CORS requests).
    refused(req, req.url(), reason);
  };
  const onDialog = (dialog: Dialog): void =>
    void (dialog.type() === "beforeunload" ? dialog.accept() : dialog.dismiss()).catch(() => undefined);
  page.on("response", onResponse);
  page.on("requestfailed", onFailed);
  page.on("dialog", onDialog);
  const stop = (): void => {
    page.off("response", onResponse);
    page.off("requestfailed", onFailed);
    page.off("dialog", onDialog);
  };
  try {
    await cdp.send("Page.setDownloadBehavior", { behavior: "deny" });
  } catch {
    // Older Chromium: Browser.setDownloadBehavior on the default context.
    await cdp.send("Browser.setDownloadBehavior", { behavior: "deny" }).catch(() => undefined);
  }
  return {
    blocked,
    stop,
    throwIfRefused() {
      if (navRefusal) throw new RefusedError(navRefusal.url, navRefusal.reason);
    },
  };
}

/** The response carries the proxy's refusal (plain http), so the page's own status is not real. */
export function isRefusal(resp: HTTPResponse | null): boolean {
  return resp?.headers()[REFUSED_HEADER] !== undefined;
}

function shortUrl(u: string): string {
  return u.startsWith("data:") && u.length > 128 ? `${u.slice(0, 64)}…[${u.length} chars]` : u;
}
