/**
 * Settle until quiet: the inventory is taken once the page has stopped doing what brings fonts,
 * not after a fixed pause. `document.fonts.ready` alone resolves at once when nothing is loading
 * yet, so a stylesheet a script inserts later, or a face built from bytes still being fetched,
 * would be missed. The page is quiet when, for `quietMs`:
 * - no font, stylesheet, script or fetch/XHR request of its main frame is in flight (CDP Network);
 * - the page observer (page-observer.ts) saw no new stylesheet, `@font-face` or FontFace, no face
 *   load start or end, and no short timer is still due;
 * - the document has loaded and document.fonts is idle (status `loaded`, no face `loading`).
 * The settle ends at its budget otherwise (a face still loading then gets a short grace), and says
 * which it was.
 */
import type { CDPSession, Page, Protocol } from "puppeteer-core";
import { withTimeout } from "../../cluster/async.ts";
import { readPageActivity, type PageActivity } from "./page-observer.ts";

export type SettleOutcome = { ended: "quiet" | "budget"; ms: number };

export type SettleOptions = {
  /** Quiet time that ends the settle. */
  quietMs: number;
  /** Least time the settle takes (scanner.settleMs), whatever the page does. */
  minMs: number;
  /** Epoch ms at which the settle ends regardless. */
  endAt: number;
};

/** Request types whose completion can bring a font: the font itself, or CSS or code that adds one. */
const TRACKED = new Set(["Font", "Stylesheet", "Script", "Fetch", "XHR"]);
/** Between polls of the page's state. */
const POLL_MS = 40;
/** Past the budget, how long a face that is loading may still finish. */
const FONT_GRACE_MS = 3_000;
/** Cap on asking for the main frame's id. */
const FRAME_TREE_WAIT_MS = 1_000;
/** A poll that cannot be answered this long after the budget (a wedged page) ends the scan. */
const POLL_GRACE_MS = 2_000;

export type NetworkActivity = {
  /** Requests in flight in this frame (all frames when null). */
  inFlight(frameId: string | null): number;
  /** Epoch ms of the last request start or end of a tracked type. */
  readonly lastChangeAt: number;
  stop(): void;
};

/** Starts counting in-flight requests on a session with Network enabled; call before navigation. */
export function watchNetwork(cdp: CDPSession): NetworkActivity {
  const pending = new Map<string, string | undefined>();
  let lastChangeAt = Date.now();
  const onSent = (e: Protocol.Network.RequestWillBeSentEvent): void => {
    if (!TRACKED.has(e.type ?? "")) return;
    pending.set(e.requestId, e.frameId);
    lastChangeAt = Date.now();
  };
  const onDone = (e: { requestId: string }): void => {
    if (pending.delete(e.requestId)) lastChangeAt = Date.now();
  };
  cdp.on("Network.requestWillBeSent", onSent);
  cdp.on("Network.loadingFinished", onDone);
  cdp.on("Network.loadingFailed", onDone);
  return {
    inFlight(frameId) {
      if (frameId === null) return pending.size;
      let n = 0;
      for (const f of pending.values()) if (f === frameId) n++;
      return n;
    },
    get lastChangeAt() {
      return lastChangeAt;
    },
    stop() {
      cdp.off("Network.requestWillBeSent", onSent);
      cdp.off("Network.loadingFinished", onDone);
      cdp.off("Network.loadingFailed", onDone);
    },
  };
}

/** Polls until the page is quiet or the budget is spent. Throws when the page navigates away. */
export async function settleUntilQuiet(
  page: Page,
  cdp: CDPSession,
  net: NetworkActivity,
  opts: SettleOptions,
): Promise<SettleOutcome> {
  const started = Date.now();
  // Requests of iframes (ads, embeds) do not hold the scan: their fonts are not the page's. The
  // renderer answers this, so a wedged page must not hold it either (then all frames count).
  const mainFrame = await withTimeout(cdp.send("Page.getFrameTree"), FRAME_TREE_WAIT_MS, "frame tree")
    .then((t) => t.frameTree.frame.id)
    .catch(() => null);
  for (;;) {
    const pollBudget = Math.max(0, opts.endAt + FONT_GRACE_MS - Date.now()) + POLL_GRACE_MS;
    const activity = await withTimeout(page.evaluate(readPageActivity), pollBudget, "settling");
    const now = Date.now();
    const lastAt = Math.max(net.lastChangeAt, activity.lastActivityAt ?? 0);
    const idle = net.inFlight(mainFrame) === 0 && pageIdle(activity);
    if (idle && now - lastAt >= opts.quietMs && now - started >= opts.minMs)
      return { ended: "quiet", ms: now - started };
    // A face mid-load at the budget gets a short grace: its text is waiting for it.
    const fontsIdle = activity.fontsStatus === "loaded" && activity.loadingFaces === 0;
    if (now >= opts.endAt && (fontsIdle || now >= opts.endAt + FONT_GRACE_MS))
      return { ended: "budget", ms: now - started };
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function pageIdle(a: PageActivity): boolean {
  return a.readyState === "complete" && a.fontsStatus === "loaded" && a.loadingFaces === 0 && a.timers === 0;
}
