/**
 * The reference's view of one page, from Chromium alone (CDP through puppeteer-core), written
 * apart from actors/scanner/ so the ground truth does not inherit the scanner's mistakes:
 * - every font body the page received: CDP Network responses of type Font, any fetch/XHR body
 *   whose first bytes are a font's, data: URI fonts decoded, and the bytes handed to
 *   `new FontFace(family, bytes)` (recorded in the page, so no fetch needs to be matched);
 * - every loaded face (CDP CSS.fontsUpdated: CSS family, weight, style, src, the real family);
 * - the fonts that drew text: CSS.getPlatformFontsForNode over every element with its own text
 *   and every pseudo-element, across frames and shadow roots;
 * - every declared face (document.fonts of every frame).
 * It waits long: no request for `quietMs` and every face out of "loading", up to `budgetMs`.
 */
import { createHash } from "node:crypto";
import type { CDPSession, Page } from "puppeteer-core";

export type LoadedFace = {
  family: string;
  weight: string;
  style: string;
  src: string;
  unicodeRange: string;
  platformFamily: string;
};
export type Received = { sha256: string; url: string; via: "font" | "fetch" | "data-uri" | "font-face-bytes" };
export type DrewWith = { css: string; real: string; style: string; weight: number };
export type Rendered = { familyName: string; postScriptName: string; custom: boolean };
export type PageView = {
  received: Received[];
  loaded: LoadedFace[];
  rendered: Rendered[];
  /**
   * Text a web font drew, one entry per distinct (stack family, real family, style, weight):
   * every CSS family (lower case) of the element's computed font-family, the real family that
   * drew, and the element's computed font-style and font-weight.
   */
  drewWith: DrewWith[];
  declaredFamilies: string[];
  /** FontFace(family, bytes) calls: the CSS family and descriptors, and the bytes' SHA-256. */
  byteFaces: Array<{ family: string; weight: string; style: string; sha256: string }>;
  httpStatus: number | null;
  quiet: boolean;
};

/** `p`, or `fallback` once `ms` have passed: one wedged CDP call must not hold the whole run. */
const within = <T>(p: Promise<T>, ms: number, fallback: T): Promise<T> =>
  Promise.race([p, new Promise<T>((resolve) => setTimeout(() => resolve(fallback), ms).unref())]);

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const FONT_MAGIC = ["wOF2", "wOFF", "OTTO", "true", "ttcf", "\u0000\u0001\u0000\u0000"];
const isFont = (b: Buffer): boolean => b.length > 4 && FONT_MAGIC.includes(b.subarray(0, 4).toString("latin1"));

/** Records FontFace(family, bytes) in every frame before any page script runs. */
const RECORD_BYTE_FACES = `(() => {
  const seen = (window.__refByteFaces = []);
  const Original = window.FontFace;
  window.FontFace = new Proxy(Original, {
    construct(target, args, newTarget) {
      const [family, source, desc] = args;
      if (source && typeof source !== "string") {
        const view = ArrayBuffer.isView(source) ? new Uint8Array(source.buffer, source.byteOffset, source.byteLength) : new Uint8Array(source);
        seen.push({ family: String(family), weight: String((desc && desc.weight) || "normal"), style: String((desc && desc.style) || "normal"), bytes: Array.from(view) });
      }
      return Reflect.construct(target, args, newTarget);
    },
  });
})();`;

function decodeDataUri(uri: string): Buffer | null {
  const comma = uri.indexOf(",");
  if (comma < 0) return null;
  const meta = uri.slice(5, comma);
  const data = uri.slice(comma + 1);
  return meta.endsWith(";base64") ? Buffer.from(data, "base64") : Buffer.from(decodeURIComponent(data), "latin1");
}

