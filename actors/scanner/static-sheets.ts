/**
 * A page's stylesheets in cascade order: <style> and <link rel=stylesheet> in document order,
 * each preceded by its @import chain, fetched concurrently and parsed in slices. Flattening
 * gives each rule its document order and @layer rank; rules are then pruned to what can change
 * a face (font properties, display, content, and the custom properties those refer to).
 */
import type { HtmlPage } from "./static-html.ts";
import { absolute } from "./static-html.ts";
import { mediaMatches } from "./css-media.ts";
import { FONT_PROPS, parseSheet, type Decl, type FaceRule, type ParsedSheet, type SheetEvent } from "./css-read.ts";
import type { CascadeRule } from "./static-cascade.ts";
import {
  computeStretch,
  computeStyle,
  computeWeight,
  KEYWORDS,
  parseFamilies,
  parseFontShorthand,
  varNames,
} from "./css-values.ts";
import { Escalate, LIMITS, type Slicer } from "./static-limits.ts";

/** A fetched stylesheet's text and final URL, or null when the browser would not get it either (refused, 4xx). */
export type SheetFetcher = (url: string) => Promise<{ text: string; url: string } | null>;
export type FaceWithDoubt = FaceRule & { doubt: string | null; sheet: { url: string | null; text: string } };
export type Styles = {
  faces: FaceWithDoubt[];
  rules: CascadeRule[];
  sheets: Array<{ url: string | null; text: string }>;
};

type Loaded = { parsed: ParsedSheet; imports: Map<number, Loaded | null>; url: string | null; text: string };

export async function loadStyles(html: HtmlPage, fetchSheet: SheetFetcher, slicer: Slicer): Promise<Styles> {
  const seen = new Set<string>();
  let bytes = 0;
  const load = async (text: string, base: string, url: string | null, depth: number): Promise<Loaded> => {
    bytes += text.length;
    if (text.length > LIMITS.cssBytes || bytes > LIMITS.cssTotalBytes)
      throw new Escalate(`stylesheets over ${LIMITS.cssBytes} bytes each or ${LIMITS.cssTotalBytes} in all`, "limit");
    const parsed = await parseSheet(text, base, url, slicer);
    const imports = new Map<number, Loaded | null>();
    await Promise.all(
      parsed.events.map(async (ev, i) => {
        if (ev.kind !== "import") return;
        if (depth >= LIMITS.importDepth) throw new Escalate("@import chain too deep", "limit");
        imports.set(i, await fetchAndLoad(absolute(ev.href, base), depth + 1));
      }),
    );
    return { parsed, imports, url, text };
  };
  const fetchAndLoad = async (href: string, depth: number): Promise<Loaded | null> => {
    const key = href.split("#")[0]!;
    if (!seen.has(key) && seen.size >= LIMITS.sheets)
      throw new Escalate(`more than ${LIMITS.sheets} stylesheets`, "limit");
    seen.add(key);
    const got = await fetchSheet(key);
    return got === null ? null : load(got.text, got.url, got.url, depth);
  };
  const roots = await Promise.all(
    html.sheets.map(async (s): Promise<{ loaded: Loaded | null; doubt: string | null }> => {
      const media = mediaMatches(s.kind === "link" ? s.ref.media : s.sheet.media);
      if (media === false) return { loaded: null, doubt: null };
      const doubt = media === null ? "a stylesheet's media attribute" : null;
      const loaded =
        s.kind === "link" ? await fetchAndLoad(s.ref.href, 0) : await load(s.sheet.text, html.base, null, 0);
      return { loaded, doubt };
    }),
  );
  return flatten(roots);
}

