/**
 * Stylesheet reading for the fast path with css-tree: @font-face rules, @import targets and the
 * style rules whose declarations can change which face renders text (font properties, display,
 * content, custom properties), each selector with its specificity and pseudo-element, under the
 * @media/@supports/@layer conditions that hold for the browser path's screen. A sheet is cut at
 * top-level rule boundaries (css-tree's tokenizer) and parsed a slice at a time.
 */
import * as csstree from "css-tree";
import { mediaListMatches, mediaMatches, supportsMatches } from "./css-media.ts";
import { CSS_CHUNK_CHARS, CSS_TOKEN_WINDOW, Escalate, LIMITS, type Slicer } from "./static-limits.ts";

export type Tri = boolean | null;
export type Pseudo = "" | "before" | "after" | "first-line" | "first-letter" | "placeholder";
export type Decl = { property: string; value: string; important: boolean };
/** `tokens`: class names, ids and attribute names the selector tests (for script triage). */
export type Alternative = { selector: string; specificity: number; pseudo: Pseudo; tokens: string[] };
export type FaceRule = {
  family: string;
  weight: string;
  style: string;
  stretch: string;
  unicodeRange: string;
  src: string;
  /** URL that src url()s resolve against, and the declaring sheet (null: inline). */
  base: string;
  sheetUrl: string | null;
};
/** A condition the fast path cannot evaluate (unknown media feature, @container…), or null. */
type Doubt = string | null;
export type SheetEvent =
  | { kind: "import"; href: string; media: Tri; layer: string[] | null; doubt: Doubt }
  | { kind: "layer"; path: string[] }
  | { kind: "face"; face: FaceRule; doubt: Doubt }
  | { kind: "rule"; alternatives: Alternative[]; decls: Decl[]; layer: string[] | null; doubt: Doubt };
export type ParsedSheet = { events: SheetEvent[] };

/** Properties read from style rules; custom properties are kept too and pruned later. */
export const FONT_PROPS = new Set(["font", "font-family", "font-weight", "font-style", "font-stretch", "font-width"]);
const READ_PROPS = new Set([...FONT_PROPS, "display", "content"]);
const PSEUDO_ELEMENTS: Record<string, Pseudo> = {
  before: "before",
  after: "after",
  "first-line": "first-line",
  "first-letter": "first-letter",
  placeholder: "placeholder",
};
/** Pseudo-classes that no element matches while the page sits loaded and untouched. */
const NEVER_AT_LOAD = new Set(
  "hover active focus focus-visible focus-within target target-within visited autofill user-invalid user-valid fullscreen modal picture-in-picture playing paused popover-open drag-over".split(
    " ",
  ),
);
/** Anonymous layers are distinct across every sheet of a page. */
let anonymousLayers = 0;
const PARSE: csstree.ParseOptions = { parseValue: false, parseCustomProperty: false, positions: false };

type Ctx = {
  base: string;
  sheetUrl: string | null;
  layer: string[] | null;
  doubt: Doubt;
  parent: csstree.SelectorList | null;
  depth: number;
  events: SheetEvent[];
  /** Shared by nested contexts: whether a rule came yet (@import is valid only before). */
  state: { rulesSeen: boolean };
};

export async function parseSheet(
  text: string,
  base: string,
  sheetUrl: string | null,
  slicer: Slicer,
): Promise<ParsedSheet> {
  const state = { rulesSeen: false };
  const ctx: Ctx = { base, sheetUrl, layer: null, doubt: null, parent: null, depth: 0, events: [], state };
  for (const chunk of await topLevelChunks(text, slicer)) {
    await slicer.tick();
    const ast = csstree.parse(chunk, PARSE);
    if (ast.type === "StyleSheet") readList(ast.children.toArray(), ctx);
    if (ctx.events.length > LIMITS.sheetRules)
      throw new Escalate(`a stylesheet of more than ${LIMITS.sheetRules} rules`, "limit");
  }
  return { events: ctx.events };
}

/** Inline `style=""` declarations. */
export function parseInlineStyle(text: string): Decl[] {
  const ast = csstree.parse(text, { ...PARSE, context: "declarationList" });
  return ast.type === "DeclarationList" ? declarations(ast.children.toArray()) : [];
}

/**
 * Cuts CSS text where a top-level rule or statement ends, so each slice parses on its own.
 * Tokenizing runs in windows (a token cut by a window's end is read again from its start in the
 * next), yielding between them. One statement of more than LIMITS.cssStatementTokens tokens, or
 * a top-level block over LIMITS.cssChunkChars, escalates: css-tree's parse of such a run is one
 * synchronous call that hostile input makes slow.
 */
