/**
 * The fast path's HTML reading: htmlparser2 builds a forgiving HTML5-ish DOM (domhandler), fed in
 * slices so a large page never holds the event loop, with the DOM's depth and size capped (deep
 * nesting is quadratic in htmlparser2's open-element stack). From the DOM it lists what can bring
 * fonts: stylesheets, preloads, scripts and inline handlers, and the links for same-site pages.
 */
import { Parser } from "htmlparser2";
import { DomHandler, Element, isDirective, isTag, isText, type ChildNode, type Document } from "domhandler";
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

/**
 * The document's text as the browser decodes it: UTF-8 when the Content-Type, a BOM or a <meta>
 * in the first 1024 bytes says so, or when every byte is ASCII; windows-1252 when labelled so
 * (or Latin-1/ASCII, which browsers read as windows-1252). Anything else (unlabelled non-ASCII,
 * other encodings) escalates: Chromium would guess, and static reading would read other text.
 */
export function decodeHtml(body: Buffer, contentType: string | null): string {
  const label =
    charsetIn(contentType ?? "") ?? (hasUtf8Bom(body) ? "utf-8" : charsetIn(body.subarray(0, 1024).toString("latin1")));
  if (label === "utf-8" || label === "utf8") return body.toString("utf8");
  if (label !== null && ["windows-1252", "iso-8859-1", "latin1", "us-ascii", "ascii"].includes(label))
    return new TextDecoder("windows-1252").decode(body);
  if (body.every((b) => b < 0x80)) return body.toString("latin1");
  throw new Escalate(`the page's encoding is ${label ?? "not declared"}`, "encoding");
}

function hasUtf8Bom(body: Buffer): boolean {
  return body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf;
}

/** The value after the first `charset=` (a header parameter, or a meta tag's attribute or content). */
function charsetIn(text: string): string | null {
  const lower = text.toLowerCase();
  const at = lower.indexOf("charset=");
  if (at < 0) return null;
  let i = at + 8;
  while (lower[i] === '"' || lower[i] === "'" || lower[i] === " ") i++;
  let end = i;
  while (end < lower.length && end - i < 40 && !"\"'; >/\t\n\r".includes(lower[end]!)) end++;
  return end > i ? lower.slice(i, end) : null;
}

export async function parseHtml(source: string, pageUrl: string, slicer: Slicer): Promise<HtmlPage> {
  const handler = new BoundedHandler();
  const parser = new Parser(handler, { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true });
  for (let i = 0; i < source.length; i += HTML_CHUNK_CHARS) {
    parser.write(source.slice(i, i + HTML_CHUNK_CHARS));
    await slicer.tick();
  }
  parser.end();
  impliedStructure(handler.root);
  return readDocument(handler.root, pageUrl);
}

/**
 * htmlparser2 builds no implied elements; an HTML5 parser always has <html> and <body>, which
 * `html`, `body` and `:root` rules select. Wraps the content in them where the markup left them
 * out (metadata elements landing in <body> render nothing either way).
 */
function impliedStructure(doc: Document): void {
  let html = doc.children.find((n): n is Element => isTag(n) && n.name === "html");
  if (!html) {
    const content = doc.children.filter((n) => !isDirective(n));
    html = new Element("html", {});
    adopt(html, content);
    adopt(doc, [...doc.children.filter((n) => isDirective(n)), html]);
  }
  if (html.children.some((n) => isTag(n) && n.name === "body")) return;
  const head = html.children.filter((n) => isTag(n) && n.name === "head");
  const body = new Element("body", {});
  adopt(
    body,
    html.children.filter((n) => !head.includes(n)),
  );
  adopt(html, [...head, body]);
}

function adopt(parent: Document | Element, children: ChildNode[]): void {
  parent.children = children;
  children.forEach((child, i) => {
    child.parent = parent;
    child.prev = children[i - 1] ?? null;
    child.next = children[i + 1] ?? null;
  });
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
