/**
 * The cascade, statically: css-select matches each font-relevant rule against the DOM, then one
 * walk in document order computes every element's (and ::before/::after's) font-family, weight,
 * style and stretch by origin, !important, @layer, specificity and order, with inheritance,
 * custom properties, the `font` shorthand and inline style. Elements under `display: none` (by
 * author CSS or the UA's defaults) contribute nothing; every other text run is returned with the
 * font it asks for.
 */
import { selectAll } from "css-select";
import { isTag, isText, type AnyNode, type Document, type Element } from "domhandler";
import { parseInlineStyle, type Alternative, type Decl, type Pseudo } from "./css-read.ts";
import { cascadedFont, compare, type Computed, type Entry } from "./static-computed.ts";
import { neverRendered, uaEntries, uaHidden } from "./static-ua.ts";
import { contentText, substituteVars } from "./css-values.ts";
import { Escalate, type Slicer } from "./static-limits.ts";

/** A rule ready for the cascade: its place in @layer order and in the document. */
export type CascadeRule = {
  alternatives: Alternative[];
  decls: Decl[];
  /** Higher wins for normal declarations, lower for !important; unlayered rules rank highest. */
  layerRank: number;
  order: number;
  doubt: string | null;
};
/** `hidden`: under display: none now, so it counts only if a script may show it. */
export type TextRun = Computed & { text: string | null; where: string; hidden: boolean };

type Match = { rule: CascadeRule; specificity: number };
type Matches = Map<Element, Partial<Record<Pseudo, Match[]>>>;

const ROOT: Computed = {
  families: [{ name: "serif", generic: true }],
  weight: 400,
  style: "normal",
  stretch: 100,
  vars: new Map(),
};
/** Input types that show their value as text, and the label of buttons without one. */
const TEXT_INPUTS = new Set(["", "text", "search", "email", "url", "tel", "number", "password"]);
const BUTTON_LABELS: Record<string, string> = { submit: "Submit", reset: "Reset", button: "" };
/** Inside <svg>, only these render their text. */
const SVG_TEXT = new Set(["text", "tspan", "textpath"]);

export async function textRuns(document: Document, rules: CascadeRule[], slicer: Slicer): Promise<TextRun[]> {
  const matches = await matchRules(document, rules, slicer);
  const runs: TextRun[] = [];
  type Frame = { node: AnyNode; parent: Computed; svg: boolean; hidden: boolean };
  const stack: Frame[] = document.children.map((node) => ({ node, parent: ROOT, svg: false, hidden: false })).reverse();
  let visited = 0;
  for (let f = stack.pop(); f; f = stack.pop()) {
    if (++visited % 512 === 0) await slicer.tick();
    const el = f.node;
    if (!isTag(el)) continue;
    if (neverRendered(el)) continue;
    const own = matches.get(el) ?? {};
    const computed = computeFor(el, "", f.parent, own[""] ?? []);
    const style = computed.style;
    const hidden = f.hidden || !computed.shown;
    const svg = f.svg || el.name === "svg";
    const where = `<${el.name}${el.attribs.class ? ` class="${el.attribs.class.slice(0, 80)}"` : ""}>`;
    const text = svg && !SVG_TEXT.has(el.name) ? "" : ownText(el);
    const found: Array<Omit<TextRun, "hidden">> = [];
    if (text !== "") found.push({ ...style, text, where });
    for (const pseudo of ["first-line", "first-letter"] as const) {
      const extra = own[pseudo] ? computeFor(el, pseudo, style, own[pseudo]) : null;
      if (extra?.shown && text !== "") found.push({ ...extra.style, text, where: `${where}::${pseudo}` });
    }
    found.push(...generated(el, style, own, where), ...attributeText(el, style, own, where));
    for (const run of found) runs.push({ ...run, hidden });
    for (let i = el.children.length - 1; i >= 0; i--) stack.push({ node: el.children[i]!, parent: style, svg, hidden });
  }
  return runs;
}

async function matchRules(document: Document, rules: CascadeRule[], slicer: Slicer): Promise<Matches> {
  const matches: Matches = new Map();
  for (const rule of rules) {
    await slicer.tick();
    for (const alt of rule.alternatives) {
      let elements: Element[];
      try {
        elements = matchAll(alt.selector, document);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        throw new Escalate(`selector "${alt.selector.slice(0, 100)}" cannot be matched statically: ${why}`, "selector");
      }
      if (elements.length > 0 && rule.doubt !== null)
        throw new Escalate(`fonts depend on ${rule.doubt}`, "css-condition");
      for (const el of elements) {
        const byPseudo = matches.get(el) ?? {};
        (byPseudo[alt.pseudo] ??= []).push({ rule, specificity: alt.specificity });
        matches.set(el, byPseudo);
      }
    }
  }
  return matches;
}

type PseudoTest = (el: Element, value?: string | null) => boolean;
/** Pseudo-classes css-select lacks, decided from the markup at load. */
const DECIDED: Record<string, PseudoTest> = {
  "placeholder-shown": (el) => el.attribs.placeholder !== undefined && !el.attribs.value,
  open: (el) => el.attribs.open !== undefined,
  host: () => false,
  "host-context": () => false,
};
/** States static reading cannot know (form validity, direction, custom elements a script defines). */
const UNDECIDED: Record<string, PseudoTest> = {
  valid: () => true,
  invalid: () => true,
  "in-range": () => true,
  "out-of-range": () => true,
  indeterminate: () => true,
  default: () => true,
  dir: () => true,
  defined: () => true,
};
const PERMISSIVE = { ...DECIDED, ...UNDECIDED };
const STRICT: Record<string, PseudoTest> = {
  ...DECIDED,
  ...Object.fromEntries(Object.keys(UNDECIDED).map((k) => [k, () => false])),
  defined: (el) => !el.name.includes("-"),
};

