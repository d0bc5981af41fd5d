/**
 * Font files for the fast path: a face's `src` read with css-tree (the first url() in a format
 * Chromium loads, as the browser picks it), and the file fetched through the SSRF guard or
 * decoded from a data: URI, checked to be a font by its magic bytes, and hashed.
 */
import * as csstree from "css-tree";
import type { Captured } from "./extract-fonts.ts";
import { sha256Hex, sniffFontFormat } from "./font-metadata.ts";
import { fetchPinned, type FetchOptions } from "./http-fetch.ts";
import { Escalate } from "./static-limits.ts";

export type CapturedWithSha = Captured & { sha256: string };
type Source = { url: string; format: string | null } | { local: string };

const FORMATS = new Set(["woff2", "woff", "opentype", "truetype", "collection", "woff2-variations", "woff-variations"]);
const FORMATS_V = new Set([
  "opentype-variations",
  "truetype-variations",
  "font/woff2",
  "font/woff",
  "font/otf",
  "font/ttf",
]);

/** The entries of a `src` descriptor in order; url()s absolute against `base`. */
export function sources(src: string, base: string): Source[] {
  let ast: csstree.CssNode;
  try {
    ast = csstree.parse(src, { context: "value", positions: false });
  } catch {
    return [];
  }
  if (ast.type !== "Value") return [];
  const out: Source[] = [];
  let current: Source | null = null;
  for (const n of ast.children.toArray()) {
    if (n.type === "Operator" && n.value === ",") {
      if (current) out.push(current);
      current = null;
    } else if (n.type === "Url") {
      current = { url: URL.canParse(n.value, base) ? new URL(n.value, base).href : n.value, format: null };
    } else if (n.type === "Function" && n.name.toLowerCase() === "local") {
      current = { local: csstree.generate(n) };
    } else if (n.type === "Function" && n.name.toLowerCase() === "format" && current && "url" in current) {
      const arg = n.children.first;
      current.format = arg?.type === "String" ? arg.value : arg?.type === "Identifier" ? arg.name : "";
    }
  }
  if (current) out.push(current);
  return out;
}

/** Absolute url()s of a `src` (for the report). */
export function sourceUrls(src: string, base: string): string[] {
  return sources(src, base).flatMap((s) => ("url" in s ? [s.url] : []));
}

/** The url() Chromium fetches: the first with a format it loads (or none given); local() names are skipped. */
export function pickSource(src: string, base: string): string | null {
  for (const s of sources(src, base)) {
    if (!("url" in s)) continue;
    const f = s.format?.trim().toLowerCase() ?? null;
    if (f === null || FORMATS.has(f) || FORMATS_V.has(f)) return s.url;
  }
  return null;
}

export async function fetchFont(fontUrl: string, maxFontBytes: number, opts: FetchOptions): Promise<CapturedWithSha> {
  let body: Buffer;
  let contentType: string | null;
  let urls = [fontUrl];
  if (fontUrl.startsWith("data:")) {
    ({ body, contentType } = decodeDataUri(fontUrl));
  } else {
    const res = await fetchPinned(fontUrl, opts);
    if (res.status !== 200) throw new Escalate(`font ${fontUrl} answered HTTP ${res.status}`, "font-fetch");
    body = res.body;
    contentType = res.contentType;
    if (res.url !== fontUrl) urls = [fontUrl, res.url];
  }
  if (body.byteLength > maxFontBytes)
    throw new Escalate(`font ${shortUrl(fontUrl)} is over ${maxFontBytes} bytes`, "font-fetch");
  if (!sniffFontFormat(body)) throw new Escalate(`${shortUrl(fontUrl)} is not a font file`, "font-fetch");
  const via = fontUrl.startsWith("data:") ? "data-uri" : "font-request";
  return { urls, url: urls.at(-1)!, body, contentType, via, sha256: sha256Hex(body) };
}

/** data:[<type>][;base64],<data> */
function decodeDataUri(uri: string): { body: Buffer; contentType: string | null } {
  const comma = uri.indexOf(",");
  if (comma < 0) throw new Escalate("unreadable data: URI", "font-fetch");
  const meta = uri.slice(5, comma);
  const data = uri.slice(comma + 1);
  const base64 = meta.toLowerCase().endsWith(";base64");
  let body: Buffer;
  try {
    body = base64 ? Buffer.from(data, "base64") : Buffer.from(decodeURIComponent(data), "latin1");
  } catch {
    throw new Escalate("unreadable data: URI", "font-fetch");
  }
  return { body, contentType: meta.split(";")[0] || null };
}

export function shortUrl(u: string): string {
  return u.startsWith("data:") && u.length > 128 ? `${u.slice(0, 64)}…[${u.length} chars]` : u;
}
