/**
 * The static fast path: fetch the HTML and its CSS over HTTP, read @font-face rules, work out
 * which faces the page's text and styles ask for, download and hash those files, and answer
 * without a browser. It answers only when nothing could load fonts behind its back: no script
 * (except a short list of known analytics beacons), no frames, no event handlers, no meta
 * refresh, every stylesheet and every used face's file fetched. Anything else escalates to the
 * browser, with the reason. Every request passes the SSRF guard (fetchPinned).
 */
import type { FontFace } from "../../protocol/messages.ts";
import { parseCss, splitTopLevel, type CssFace, type CssRule } from "./css-scan.ts";
import { descriptors, parseFontsSpan, srcUrls, toFiles, type Captured, type PageExtraction } from "./extract-fonts.ts";
import { sha256Hex, sniffFontFormat } from "./font-metadata.ts";
import { fetchPinned, FetchError, type FetchOptions } from "./http-fetch.ts";
import { fontProvider, stylesheetProvider, type ProviderId } from "./providers.ts";
import type { AddressPolicy } from "./ssrf.ts";

export type StaticOptions = {
  policy: AddressPolicy;
  maxFontBytes: number;
  /** Budget of the whole static attempt; past it the browser takes over. */
  timeoutMs: number;
};

export type StaticOutcome = { answered: true; page: PageExtraction } | { answered: false; reason: string };

/** Scripts that are known not to load fonts (analytics beacons), by host and path. */
export const SAFE_SCRIPTS: readonly RegExp[] = [
  /^https?:\/\/www\.google-analytics\.com\/(analytics|ga)\.js$/,
  /^https?:\/\/static\.cloudflareinsights\.com\/beacon\.min\.js/,
  /^https?:\/\/plausible\.io\/js\/(script|plausible)[\w.-]*\.js$/,
  /^https?:\/\/cdn\.usefathom\.com\/script\.js$/,
];
/** <script type> values that are data, never run. */
const DATA_SCRIPT_TYPES =
  /^(application\/(ld\+)?json|application\/json|text\/(template|x-template|html|plain)|importmap)$/i;
const GENERIC_FAMILIES = new Set(
  [
    "serif",
    "sans-serif",
    "monospace",
    "cursive",
    "fantasy",
    "system-ui",
    "ui-serif",
    "ui-sans-serif",
    "ui-monospace",
    "ui-rounded",
    "math",
    "emoji",
    "fangsong",
    "-apple-system",
    "blinkmacsystemfont",
    "inherit",
    "initial",
    "unset",
    "revert",
    "revert-layer",
  ].map((f) => f.toLowerCase()),
);
const SUPPORTED_FORMATS = /^(woff2|woff|opentype|truetype|collection|font\/(woff2?|otf|ttf|collection))$/i;
const MAX_SHEETS = 40;
const MAX_FONTS = 40;
const MAX_HTML_BYTES = 4 * 1024 * 1024;
const MAX_CSS_BYTES = 4 * 1024 * 1024;

class Escalate extends Error {
  override name = "Escalate";
}

/** Answers statically, or says why the browser must (never throws). */
export async function staticScan(url: string, opts: StaticOptions): Promise<StaticOutcome> {
  try {
    return { answered: true, page: await scan(url, opts) };
  } catch (err) {
    const reason = err instanceof Escalate || err instanceof FetchError ? err.message : `internal: ${String(err)}`;
    return { answered: false, reason };
  }
}

type Sheet = { url: string | null; text: string; base: string };
type Html = {
  inlineSheets: string[];
  sheetLinks: string[];
  fontPreloads: string[];
  styleAttrs: string[];
  tags: Set<string>;
  classes: Set<string>;
  ids: Set<string>;
  text: string;
  /** <a href> targets, absolute, for same-site pages. */
  links: string[];
};

