/**
 * The page-side half of the settle, installed before any page script runs (evaluateOnNewDocument):
 * - every FontFace a script builds is recorded with its source (a URL string, or a copy of its
 *   bytes, bounded), since document.fonts does not say where a face came from;
 * - font activity bumps a clock: a FontFace built or added, a face starting or ending a load, a
 *   <style> or stylesheet <link> inserted or changed, an `@font-face` inserted through the CSSOM,
 *   a constructed sheet replaced or adopted;
 * - short timers still due count as pending work: a script that inserts its font stylesheet
 *   600 ms after DOMContentLoaded has nothing on the network until then. Only the first few links
 *   of a timer chain, two timers per call site (stack), and a bounded number per page count, so a
 *   polling loop (a timer chain, or `await sleep()` in a loop) cannot hold a scan.
 * The wrappers are Proxies, so the page still sees native functions.
 */
import type { Page } from "puppeteer-core";

export type ObserverLimits = {
  /** Bytes kept per face built from bytes, and in all. */
  maxFaceBytes: number;
  maxTotalBytes: number;
  /** Timers due later than this are not waited for. */
  maxTimerMs: number;
  /** Links of a timer chain (a timer set by a timer's callback) that count. */
  maxTimerDepth: number;
  /** Timers per page, and per call site, that count. */
  maxTimers: number;
  maxTimersPerSite: number;
};

/** What the page reports at each settle poll; `lastActivityAt` is epoch ms, null before any. */
export type PageActivity = {
  lastActivityAt: number | null;
  timers: number;
  fontsStatus: string;
  loadingFaces: number;
  readyState: string;
};

/** A face's recorded source: the src string, or null with (when kept) its bytes. */
export type FaceSource = { src: string | null; bytes?: Uint8Array };

/** The observer's state on the page (`window.__glyphscanObserver`), shared by its three parts. */
export type ObserverHandle = {
  touch(): void;
  lastActivityAt(): number | null;
  sources: WeakMap<object, FaceSource>;
  /** Counted timers not yet run. */
  due: Set<unknown>;
  /** Replaces `owner[name]` by a Proxy that calls `before` with the arguments first. */
  wrap(owner: object, name: string, before: (args: unknown[]) => void): void;
};

/** Installs the observer's parts, in order, to run before any script of every new document. */
export async function installPageObserver(page: Page, limits: ObserverLimits): Promise<void> {
  await page.evaluateOnNewDocument(watchFontActivity);
  await page.evaluateOnNewDocument(recordFaceSources, limits);
  await page.evaluateOnNewDocument(watchTimers, limits);
}

// ---- Run inside the page (serialised by puppeteer: no references to module scope) ----

/** The activity clock, bumped by stylesheet and face changes in the DOM, the CSSOM and document.fonts. */
function watchFontActivity(): void {
  const clock = performance.now.bind(performance);
  const origin = performance.timeOrigin;
  let last: number | null = null;
  const touch = (): void => void (last = origin + clock());
  const wrap = (owner: object, name: string, before: (args: unknown[]) => void): void => {
    const slots = owner as Record<string, unknown>;
    const original = slots[name];
    if (typeof original !== "function") return;
    slots[name] = new Proxy(original, {
      apply(target, self, args: unknown[]) {
        before(args);
        return Reflect.apply(target, self, args) as unknown;
      },
    });
  };
  const handle: ObserverHandle = {
    touch,
    lastActivityAt: () => last,
    sources: new WeakMap(),
    due: new Set(),
    wrap,
  };
  Object.defineProperty(window, "__glyphscanObserver", { value: handle });

  wrap(FontFaceSet.prototype, "add", touch);
  wrap(CSSStyleSheet.prototype, "insertRule", (args) => {
    if (/@font-face/i.test(String(args[0]))) touch();
  });
  wrap(CSSStyleSheet.prototype, "replace", touch);
  wrap(CSSStyleSheet.prototype, "replaceSync", touch);
  const adopted = Object.getOwnPropertyDescriptor(Document.prototype, "adoptedStyleSheets");
  if (adopted?.set) {
    Object.defineProperty(Document.prototype, "adoptedStyleSheets", {
      ...adopted,
      set(value: unknown) {
        touch();
        adopted.set?.call(this, value);
      },
    });
  }
  for (const type of ["loading", "loadingdone", "loadingerror"]) document.fonts.addEventListener(type, touch);

  const isSheetNode = (n: Node | null): boolean =>
    n?.nodeName === "STYLE" || (n?.nodeName === "LINK" && /stylesheet/i.test((n as Element).getAttribute("rel") ?? ""));
  new MutationObserver((records) => {
    for (const r of records) {
      const hit =
        r.type === "childList"
          ? isSheetNode(r.target) ||
            Array.from(r.addedNodes).some(
              (n) => isSheetNode(n) || (n instanceof Element && n.querySelector("style, link[rel~=stylesheet]")),
            )
          : r.type === "characterData"
            ? isSheetNode(r.target.parentNode)
            : r.target.nodeName === "LINK";
      if (hit) return touch();
    }
  }).observe(document, {
    childList: true,
    subtree: true,
    characterData: true,
    attributes: true,
    attributeFilter: ["href", "rel", "media", "disabled"],
  });
}

