/**
 * The fast path's HTML reading: htmlparser2 builds a forgiving HTML5-ish DOM (domhandler), fed in
 * slices so a large page never holds the event loop, with the DOM's depth and size capped (deep
 * nesting is quadratic in htmlparser2's open-element stack). From the DOM it lists what can bring
 * fonts: stylesheets, preloads, scripts and inline handlers, and the links for same-site pages.
 */
import { Parser } from "htmlparser2";
import { DomHandler, isTag, isText, type ChildNode, type Document, type Element } from "domhandler";
import { Escalate, HTML_CHUNK_CHARS, LIMITS, type Slicer } from "./static-limits.ts";

export type SheetRef = { href: string; media: string };
export type InlineSheet = { text: string; media: string };
/** A script the page runs: by URL, inline text, or an inline event handler attribute. */
export type ScriptRef = { src: string | null; text: string; module: boolean; label: string };
export type HtmlPage = {
  document: Document;
  /** The document's base URL (<base href> when present). */
  base: string;
  sheets: Array<{ kind: "link"; ref: SheetRef } | { kind: "inline"; sheet: InlineSheet }>;
  fontPreloads: string[];
  scripts: ScriptRef[];
  /** <a href> targets, absolute, for same-site pages. */
  links: string[];
};

/** <script type> values the browser runs as classic scripts (the HTML spec's JavaScript MIME types). */
const JS_TYPES = new Set([
  "",
  "text/javascript",
  "application/javascript",
  "application/ecmascript",
  "application/x-javascript",
  "application/x-ecmascript",
  "text/ecmascript",
  "text/jscript",
  "text/livescript",
  "text/x-ecmascript",
  "text/x-javascript",
  "text/javascript1.0",
  "text/javascript1.1",
  "text/javascript1.2",
  "text/javascript1.3",
  "text/javascript1.4",
  "text/javascript1.5",
]);
/** Elements whose content the browser never renders nor loads from: scripts run, so noscript is inert. */
const INERT = new Set(["template", "noscript"]);
const EMBEDS = new Set(["iframe", "frame", "frameset", "object", "embed", "portal", "fencedframe"]);
const MAX_LINKS = 200;

/** A DomHandler that refuses documents deeper or larger than the caps, as it builds them. */
class BoundedHandler extends DomHandler {
  #elements = 0;
  override onopentag(name: string, attribs: Record<string, string>): void {
    if (++this.#elements > LIMITS.elements) throw new Escalate(`more than ${LIMITS.elements} elements`, "limit");
    if (this.tagStack.length > LIMITS.domDepth) {
      throw new Escalate(`elements nested deeper than ${LIMITS.domDepth}`, "limit");
    }
    super.onopentag(name, attribs);
  }
}

export async function parseHtml(source: string, pageUrl: string, slicer: Slicer): Promise<HtmlPage> {
  const handler = new BoundedHandler();
  const parser = new Parser(handler, { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true });
  for (let i = 0; i < source.length; i += HTML_CHUNK_CHARS) {
    parser.write(source.slice(i, i + HTML_CHUNK_CHARS));
    await slicer.tick();
  }
  parser.end();
  return readDocument(handler.root, pageUrl);
}

function readDocument(document: Document, pageUrl: string): HtmlPage {
  const page: HtmlPage = { document, base: pageUrl, sheets: [], fontPreloads: [], scripts: [], links: [] };
  const baseEl = findFirst(document, (el) => el.name === "base" && el.attribs.href !== undefined);
  if (baseEl) page.base = absolute(baseEl.attribs.href!, pageUrl);
  const stack: ChildNode[] = [...document.children].reverse();
  for (let node = stack.pop(); node; node = stack.pop()) {
    if (!isTag(node)) continue;
    readElement(node, page);
    for (const [name, value] of Object.entries(node.attribs)) {
      if (name.startsWith("on"))
        page.scripts.push({ src: null, text: value, module: false, label: `${name} attribute` });
    }
    if (INERT.has(node.name)) continue;
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
  }
  return page;
}

function readElement(el: Element, page: HtmlPage): void {
  const a = el.attribs;
  switch (el.name) {
    case "script":
      return readScript(el, page);
    case "style":
      page.sheets.push({ kind: "inline", sheet: { text: textOf(el), media: a.media ?? "" } });
      return;
    case "link": {
      if (a.href === undefined) return;
      const rel = words(a.rel);
      if (rel.includes("stylesheet") && !rel.includes("alternate") && a.disabled === undefined) {
        page.sheets.push({ kind: "link", ref: { href: absolute(a.href, page.base), media: a.media ?? "" } });
      } else if (rel.includes("preload") && (a.as ?? "").toLowerCase() === "font") {
        page.fontPreloads.push(absolute(a.href, page.base));
      }
      return;
    }
    case "meta":
      if ((a["http-equiv"] ?? "").trim().toLowerCase() === "refresh")
        throw new Escalate("the page refreshes itself", "meta-refresh");
      return;
    case "a":
      if (a.href !== undefined && page.links.length < MAX_LINKS && URL.canParse(a.href.trim(), page.base))
        page.links.push(new URL(a.href.trim(), page.base).href);
      return;
    default:
      if (EMBEDS.has(el.name)) throw new Escalate(`the page embeds a document (<${el.name}>)`, "embed");
  }
}

function readScript(el: Element, page: HtmlPage): void {
  const type = (el.attribs.type ?? "").trim().toLowerCase();
  const module = type === "module";
  // Data blocks (JSON, templates, import maps) and nomodule fallbacks never run in Chromium.
  if ((!module && !JS_TYPES.has(type)) || el.attribs.nomodule !== undefined) return;
  const src = el.attribs.src;
  const label = src === undefined ? "inline script" : absolute(src, page.base);
  page.scripts.push({
    src: src === undefined ? null : label,
    text: src === undefined ? textOf(el) : "",
    module,
    label,
  });
}

function textOf(el: Element): string {
  return el.children.map((c) => (isText(c) ? c.data : "")).join("");
}

function words(value: string | undefined): string[] {
  return (value ?? "")
    .toLowerCase()
    .split(" ")
    .flatMap((w) => w.split("\t"))
    .filter(Boolean);
}

function findFirst(root: Document, test: (el: Element) => boolean): Element | null {
  const stack: ChildNode[] = [...root.children].reverse();
  for (let node = stack.pop(); node; node = stack.pop()) {
    if (!isTag(node)) continue;
    if (test(node)) return node;
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]!);
  }
  return null;
}

export function absolute(ref: string, base: string): string {
  const trimmed = ref.trim();
  if (!URL.canParse(trimmed, base)) throw new Escalate(`unreadable URL ${trimmed.slice(0, 100)}`, "url");
  return new URL(trimmed, base).href;
}