export async function topLevelChunks(text: string, slicer: Slicer): Promise<string[]> {
  const T = csstree.tokenTypes;
  const closerOf: Record<number, number> = {
    [T.LeftCurlyBracket]: T.RightCurlyBracket,
    [T.LeftParenthesis]: T.RightParenthesis,
    [T.Function]: T.RightParenthesis,
    [T.LeftSquareBracket]: T.RightSquareBracket,
  };
  const chunks: string[] = [];
  const closers: number[] = [];
  let chunkStart = 0;
  let statementTokens = 0;
  let offset = 0;
  let window = CSS_TOKEN_WINDOW;
  while (offset < text.length) {
    await slicer.tick();
    const end = Math.min(text.length, offset + window);
    const last = end === text.length;
    const tokens: Array<[number, number]> = [];
    csstree.tokenize(text.slice(offset, end), (type, _s, e) => void tokens.push([type, offset + e]));
    if (!last) tokens.pop(); // may be cut by the window: read it again from its start
    if (tokens.length === 0) {
      window *= 2; // one token longer than the window (a data: URL, an unterminated string)
      continue;
    }
    window = CSS_TOKEN_WINDOW;
    for (const [type, tokenEnd] of tokens) {
      const closer = closerOf[type];
      if (closer !== undefined) {
        if (closers.push(closer) > LIMITS.cssBracketDepth)
          throw new Escalate(`CSS brackets nested deeper than ${LIMITS.cssBracketDepth}`, "limit");
      } else if (closers.length > 0 && type === closers.at(-1)) closers.pop();
      if (type === T.RightCurlyBracket || type === T.Semicolon || type === T.LeftCurlyBracket) statementTokens = 0;
      else if (++statementTokens > LIMITS.cssStatementTokens)
        throw new Escalate(`a CSS statement of more than ${LIMITS.cssStatementTokens} tokens`, "limit");
      const boundary = closers.length === 0 && (type === T.RightCurlyBracket || type === T.Semicolon);
      if (boundary && tokenEnd - chunkStart >= CSS_CHUNK_CHARS) {
        chunks.push(text.slice(chunkStart, tokenEnd));
        chunkStart = tokenEnd;
      } else if (tokenEnd - chunkStart > LIMITS.cssChunkChars) {
        throw new Escalate(`a top-level CSS block over ${LIMITS.cssChunkChars} characters`, "limit");
      }
    }
    offset = tokens.at(-1)![1];
  }
  if (chunkStart < text.length) chunks.push(text.slice(chunkStart));
  return chunks;
}

function readList(nodes: csstree.CssNode[], ctx: Ctx): void {
  if (ctx.depth > LIMITS.cssNesting) throw new Escalate(`CSS nested deeper than ${LIMITS.cssNesting}`, "limit");
  for (const node of nodes) {
    if (node.type === "Rule") readRule(node, ctx);
    else if (node.type === "Atrule") readAtrule(node, ctx);
  }
}

function readRule(rule: csstree.Rule, ctx: Ctx): void {
  ctx.state.rulesSeen = true;
  if (rule.prelude.type !== "SelectorList") return;
  const selectors = ctx.parent ? nest(rule.prelude, ctx.parent) : rule.prelude;
  const body = rule.block.children.toArray();
  const decls = declarations(body);
  if (decls.length > 0) {
    const alternatives: Alternative[] = [];
    for (const s of selectors.children.toArray()) {
      const alt = s.type === "Selector" ? alternative(s) : [];
      if (alt === "invalid") return; // Chromium drops the whole rule for one selector it cannot parse
      alternatives.push(...alt);
    }
    if (alternatives.length > 0)
      ctx.events.push({ kind: "rule", alternatives, decls, layer: ctx.layer, doubt: ctx.doubt });
  }
  if (body.some((n) => n.type === "Rule" || n.type === "Atrule"))
    readList(body, { ...ctx, parent: selectors, depth: ctx.depth + 1 });
}

