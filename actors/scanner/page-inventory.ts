/**
 * The page's own account of its fonts, read once it has settled: document.fonts (with the source
 * the page observer recorded for script-built faces) and every @font-face rule of its sheets,
 * joined with the captured files into declared/used faces. A face built from bytes is linked to
 * the file whose bytes it holds (by SHA-256), or, when the page made the bytes itself, to a file
 * carrying the same font names.
 */
import type { FontFace, FontFile } from "../../protocol/messages.ts";
import { sha256Hex } from "./font-metadata.ts";
import { fontProvider, stylesheetProvider, type ProviderId } from "./providers.ts";
import { shortUrl, stripHash, type CaptureState } from "./font-capture.ts";
import type { ObserverHandle } from "./page-observer.ts";

export type Descriptors = { family: string; weight: string; style: string; unicodeRange: string };
/**
 * A document.fonts entry; `jsSrc` is set (string, or null for bytes) when a script built it, and
 * `bytes` (base64) holds the bytes of a face built from bytes when the observer kept them.
 */
export type DocFont = Descriptors & { status: string; jsSrc?: string | null; bytes?: string };
/** `sheet`: the stylesheet's URL, or `inline:<n>` for a <style> element (its text in `inlineTexts`). */
type RawRule = Descriptors & { src: string; base: string; sheet: string };
export type Inventory = { fonts: DocFont[]; rules: RawRule[]; baseURI: string; inlineTexts: Record<string, string> };

/** The faces, and those built from bytes that no captured file holds (for linkBuiltFaces). */
export type Joined = { faces: FontFace[]; unlinkedBytes: FontFace[] };

export function joinFaces(inv: Inventory, state: CaptureState, pageUrl: string): Joined {
  const shaByUrl = new Map<string, string>();
  const urlBySha = new Map<string, string>();
  for (const c of state.captured) {
    const sha = sha256Hex(c.body);
    for (const u of c.urls) shaByUrl.set(stripHash(u), sha);
    if (!urlBySha.has(sha)) urlBySha.set(sha, c.url);
  }
  const sheetProviders = new Map<string, ProviderId | null>();
  const providerOfSheet = (sheet: string | null): ProviderId | null => {
    if (sheet === null) return null;
    if (!sheetProviders.has(sheet)) {
      // By the URL that delivered the sheet only: its text is the site's to write.
      sheetProviders.set(sheet, stylesheetProvider(sheet.startsWith("inline:") ? null : sheet, pageUrl));
    }
    return sheetProviders.get(sheet) ?? null;
  };
  const faces: FontFace[] = [];
  const unlinkedBytes: FontFace[] = [];
  /** `bytesFrom`: the captured file whose bytes a face built from bytes holds. */
  type Linked = { sha: string; url: string };
  const add = (
    f: Descriptors,
    used: boolean,
    how: FontFace["declaredIn"],
    urls: string[],
    sheet: string | null,
    bytesFrom?: Linked,
  ): FontFace => {
    const fileSha256 = bytesFrom
      ? [bytesFrom.sha]
      : [...new Set(urls.flatMap((u) => shaByUrl.get(stripHash(u)) ?? []))];
    const primary = bytesFrom?.url ?? urls.find((u) => shaByUrl.has(stripHash(u))) ?? urls[0];
    const fromSheet = providerOfSheet(sheet);
    const provider = primary === undefined ? fromSheet : fontProvider(primary, pageUrl, fromSheet);
    const face: FontFace = {
      ...descriptors(f),
      used,
      declaredIn: how,
      srcUrls: urls.map(shortUrl),
      fileSha256,
      provider,
    };
    faces.push(face);
    return face;
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
    // Script-built faces, and any face whose rule we could not read.
    if (paired.has(f)) continue;
    const urls = typeof f.jsSrc === "string" ? srcUrls(f.jsSrc, inv.baseURI) : [];
    const sha = f.bytes === undefined ? undefined : sha256Hex(Buffer.from(f.bytes, "base64"));
    const url = sha === undefined ? undefined : urlBySha.get(sha);
    const face = add(f, f.status === "loaded", "font-face-api", urls, null, sha && url ? { sha, url } : undefined);
    if (f.jsSrc === null && face.fileSha256.length === 0) unlinkedBytes.push(face);
  }
  return { faces, unlinkedBytes };
}

/**
 * Faces built from bytes no request carried (decoded or assembled by the page) are linked to the
 * files whose PostScript name is what Chromium rendered them as: the font's own names. Runs after
 * applyRendering, which sets `renderedAs`.
 */
export function linkBuiltFaces(unlinkedBytes: FontFace[], files: FontFile[]): void {
  for (const face of unlinkedBytes) {
    const names = new Set(face.renderedAs ?? []);
    const same = files.filter((f) => f.metadata?.postscriptName && names.has(f.metadata.postscriptName));
    face.fileSha256 = [...new Set(same.map((f) => f.sha256))];
    face.provider ??= same[0]?.provider ?? null;
  }
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
  const re = new RegExp(`(${CSS_STRING})|url\\(\\s*(?:(${CSS_STRING})\\s*|([^)"'\\s][^)]*))?\\)`, "gi");
  const target = (m: RegExpExecArray) => (m[2] ? m[2].slice(1, -1).replace(/\\(.)/g, "$1") : (m[3] ?? "").trim());
  return Array.from(src.matchAll(re), target)
    .filter((raw) => raw !== "")
    .map((raw) => (URL.canParse(raw, base) ? new URL(raw, base).href : raw));
}

// ---- Run inside the page (serialised by puppeteer: no references to module scope) ----

/**
 * document.fonts plus every @font-face rule of the applied sheets. Cross-origin sheets throw on
 * cssRules, so their captured bodies are parsed here by Chromium's own CSS parser (a constructed
 * sheet is never applied, and drops @import, which is followed by URL instead).
 */
export function inventoryInPage(sheetTexts: Record<string, string>): Inventory {
  const observer = (window as unknown as Record<string, ObserverHandle | undefined>)["__glyphscanObserver"];
  const base64 = (bytes: Uint8Array): string => {
    let out = "";
    for (let i = 0; i < bytes.length; i += 0x8000) out += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(out);
  };
  const fonts: DocFont[] = [];
  document.fonts.forEach((f) => {
    const { family, weight, style, unicodeRange, status } = f;
    const entry: DocFont = { family, weight, style, unicodeRange, status };
    const source = observer?.sources.get(f);
    if (source !== undefined) entry.jsSrc = source.src;
    if (source?.bytes) entry.bytes = base64(source.bytes);
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
    const text = sheetTexts[href.split("#", 1)[0] ?? href];
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
