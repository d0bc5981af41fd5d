/**
 * The rendered-font signal: which fonts actually drew the page's text, from Chromium itself.
 * - CDP `CSS.fontsUpdated` (CSS enabled before navigation): each loaded face's CSS family and src
 *   with its platform family, i.e. the real font behind a CSS alias.
 * - CDP `CSS.getPlatformFontsForNode` on a bounded sample of text-bearing elements: the fonts
 *   (PostScript name from the binary, custom or system fallback, glyph count) that rendered them.
 * A loaded face that rendered none of the sampled text is only declared (when the sample covered
 * the page); a family merely named in a font-family stack never has a face, so is never used.
 */
import { randomBytes } from "node:crypto";
import type { CDPSession, Page } from "puppeteer-core";
import type { FontFace, FontFile, ScanReport } from "../../protocol/messages.ts";

export type RenderedFont = NonNullable<ScanReport["renderedFonts"]>[number];
/** A CSS.fontsUpdated face: which real family a CSS family (and src) loaded. */
export type PlatformFace = { family: string; src: string; platformFamily: string };
export type Sampled = { fonts: RenderedFont[]; complete: boolean };
export type PlatformFaces = { faces: PlatformFace[]; stop: () => void };

/**
 * Text-bearing elements asked about (in all, and per declared face, weight, style and 256-code-point
 * block), text nodes walked to find them, and elements whose ::before/::after are checked for
 * generated text (icon fonts).
 */
type SampleLimits = { maxSamples: number; perFace: number; maxWalk: number; maxPseudoWalk: number };
type Marked = { marked: number; complete: boolean };
const LIMITS: SampleLimits = { maxSamples: 200, perFace: 3, maxWalk: 20_000, maxPseudoWalk: 5_000 };
const MAX_PLATFORM_FACES = 500;
const MAX_RENDERED = 200;

/** Starts collecting CSS.fontsUpdated; call before navigation (enables DOM and CSS). */
export async function watchPlatformFaces(cdp: CDPSession): Promise<PlatformFaces> {
  const faces: PlatformFace[] = [];
  const onUpdate = (event: { font?: { fontFamily: string; src: string; platformFontFamily: string } }): void => {
    const f = event.font;
    if (!f || faces.length >= MAX_PLATFORM_FACES) return;
    faces.push({ family: unquote(f.fontFamily), src: f.src, platformFamily: f.platformFontFamily });
  };
  cdp.on("CSS.fontsUpdated", onUpdate);
  await cdp.send("DOM.enable");
  await cdp.send("CSS.enable");
  return { faces, stop: () => void cdp.off("CSS.fontsUpdated", onUpdate) };
}

/**
 * Marks a bounded sample of visible text-bearing elements (for each declared family, a few whose
 * computed font-family names it; two per computed font and per 256-code-point block; elements whose
 * ::before/::after generate text) and asks Chromium what rendered each.
 * getPlatformFontsForNode reports an element's own text and that of its near children.
 */
export async function sampleRenderedFonts(page: Page, cdp: CDPSession, declared: string[]): Promise<Sampled> {
  const mark = `data-glyphscan-${randomBytes(4).toString("hex")}`;
  const families = [...new Set(declared.map((f) => f.toLowerCase()))].slice(0, 500);
  const text = await page.evaluate(markTextElements, mark, families, LIMITS);
  try {
    const generated = await page.evaluate(markGeneratedText, mark, LIMITS, LIMITS.maxSamples - text.marked);
    const complete = text.complete && generated.complete;
    const { root } = await cdp.send("DOM.getDocument", { depth: 0 });
    const { nodeIds } = await cdp.send("DOM.querySelectorAll", { nodeId: root.nodeId, selector: `[${mark}]` });
    const byName = new Map<string, RenderedFont>();
    for (let i = 0; i < nodeIds.length; i += 25) {
      const batch = nodeIds.slice(i, i + 25).map((nodeId) =>
        cdp.send("CSS.getPlatformFontsForNode", { nodeId }).then(
          (r) => r.fonts,
          () => [],
        ),
      );
      for (const fonts of await Promise.all(batch)) {
        for (const f of fonts) {
          const key = `${f.postScriptName}|${f.familyName}|${f.isCustomFont}`;
          const seen = byName.get(key);
          if (seen) seen.glyphs += f.glyphCount;
          else {
            const font = { family: f.familyName, postScriptName: f.postScriptName, custom: f.isCustomFont };
            byName.set(key, { ...font, glyphs: f.glyphCount });
          }
        }
      }
    }
    return { fonts: [...byName.values()].slice(0, MAX_RENDERED), complete };
  } finally {
    await page.evaluate(unmarkTextElements, mark).catch(() => undefined);
  }
}

