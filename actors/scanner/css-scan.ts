/**
 * Just enough CSS reading for the static fast path: @font-face rules, @import targets, and the
 * font properties of style rules (with custom properties), from stylesheet text without a
 * browser. Conditional group rules (@media, @supports, @layer, @container) are read as if they
 * applied; anything the reader cannot follow makes the caller escalate to the browser.
 */

export type CssFace = { family: string; weight: string; style: string; unicodeRange: string; src: string };
/** A style rule's selector and the properties the fast path looks at. */
export type CssRule = { selector: string; props: Record<string, string> };
export type ParsedCss = { faces: CssFace[]; imports: string[]; rules: CssRule[] };

const GROUP_RULES = /^@(media|supports|layer|container|document|scope|-moz-document)\b/i;
const KEPT_PROPS = /^(font|font-family|font-weight|font-style|--.+)$/;

export function parseCss(text: string): ParsedCss {
  const out: ParsedCss = { faces: [], imports: [], rules: [] };
  walk(stripComments(text), out);
  return out;
}

/** Removes comments, keeping string literals intact (a string may hold "/*"). */
export function stripComments(text: string): string {
  return text.replace(/("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|\/\*[\s\S]*?(?:\*\/|$)/g, (m, str: string | undefined) =>
    str ? m : " ",
  );
}

function skipString(text: string, i: number): number {
  const quote = text[i];
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === "\\") j++;
    else if (text[j] === quote || text[j] === "\n") return j + 1;
  }
  return text.length;
}

/** Index of the `}` closing the block opened at `open`, or text.length when it never closes. */
function closing(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'") i = skipString(text, i) - 1;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i;
  }
  return text.length;
}

function walk(text: string, out: ParsedCss): void {
  let start = 0;
  for (let i = 0; i < text.length;) {
    const c = text[i];
    if (c === '"' || c === "'") {
      i = skipString(text, i);
    } else if (c === ";") {
      statement(text.slice(start, i).trim(), out);
      start = ++i;
    } else if (c === "{") {
      const end = closing(text, i);
      block(text.slice(start, i).trim(), text.slice(i + 1, end), out);
      start = i = end + 1;
    } else if (c === "}") {
      start = ++i;
    } else {
      i++;
    }
  }
}

function statement(prelude: string, out: ParsedCss): void {
  if (!/^@import\b/i.test(prelude)) return;
  const m = /^@import\s+(?:url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)|"([^"]*)"|'([^']*)')/i.exec(prelude);
  const target = m ? (m[1] ?? m[2] ?? m[3] ?? m[4] ?? m[5]) : undefined;
  if (target) out.imports.push(unescape(target));
}

function block(prelude: string, body: string, out: ParsedCss): void {
  if (/^@font-face$/i.test(prelude)) {
    const d = declarations(body);
    out.faces.push({
      family: d["font-family"] ?? "",
      weight: d["font-weight"] ?? "",
      style: d["font-style"] ?? "",
      unicodeRange: d["unicode-range"] ?? "",
      src: d.src ?? "",
    });
    return;
  }
  if (GROUP_RULES.test(prelude)) return walk(body, out);
  if (prelude.startsWith("@")) return; // @keyframes, @page, @property, …: no text is styled there
  // CSS nesting: declarations before nested rules; nested selectors are judged by their own text.
  const own = body.replace(/[^;{}]*\{[^{}]*\}/g, "");
  const props = Object.fromEntries(Object.entries(declarations(own)).filter(([k]) => KEPT_PROPS.test(k)));
  if (Object.keys(props).length > 0) out.rules.push({ selector: prelude, props });
  if (body.includes("{")) walk(body, out);
}

/** `name: value` pairs of a declaration block; names lower-cased, `!important` dropped. */
export function declarations(body: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const decl of splitTopLevel(body, ";")) {
    const colon = decl.indexOf(":");
    if (colon <= 0) continue;
    const name = decl.slice(0, colon).trim();
    const value = decl
      .slice(colon + 1)
      .replace(/!\s*important\s*$/i, "")
      .trim();
    out[name.startsWith("--") ? name : name.toLowerCase()] = value;
  }
  return out;
}

/** Splits on `sep` outside strings, parentheses and blocks (data: URIs hold `;` inside url()). */
export function splitTopLevel(text: string, sep: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'") i = skipString(text, i) - 1;
    else if (c === "(" || c === "{" || c === "[") depth++;
    else if (c === ")" || c === "}" || c === "]") depth = Math.max(0, depth - 1);
    else if (c === sep && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim()).filter((p) => p !== "");
}

function unescape(s: string): string {
  return s.replace(/\\(.)/g, "$1");
}
