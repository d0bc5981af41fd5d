/**
 * Media queries (and @supports) evaluated as the browser path sees the page: a desktop screen of puppeteer's
 * default viewport (BrowserPool keeps it), light scheme, fine pointer that hovers, 1 dppx.
 * Three answers: true, false, or null when static reading cannot tell (an unknown feature or
 * function); the caller escalates only when fonts depend on such a block.
 */
import * as csstree from "css-tree";

/** puppeteer's defaultViewport, which BrowserPool does not override. */
export const VIEWPORT = { width: 800, height: 600 } as const;
const EM_PX = 16;

type Tri = boolean | null;
type Value = number | string | null;

/** Features with a value (numbers in px, dppx or a ratio; keywords lower-cased). */
const FEATURES: Record<string, Value> = {
  width: VIEWPORT.width,
  height: VIEWPORT.height,
  "device-width": VIEWPORT.width,
  "device-height": VIEWPORT.height,
  "aspect-ratio": VIEWPORT.width / VIEWPORT.height,
  "device-aspect-ratio": VIEWPORT.width / VIEWPORT.height,
  orientation: "landscape",
  resolution: 1,
  "device-pixel-ratio": 1,
  color: 8,
  "color-index": 0,
  monochrome: 0,
  grid: 0,
  hover: "hover",
  "any-hover": "hover",
  pointer: "fine",
  "any-pointer": "fine",
  "prefers-color-scheme": "light",
  "prefers-reduced-motion": "no-preference",
  "prefers-reduced-transparency": "no-preference",
  "prefers-reduced-data": "no-preference",
  "prefers-contrast": "no-preference",
  "forced-colors": "none",
  "inverted-colors": "none",
  "display-mode": "browser",
  scripting: "enabled",
  update: "fast",
  "overflow-block": "scroll",
  "overflow-inline": "scroll",
  "color-gamut": "srgb",
  "dynamic-range": "standard",
  "video-dynamic-range": "standard",
};
const MEDIA_TYPES: Record<string, boolean> = { all: true, screen: true, print: false, speech: false };

/** Whether a media query list (text of a `media` attribute or an @media prelude) matches. */
export function mediaMatches(text: string): Tri {
  if (text.trim() === "") return true;
  let ast: csstree.CssNode;
  try {
    ast = csstree.parse(text, { context: "mediaQueryList" });
  } catch {
    return null;
  }
  return mediaListMatches(ast);
}

/** A parsed MediaQueryList: any query matching makes it match. */
export function mediaListMatches(list: csstree.CssNode): Tri {
  if (list.type !== "MediaQueryList") return null;
  let answer: Tri = false;
  for (const query of list.children.toArray()) {
    const one = query.type === "MediaQuery" ? queryMatches(query) : null;
    if (one === true) return true;
    if (one === null) answer = null;
  }
  return answer;
}

function queryMatches(q: csstree.MediaQuery): Tri {
  const type = q.mediaType === null ? true : (MEDIA_TYPES[q.mediaType.toLowerCase()] ?? false);
  const condition = q.condition ? conditionMatches(q.condition.children.toArray()) : true;
  const both = and(type, condition);
  return q.modifier === "not" ? not(both) : both;
}

function conditionMatches(items: csstree.CssNode[]): Tri {
  let result: Tri = null;
  let op: "and" | "or" | null = null;
  let negate = false;
  for (const item of items) {
    if (item.type === "Identifier") {
      const word = item.name.toLowerCase();
      if (word === "not") negate = true;
      else if (word === "and" || word === "or") op = word;
      else return null;
      continue;
    }
    let value = termMatches(item);
    if (negate) value = not(value);
    negate = false;
    result = op === null ? value : op === "and" ? and(result, value) : or(result, value);
  }
  return result;
}

/**
 * An @supports prelude, as Chromium answers it where static reading can be sure: a declaration
 * css-tree's grammar accepts is supported; -moz-/-ms-/-o- properties are not; anything else
 * (unknown properties, selector(), font-tech()) is left undecided.
 */
export function supportsMatches(prelude: csstree.CssNode[]): Tri {
  if (prelude[0]?.type === "Declaration") return declarationSupported(prelude[0]); // @import … supports(decl)
  const condition = prelude.find((n) => n.type === "Condition");
  return condition?.type === "Condition" ? conditionMatches(condition.children.toArray()) : null;
}