function readAtrule(at: csstree.Atrule, ctx: Ctx): void {
  const name = csstree.keyword(at.name).basename;
  const prelude = at.prelude?.type === "AtrulePrelude" ? at.prelude.children.toArray() : [];
  const preludeText = at.prelude ? csstree.generate(at.prelude) : "";
  const inner = (change: Partial<Ctx>): void => {
    if (at.block) readList(at.block.children.toArray(), { ...ctx, ...change, depth: ctx.depth + 1 });
  };
  switch (name) {
    case "import":
      return readImport(prelude, ctx);
    case "charset":
    case "namespace":
      return;
    case "font-face":
      ctx.state.rulesSeen = true;
      if (at.block) ctx.events.push({ kind: "face", face: face(at.block, ctx), doubt: ctx.doubt });
      return;
    case "media": {
      const list = prelude.find((n) => n.type === "MediaQueryList");
      const matches = list ? mediaListMatches(list) : mediaMatches(preludeText);
      if (matches === false) return;
      return inner({ doubt: matches === null ? `@media ${preludeText.slice(0, 100)}` : ctx.doubt });
    }
    case "supports": {
      const matches = supportsMatches(prelude);
      if (matches === false) return;
      return inner({ doubt: matches === null ? `@supports ${preludeText.slice(0, 100)}` : ctx.doubt });
    }
    case "layer": {
      const paths = layerNames(preludeText).map((n) => [...(ctx.layer ?? []), ...n]);
      if (!at.block) {
        for (const path of paths) ctx.events.push({ kind: "layer", path });
        return;
      }
      const path = paths[0] ?? [...(ctx.layer ?? []), `\u0000anonymous-${anonymousLayers++}`];
      ctx.events.push({ kind: "layer", path });
      return inner({ layer: path });
    }
    case "container":
    case "scope":
    case "starting-style":
      return inner({ doubt: `@${name} ${preludeText.slice(0, 100)}` });
    case "document":
      return;
    default:
      // @keyframes, @page, @property, @font-feature-values…: no text takes its face from them.
      ctx.state.rulesSeen = true;
  }
}

function readImport(prelude: csstree.CssNode[], ctx: Ctx): void {
  if (ctx.state.rulesSeen) return; // an @import after other rules is invalid and ignored
  const target = prelude[0];
  const href = target?.type === "Url" ? target.value : target?.type === "String" ? target.value : null;
  if (href === null) return;
  let layer: string[] | null = null;
  let media: Tri = true;
  let doubt: Doubt = ctx.doubt;
  for (const node of prelude.slice(1)) {
    if (node.type === "Identifier" && node.name.toLowerCase() === "layer")
      layer = [`\u0000anonymous-${anonymousLayers++}`];
    else if (node.type === "Function" && node.name.toLowerCase() === "layer")
      layer = layerNames(csstree.generate(node).slice(6, -1))[0] ?? null;
    else if (node.type === "Function" && node.name.toLowerCase() === "supports") {
      const s = node.children.first ? supportsMatches(node.children.toArray()) : null;
      if (s === false) return;
      if (s === null) doubt = "@import supports()";
    } else if (node.type === "MediaQueryList") media = mediaListMatches(node);
  }
  const full = layer === null ? ctx.layer : [...(ctx.layer ?? []), ...layer];
  if (media !== false) ctx.events.push({ kind: "import", href, media, layer: full, doubt });
}

function face(block: csstree.Block, ctx: Ctx): FaceRule {
  const d = new Map(declarations(block.children.toArray()).map((x) => [x.property, x.value]));
  return {
    family: d.get("font-family") ?? "",
    weight: d.get("font-weight") ?? "",
    style: d.get("font-style") ?? "",
    stretch: d.get("font-stretch") ?? d.get("font-width") ?? "",
    unicodeRange: d.get("unicode-range") ?? "",
    src: d.get("src") ?? "",
    base: ctx.base,
    sheetUrl: ctx.sheetUrl,
  };
}

function declarations(nodes: csstree.CssNode[]): Decl[] {
  const out: Decl[] = [];
  for (const n of nodes) {
    if (n.type !== "Declaration") continue;
    const custom = n.property.startsWith("--");
    const property = custom ? n.property : n.property.toLowerCase();
    if (!custom && !READ_PROPS.has(property) && property !== "src" && property !== "unicode-range") continue;
    const value = n.value.type === "Raw" ? n.value.value.trim() : csstree.generate(n.value);
    if (READ_PROPS.has(property) && value.length > LIMITS.fontValueChars)
      throw new Escalate(`a ${property} value of more than ${LIMITS.fontValueChars} characters`, "limit");
    out.push({ property, value, important: n.important !== false });
  }
  return out;
}