function flatten(roots: Array<{ loaded: Loaded | null; doubt: string | null }>): Styles {
  const faces: FaceWithDoubt[] = [];
  const layered: Array<{ rule: Omit<CascadeRule, "layerRank">; layer: string[] | null }> = [];
  const sheets: Styles["sheets"] = [];
  const layers = new LayerOrder();
  const visit = (node: Loaded, doubt: string | null, prefix: string[] | null): void => {
    const sheet = { url: node.url, text: node.text };
    sheets.push(sheet);
    node.parsed.events.forEach((ev: SheetEvent, i) => {
      const d = doubt ?? ("doubt" in ev ? ev.doubt : null);
      if (ev.kind === "import") {
        const child = node.imports.get(i);
        const media = ev.media === null ? "an @import media query" : null;
        if (child) visit(child, d ?? media, join(prefix, ev.layer));
      } else if (ev.kind === "layer") layers.register(join(prefix, ev.path)!);
      else if (ev.kind === "face") faces.push({ ...ev.face, doubt: d, sheet });
      else {
        const layer = join(prefix, ev.layer);
        if (layer) layers.register(layer);
        const rule = { alternatives: ev.alternatives, decls: ev.decls, order: layered.length, doubt: d };
        layered.push({ rule, layer });
      }
    });
  };
  for (const r of roots) if (r.loaded) visit(r.loaded, r.doubt, null);
  const rules = prune(layered.map(({ rule, layer }) => ({ ...rule, layerRank: layers.rank(layer) })));
  if (rules.length > LIMITS.fontRules) throw new Escalate(`more than ${LIMITS.fontRules} font rules`, "limit");
  return { faces, rules, sheets };
}

function join(prefix: string[] | null, path: string[] | null): string[] | null {
  if (path === null) return prefix;
  return prefix === null ? path : [...prefix, ...path];
}

/** @layer order: sibling layers by first appearance, a layer's own rules above its sublayers, unlayered on top. */
class LayerOrder {
  #index = new Map<string, number>();
  #keys = new Map<string, number[]>();
  #ranks: Map<string, number> | null = null;
  register(path: string[]): void {
    for (let i = 1; i <= path.length; i++) {
      const id = path.slice(0, i).join("\u0001");
      if (this.#keys.has(id)) continue;
      const parent = path.slice(0, i - 1).join("\u0001");
      const n = this.#index.get(parent) ?? 0;
      this.#index.set(parent, n + 1);
      this.#keys.set(id, [...(this.#keys.get(parent)?.slice(0, -1) ?? []), n, Infinity]);
    }
  }
  rank(path: string[] | null): number {
    if (path === null) return Number.MAX_SAFE_INTEGER;
    if (this.#ranks === null) {
      const sorted = [...this.#keys].sort(([, a], [, b]) => compareKeys(a, b));
      this.#ranks = new Map(sorted.map(([id], i) => [id, i]));
    }
    return this.#ranks.get(path.join("\u0001")) ?? 0;
  }
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? -1;
    const y = b[i] ?? -1;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** Keeps valid font, display and content declarations and the custom properties they reach. */
function prune(rules: CascadeRule[]): CascadeRule[] {
  const wanted = new Set<string>();
  const customs = new Map<string, string[]>();
  for (const r of rules)
    for (const d of r.decls) {
      if (d.property.startsWith("--")) customs.set(d.property, [...(customs.get(d.property) ?? []), d.value]);
      else for (const n of varNames(d.value)) wanted.add(n);
    }
  const queue = [...wanted];
  for (let name = queue.pop(); name !== undefined; name = queue.pop()) {
    for (const value of customs.get(name) ?? [])
      for (const n of varNames(value))
        if (!wanted.has(n)) {
          wanted.add(n);
          queue.push(n);
        }
  }
  const keep = (d: Decl): boolean => {
    if (!d.property.startsWith("--")) return valid(d);
    if (!wanted.has(d.property)) return false;
    if (d.value.length > LIMITS.fontValueChars)
      throw new Escalate(`custom property ${d.property.slice(0, 60)} used by a font is too long`, "limit");
    return true;
  };
  return rules.flatMap((r) => {
    const decls = r.decls.filter(keep);
    return decls.length === 0 ? [] : [{ ...r, decls }];
  });
}

/** Whether a declaration survives parsing (an invalid one is dropped and never wins the cascade). */
function valid(d: Decl): boolean {
  const v = d.value.trim();
  if (KEYWORDS.has(v.toLowerCase()) || v.toLowerCase().includes("var(")) return true;
  switch (d.property) {
    case "font":
      return parseFontShorthand(v) !== null;
    case "font-family":
      return parseFamilies(v) !== null;
    case "font-weight":
      return computeWeight(v, 400) !== null || ["bolder", "lighter"].includes(v.toLowerCase());
    case "font-style":
      return computeStyle(v) !== null;
    case "font-stretch":
    case "font-width":
      return computeStretch(v) !== null;
    default:
      return FONT_PROPS.has(d.property) || d.property === "display" || d.property === "content";
  }
}
