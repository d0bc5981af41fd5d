/**
 * CSS values the fast path needs, read with css-tree: var() substitution, the `font` shorthand,
 * family lists, weights (bolder/lighter relative to the parent), styles, stretches, generated
 * `content` text and unicode-range lists. A value that does not parse is invalid, as in a browser.
 */
import * as csstree from "css-tree";
import { LIMITS } from "./static-limits.ts";

export type Family = { name: string; generic: boolean };
export type FontProps = { family?: string; weight?: string; style?: string; stretch?: string };

const GENERICS = new Set(
  "serif sans-serif monospace cursive fantasy system-ui ui-serif ui-sans-serif ui-monospace ui-rounded math emoji fangsong -apple-system blinkmacsystemfont -webkit-body -webkit-pictograph".split(
    " ",
  ),
);
export const KEYWORDS = new Set(["inherit", "initial", "unset", "revert", "revert-layer"]);
const SYSTEM_FONTS = new Set(["caption", "icon", "menu", "message-box", "small-caption", "status-bar"]);
const SIZE_WORDS = new Set(
  "xx-small x-small small medium large x-large xx-large xxx-large smaller larger math".split(" "),
);
const ANGLES = new Set(["deg", "grad", "rad", "turn"]);
const STRETCH_WORDS: Record<string, number> = {
  "ultra-condensed": 50,
  "extra-condensed": 62.5,
  condensed: 75,
  "semi-condensed": 87.5,
  normal: 100,
  "semi-expanded": 112.5,
  expanded: 125,
  "extra-expanded": 150,
  "ultra-expanded": 200,
};

function parseValue(text: string): csstree.CssNode[] | null {
  try {
    const ast = csstree.parse(text, { context: "value", positions: false });
    return ast.type === "Value" ? ast.children.toArray() : null;
  } catch {
    return null;
  }
}

/** Custom property names a value refers to through var(). */
export function varNames(text: string): string[] {
  if (!text.toLowerCase().includes("var(")) return [];
  const names: string[] = [];
  const ast = parseValue(text);
  for (const node of ast ?? []) {
    csstree.walk(node, (n) => {
      if (n.type === "Function" && n.name.toLowerCase() === "var") {
        const first = n.children.first;
        if (first?.type === "Identifier") names.push(first.name);
        const fallback = n.children.last;
        if (fallback?.type === "Raw") names.push(...varNames(fallback.value));
      }
    });
  }
  return names;
}

/**
 * The value with every var() replaced: by `lookup(name)` or the fallback; null when a reference
 * has neither (the declaration is then invalid at computed-value time) or the chain is too deep.
 */
export function substituteVars(text: string, lookup: (name: string) => string | null, depth = 0): string | null {
  if (!text.toLowerCase().includes("var(")) return text;
  if (depth > LIMITS.varDepth) return null;
  const ast = parseValue(text);
  if (ast === null) return null;
  let failed = false;
  const replace = (list: csstree.List<csstree.CssNode>): void => {
    list.forEach((node, item) => {
      if (node.type === "Function" && node.name.toLowerCase() === "var") {
        const first = node.children.first;
        const fallback = node.children.size > 1 && node.children.last?.type === "Raw" ? node.children.last.value : null;
        const own = first?.type === "Identifier" ? lookup(first.name) : null;
        const value = own ?? (fallback === null ? null : substituteVars(fallback, lookup, depth + 1));
        if (value === null) failed = true;
        else list.replace(item, list.createItem({ type: "Raw", value }));
      } else if ("children" in node && node.children instanceof csstree.List) {
        replace(node.children);
      }
    });
  };
  const list = new csstree.List<csstree.CssNode>().fromArray(ast);
  replace(list);
  if (failed) return null;
  return list
    .toArray()
    .map((n) => csstree.generate(n))
    .join(" ");
}

/** Values repeat across thousands of elements and pages: each distinct one is parsed once (bounded cache). */
function memo<T>(fn: (text: string) => T): (text: string) => T {
  const cache = new Map<string, T>();
  return (text) => {
    if (cache.has(text)) return cache.get(text)!;
    if (cache.size > 4_096) cache.clear();
    const value = fn(text);
    cache.set(text, value);
    return value;
  };
}

/** A font-family list; null when it does not parse as one. */
export const parseFamilies = memo(readFamilies);

function readFamilies(text: string): Family[] | null {
  const nodes = parseValue(text);
  if (nodes === null) return null;
  const out: Family[] = [];
  let words: string[] = [];
  let quoted = false;
  const flush = (): boolean => {
    if (quoted) return !(quoted = false);
    if (words.length === 0) return false;
    const name = words.join(" ");
    out.push({ name, generic: words.length === 1 && GENERICS.has(name.toLowerCase()) });
    words = [];
    return true;
  };
  for (const n of nodes) {
    if (n.type === "Operator" && n.value === ",") {
      if (!flush()) return null;
    } else if (n.type === "String") {
      if (quoted || words.length > 0) return null;
      out.push({ name: n.value, generic: false });
      quoted = true;
    } else if (n.type === "Identifier" && !quoted) {
      words.push(n.name);
    } else {
      return null;
    }
  }
  if (!flush()) return null;
  return out;
}