function declarationSupported(decl: csstree.Declaration): Tri {
  const property = decl.property.toLowerCase();
  if (["-moz-", "-ms-", "-o-"].some((p) => property.startsWith(p))) return false;
  try {
    const value = csstree.parse(csstree.generate(decl.value), { context: "value" });
    return csstree.lexer.matchProperty(property, value).error ? null : true;
  } catch {
    return null;
  }
}

function termMatches(node: csstree.CssNode): Tri {
  if (node.type === "SupportsDeclaration")
    return node.declaration.type === "Declaration" ? declarationSupported(node.declaration) : null;
  if (node.type === "Condition") return conditionMatches(node.children.toArray());
  if (node.type === "Feature") return featureMatches(node.name.toLowerCase(), node.value);
  if (node.type === "FeatureRange") return rangeMatches(node);
  return null;
}

function featureMatches(raw: string, valueNode: csstree.Feature["value"]): Tri {
  const prefix = raw.startsWith("min-") ? "min" : raw.startsWith("max-") ? "max" : null;
  const name = featureName(prefix ? raw.slice(4) : raw);
  if (!(name in FEATURES)) return null;
  const actual = FEATURES[name]!;
  if (valueNode === null) return prefix ? null : actual !== 0 && actual !== "none";
  const wanted = valueOf(valueNode);
  if (wanted === null) return null;
  if (typeof actual === "string" || typeof wanted === "string") return prefix ? null : actual === wanted;
  if (prefix === "min") return actual >= wanted;
  if (prefix === "max") return actual <= wanted;
  return actual === wanted;
}

function rangeMatches(node: csstree.FeatureRange): Tri {
  const nameNode = [node.left, node.middle, node.right].find((n) => n?.type === "Identifier");
  if (!nameNode || nameNode.type !== "Identifier") return null;
  const name = featureName(nameNode.name.toLowerCase());
  const actual = FEATURES[name];
  if (typeof actual !== "number") return null;
  const compare = (a: number | null, cmp: string | null, b: number | null): Tri => {
    if (a === null || b === null) return null;
    if (cmp === "<") return a < b;
    if (cmp === "<=") return a <= b;
    if (cmp === ">") return a > b;
    if (cmp === ">=") return a >= b;
    return cmp === "=" ? a === b : null;
  };
  const num = (n: csstree.CssNode | null): number | null => {
    if (n === null) return null;
    if (n === nameNode) return actual;
    const v = valueOf(n);
    return typeof v === "number" ? v : null;
  };
  const first = compare(num(node.left), node.leftComparison, num(node.middle));
  return node.right === null ? first : and(first, compare(num(node.middle), node.rightComparison, num(node.right)));
}

function featureName(name: string): string {
  if (name === "-webkit-device-pixel-ratio") return "device-pixel-ratio";
  if (name.startsWith("-webkit-") && name.endsWith("device-pixel-ratio")) return "device-pixel-ratio";
  return name;
}

/** A feature's value in the units FEATURES uses: px for lengths, dppx for resolutions. */
function valueOf(node: csstree.CssNode): Value {
  switch (node.type) {
    case "Number":
      return Number(node.value);
    case "Identifier":
      return node.name.toLowerCase();
    case "Ratio": {
      const l = Number(csstree.generate(node.left));
      const r = node.right ? Number(csstree.generate(node.right)) : 1;
      return Number.isFinite(l) && Number.isFinite(r) && r !== 0 ? l / r : null;
    }
    case "Dimension": {
      const n = Number(node.value);
      const unit = node.unit.toLowerCase();
      const scale: Record<string, number> = { px: 1, em: EM_PX, rem: EM_PX, pt: 4 / 3, pc: 16, in: 96, cm: 96 / 2.54 };
      Object.assign(scale, { mm: 96 / 25.4, q: 96 / 101.6, dppx: 1, x: 1, dpi: 1 / 96, dpcm: 2.54 / 96 });
      const s = scale[unit];
      return s === undefined ? null : n * s;
    }
    default:
      return null;
  }
}

function and(a: Tri, b: Tri): Tri {
  if (a === false || b === false) return false;
  return a === null || b === null ? null : true;
}
function or(a: Tri, b: Tri): Tri {
  if (a === true || b === true) return true;
  return a === null || b === null ? null : false;
}
function not(a: Tri): Tri {
  return a === null ? null : !a;
}
