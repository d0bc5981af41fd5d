/**
 * Font extraction for one page: network capture of font files and stylesheets, then the page's
 * FontFaceSet and CSS @font-face rules, joined into declared/used faces. Navigation errors are
 * thrown as-is for scan-site to classify; everything after navigation degrades instead of failing.
 */
import type { CDPSession, HTTPResponse, Page } from "puppeteer-core";
import type { FontFace, FontFile } from "../../protocol/messages.ts";
import { readFontMetadata, sha256Hex, sniffFontFormat } from "./font-metadata.ts";
import { fontProvider, stylesheetProvider, type ProviderId } from "./providers.ts";
import { armPageGuards, type Blocked, type PageGuards } from "./page-guards.ts";
import {
  applyRendering,
  sampleRenderedFonts,
  watchPlatformFaces,
  type PlatformFaces,
  type RenderedFont,
} from "./rendered-fonts.ts";
import { MAX_PAGE_LINKS, pageLinks } from "./same-site.ts";
import { withSpan, withSyncSpan } from "../../cluster/telemetry.ts";
import { withTimeout } from "../../cluster/async.ts";

export type ExtractOptions = {
  maxFontBytes: number;
  navigationTimeoutMs: number;
  settleMs: number;
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
};

/** Blocked inside Chromium via CDP (cheaper than request interception). Never fonts or CSS. */
const BLOCKED_EXTENSIONS = ["png", "jpg", "jpeg", "gif", "webp", "avif", "bmp", "ico", "svg", "mp4", "webm", "mp3"];
/** A stylesheet larger than this is not parsed; no font-face inventory needs that much CSS. */
const MAX_CSS_CHARS = 4 * 1024 * 1024;
/** Cap on each fonts.ready wait: a font request that never finishes must not stall the scan. */
const FONTS_WAIT_MS = 5_000;
/** Cap on reading the captured bodies once the page has settled. */
const BODY_WAIT_MS = 5_000;

export type Captured = {
  urls: string[];
  url: string;
  body: Uint8Array;
  contentType: string | null;
  via: FontFile["via"];
};
export type Descriptors = { family: string; weight: string; style: string; unicodeRange: string };
/** A document.fonts entry; `jsSrc` is set (string, or null for bytes) when a script built it. */
type DocFont = Descriptors & { status: string; jsSrc?: string | null };
/** `sheet`: the stylesheet's URL, or `inline:<n>` for a <style> element (its text in `inlineTexts`). */
type RawRule = Descriptors & { src: string; base: string; sheet: string };
type Inventory = { fonts: DocFont[]; rules: RawRule[]; baseURI: string; inlineTexts: Record<string, string> };
type State = {
  maxFontBytes: number;
  captured: Captured[];
  sheets: Record<string, string>;
  pending: Promise<unknown>[];
};

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
 * Arms font capture on a page that is about to navigate: response capture, image blocking and
 * the FontFace hook. Split from extractFonts so another crawler that navigates by itself (the
 * Crawlee baseline in ops/bench) runs the same page-side extraction.
 */
export async function startCapture(page: Page, opts: ExtractOptions): Promise<Capturing> {
  const state: State = { maxFontBytes: opts.maxFontBytes, captured: [], sheets: {}, pending: [] };
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
  try {
    cdp = await page.createCDPSession();
    await cdp.send("Network.enable");
    await cdp.send("Network.setBlockedURLs", {
      urlPatterns: BLOCKED_EXTENSIONS.map((ext) => ({ urlPattern: `*://*:*/*.${ext}`, block: true })),
    });
    guards = await armPageGuards(page, cdp, opts.refusalFor);
    stops.push(() => guards.stop());
    platform = await watchPlatformFaces(cdp);
    stops.push(() => platform.stop());
    await page.evaluateOnNewDocument(installFontFaceHook);
  } catch (err) {
    stop();
    throw err;
  }
  const session = cdp;
  return {
    stop,
    throwIfRefused: () => guards.throwIfRefused(),
    async collect(httpStatus, deadline) {
      const inventory = await settleAndCollect(page, deadline, opts.settleMs, state);
      guards.throwIfRefused(); // a script navigated the page to a refused address
      // Degrades: a page that cannot be sampled (wedged, navigating) keeps its loaded faces as used.
      const sampled = await withTimeout(sampleRenderedFonts(page, session), BODY_WAIT_MS, "rendered fonts").catch(
        () => null,
      );
      const links = await withTimeout(page.evaluate(pageLinks, MAX_PAGE_LINKS), BODY_WAIT_MS, "links").catch(() => []);
      await drain(state); // a face that finished loading during the inventory has its body in flight
      const finalUrl = page.url();
      const faces = joinFaces(inventory, state, finalUrl);
      const files = parseFontsSpan(state.captured, () => toFiles(state.captured, opts.maxFontBytes, finalUrl, faces));
      if (sampled) applyRendering(faces, files, platform.faces, sampled);
      const rendered = sampled ? { renderedFonts: sampled.fonts } : {};
      return { httpStatus, finalUrl, faces, files, blocked: guards.blocked, ...rendered, links };
    },
  };
}