/**
 * The font properties a `font` shorthand sets (all four: the shorthand resets what it omits);
 * a system font keyword names no web family. Null when it is not a valid shorthand.
 */
export const parseFontShorthand = memo(readFontShorthand);

function readFontShorthand(text: string): Required<FontProps> | null {
  const nodes = parseValue(text);
  if (nodes === null || nodes.length === 0) return null;
  const first = nodes[0]!;
  if (nodes.length === 1 && first.type === "Identifier" && SYSTEM_FONTS.has(first.name.toLowerCase()))
    return { family: "system-ui", weight: "normal", style: "normal", stretch: "normal" };
  const out = { family: "", weight: "normal", style: "normal", stretch: "normal" };
  let i = 0;
  for (; i < nodes.length; i++) {
    const n = nodes[i]!;
    const word = n.type === "Identifier" ? n.name.toLowerCase() : null;
    if (word === "normal" || word === "small-caps") continue;
    if (word === "italic" || word === "oblique") out.style = word;
    else if (word === "bold" || word === "bolder" || word === "lighter") out.weight = word;
    else if (word !== null && word in STRETCH_WORDS) out.stretch = word;
    else if (n.type === "Number" && Number(n.value) >= 1 && Number(n.value) <= 1000) out.weight = n.value;
    else if (n.type === "Dimension" && out.style === "oblique" && ANGLES.has(n.unit.toLowerCase())) continue;
    else break;
  }
  const size = nodes[i];
  const isSize =
    size?.type === "Dimension" ||
    size?.type === "Percentage" ||
    (size?.type === "Number" && size.value === "0") ||
    (size?.type === "Identifier" && SIZE_WORDS.has(size.name.toLowerCase())) ||
    (size?.type === "Function" && ["calc", "clamp", "min", "max"].includes(size.name.toLowerCase()));
  if (!isSize) return null;
  i++;
  if (nodes[i]?.type === "Operator" && (nodes[i] as csstree.Operator).value === "/") i += 2;
  const family = nodes
    .slice(i)
    .map((n) => csstree.generate(n))
    .join(" ");
  if (parseFamilies(family) === null) return null;
  return { ...out, family };
}

/** Computed font-weight (1-1000) given the parent's; null when invalid. */
export function computeWeight(text: string, parent: number): number | null {
  const v = text.trim().toLowerCase();
  if (v === "normal") return 400;
  if (v === "bold") return 700;
  // CSS Fonts 4 relative weights.
  if (v === "bolder") return parent < 350 ? 400 : parent < 550 ? 700 : parent < 900 ? 900 : parent;
  if (v === "lighter") return parent < 100 ? parent : parent < 550 ? 100 : parent < 750 ? 400 : 700;
  const n = Number(v);
  return v !== "" && Number.isFinite(n) && n >= 1 && n <= 1000 ? n : null;
}

export function computeStyle(text: string): string | null {
  const v = text.trim().toLowerCase();
  if (v === "normal" || v === "italic") return v;
  return v === "oblique" || v.startsWith("oblique ") ? "oblique" : null;
}

/** font-stretch as a percentage. */
export function computeStretch(text: string): number | null {
  const v = text.trim().toLowerCase();
  if (v in STRETCH_WORDS) return STRETCH_WORDS[v]!;
  if (!v.endsWith("%")) return null;
  const n = Number(v.slice(0, -1));
  return Number.isFinite(n) && n >= 0 ? n : null;
}

/**
 * The text a ::before/::after `content` value generates; null when it has a part static reading
 * cannot spell out (counters are digits, quotes are curly quotes, images and none add nothing).
 */
export function contentText(text: string, attr: (name: string) => string): string | null {
  const nodes = parseValue(text);
  if (nodes === null) return null;
  let out = "";
  for (const n of nodes) {
    if (n.type === "String") out += n.value;
    else if (n.type === "Identifier") {
      const w = n.name.toLowerCase();
      if (w === "open-quote" || w === "close-quote") out += "\u201c\u201d";
      else if (w !== "none" && w !== "normal" && w !== "no-open-quote" && w !== "no-close-quote") return null;
    } else if (n.type === "Function") {
      const name = n.name.toLowerCase();
      const arg = n.children.first;
      if (name === "attr" && arg?.type === "Identifier") out += attr(arg.name.toLowerCase());
      else if (name === "counter" || name === "counters") out += "0123456789.";
      else if (!["url", "image-set", "linear-gradient", "radial-gradient"].includes(name)) return null;
    } else if (n.type === "Url") continue;
    else if (n.type !== "Operator" || n.value !== "/") return null;
  }
  return out;
}

/** unicode-range as [from, to] spans; the whole of Unicode when empty. */
export function parseUnicodeRange(text: string): Array<[number, number]> {
  if (text.trim() === "") return [[0, 0x10ffff]];
  const spans: Array<[number, number]> = [];
  for (const item of text.split(",")) {
    const r = item.trim().toUpperCase();
    if (!r.startsWith("U+")) continue;
    const [lo = "", hi] = r.slice(2).split("-");
    const from = parseInt(lo.replaceAll("?", "0"), 16);
    const to = hi === undefined ? parseInt(lo.replaceAll("?", "F"), 16) : parseInt(hi, 16);
    if (Number.isFinite(from) && Number.isFinite(to)) spans.push([from, to]);
  }
  return spans;
}
