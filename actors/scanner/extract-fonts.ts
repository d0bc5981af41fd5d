/**
 * Font extraction for one page: network capture of font files and stylesheets (font-capture.ts),
 * a settle until the page is quiet (settle.ts, page-observer.ts), then the page's FontFaceSet and
 * CSS @font-face rules (page-inventory.ts) joined into declared/used faces and checked against
 * what rendered (rendered-fonts.ts). Navigation errors are thrown as-is for scan-site to
 * classify; everything after navigation degrades instead of failing.
 */
import type { CDPSession, HTTPResponse, Page } from "puppeteer-core";
import type { FontFace, FontFile } from "../../protocol/messages.ts";
import { BODY_WAIT_MS, capture, drain, parseFontsSpan, toFiles, type CaptureState } from "./font-capture.ts";
import { armPageGuards, type Blocked, type PageGuards } from "./page-guards.ts";
import { installPageObserver, type ObserverLimits } from "./page-observer.ts";
import { inventoryInPage, joinFaces, linkBuiltFaces, type Inventory } from "./page-inventory.ts";
import {
  applyRendering,
  sampleRenderedFonts,
  watchPlatformFaces,
  type PlatformFaces,
  type RenderedFont,
} from "./rendered-fonts.ts";
import { MAX_PAGE_LINKS, pageLinks } from "./same-site.ts";
import { settleUntilQuiet, watchNetwork, type NetworkActivity, type SettleOutcome } from "./settle.ts";
import { withSpan } from "../../cluster/telemetry.ts";
import { withTimeout } from "../../cluster/async.ts";

// Static-path code shares the capture and the CSS helpers.
export { parseFontsSpan, toFiles, type Captured } from "./font-capture.ts";
export { descriptors, srcUrls } from "./page-inventory.ts";

export type ExtractOptions = {
  maxFontBytes: number;
  navigationTimeoutMs: number;
  /** Least time the settle takes after DOMContentLoaded (scanner.settleMs). */
  settleMs: number;
  /** Quiet time that ends the settle (scanner.settleQuietMs); default 300 ms. */
  settleQuietMs?: number;
  /**
   * Longest settle (scanner.settleBudgetMs); it ends at the navigation deadline too, unless that
   * leaves it under 5 s. Default 10 000 ms.
   */
  settleBudgetMs?: number;
  /** The egress proxy's reason for refusing a URL (BrowserPool.refusalFor), to record blocked requests. */
  refusalFor?: (url: string) => string | null;
};
export type PageExtraction = {
  httpStatus: number | null;
  finalUrl: string;
  faces: FontFace[];
  files: FontFile[];
  /** Requests the egress proxy refused (SSRF guard, size cap), with the reason (page-guards.ts). */
  blocked?: Blocked[];
  /** Fonts that rendered the sampled text (rendered-fonts.ts); absent when they could not be read. */
  renderedFonts?: RenderedFont[];
  /** The document's http(s) links, for same-site pages (same-site.ts). */
  links?: string[];
  /** Why the settle ended and how long it took (settle.ts); absent on the static path. */
  settle?: SettleOutcome;
};

export const DEFAULT_SETTLE_QUIET_MS = 300;
export const DEFAULT_SETTLE_BUDGET_MS = 10_000;
/** Blocked inside Chromium via CDP (cheaper than request interception). Never fonts or CSS. */
const BLOCKED_EXTENSIONS = ["png", "jpg", "jpeg", "gif", "webp", "avif", "bmp", "ico", "svg", "mp4", "webm", "mp3"];
/**
 * The settle a page gets even when DOMContentLoaded came at the navigation deadline: a big page is
 * still laying out (and so loading its faces); the job's headroom (browser-pool.ts) covers it.
 */
const LATE_SETTLE_MS = 5_000;
/** Timers the settle waits for: "load the fonts shortly after start" runs within a second or two. */
const TIMER_LIMITS = { maxTimerMs: 2_000, maxTimerDepth: 3, maxTimers: 50, maxTimersPerSite: 2 };

export async function extractFonts(page: Page, url: string, opts: ExtractOptions): Promise<PageExtraction> {
  const capturing = await startCapture(page, opts);
  try {
    const deadline = Date.now() + opts.navigationTimeoutMs;
    const response = await withSpan("load page", { "url.full": url }, () =>
      page.goto(url, { waitUntil: "domcontentloaded", timeout: opts.navigationTimeoutMs }),
    ).catch((err: unknown) => {
      capturing.throwIfRefused(); // a refused navigation says why, not just ERR_TUNNEL_CONNECTION_FAILED
      throw err;
    });
    capturing.throwIfRefused();
    return await withSpan("extract fonts", {}, () => capturing.collect(response?.status() ?? null, deadline));
  } finally {
    capturing.stop();
  }
}

/** A capture armed on a page before its navigation; `collect` settles the page and reads its fonts. */
export type Capturing = {
  collect(httpStatus: number | null, deadline: number): Promise<PageExtraction>;
  /** Throws RefusedError when the egress proxy refused a navigation of the main frame. */
  throwIfRefused(): void;
  stop(): void;
};