async function scan(url: string, opts: StaticOptions): Promise<PageExtraction> {
  const deadline = Date.now() + opts.timeoutMs;
  const fetchOpts = (maxBytes: number, accept?: string): FetchOptions => ({
    policy: opts.policy,
    deadline,
    maxBytes,
    ...(accept ? { accept } : {}),
  });
  const page = await fetchPinned(url, fetchOpts(MAX_HTML_BYTES, "text/html,application/xhtml+xml"));
  if (page.status !== 200) throw new Escalate(`landing page answered HTTP ${page.status}`);
  if (!/^text\/html\b/i.test(page.contentType ?? "")) throw new Escalate(`landing page is ${page.contentType}`);
  const pageUrl = page.url;
  const html = readHtml(page.body.toString("utf8"), pageUrl);

  // Stylesheets, with their @import chains, in no particular order: only the set of rules matters.
  const sheets: Sheet[] = html.inlineSheets.map((text) => ({ url: null, text, base: pageUrl }));
  const fetched = new Set<string>();
  const load = async (sheetUrl: string, depth: number): Promise<void> => {
    const key = sheetUrl.replace(/#.*$/, "");
    if (fetched.has(key)) return;
    if (depth > 5 || fetched.size >= MAX_SHEETS) throw new Escalate("too many or too deep stylesheets");
    fetched.add(key);
    const res = await fetchPinned(key, fetchOpts(MAX_CSS_BYTES, "text/css,*/*;q=0.1"));
    if (res.status !== 200) throw new Escalate(`stylesheet ${key} answered HTTP ${res.status}`);
    const text = res.body.toString("utf8");
    sheets.push({ url: key, text, base: res.url });
    await Promise.all(parseCss(text).imports.map((i) => load(absolute(i, res.url), depth + 1)));
  };
  await Promise.all([
    ...html.sheetLinks.map((l) => load(l, 0)),
    ...html.inlineSheets.flatMap((t) => parseCss(t).imports.map((i) => load(absolute(i, pageUrl), 1))),
  ]);

  const declared: Array<{ face: CssFace; sheet: Sheet }> = [];
  const rules: CssRule[] = html.styleAttrs.map((style) => ({ selector: "*", props: parseInline(style) }));
  for (const sheet of sheets) {
    const parsed = parseCss(sheet.text);
    for (const face of parsed.faces) declared.push({ face, sheet });
    rules.push(...parsed.rules.filter((r) => selectorMayMatch(r.selector, html)));
  }

  const used = usedFaces(declared, rules, html);
  const captured: CapturedWithSha[] = [];
  const downloads = new Map<string, Promise<CapturedWithSha>>();
  const download = (fontUrl: string): Promise<CapturedWithSha> => {
    let p = downloads.get(fontUrl);
    if (!p) {
      if (downloads.size >= MAX_FONTS) throw new Escalate("too many font files");
      p = fetchFont(fontUrl, opts.maxFontBytes, fetchOpts(opts.maxFontBytes + 1));
      downloads.set(fontUrl, p);
    }
    return p;
  };
  const primaryOf = new Map<CssFace, string>();
  await Promise.all([
    ...[...used].map(async (face) => {
      const entry = declared.find((d) => d.face === face)!;
      const chosen = pickSource(face.src, entry.sheet.base);
      if (!chosen) throw new Escalate(`no loadable src for "${face.family}"`);
      primaryOf.set(face, chosen);
      captured.push(await download(chosen));
    }),
    ...html.fontPreloads.map(async (u) => captured.push(await download(u))),
  ]);

  const sheetProviders = new Map<Sheet, ProviderId | null>();
  const providerOfSheet = (sheet: Sheet): ProviderId | null => {
    if (!sheetProviders.has(sheet)) sheetProviders.set(sheet, stylesheetProvider(sheet.url, pageUrl));
    return sheetProviders.get(sheet) ?? null;
  };
  const byRequestedUrl = new Map(captured.map((c) => [c.urls[0], c]));
  const faces: FontFace[] = declared.map(({ face, sheet }) => {
    const urls = srcUrls(face.src, sheet.base);
    const primary = primaryOf.get(face);
    const file = primary === undefined ? undefined : byRequestedUrl.get(primary);
    const fromSheet = providerOfSheet(sheet);
    const first = primary ?? urls[0];
    return {
      ...descriptors(face),
      used: used.has(face),
      declaredIn: "stylesheet",
      srcUrls: urls.map(shortUrl),
      fileSha256: file ? [file.sha256] : [],
      provider: first === undefined ? fromSheet : fontProvider(first, pageUrl, fromSheet),
    };
  });
  const files = await parseFontsSpan(captured, () => toFiles(captured, opts.maxFontBytes, pageUrl, faces));
  return { httpStatus: page.status, finalUrl: pageUrl, faces, files, links: html.links };
}

type CapturedWithSha = Captured & { sha256: string };

async function fetchFont(fontUrl: string, maxFontBytes: number, fetchOpts: FetchOptions): Promise<CapturedWithSha> {
  let body: Buffer;
  let contentType: string | null;
  let urls = [fontUrl];
  if (fontUrl.startsWith("data:")) {
    const m = /^data:([^,]*?)(;base64)?,(.*)$/s.exec(fontUrl);
    if (!m) throw new Escalate("unreadable data: URI");
    body = m[2] ? Buffer.from(m[3]!, "base64") : Buffer.from(decodeURIComponent(m[3]!), "latin1");
    contentType = m[1]!.split(";")[0] || null;
  } else {
    const res = await fetchPinned(fontUrl, fetchOpts);
    if (res.status !== 200) throw new Escalate(`font ${fontUrl} answered HTTP ${res.status}`);
    body = res.body;
    contentType = res.contentType;
    if (res.url !== fontUrl) urls = [fontUrl, res.url];
  }
  if (body.byteLength > maxFontBytes) throw new Escalate(`font ${shortUrl(fontUrl)} is over ${maxFontBytes} bytes`);
  if (!sniffFontFormat(body)) throw new Escalate(`${shortUrl(fontUrl)} is not a font file`);
  const via = fontUrl.startsWith("data:") ? "data-uri" : "font-request";
  return { urls, url: urls.at(-1)!, body, contentType, via, sha256: sha256Hex(body) };
}

// ---- HTML ----

function readHtml(source: string, pageUrl: string): Html {
  let doc = source.replace(/<!--[\s\S]*?(-->|$)/g, " ");
  doc = doc.replace(/<(noscript|template)\b[\s\S]*?<\/\1\s*>/gi, " ");
  for (const m of doc.matchAll(/<script\b([^>]*)>/gi)) {
    const attrs = attributes(m[1] ?? "");
    if (DATA_SCRIPT_TYPES.test((attrs.type ?? "").trim())) continue;
    const src = attrs.src === undefined ? null : absolute(attrs.src, pageUrl);
    if (src === null || !SAFE_SCRIPTS.some((re) => re.test(src))) throw new Escalate("the page runs scripts");
  }
  doc = doc.replace(/<script\b[\s\S]*?<\/script\s*>/gi, " ");
  if (/<(iframe|frame|frameset|object|embed|portal)\b/i.test(doc)) throw new Escalate("the page embeds documents");
  if (/<base\b/i.test(doc)) throw new Escalate("the page sets <base>");
  if (/<meta\b[^>]*http-equiv\s*=\s*["']?refresh/i.test(doc)) throw new Escalate("the page refreshes itself");
  if (/<[a-z][^>]*\son[a-z]+\s*=/i.test(doc)) throw new Escalate("the page has event handler attributes");

  const inlineSheets: string[] = [];
  doc = doc.replace(/<style\b[^>]*>([\s\S]*?)<\/style\s*>/gi, (_, css: string) => {
    inlineSheets.push(css);
    return " ";
  });
  const sheetLinks: string[] = [];
  const fontPreloads: string[] = [];
  const styleAttrs: string[] = [];
  const tags = new Set(["html", "body"]);
  const classes = new Set<string>();
  const ids = new Set<string>();
  const links: string[] = [];
  for (const m of doc.matchAll(/<([a-z][a-z0-9-]*)\b([^>]*)>/gi)) {
    const tag = m[1]!.toLowerCase();
    const attrs = attributes(m[2] ?? "");
    tags.add(tag);
    for (const c of (attrs.class ?? "").split(/\s+/)) if (c) classes.add(c);
    if (attrs.id) ids.add(attrs.id);
    if (attrs.style) styleAttrs.push(attrs.style);
    if (tag === "a" && attrs.href !== undefined && links.length < 200 && URL.canParse(attrs.href.trim(), pageUrl)) {
      links.push(new URL(attrs.href.trim(), pageUrl).href);
    }
    if (tag !== "link" || attrs.href === undefined) continue;
    const rel = (attrs.rel ?? "").toLowerCase().split(/\s+/);
    if (rel.includes("stylesheet") && !rel.includes("alternate") && attrs.disabled === undefined) {
      sheetLinks.push(absolute(attrs.href, pageUrl));
    } else if (rel.includes("preload") && (attrs.as ?? "").toLowerCase() === "font") {
      fontPreloads.push(absolute(attrs.href, pageUrl));
    }
  }
  const body = /<body\b[^>]*>([\s\S]*)$/i.exec(doc)?.[1] ?? doc.replace(/<head\b[\s\S]*?<\/head\s*>/i, " ");
  const text = decodeEntities(body.replace(/<[^>]*>/g, " "));
  return { inlineSheets, sheetLinks, fontPreloads, styleAttrs, tags, classes, ids, text, links };
}

function attributes(source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of source.matchAll(/([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    const name = m[1]!.toLowerCase();
    if (!(name in out)) out[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? "");
  }
  return out;
}

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === "#") {
      const cp = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
    }
    return NAMED[e.toLowerCase()] ?? m;
  });
}

function absolute(ref: string, base: string): string {
  const trimmed = ref.trim();
  if (!URL.canParse(trimmed, base)) throw new Escalate(`unreadable URL ${trimmed.slice(0, 100)}`);
  return new URL(trimmed, base).href;
}

function shortUrl(u: string): string {
  return u.startsWith("data:") && u.length > 128 ? `${u.slice(0, 64)}…[${u.length} chars]` : u;
}

function parseInline(style: string): Record<string, string> {
  return parseCss(`x{${style}}`).rules[0]?.props ?? {};
}

/**
 * Whether a selector could match this document: the last compound of each alternative is
 * checked against the tags, classes and ids present. Anything more complex is assumed to match.
 */
function selectorMayMatch(selector: string, html: Html): boolean {
  return splitTopLevel(selector, ",").some((alternative) => {
    const plain = alternative.replace(/::?[a-z-]+(\([^)]*\))?/gi, "").replace(/\[[^\]]*\]/g, "");
    const compound =
      plain
        .trim()
        .split(/[\s>+~]+/)
        .at(-1) ?? "";
    const tag = /^[a-z][a-z0-9-]*/i.exec(compound)?.[0]?.toLowerCase();
    if (tag && !html.tags.has(tag)) return false;
    if ([...compound.matchAll(/\.([\w-]+)/g)].some((m) => !html.classes.has(m[1]!))) return false;
    return ![...compound.matchAll(/#([\w-]+)/g)].some((m) => !html.ids.has(m[1]!));
  });
}

// ---- Which faces the page asks for ----

/**
 * Faces of every family that some font-family stack reaches first (a generic family or a
 * declared face ends the walk; an unknown local name before a declared face is a guess the
 * browser must make), matched per requested weight and style as CSS font matching does, and
 * only where their unicode-range meets the page's text.
 */
function usedFaces(declared: Array<{ face: CssFace }>, rules: CssRule[], html: Html): Set<CssFace> {
  const byFamily = new Map<string, CssFace[]>();
  for (const { face } of declared) {
    const key = descriptors(face).family.toLowerCase();
    byFamily.set(key, [...(byFamily.get(key) ?? []), face]);
  }
  const vars = new Map<string, string>();
  for (const r of rules) for (const [k, v] of Object.entries(r.props)) if (k.startsWith("--")) vars.set(k, v);
  const families = new Set<string>();
  const weights = new Set<number>([400]);
  const styles = new Set<string>(["normal"]);
  if ([..."b strong h1 h2 h3 h4 h5 h6 th".split(" ")].some((t) => html.tags.has(t))) weights.add(700);
  if ([..."i em cite var dfn address".split(" ")].some((t) => html.tags.has(t))) styles.add("italic");
  for (const rule of rules) {
    const props = Object.fromEntries(Object.entries(rule.props).map(([k, v]) => [k, substitute(v, vars)]));
    const stack = props["font-family"] ?? (props.font ? shorthandFamilies(props.font) : undefined);
    if (stack) {
      const family = firstDeclared(stack, byFamily);
      if (family) families.add(family);
    }
    for (const value of [props["font-weight"], props.font]) {
      for (const w of (value ?? "").split(/\s+/)) {
        if (/^[1-9]00$/.test(w)) weights.add(Number(w));
        else if (w === "bold" || w === "bolder") weights.add(700);
        else if (w === "lighter") weights.add(100);
      }
    }
    for (const value of [props["font-style"], props.font])
      if (/\b(italic|oblique)\b/.test(value ?? "")) styles.add("italic");
  }
  const text = codePoints(html.text);
  const used = new Set<CssFace>();
  for (const family of families) {
    const faces = (byFamily.get(family) ?? []).filter((f) => rangeMeets(f.unicodeRange, text));
    for (const style of styles) {
      const sameStyle = faces.filter((f) => faceStyle(f) === style);
      const pool = sameStyle.length > 0 ? sameStyle : faces;
      for (const w of weights) for (const f of bestWeight(pool, w)) used.add(f);
    }
  }
  return used;
}

function substitute(value: string, vars: Map<string, string>): string {
  let out = value;
  for (let i = 0; i < 5 && out.includes("var("); i++) {
    out = out.replace(/var\(\s*(--[\w-]+)\s*(?:,\s*([^()]*))?\)/g, (_, name: string, fallback: string | undefined) => {
      const v = vars.get(name) ?? fallback;
      if (v === undefined) throw new Escalate(`font property uses undefined ${name}`);
      return v;
    });
  }
  if (out.includes("var(")) throw new Escalate("font property uses nested var()");
  return out;
}

/** The family list of a `font` shorthand: what follows the size (and line height). */
function shorthandFamilies(value: string): string | undefined {
  const size =
    /(?:^|\s)(?:[\d.]+(?:px|em|rem|pt|pc|%|ex|ch|vw|vh|vmin|vmax|cm|mm|in|q|lh|rlh)|(?:xx?x?-)?(?:small|large)|medium|smaller|larger)(?:\s*\/\s*[^\s,]+)?\s+(.+)$/i;
  return size.exec(value)?.[1];
}

function firstDeclared(stack: string, byFamily: Map<string, CssFace[]>): string | null {
  const names = splitTopLevel(stack, ",").map((n) =>
    descriptors({ family: n, weight: "", style: "", unicodeRange: "" }),
  );
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!.family.toLowerCase();
    if (byFamily.has(name)) return name;
    if (GENERIC_FAMILIES.has(name)) return null;
    if (names.slice(i + 1).some((n) => byFamily.has(n.family.toLowerCase()))) {
      throw new Escalate(`"${names[i]!.family}" may be a local font ahead of a web font`);
    }
  }
  return null;
}