/** Network capture: font bodies received, and when the network last moved. */
function captureNetwork(cdp: CDPSession) {
  const received: Received[] = [];
  const pending = new Map<string, { url: string; type: string }>();
  const reads: Promise<void>[] = [];
  let inflight = 0;
  let last = Date.now();
  let status: number | null = null;
  let documentId: string | null = null;
  cdp.on("Network.requestWillBeSent", (e) => {
    last = Date.now();
    if (e.request.url.startsWith("data:")) {
      const bytes = e.type === "Font" || e.request.url.startsWith("data:font") ? decodeDataUri(e.request.url) : null;
      if (bytes && isFont(bytes))
        received.push({ sha256: sha(bytes), url: e.request.url.slice(0, 120), via: "data-uri" });
      return;
    }
    // blob: loads report no end; they read bytes the page already has.
    if (!/^https?:/.test(e.request.url)) return;
    if (e.type === "Document" && documentId === null) documentId = e.requestId;
    if (!pending.has(e.requestId)) inflight++;
    pending.set(e.requestId, { url: e.request.url, type: e.type ?? "Other" });
  });
  cdp.on("Network.responseReceived", (e) => {
    last = Date.now();
    if (e.requestId === documentId) status = e.response.status;
  });
  const done = (id: string, ok: boolean) => {
    last = Date.now();
    const req = pending.get(id);
    if (!req) return;
    pending.delete(id);
    inflight--;
    if (!ok || !["Font", "Fetch", "XHR", "Other"].includes(req.type)) return;
    reads.push(
      cdp.send("Network.getResponseBody", { requestId: id }).then(
        (r) => {
          const bytes = Buffer.from(r.body, r.base64Encoded ? "base64" : "utf8");
          if (req.type === "Font" || isFont(bytes))
            received.push({ sha256: sha(bytes), url: req.url, via: req.type === "Font" ? "font" : "fetch" });
        },
        () => undefined, // a body Chromium no longer holds: nothing was rendered from it here
      ),
    );
  };
  cdp.on("Network.loadingFinished", (e) => done(e.requestId, true));
  cdp.on("Network.loadingFailed", (e) => done(e.requestId, false));
  return {
    received,
    idleFor: () => (inflight > 0 ? 0 : Date.now() - last),
    status: () => status,
    settle: () => Promise.all(reads),
  };
}

type DomNode = {
  nodeId: number;
  nodeType: number;
  nodeValue?: string;
  children?: DomNode[];
  pseudoElements?: DomNode[];
  shadowRoots?: DomNode[];
  contentDocument?: DomNode;
};

/** Every element with non-blank text of its own, and every pseudo-element, in the whole tree. */
function textBearers(root: DomNode): number[] {
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const n = stack.pop()!;
    const kids = n.children ?? [];
    if (n.nodeType === 1 && kids.some((k) => k.nodeType === 3 && (k.nodeValue ?? "").trim() !== "")) out.push(n.nodeId);
    for (const p of n.pseudoElements ?? []) out.push(p.nodeId);
    stack.push(...kids, ...(n.shadowRoots ?? []), ...(n.contentDocument ? [n.contentDocument] : []));
  }
  return out;
}