/**
 * Sets `renderedAs` on each used (loaded) face: the rendered PostScript names of its file (by the
 * parsed name table), else of its real family (CSS.fontsUpdated). A loaded face that rendered none
 * of the sampled text becomes declared-only when the sample was complete; a face whose real font
 * is unknown keeps its loaded status.
 */
export function applyRendering(faces: FontFace[], files: FontFile[], platform: PlatformFace[], sampled: Sampled): void {
  const custom = sampled.fonts.filter((f) => f.custom);
  const renderedPs = new Set(custom.map((f) => f.postScriptName));
  const byFamily = new Map<string, string[]>();
  for (const f of custom) {
    const key = f.family.toLowerCase();
    byFamily.set(key, [...(byFamily.get(key) ?? []), f.postScriptName]);
  }
  const fileBySha = new Map(files.map((f) => [f.sha256, f]));
  for (const face of faces) {
    if (!face.used) continue;
    const names = face.fileSha256.flatMap((sha) => fileBySha.get(sha)?.metadata?.postscriptName ?? []);
    let renderedAs: string[] | null = null;
    if (names.length > 0) {
      renderedAs = names.filter((n) => renderedPs.has(n));
    } else {
      const family = face.family.toLowerCase();
      const candidates = platform.filter((p) => p.family.toLowerCase() === family);
      const bySrc = candidates.filter((p) => face.srcUrls.some((u) => p.src !== "" && p.src === u));
      const real = new Set((bySrc.length > 0 ? bySrc : candidates).map((p) => p.platformFamily.toLowerCase()));
      if (real.size > 0) renderedAs = [...real].flatMap((r) => byFamily.get(r) ?? []);
    }
    if (renderedAs === null) continue;
    face.renderedAs = [...new Set(renderedAs)].slice(0, 50);
    if (renderedAs.length === 0 && sampled.complete) face.used = false;
  }
}