/** Elements a selector matches; one that matches only if an undecidable state holds escalates. */
function matchAll(selector: string, document: Document): Element[] {
  const found = selectAll<AnyNode, Element>(selector, document, { pseudos: PERMISSIVE });
  const lower = selector.toLowerCase();
  if (found.length === 0 || !Object.keys(UNDECIDED).some((k) => lower.includes(`:${k}`))) return found;
  const sure = selectAll<AnyNode, Element>(selector, document, { pseudos: STRICT });
  if (sure.length !== found.length)
    throw new Escalate(`"${selector.slice(0, 100)}" matches depending on form or script state`, "selector-state");
  return found;
}

/** The element's computed font and whether it renders, from UA, author and inline entries. */
function computeFor(
  el: Element,
  pseudo: Pseudo,
  parent: Computed,
  found: Match[],
): { style: Computed; shown: boolean } {
  const entries: Entry[] = pseudo === "" ? uaEntries(el) : [];
  for (const m of found) {
    m.rule.decls.forEach((decl, i) => {
      const tier = decl.important ? 3 : 1;
      const layer = decl.important ? -m.rule.layerRank : m.rule.layerRank;
      entries.push({ decl, key: [tier, layer, m.specificity, m.rule.order, i] });
    });
  }
  if (pseudo === "" && el.attribs.style !== undefined) entries.push(...inlineEntries(el));
  const hiddenByUa = pseudo === "" && uaHidden(el);
  return cascadedFont(entries, parent, hiddenByUa);
}

const inlineCache = new WeakMap<Element, Entry[]>();

function inlineEntries(el: Element): Entry[] {
  const cached = inlineCache.get(el);
  if (cached) return cached;
  let decls: Decl[] = [];
  try {
    decls = parseInlineStyle(el.attribs.style ?? "");
  } catch {
    decls = [];
  }
  const entries = decls.map((decl, i): Entry => ({ decl, key: [decl.important ? 4 : 2, 0, 0, 0, i] }));
  inlineCache.set(el, entries);
  return entries;
}

/** ::before and ::after with text in `content` (icon fonts live here). */
type Found = Omit<TextRun, "hidden">;

function generated(el: Element, style: Computed, own: Partial<Record<Pseudo, Match[]>>, where: string): Found[] {
  const runs: Found[] = [];
  for (const pseudo of ["before", "after"] as const) {
    const found = own[pseudo];
    if (!found) continue;
    const computed = computeFor(el, pseudo, style, found);
    if (!computed.shown) continue;
    const content = winningContent(found, computed.style);
    if (content === null) continue;
    const text = contentText(content, (name) => el.attribs[name] ?? "");
    if (text !== "") runs.push({ ...computed.style, text, where: `${where}::${pseudo}` });
  }
  return runs;
}

/** The winning `content` with var() substituted; null when none is set (no box is generated). */
function winningContent(found: Match[], computed: Computed): string | null {
  let best: { value: string; key: number[] } | null = null;
  for (const m of found) {
    m.rule.decls.forEach((d, i) => {
      if (d.property !== "content") return;
      const key = [
        d.important ? 3 : 1,
        d.important ? -m.rule.layerRank : m.rule.layerRank,
        m.specificity,
        m.rule.order,
        i,
      ];
      if (best === null || compare(key, best.key) >= 0) best = { value: d.value, key };
    });
  }
  if (best === null) return null;
  // Invalid after substitution: content falls back to normal, which generates nothing.
  return substituteVars((best as { value: string }).value, (n) => computed.vars.get(n) ?? "") ?? "normal";
}

/** Input values, placeholders and the alt text of images (the browser path blocks images, so alt text renders). */
function attributeText(el: Element, style: Computed, own: Partial<Record<Pseudo, Match[]>>, where: string): Found[] {
  const a = el.attribs;
  const runs: Found[] = [];
  if (el.name === "img" && a.alt) runs.push({ ...style, text: a.alt, where });
  if (el.name !== "input" && el.name !== "textarea") return runs;
  const type = (a.type ?? "").toLowerCase();
  if (el.name === "input" && type === "hidden") return runs;
  const label =
    type in BUTTON_LABELS ? (a.value ?? BUTTON_LABELS[type]!) : TEXT_INPUTS.has(type) ? (a.value ?? "") : "";
  if (label.trim() !== "") runs.push({ ...style, text: label, where });
  if (a.placeholder?.trim()) {
    const ph = own.placeholder ? computeFor(el, "placeholder", style, own.placeholder).style : style;
    runs.push({ ...ph, text: a.placeholder, where: `${where}::placeholder` });
  }
  return runs;
}

/** The element's own text nodes, whitespace collapsed; "" when there is none. */
function ownText(el: Element): string {
  let text = "";
  for (const child of el.children) if (isText(child)) text += child.data;
  return text.trim() === "" ? "" : text.replace(/\s+/g, " ").trim();
}