async function capture(resp: HTTPResponse, state: State): Promise<void> {
  const status = resp.status();
  if (status < 200 || status >= 300) return;
  const request = resp.request();
  const type = request.resourceType();
  const url = resp.url();
  const urls = [...request.redirectChain().map((r) => r.url()), url];
  const headers = resp.headers();
  const contentType = headers["content-type"] ?? null;
  if (type === "stylesheet" || /^text\/css/i.test(contentType ?? "")) {
    const text = await resp.text();
    if (text.length <= MAX_CSS_CHARS) for (const u of urls) state.sheets[stripHash(u)] = text;
    return;
  }
  if (type !== "font" && type !== "fetch" && type !== "xhr") return;
  // Script-fetched fonts are recognisable only by their bytes; skip bodies that cannot be one.
  const scripted = type !== "font";
  const textual = /text|json|javascript|xml/i.test(contentType ?? "");
  if (scripted && (textual || Number(headers["content-length"]) > state.maxFontBytes)) return;
  const body = await resp.buffer();
  if (scripted && !sniffFontFormat(body)) return;
  const via = url.startsWith("data:") ? "data-uri" : scripted ? "script-fetch" : "font-request";
  state.captured.push({ urls, url, body, contentType, via });
}

/** Font parsing (hash, name table, provider) of a page's captured files, in a `parse fonts` span. */
export function parseFontsSpan(captured: readonly Captured[], parse: () => FontFile[]): FontFile[] {
  return withSyncSpan("parse fonts", { "glyphscan.fonts.captured": captured.length }, (span) => {
    const files = parse();
    span?.setAttribute("glyphscan.fonts.files", files.length);
    return files;
  });
}

/**
 * A body over maxFontBytes is still hashed (Chromium already held it and the protocol needs a
 * sha256 per file) but not parsed: parse time grows with size, and WOFF2 decoding is pure JS.
 */
export function toFiles(captured: Captured[], maxFontBytes: number, pageUrl: string, faces: FontFace[]): FontFile[] {
  // A file on the site's own host inherits the provider of the kit whose stylesheet declared it.
  const faceProvider = new Map<string, ProviderId | null>();
  for (const f of faces)
    for (const sha of f.fileSha256) if (!faceProvider.get(sha)) faceProvider.set(sha, f.provider as ProviderId | null);
  const byKey = new Map<string, FontFile>();
  for (const c of captured) {
    const sha256 = sha256Hex(c.body);
    const key = `${sha256} ${c.url}`;
    if (byKey.has(key)) continue;
    const bytes = c.body.byteLength;
    const parsed =
      bytes > maxFontBytes ? { metadata: null, parseError: `too large: ${bytes} bytes` } : readFontMetadata(c.body);
    const provider = fontProvider(c.url, pageUrl, faceProvider.get(sha256) ?? null);
    byKey.set(key, {
      sha256,
      url: shortUrl(c.url),
      bytes,
      contentType: c.contentType,
      via: c.via,
      ...parsed,
      provider,
    });
  }
  return [...byKey.values()];
}

function joinFaces(inv: Inventory, state: State, pageUrl: string): FontFace[] {
  const shaByUrl = new Map<string, string>();
  for (const c of state.captured) for (const u of c.urls) shaByUrl.set(stripHash(u), sha256Hex(c.body));
  const sheetProviders = new Map<string, ProviderId | null>();
  const providerOfSheet = (sheet: string | null): ProviderId | null => {
    if (sheet === null) return null;
    if (!sheetProviders.has(sheet)) {
      const inline = sheet.startsWith("inline:");
      const text = inline ? (inv.inlineTexts[sheet] ?? null) : (state.sheets[stripHash(sheet)] ?? null);
      sheetProviders.set(sheet, stylesheetProvider(inline ? null : sheet, text, pageUrl));
    }
    return sheetProviders.get(sheet) ?? null;
  };
  const faces: FontFace[] = [];
  const add = (
    f: Descriptors,
    used: boolean,
    declaredIn: FontFace["declaredIn"],
    urls: string[],
    sheet: string | null,
  ): void => {
    const fileSha256 = [...new Set(urls.flatMap((u) => shaByUrl.get(stripHash(u)) ?? []))];
    const primary = urls.find((u) => shaByUrl.has(stripHash(u))) ?? urls[0];
    const fromSheet = providerOfSheet(sheet);
    const provider = primary === undefined ? fromSheet : fontProvider(primary, pageUrl, fromSheet);
    faces.push({ ...descriptors(f), used, declaredIn, srcUrls: urls.map(shortUrl), fileSha256, provider });
  };
  // document.fonts holds one FontFace per applied @font-face rule, with no link back to it:
  // pair them by descriptors, in order. Only a pairing with a loaded FontFace makes a rule used.
  const cssFonts = inv.fonts.filter((f) => f.jsSrc === undefined);
  const paired = new Set<DocFont>();
  for (const rule of inv.rules) {
    const key = faceKey(rule);
    const hit = cssFonts.find((f) => !paired.has(f) && faceKey(f) === key);
    if (hit) paired.add(hit);
    add(rule, hit?.status === "loaded", "stylesheet", srcUrls(rule.src, rule.base), rule.sheet);
  }
  for (const f of inv.fonts) {
    // Script-built faces, and any face whose rule we could not read. Faces built from bytes have
    // no URL: their file, when a script fetched it, is listed in `files` only.
    if (paired.has(f)) continue;
    const urls = typeof f.jsSrc === "string" ? srcUrls(f.jsSrc, inv.baseURI) : [];
    add(f, f.status === "loaded", "font-face-api", urls, null);
  }
  return faces;
}