/** The stack's family names as CSS matches them: unquoted, lower case. */
const stackOf = (value: string): string[] =>
  value
    .split(",")
    .map((f) =>
      f
        .trim()
        .replace(/^["']|["']$/g, "")
        .toLowerCase(),
    )
    .filter((f) => f !== "");

async function nodeFonts(cdp: CDPSession, nodeId: number, fonts: Map<string, Rendered>, pairs: Set<string>) {
  const r = await cdp.send("CSS.getPlatformFontsForNode", { nodeId }).catch(() => ({ fonts: [] }));
  const drew = r.fonts.filter((f) => f.glyphCount > 0);
  for (const f of drew)
    fonts.set(`${f.familyName}\u0000${f.postScriptName}`, {
      familyName: f.familyName,
      postScriptName: f.postScriptName,
      custom: f.isCustomFont,
    });
  if (!drew.some((f) => f.isCustomFont)) return;
  const style = await cdp.send("CSS.getComputedStyleForNode", { nodeId }).catch(() => ({ computedStyle: [] }));
  const prop = (name: string) => style.computedStyle.find((p) => p.name === name)?.value ?? "";
  const stack = stackOf(prop("font-family"));
  const fontStyle = prop("font-style").split(" ")[0] || "normal"; // "oblique 10deg" → "oblique"
  const weight = Number.parseFloat(prop("font-weight")) || 400;
  for (const f of drew)
    if (f.isCustomFont)
      for (const css of stack) pairs.add(JSON.stringify({ css, real: f.familyName, style: fontStyle, weight }));
}

/**
 * Fonts that drew text, and which CSS family named each: per text-bearing node, its platform
 * fonts (glyphs > 0) paired with every family of its computed font-family stack.
 */
async function renderedFonts(cdp: CDPSession): Promise<{ rendered: Rendered[]; pairs: Set<string> }> {
  const { root } = await cdp.send("DOM.getDocument", { depth: -1, pierce: true });
  const fonts = new Map<string, Rendered>();
  const pairs = new Set<string>();
  const nodes = textBearers(root);
  // CDP answers calls in order on one session: sending a batch at once saves the round trips.
  for (let i = 0; i < nodes.length; i += 64) {
    await Promise.all(nodes.slice(i, i + 64).map((nodeId) => nodeFonts(cdp, nodeId, fonts, pairs)));
  }
  const rendered = [...fonts.values()].sort((a, b) =>
    (a.familyName + a.postScriptName).localeCompare(b.familyName + b.postScriptName),
  );
  return { rendered, pairs };
}

type FrameFonts = {
  families: string[];
  loading: number;
  byteFaces: Array<{ family: string; weight: string; style: string; bytes: number[] }>;
};

/** document.fonts and recorded byte faces of every frame. */
async function frameFonts(page: Page): Promise<FrameFonts> {
  const all: FrameFonts = { families: [], loading: 0, byteFaces: [] };
  for (const frame of page.frames()) {
    const got = await within(
      frame
        .evaluate(() => {
          const faces = [...document.fonts];
          const w = window as unknown as { __refByteFaces?: FrameFonts["byteFaces"] };
          return {
            families: faces.map((f) => f.family.replace(/^["']|["']$/g, "")),
            loading: faces.filter((f) => f.status === "loading").length,
            byteFaces: w.__refByteFaces ?? [],
          };
        })
        .catch(() => null),
      5_000,
      null,
    );
    if (!got) continue;
    all.families.push(...got.families);
    all.loading += got.loading;
    all.byteFaces.push(...got.byteFaces);
  }
  return all;
}

export async function viewPage(
  page: Page,
  url: string,
  opts: { quietMs: number; budgetMs: number },
): Promise<PageView> {
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable", { maxTotalBufferSize: 200_000_000, maxResourceBufferSize: 50_000_000 });
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  await cdp.send("DOM.enable");
  await cdp.send("CSS.enable");
  const loaded = new Map<string, LoadedFace>();
  cdp.on("CSS.fontsUpdated", (e) => {
    const f = e.font;
    if (!f) return;
    const face = {
      family: f.fontFamily,
      weight: f.fontWeight,
      style: f.fontStyle,
      src: f.src,
      unicodeRange: f.unicodeRange,
      platformFamily: f.platformFontFamily,
    };
    loaded.set(JSON.stringify(face), face);
  });
  const net = captureNetwork(cdp);
  await page.evaluateOnNewDocument(RECORD_BYTE_FACES);
  const deadline = Date.now() + opts.budgetMs;
  await page.goto(url, { waitUntil: "load", timeout: opts.budgetMs }).catch(() => undefined);
  let quiet = false;
  while (Date.now() < deadline) {
    const fonts = await frameFonts(page);
    if (net.idleFor() >= opts.quietMs && fonts.loading === 0) {
      quiet = true;
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await within(net.settle(), 10_000, []);
  const fonts = await frameFonts(page);
  const { rendered, pairs } = await renderedFonts(cdp);
  await cdp.detach().catch(() => undefined);
  const byteFaces = fonts.byteFaces.map((f) => ({
    family: f.family,
    weight: f.weight,
    style: f.style,
    sha256: sha(Buffer.from(f.bytes)),
  }));
  return {
    received: net.received,
    loaded: [...loaded.values()],
    rendered,
    drewWith: [...pairs].sort().map((p) => JSON.parse(p) as DrewWith),
    declaredFamilies: [...new Set(fonts.families)].sort(),
    byteFaces,
    httpStatus: net.status(),
    quiet,
  };
}
