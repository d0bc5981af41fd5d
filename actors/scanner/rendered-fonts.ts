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

/** Text-bearing elements asked about, and text nodes walked to find them. */
const MAX_SAMPLES = 150;
const MAX_WALK = 20_000;
/** Elements whose ::before/::after are checked for generated text (icon fonts). */
const MAX_PSEUDO_WALK = 5_000;
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
 * Marks a bounded sample of text-bearing elements (two per computed font and per 256-code-point
 * block, plus elements whose ::before/::after generate text) and asks Chromium what rendered each.
 * getPlatformFontsForNode reports an element's own text and that of its near children.
 */
export async function sampleRenderedFonts(page: Page, cdp: CDPSession): Promise<Sampled> {
  const mark = `data-glyphscan-${randomBytes(4).toString("hex")}`;
  const { complete } = await page.evaluate(markTextElements, mark, MAX_SAMPLES, MAX_WALK, MAX_PSEUDO_WALK);
  try {
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

function markTextElements(
  mark: string,
  maxSamples: number,
  maxWalk: number,
  maxPseudoWalk: number,
): { marked: number; complete: boolean } {
  const perKey = new Map<string, number>();
  const chosen = new Set<Element>();
  let complete = true;
  const take = (el: Element, key: string): boolean => {
    const n = perKey.get(key) ?? 0;
    if (n >= 2 || chosen.has(el)) return true;
    if (chosen.size >= maxSamples) return false;
    perKey.set(key, n + 1);
    chosen.add(el);
    return true;
  };
  const root = document.body ?? document.documentElement;
  if (!root) return { marked: 0, complete };
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const asked = new Set<Element>();
  let walked = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (++walked > maxWalk) {
      complete = false;
      break;
    }
    const text = node.nodeValue ?? "";
    const el = node.parentElement;
    if (!el || asked.has(el) || !/\S/.test(text)) continue;
    asked.add(el);
    if (/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|TITLE)$/.test(el.tagName)) continue;
    const cs = getComputedStyle(el);
    const wide = Array.from(text).find((c) => (c.codePointAt(0) ?? 0) > 0x7f);
    const block = wide === undefined ? 0 : (wide.codePointAt(0) ?? 0) >> 8;
    if (!take(el, `${cs.fontFamily}|${cs.fontWeight}|${cs.fontStyle}|${block}`)) {
      complete = false;
      break;
    }
  }
  const all = root.getElementsByTagName("*");
  if (all.length > maxPseudoWalk) complete = false;
  for (let i = 0; i < Math.min(all.length, maxPseudoWalk); i++) {
    const el = all[i]!;
    for (const pseudo of ["::before", "::after"]) {
      const ps = getComputedStyle(el, pseudo);
      const content = ps.content;
      if (!content || content === "none" || content === "normal" || content === '""') continue;
      if (!take(el, `${pseudo}|${ps.fontFamily}|${ps.fontWeight}|${ps.fontStyle}`)) complete = false;
    }
  }
  for (const el of chosen) el.setAttribute(mark, "");
  return { marked: chosen.size, complete };
}

function unmarkTextElements(mark: string): void {
  for (const el of Array.from(document.querySelectorAll(`[${mark}]`))) el.removeAttribute(mark);
}