/** Family unquoted, weight and style normalised (`bold` is `700`, as in a FontFace's own terms). */
export function descriptors(f: Descriptors): { family: string; weight: string; style: string } {
  const quoted = /^(["'])(.*)\1$/s.exec(f.family.trim());
  const family = (quoted ? quoted[2]!.replace(/\\(.)/g, "$1") : f.family.trim()).replace(/\s+/g, " ");
  const w = f.weight.trim().toLowerCase().replace(/\s+/g, " ");
  const weight = w === "" || w === "normal" ? "400" : w === "bold" ? "700" : w;
  const style = f.style.trim().toLowerCase().replace(/\s+/g, " ") || "normal";
  return { family, weight, style };
}

/** What a rule and its document.fonts entry have in common. */
function faceKey(f: Descriptors): string {
  const d = descriptors(f);
  return [d.family.toLowerCase(), d.weight, d.style, canonicalRange(f.unicodeRange)].join("|");
}

/** unicode-range as Chromium's FontFace serialises it: `U+0-FF, U+131`, wildcards expanded. */
function canonicalRange(range: string): string {
  const items = range
    .toUpperCase()
    .split(",")
    .map((r) => r.trim().replace(/^U\+/, ""))
    .filter(Boolean);
  if (items.length === 0) return "U+0-10FFFF";
  const hex = (s: string, fill: string) => parseInt(s.replace(/\?/g, fill), 16).toString(16).toUpperCase();
  return items
    .map((item) => {
      const [lo = "", hi] = item.split("-");
      const from = hex(lo, "0");
      const to = hi === undefined ? hex(lo, "F") : hex(hi, "0");
      return from === to ? `U+${from}` : `U+${from}-${to}`;
    })
    .join(", ");
}

/** A CSS string literal with escapes; strings may hold commas, parentheses and quotes. */
const CSS_STRING = String.raw`"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'`;

/** Absolute url() targets of a `src` descriptor or FontFace source string, in order. */
export function srcUrls(src: string, base: string): string[] {
  // Bare strings are matched first so that a local("…url(…)…") name is skipped whole.
  const re = new RegExp(`(${CSS_STRING})|url\\(\\s*(?:(${CSS_STRING})|([^)]*?))\\s*\\)`, "gi");
  return Array.from(src.matchAll(re), (m) => (m[2] ? m[2].slice(1, -1).replace(/\\(.)/g, "$1") : (m[3] ?? "")))
    .filter((raw) => raw !== "")
    .map((raw) => (URL.canParse(raw, base) ? new URL(raw, base).href : raw));
}

const stripHash = (u: string): string => (u.startsWith("data:") ? u : u.replace(/#.*$/, ""));

/** data: URIs can run to megabytes; reports keep their head and length. */
function shortUrl(u: string): string {
  return u.startsWith("data:") && u.length > 128 ? `${u.slice(0, 64)}…[${u.length} chars]` : u;
}

/** Waits (bounded) for the body reads started so far; a read that fails only loses its file. */
async function drain(state: State): Promise<void> {
  await withTimeout(Promise.allSettled(state.pending), BODY_WAIT_MS, "reading bodies").catch(() => undefined);
}

/**
 * load (bounded by the navigation deadline), fonts.ready, settle, fonts.ready; then the
 * inventory. A script redirect after load destroys the context mid-evaluate: retry on the new one.
 */
async function settleAndCollect(page: Page, deadline: number, settleMs: number, state: State): Promise<Inventory> {
  for (let attempt = 1; ; attempt++) {
    try {
      const loadMs = Math.max(0, deadline - Date.now());
      const budget = loadMs + 2 * FONTS_WAIT_MS + settleMs + 2_000;
      await withTimeout(page.evaluate(settleInPage, loadMs, FONTS_WAIT_MS, settleMs), budget, "settling");
      await drain(state); // stylesheet bodies must be in before the inventory reads them
      return await withTimeout(page.evaluate(inventoryInPage, state.sheets), BODY_WAIT_MS, "inventory");
    } catch (err) {
      if (attempt >= 3 || !/context was destroyed|navigat/i.test(String(err))) throw err;
      const timeout = Math.max(1_000, deadline - Date.now());
      await page.waitForNavigation({ waitUntil: "domcontentloaded", timeout }).catch(() => undefined);
    }
  }
}

// ---- Run inside the page (serialised by puppeteer: no references to module scope) ----

/** Records the source of every FontFace a script builds; document.fonts does not expose it. */
function installFontFaceHook(): void {
  const sources = new WeakMap<object, string | null>();
  window.FontFace = new Proxy(window.FontFace, {
    construct(target, args: unknown[], newTarget) {
      const face = Reflect.construct(target, args, newTarget) as object;
      sources.set(face, typeof args[1] === "string" ? args[1] : null);
      return face;
    },
  });
  const lookup = (face: object): string | null | undefined => (sources.has(face) ? sources.get(face) : undefined);
  Object.defineProperty(window, "__glyphscanFontSource", { value: lookup });
}

async function settleInPage(loadMs: number, fontsMs: number, settleMs: number): Promise<void> {
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const within = (p: Promise<unknown>, ms: number) => Promise.race([p, sleep(ms)]);
  if (document.readyState !== "complete")
    await within(new Promise((r) => addEventListener("load", r, { once: true })), loadMs);
  await within(document.fonts.ready, fontsMs);
  await sleep(settleMs);
  await within(document.fonts.ready, fontsMs);
}

/**
 * document.fonts plus every @font-face rule of the applied sheets. Cross-origin sheets throw on
 * cssRules, so their captured bodies are parsed here by Chromium's own CSS parser (a constructed
 * sheet is never applied, and drops @import, which is followed by URL instead).
 */
function inventoryInPage(sheetTexts: Record<string, string>): Inventory {
  const lookup = (window as unknown as { __glyphscanFontSource?: (f: object) => string | null | undefined })
    .__glyphscanFontSource;
  const fonts: DocFont[] = [];
  document.fonts.forEach((f) => {
    const { family, weight, style, unicodeRange, status } = f;
    const entry: DocFont = { family, weight, style, unicodeRange, status };
    const jsSrc = lookup?.(f);
    if (jsSrc !== undefined) entry.jsSrc = jsSrc;
    fonts.push(entry);
  });
  const rules: RawRule[] = [];
  const names = ["font-family", "src", "font-weight", "font-style", "unicode-range"];
  const seen = new Set<string>();
  const inlineTexts: Record<string, string> = {};
  const walk = (list: CSSRuleList, base: string, sheetKey: string): void => {
    for (const rule of Array.from(list)) {
      if (rule instanceof CSSFontFaceRule) {
        const [family = "", src = "", weight = "", style = "", unicodeRange = ""] = names.map((p) =>
          rule.style.getPropertyValue(p),
        );
        rules.push({ family, src, weight, style, unicodeRange, base, sheet: sheetKey });
      } else if (rule instanceof CSSImportRule && rule.styleSheet) visit(rule.styleSheet);
      else if ("cssRules" in rule) walk((rule as CSSGroupingRule).cssRules, base, sheetKey);
    }
  };
  const fromText = (href: string, depth: number): void => {
    const text = sheetTexts[href.replace(/#.*$/, "")];
    if (text === undefined || seen.has(href) || depth > 5) return;
    seen.add(href);
    try {
      const imports = text.replace(/\/\*[\s\S]*?\*\//g, "").matchAll(/@import\s+(?:url\(\s*)?["']?([^"')\s;]+)/gi);
      for (const m of imports) fromText(new URL(m[1] ?? "", href).href, depth + 1);
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(text);
      walk(sheet.cssRules, href, href);
    } catch {
      // An unparsable import URL or sheet only loses that sheet's rules.
    }
  };
  const visit = (sheet: CSSStyleSheet): void => {
    let list: CSSRuleList;
    try {
      list = sheet.cssRules;
    } catch {
      if (sheet.href) fromText(sheet.href, 0);
      return;
    }
    let key = sheet.href;
    if (key === null) {
      key = `inline:${Object.keys(inlineTexts).length}`;
      inlineTexts[key] = sheet.ownerNode?.textContent ?? "";
    }
    walk(list, sheet.href ?? document.baseURI, key);
  };
  for (const sheet of [...Array.from(document.styleSheets), ...document.adoptedStyleSheets]) visit(sheet);
  return { fonts, rules, baseURI: document.baseURI, inlineTexts };
}
