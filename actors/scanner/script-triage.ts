/**
 * Script triage for the fast path: each script the page runs (by URL, inline, or an inline event
 * handler) is read, capped in size, and classified by the rules in script-triage-rules.ts. Any
 * script that may change fonts escalates, with the rule and the script. A script that only
 * changes classes or attributes is let through when no font rule's selector names anything it
 * mentions; known libraries add the classes their data APIs toggle.
 */
import { createHash } from "node:crypto";
import {
  ANALYTICS_URLS,
  FONT_RULES,
  KNOWN_BY_HASH,
  KNOWN_NPM,
  KNOWN_SNIPPETS,
  NPM_CDN_HOSTS,
  RENDER_RULES,
  type ContentRule,
} from "./script-triage-rules.ts";
import type { ScriptRef } from "./static-html.ts";
import { Escalate, LIMITS } from "./static-limits.ts";

/** A script's text, or null when the browser would not run it either (its request is refused, or 4xx). */
export type ScriptFetcher = (url: string) => Promise<string | null>;
export type Triage = {
  /** Whether any script runs at all (then hidden text may be shown by one). */
  runs: boolean;
  /** Classes and attributes scripts may change (words they contain, known libraries' toggles), with the script. */
  words: Map<string, string>;
  prefixes: Array<[string, string]>;
};

export async function triageScripts(scripts: ScriptRef[], fetchScript: ScriptFetcher): Promise<Triage> {
  if (scripts.length > LIMITS.scripts) throw new Escalate(`more than ${LIMITS.scripts} scripts`, "limit");
  const triage: Triage = { runs: false, words: new Map(), prefixes: [] };
  const texts = await Promise.all(
    scripts.map(async (s) => {
      if (s.src === null) return { s, text: s.text };
      const known = knownByUrl(s.src);
      if (known) return { s, text: null, toggles: known };
      return { s, text: await fetchScript(s.src) };
    }),
  );
  for (const { s, text, toggles } of texts as Array<{
    s: ScriptRef;
    text: string | null;
    toggles?: readonly string[];
  }>) {
    if (toggles) {
      triage.runs = true;
      for (const t of toggles) triage.words.set(t, s.label);
      continue;
    }
    if (text === null || text.trim() === "") continue;
    triage.runs = true;
    classify(s, text, triage);
  }
  return triage;
}

function classify(s: ScriptRef, text: string, triage: Triage): void {
  if (text.length > LIMITS.scriptBytes)
    throw new Escalate(`script over ${LIMITS.scriptBytes} bytes`, "script-size", s.label);
  const known = KNOWN_BY_HASH[createHash("sha256").update(text).digest("hex")];
  if (known) {
    for (const t of known.toggles) triage.words.set(t, s.label);
    return;
  }
  if (KNOWN_SNIPPETS.some((k) => snippetMatches(k.template, text))) return;
  const lower = `${s.src ?? ""}\n${text}`.toLowerCase();
  if (s.module && hasWord(lower, "import"))
    throw new Escalate("a module script imports code", "module-import", s.label);
  for (const rules of [FONT_RULES, RENDER_RULES]) {
    const fired = firstRule(rules, lower);
    if (fired) throw new Escalate(`a script ${fired.rule.why} ("${fired.hit}")`, fired.rule.id, s.label);
  }
  collectWords(text, s.label, triage);
}

function firstRule(rules: readonly ContentRule[], lower: string): { rule: ContentRule; hit: string } | null {
  for (const rule of rules) {
    const hit = rule.anyOf.find((needle) => lower.includes(needle));
    if (hit !== undefined) return { rule, hit };
  }
  return null;
}

/**
 * Fails when a script may flip a class or attribute that a font rule selects on (or, through the
 * known libraries, toggles one), so a face nothing static selects could be selected at run time.
 */
export function checkToggles(triage: Triage, selectorTokens: Set<string>): void {
  for (const token of selectorTokens) {
    const dataset = token.startsWith("data-") ? camel(token.slice(5)) : null;
    const script =
      triage.words.get(token) ??
      (dataset === null ? undefined : triage.words.get(dataset)) ??
      triage.prefixes.find(([p]) => token.startsWith(p))?.[1];
    if (script !== undefined)
      throw new Escalate(`a script may change "${token}", which a font rule selects on`, "class-change", script);
  }
}

/** Words of a script: runs of [A-Za-z0-9_-]; words ending in "-" are kept as prefixes ("fw-" + x). */
function collectWords(text: string, label: string, triage: Triage): void {
  let start = -1;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 32;
    const wordChar = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95 || c === 45;
    if (wordChar) {
      if (start < 0) start = i;
      continue;
    }
    if (start < 0) continue;
    const word = text.slice(start, i);
    start = -1;
    if (word.length > 1 && word.endsWith("-")) triage.prefixes.push([word, label]);
    if (!triage.words.has(word)) triage.words.set(word, label);
  }
}

function hasWord(lower: string, word: string): boolean {
  for (let i = lower.indexOf(word); i >= 0; i = lower.indexOf(word, i + 1)) {
    const before = i === 0 ? " " : lower[i - 1]!;
    const after = lower[i + word.length] ?? " ";
    if (!isIdent(before) && !isIdent(after)) return true;
  }
  return false;
}

function isIdent(ch: string): boolean {
  return (ch >= "a" && ch <= "z") || (ch >= "0" && ch <= "9") || ch === "_" || ch === "$";
}

/** A library identified by a URL the site does not control: an exact version on a public npm CDN, or a beacon. */
function knownByUrl(src: string): readonly string[] | null {
  const u = new URL(src);
  if (u.protocol !== "https:") return null;
  const host = u.hostname.toLowerCase();
  if (ANALYTICS_URLS.some((a) => a.host === host && (a.prefix ? u.pathname.startsWith(a.path) : u.pathname === a.path)))
    return [];
  const root = NPM_CDN_HOSTS[host];
  if (root === undefined || !u.pathname.startsWith(root) || u.search !== "") return null;
  const rest = u.pathname.slice(root.length);
  const at = rest.indexOf("@", rest.startsWith("@") ? 1 : 0);
  const slash = rest.indexOf("/", at);
  if (at < 0 || slash < 0) return null;
  const version = rest.slice(at + 1, slash);
  const known = KNOWN_NPM[rest.slice(0, at)];
  const exact = version.split(".").length === 3 && version.split(".").every((p) => p !== "" && [...p].every(isDigit));
  const file = rest.slice(slash);
  return known && exact && file.startsWith("/dist/") && file.endsWith(".js") ? known.toggles : null;
}

function isDigit(ch: string): boolean {
  return ch >= "0" && ch <= "9";
}

function snippetMatches(template: string, text: string): boolean {
  const compact = [...text].filter((ch) => ch.trim() !== "").join("");
  const [head = "", tail = ""] = template.split("{id}");
  if (!compact.startsWith(head) || !compact.endsWith(tail) || compact.length <= head.length + tail.length) return false;
  const id = compact.slice(head.length, compact.length - tail.length);
  return [...id].every((ch) => isDigit(ch) || (ch >= "A" && ch <= "Z") || (ch >= "a" && ch <= "z") || ch === "-");
}

function camel(s: string): string {
  return s
    .split("-")
    .map((p, i) => (i === 0 ? p : p.charAt(0).toUpperCase() + p.slice(1)))
    .join("");
}