function faceStyle(f: CssFace): string {
  const s = descriptors(f).style;
  return s.startsWith("italic") || s.startsWith("oblique") ? "italic" : "normal";
}

/** The faces CSS font matching picks for weight `w` (all faces sharing the winning weight). */
function bestWeight(faces: CssFace[], w: number): CssFace[] {
  if (faces.length === 0) return [];
  const eff = faces.map((f) => {
    const [lo = 400, hi = lo] = descriptors(f).weight.split(/\s+/).map(Number);
    return { f, weight: Math.min(Math.max(w, lo), hi) };
  });
  const below = (x: number) => x <= w;
  const rank = (x: number): number => {
    if (x === w) return 0;
    if (w >= 400 && w <= 500) {
      if (x > w && x <= 500) return 1 + (x - w);
      if (x < w) return 1000 + (w - x);
      return 2000 + (x - 500);
    }
    if (w < 400) return below(x) ? 1 + (w - x) : 1000 + (x - w);
    return x > w ? 1 + (x - w) : 1000 + (w - x);
  };
  const best = Math.min(...eff.map((e) => rank(e.weight)));
  return eff.filter((e) => rank(e.weight) === best).map((e) => e.f);
}

function codePoints(text: string): Set<number> {
  const out = new Set<number>();
  for (const ch of text) if (!/\s/.test(ch)) out.add(ch.codePointAt(0)!);
  return out;
}

function rangeMeets(range: string, text: Set<number>): boolean {
  if (range.trim() === "") return text.size > 0;
  const spans = range.split(",").flatMap((item) => {
    const r = item.trim().replace(/^u\+/i, "");
    if (r === "") return [];
    const [lo = "", hi] = r.split("-");
    const from = parseInt(lo.replace(/\?/g, "0"), 16);
    const to = hi === undefined ? parseInt(lo.replace(/\?/g, "F"), 16) : parseInt(hi, 16);
    return Number.isNaN(from) || Number.isNaN(to) ? [] : [[from, to] as const];
  });
  for (const cp of text) if (spans.some(([a, b]) => cp >= a && cp <= b)) return true;
  return false;
}

/** The first url() the browser would fetch: supported format (or none given), not local(). */
function pickSource(src: string, base: string): string | null {
  for (const entry of splitTopLevel(src, ",")) {
    if (/^local\(/i.test(entry)) continue;
    const format = /format\(\s*["']?([^"')]+)["']?\s*\)/i.exec(entry)?.[1];
    if (format && !SUPPORTED_FORMATS.test(format.trim())) continue;
    const url = srcUrls(entry, base)[0];
    if (url) return url;
  }
  return null;
}