/** Records each FontFace a script builds with its source: the string, or a bounded copy of its bytes. */
function recordFaceSources(limits: ObserverLimits): void {
  const handle = (window as unknown as Record<string, ObserverHandle | undefined>)["__glyphscanObserver"];
  if (!handle) return;
  let keptBytes = 0;
  const copyBytes = (data: unknown): Uint8Array | undefined => {
    const view = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : null;
    if (!view || view.byteLength > limits.maxFaceBytes || keptBytes + view.byteLength > limits.maxTotalBytes) return;
    keptBytes += view.byteLength;
    return view.slice(); // the page may reuse or detach its buffer
  };
  window.FontFace = new Proxy(window.FontFace, {
    construct(target, args: unknown[], newTarget) {
      const face = Reflect.construct(target, args, newTarget) as object;
      const src = args[1];
      const bytes = typeof src === "string" ? undefined : copyBytes(src);
      handle.sources.set(face, typeof src === "string" ? { src } : bytes ? { src: null, bytes } : { src: null });
      handle.touch();
      return face;
    },
  });
}

/** Counts short timers still due; a callback runs with the depth of the chain that set it. */
function watchTimers(limits: ObserverLimits): void {
  const handle = (window as unknown as Record<string, ObserverHandle | undefined>)["__glyphscanObserver"];
  if (!handle) return;
  const perSite = new Map<string, number>();
  let depth = 0;
  let counted = 0;
  /** Counts one more timer from the calling stack; false once that site has had its share. */
  const fromNewSite = (): boolean => {
    const site = new Error().stack ?? "";
    const n = perSite.get(site) ?? 0;
    perSite.set(site, n + 1);
    return n < limits.maxTimersPerSite;
  };
  window.setTimeout = new Proxy(setTimeout, {
    apply(target, self, args: unknown[]) {
      const [fn, delay, ...rest] = args;
      const ms = Number(delay) || 0;
      const track = typeof fn === "function" && ms <= limits.maxTimerMs && depth < limits.maxTimerDepth;
      if (!track || counted >= limits.maxTimers || !fromNewSite()) return Reflect.apply(target, self, args) as number;
      counted++;
      const mine = depth + 1;
      const run = function (this: unknown, ...callArgs: unknown[]): unknown {
        handle.due.delete(id);
        handle.touch();
        const outer = depth;
        depth = mine;
        try {
          return (fn as (...a: unknown[]) => unknown).apply(this, callArgs);
        } finally {
          depth = outer;
        }
      };
      const id: unknown = Reflect.apply(target, self, [run, delay, ...rest]);
      handle.due.add(id);
      return id as number;
    },
  });
  handle.wrap(window, "clearTimeout", (args) => void handle.due.delete(args[0]));
}

/** One settle poll: the observer's clock and timers, and document.fonts' own state. */
export function readPageActivity(): PageActivity {
  const handle = (window as unknown as Record<string, ObserverHandle | undefined>)["__glyphscanObserver"];
  // A headless page may not lay out until something asks: layout is what starts a face's load
  // (its text is shaped), so each poll forces it; a clean layout costs nothing.
  void document.documentElement?.getBoundingClientRect();
  let loadingFaces = 0;
  document.fonts.forEach((f) => {
    if (f.status === "loading") loadingFaces++;
  });
  return {
    lastActivityAt: handle?.lastActivityAt() ?? null,
    timers: handle?.due.size ?? 0,
    fontsStatus: document.fonts.status,
    loadingFaces,
    readyState: document.readyState,
  };
}