function unquote(family: string): string {
  const m = /^(["'])(.*)\1$/s.exec(family.trim());
  return m ? m[2]!.replace(/\\(.)/g, "$1") : family.trim();
}

// ---- Run inside the page (serialised by puppeteer: no references to module scope) ----

/**
 * Marks visible, laid-out text only: an element hidden by CSS (display, visibility,
 * content-visibility, on itself or an ancestor), a text run with no layout box (zero-size,
 * clipped away by a 0×0 box), `noscript` and `template` contents never render, and sampling them
 * would demote a face that did draw text elsewhere. Elements naming a declared family come first.
 */
function markTextElements(mark: string, declared: string[], limits: SampleLimits): Marked {
  const unquote = (f: string) =>
    f
      .trim()
      .replace(/^(["'])(.*)\1$/s, "$2")
      .toLowerCase();
  const wanted = new Set(declared.map(unquote));
  const perKey = new Map<string, number>();
  const picks = { face: new Set<Element>(), other: new Set<Element>() };
  let complete = true;
  /** Counts `el` under `key` unless the key has its share or the pool is full. */
  const take = (pool: Set<Element>, el: Element, key: string, cap: number): void => {
    const n = perKey.get(key) ?? 0;
    if (n >= cap || pool.has(el)) return;
    if (pool.size >= limits.maxSamples) return void (complete = false);
    perKey.set(key, n + 1);
    pool.add(el);
  };
  const range = document.createRange();
  const shown = (el: Element, node: Node): boolean => {
    if (!el.checkVisibility({ visibilityProperty: true, checkVisibilityCSS: true })) return false;
    range.selectNodeContents(node);
    return Array.from(range.getClientRects()).some((r) => r.width > 0 && r.height > 0);
  };
  const root = document.body ?? document.documentElement;
  if (!root) return { marked: 0, complete };
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const asked = new Set<Element>();
  let walked = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (++walked > limits.maxWalk) {
      complete = false;
      break;
    }
    const text = node.nodeValue ?? "";
    const el = node.parentElement;
    if (!el || asked.has(el) || !/\S/.test(text)) continue;
    if (/^(?:SCRIPT|STYLE|NOSCRIPT|TEMPLATE|TITLE)$/.test(el.tagName)) continue;
    const cs = getComputedStyle(el);
    const wide = Array.from(text).find((c) => (c.codePointAt(0) ?? 0) > 0x7f);
    const style = `${cs.fontWeight}|${cs.fontStyle}|${wide === undefined ? 0 : (wide.codePointAt(0) ?? 0) >> 8}`;
    const faceKeys = cs.fontFamily
      .split(",")
      .map(unquote)
      .filter((f) => wanted.has(f))
      .map((f) => `face|${f}|${style}`);
    const otherKey = `${cs.fontFamily}|${style}`;
    const needed = faceKeys.some((k) => (perKey.get(k) ?? 0) < limits.perFace) || (perKey.get(otherKey) ?? 0) < 2;
    // Visibility is asked only of elements that would be taken: it costs a layout query each.
    if (!needed || !shown(el, node)) continue;
    asked.add(el);
    for (const key of faceKeys) take(picks.face, el, key, limits.perFace);
    take(picks.other, el, otherKey, 2);
  }
  const chosen = [...picks.face, ...Array.from(picks.other).filter((el) => !picks.face.has(el))];
  if (chosen.length > limits.maxSamples) complete = false;
  for (const el of chosen.slice(0, limits.maxSamples)) el.setAttribute(mark, "");
  return { marked: Math.min(chosen.length, limits.maxSamples), complete };
}

/** Marks shown elements whose ::before/::after generate text (icon fonts), up to `room` more. */
function markGeneratedText(mark: string, limits: SampleLimits, room: number): Marked {
  const root = document.body ?? document.documentElement;
  const all = root ? root.getElementsByTagName("*") : [];
  let complete = all.length <= limits.maxPseudoWalk;
  const perKey = new Map<string, number>();
  let marked = 0;
  for (let i = 0; i < Math.min(all.length, limits.maxPseudoWalk); i++) {
    const el = all[i]!;
    for (const pseudo of ["::before", "::after"]) {
      const ps = getComputedStyle(el, pseudo);
      const content = ps.content;
      if (!content || content === "none" || content === "normal" || content === '""') continue;
      const key = `${pseudo}|${ps.fontFamily}|${ps.fontWeight}|${ps.fontStyle}`;
      const n = perKey.get(key) ?? 0;
      if (n >= 2 || el.hasAttribute(mark)) continue;
      if (!el.checkVisibility({ visibilityProperty: true, checkVisibilityCSS: true }) || !el.getClientRects().length)
        continue;
      if (marked >= room) {
        complete = false;
        continue;
      }
      perKey.set(key, n + 1);
      el.setAttribute(mark, "");
      marked++;
    }
  }
  return { marked, complete };
}

function unmarkTextElements(mark: string): void {
  for (const el of Array.from(document.querySelectorAll(`[${mark}]`))) el.removeAttribute(mark);
}