/**
 * Arms font capture on a page that is about to navigate: response capture, request tracking,
 * image blocking and the page observer. Split from extractFonts so another crawler that navigates
 * by itself (the Crawlee baseline in ops/bench) runs the same page-side extraction.
 */
export async function startCapture(page: Page, opts: ExtractOptions): Promise<Capturing> {
  const state: CaptureState = { maxFontBytes: opts.maxFontBytes, captured: [], sheets: {}, pending: [] };
  const onResponse = (resp: HTTPResponse): void => {
    // Reads can fail once the page is gone ("Target closed"): a lost body, never an unhandled rejection.
    state.pending.push(capture(resp, state).catch(() => undefined));
  };
  page.on("response", onResponse);
  const stops: Array<() => void> = [() => void page.off("response", onResponse)];
  const stop = (): void => stops.forEach((s) => s());
  let cdp: CDPSession;
  let guards: PageGuards;
  let platform: PlatformFaces;
  let net: NetworkActivity;
  try {
    cdp = await page.createCDPSession();
    net = watchNetwork(cdp);
    stops.push(() => net.stop());
    await cdp.send("Network.enable");
    await cdp.send("Network.setBlockedURLs", {
      urlPatterns: BLOCKED_EXTENSIONS.map((ext) => ({ urlPattern: `*://*:*/*.${ext}`, block: true })),
    });
    guards = await armPageGuards(page, cdp, opts.refusalFor);
    stops.push(() => guards.stop());
    platform = await watchPlatformFaces(cdp);
    stops.push(() => platform.stop());
    const limits: ObserverLimits = {
      maxFaceBytes: opts.maxFontBytes,
      maxTotalBytes: opts.maxFontBytes,
      ...TIMER_LIMITS,
    };
    await installPageObserver(page, limits);
  } catch (err) {
    stop();
    throw err;
  }
  const session = cdp;
  const network = net;
  return {
    stop,
    throwIfRefused: () => guards.throwIfRefused(),
    async collect(httpStatus, deadline) {
      const { inventory, settle } = await settleAndCollect(page, session, network, deadline, opts, state);
      guards.throwIfRefused(); // a script navigated the page to a refused address
      // Degrades: a page that cannot be sampled (wedged, navigating) keeps its loaded faces as used.
      const families = [...inventory.rules, ...inventory.fonts].map((f) => f.family);
      const sampled = await withTimeout(
        sampleRenderedFonts(page, session, families),
        BODY_WAIT_MS,
        "rendered fonts",
      ).catch(() => null);
      const links = await withTimeout(page.evaluate(pageLinks, MAX_PAGE_LINKS), BODY_WAIT_MS, "links").catch(() => []);
      await drain(state); // a face that finished loading during the inventory has its body in flight
      const finalUrl = page.url();
      const { faces, unlinkedBytes } = joinFaces(inventory, state, finalUrl);
      const files = await parseFontsSpan(state.captured, () =>
        toFiles(state.captured, opts.maxFontBytes, finalUrl, faces),
      );
      if (sampled) applyRendering(faces, files, platform.faces, sampled);
      linkBuiltFaces(unlinkedBytes, files);
      const rendered = sampled ? { renderedFonts: sampled.fonts } : {};
      return { httpStatus, finalUrl, faces, files, blocked: guards.blocked, ...rendered, links, settle };
    },
  };
}

/**
 * Settle (until quiet, within the budget and the navigation deadline), then the inventory. A
 * script redirect destroys the context mid-evaluate: the new document is settled in its turn.
 */
async function settleAndCollect(
  page: Page,
  cdp: CDPSession,
  net: NetworkActivity,
  deadline: number,
  opts: ExtractOptions,
  state: CaptureState,
): Promise<{ inventory: Inventory; settle: SettleOutcome }> {
  const started = Date.now();
  const quietMs = opts.settleQuietMs ?? DEFAULT_SETTLE_QUIET_MS;
  const budgetMs = opts.settleBudgetMs ?? DEFAULT_SETTLE_BUDGET_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      const now = Date.now();
      const endAt = now + Math.min(budgetMs, Math.max(deadline - now, LATE_SETTLE_MS, quietMs));
      const { ended } = await withSpan("settle", {}, async (span) => {
        const outcome = await settleUntilQuiet(page, cdp, net, { quietMs, minMs: opts.settleMs, endAt });
        span?.setAttribute("glyphscan.settle.ended", outcome.ended);
        return outcome;
      });
      const settle = { ended, ms: Date.now() - started };
      await drain(state); // stylesheet bodies must be in before the inventory reads them
      const inventory = await withTimeout(page.evaluate(inventoryInPage, state.sheets), BODY_WAIT_MS, "inventory");
      return { inventory, settle };
    } catch (err) {
      if (attempt >= 3 || !/context was destroyed|navigat/i.test(String(err))) throw err;
      const timeout = Math.max(1_000, deadline - Date.now());
      await page.waitForNavigation({ waitUntil: "domcontentloaded", timeout }).catch(() => undefined);
    }
  }
}
