/**
 * One element's computed font from its cascaded declarations: the winner per property by
 * [origin and importance, layer, specificity, order, position], custom properties resolved on
 * the element (cycles are invalid), var() substituted, the `font` shorthand expanded at
 * computed-value time, CSS-wide keywords, and inheritance from the parent.
 */
import type { Decl } from "./css-read.ts";
import {
  computeStretch,
  computeStyle,
  computeWeight,
  KEYWORDS,
  parseFamilies,
  parseFontShorthand,
  substituteVars,
  type Family,
  type FontProps,
} from "./css-values.ts";

export type Computed = {
  families: Family[];
  weight: number;
  style: string;
  stretch: number;
  /** Custom properties, resolved (no var() left). */
  vars: Map<string, string>;
};
/** `key`: [tier (0 UA, 1 author, 2 inline, 3 author !important, 4 inline !important), layer, specificity, order, index]. */
export type Entry = { decl: Decl; key: number[] };

type Longhand = "family" | "weight" | "style" | "stretch";
const PROPERTY: Record<string, Longhand> = {
  "font-family": "family",
  "font-weight": "weight",
  "font-style": "style",
  "font-stretch": "stretch",
  "font-width": "stretch",
};
const INITIAL: Required<FontProps> = { family: "serif", weight: "normal", style: "normal", stretch: "normal" };

/** The computed font, and whether the element is rendered (not display: none). */
export function cascadedFont(
  entries: Entry[],
  parent: Computed,
  hiddenByUa: boolean,
): { style: Computed; shown: boolean } {
  const winners = new Map<string, Entry>();
  for (const e of entries) {
    const p = e.decl.property;
    const targets = p === "font" ? ["family", "weight", "style", "stretch"] : [PROPERTY[p] ?? p];
    for (const t of targets) {
      const current = winners.get(t);
      if (!current || compare(e.key, current.key) >= 0) winners.set(t, e);
    }
  }
  const vars = resolveVars(winners, parent.vars);
  const display = winners.get("display");
  const displayValue = display ? substituteVars(display.decl.value, (n) => vars.get(n) ?? null) : null;
  const shown = displayValue === null ? !hiddenByUa : !displayValue.trim().toLowerCase().startsWith("none");
  const value = (longhand: Longhand): string | null => {
    const e = winners.get(longhand);
    if (!e) return null;
    const text = substituteVars(e.decl.value, (n) => vars.get(n) ?? null);
    if (text === null) return "unset";
    if (e.decl.property !== "font") return text;
    const parsed = parseFontShorthand(text);
    return parsed === null ? "unset" : parsed[longhand];
  };
  const keyword = (v: string | null): "inherit" | "initial" | null => {
    const k = v?.trim().toLowerCase();
    if (k === undefined || !KEYWORDS.has(k)) return v === null ? "inherit" : null;
    return k === "initial" ? "initial" : "inherit";
  };
  const pick = <T>(longhand: Longhand, inherited: T, read: (v: string) => T | null): T => {
    const v = value(longhand);
    const k = keyword(v);
    if (k === "inherit") return inherited;
    return read(k === "initial" ? INITIAL[longhand] : v!) ?? inherited;
  };
  const style = {
    families: pick("family", parent.families, parseFamilies),
    weight: pick("weight", parent.weight, (v) => computeWeight(v, parent.weight)),
    style: pick("style", parent.style, computeStyle),
    stretch: pick("stretch", parent.stretch, computeStretch),
    vars,
  };
  return { style, shown };
}

/** The element's custom properties: inherited, overridden by its own, each own value resolved once. */
function resolveVars(winners: Map<string, Entry>, inherited: Map<string, string>): Map<string, string> {
  const own = [...winners].filter(([name]) => name.startsWith("--"));
  if (own.length === 0) return inherited;
  const raw = new Map(own.map(([name, e]) => [name, e.decl.value]));
  const out = new Map(inherited);
  const done = new Map<string, string | null>();
  const resolve = (name: string, path: Set<string>): string | null => {
    if (done.has(name)) return done.get(name)!;
    const text = raw.get(name);
    if (text === undefined) return inherited.get(name) ?? null;
    if (path.has(name)) return null; // a cycle makes every property in it invalid
    path.add(name);
    const k = text.trim().toLowerCase();
    const value =
      k === "initial"
        ? null
        : KEYWORDS.has(k)
          ? (inherited.get(name) ?? null)
          : substituteVars(text, (n) => resolve(n, path));
    path.delete(name);
    done.set(name, value);
    return value;
  };
  for (const name of raw.keys()) {
    const v = resolve(name, new Set());
    if (v === null) out.delete(name);
    else out.set(name, v);
  }
  return out;
}

export function compare(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
}