/**
 * A selector's pseudo-element split off, never-matching selectors dropped, specificity computed;
 * "invalid" for a -moz-/-ms- pseudo, which makes Chromium drop the whole rule.
 */
function alternative(sel: csstree.Selector): Alternative[] | "invalid" {
  let pseudo: Pseudo = "";
  const kept: csstree.CssNode[] = [];
  for (const node of sel.children.toArray()) {
    const name = node.type === "PseudoElementSelector" || node.type === "PseudoClassSelector" ? node.name : "";
    const lower = name.toLowerCase();
    if (lower.startsWith("-moz-") || lower.startsWith("-ms-")) return "invalid";
    const legacy = ["before", "after", "first-line", "first-letter"].includes(lower);
    if (node.type === "PseudoElementSelector" || (node.type === "PseudoClassSelector" && legacy)) {
      const p = PSEUDO_ELEMENTS[lower === "-webkit-input-placeholder" ? "placeholder" : lower];
      if (p === undefined) return []; // ::selection, ::marker, scrollbars: no face for page text
      pseudo = p;
      continue;
    }
    if (node.type === "PseudoClassSelector" && (NEVER_AT_LOAD.has(lower) || lower.startsWith("-"))) return [];
    kept.push(node);
  }
  const copy = csstree.clone(sel) as csstree.Selector;
  copy.children = new csstree.List<csstree.CssNode>().fromArray(kept);
  const selector = kept.length === 0 ? "*" : csstree.generate(copy);
  const tokens: string[] = [];
  csstree.walk(copy, (n) => {
    if (n.type === "ClassSelector" || n.type === "IdSelector") tokens.push(n.name);
    else if (n.type === "AttributeSelector") tokens.push(n.name.name.toLowerCase());
  });
  return [{ selector, specificity: specificity(kept), pseudo, tokens }];
}

/** Specificity packed as a*1e6 + b*1e3 + c (Selectors 4). */
export function specificity(nodes: csstree.CssNode[]): number {
  let total = 0;
  for (const node of nodes) {
    if (node.type === "IdSelector") total += 1e6;
    else if (node.type === "ClassSelector" || node.type === "AttributeSelector") total += 1e3;
    else if (node.type === "TypeSelector") total += node.name === "*" || node.name.endsWith("|*") ? 0 : 1;
    else if (node.type === "PseudoElementSelector") total += 1;
    else if (node.type === "PseudoClassSelector") total += pseudoClassSpecificity(node);
  }
  return total;
}

function pseudoClassSpecificity(node: csstree.PseudoClassSelector): number {
  const name = node.name.toLowerCase();
  const arg = node.children?.first ?? null;
  const maxOf = (list: csstree.CssNode | null): number =>
    list?.type === "SelectorList"
      ? Math.max(
          0,
          ...list.children.toArray().map((s) => (s.type === "Selector" ? specificity(s.children.toArray()) : 0)),
        )
      : 0;
  if (name === "where") return 0;
  if (["is", "not", "has", "matches", "-webkit-any", "-moz-any"].includes(name)) return maxOf(arg);
  if ((name === "nth-child" || name === "nth-last-child") && arg?.type === "Nth") return 1e3 + maxOf(arg.selector);
  return 1e3;
}

/** CSS nesting: `&` becomes `:is(parent)`; a selector without `&` is a descendant of the parent. */
function nest(list: csstree.SelectorList, parent: csstree.SelectorList): csstree.SelectorList {
  const out = csstree.clone(list) as csstree.SelectorList;
  const parentText = csstree.generate(parent);
  for (const sel of out.children.toArray()) {
    if (sel.type !== "Selector") continue;
    let found = false;
    csstree.walk(sel, (node, item, owner) => {
      if (node.type !== "NestingSelector" || !item || !owner) return;
      found = true;
      owner.replace(item, owner.createItem(isOf(parentText)));
    });
    if (!found) {
      sel.children.prependData({ type: "Combinator", name: " " });
      sel.children.prependData(isOf(parentText));
    }
  }
  return out;
}

function isOf(selectorText: string): csstree.CssNode {
  const list = csstree.parse(selectorText, { context: "selectorList" });
  return { type: "PseudoClassSelector", name: "is", children: new csstree.List<csstree.CssNode>().fromArray([list]) };
}

function layerNames(text: string): string[][] {
  return text
    .split(",")
    .map((n) => n.trim())
    .filter(Boolean)
    .map((n) => n.split(".").map((p) => p.trim()));
}
