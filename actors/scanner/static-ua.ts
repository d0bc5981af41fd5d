/**
 * The parts of Chromium's user-agent stylesheet (html.css) that decide fonts: bold and italic
 * elements, monospace elements, form controls that do not inherit the page's font, and the
 * elements that are never rendered. These sit below every author rule in the cascade.
 */
import { isTag, type Element } from "domhandler";
import type { Entry } from "./static-computed.ts";

const BOLD = new Set(["h1", "h2", "h3", "h4", "h5", "h6", "th", "optgroup"]);
const BOLDER = new Set(["b", "strong"]);
const ITALIC = new Set(["i", "em", "cite", "var", "dfn", "address"]);
const MONOSPACE = new Set(["code", "kbd", "samp", "pre", "tt", "xmp", "listing", "plaintext", "textarea"]);
/** `font: -webkit-small-control`: a system font, whatever the page sets on their ancestors. */
const CONTROLS = new Set(["input", "button", "select", "textarea"]);
/** display: none in html.css (and noscript, since the browser path runs scripts). */
const NEVER_RENDERED = new Set(
  "head script style template noscript title meta link base datalist param area rp source track dialog".split(" "),
);
/** SVG elements whose text is never drawn where it stands. */
const SVG_UNRENDERED = new Set(
  "defs symbol clippath mask pattern marker lineargradient radialgradient filter metadata desc title".split(" "),
);

const decl = (property: string, value: string, i: number): Entry => ({
  decl: { property, value, important: false },
  key: [0, 0, 0, 0, i],
});

export function uaEntries(el: Element): Entry[] {
  const out: Entry[] = [];
  const n = el.name;
  if (CONTROLS.has(n)) {
    out.push(decl("font-family", "system-ui", 0), decl("font-weight", "normal", 1), decl("font-style", "normal", 2));
  }
  if (BOLD.has(n)) out.push(decl("font-weight", "bold", 3));
  if (BOLDER.has(n)) out.push(decl("font-weight", "bolder", 3));
  if (ITALIC.has(n)) out.push(decl("font-style", "italic", 4));
  if (MONOSPACE.has(n)) out.push(decl("font-family", "monospace", 5));
  if (n === "math") out.push(decl("font-family", "math", 5));
  return out;
}

/** Elements no script shows by toggling a class: document metadata, scripts, templates. */
export function neverRendered(el: Element): boolean {
  return NEVER_RENDERED.has(el.name) && el.name !== "dialog";
}

/** Hidden by the UA stylesheet alone; an author `display` still overrides it. */
export function uaHidden(el: Element): boolean {
  const n = el.name;
  if (NEVER_RENDERED.has(n)) return n !== "dialog" || el.attribs.open === undefined;
  if (SVG_UNRENDERED.has(n)) return true;
  if (el.attribs.hidden !== undefined && el.attribs.hidden.toLowerCase() !== "until-found") return true;
  if (n === "input" && (el.attribs.type ?? "").toLowerCase() === "hidden") return true;
  // A closed <details> shows only its first <summary>.
  const parent = el.parent;
  if (parent && isTag(parent) && parent.name === "details" && parent.attribs.open === undefined) {
    const firstSummary = parent.children.find((c) => isTag(c) && c.name === "summary");
    return firstSummary !== el;
  }
  return false;
}
