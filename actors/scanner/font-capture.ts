/**
 * The network side of font extraction: font files and stylesheets the page fetched, captured from
 * its responses (font requests, and fetch/XHR bodies recognised as fonts by their bytes), then
 * hashed and parsed into the report's files. This file holds the scanner's only call into the font
 * parser (font-metadata.ts), so that moving parsing elsewhere changes one place.
 */
import type { HTTPResponse } from "puppeteer-core";
import type { FontFace, FontFile } from "../../protocol/messages.ts";
import { sha256Hex, sniffFontFormat } from "./font-metadata.ts";
import { parseFontMetadata } from "./font-parse-pool.ts";
import { fontProvider, type ProviderId } from "./providers.ts";
import { withSpan } from "../../cluster/telemetry.ts";
import { withTimeout } from "../../cluster/async.ts";

export type Captured = {
  urls: string[];
  url: string;
  body: Uint8Array;
  contentType: string | null;
  via: FontFile["via"];
};

/** What a page's response listener has captured so far; `pending` holds the body reads under way. */
export type CaptureState = {
  maxFontBytes: number;
  captured: Captured[];
  sheets: Record<string, string>;
  pending: Promise<unknown>[];
};

/** A stylesheet larger than this is not parsed; no font-face inventory needs that much CSS. */
const MAX_CSS_CHARS = 4 * 1024 * 1024;
/** Cap on reading the captured bodies once the page has settled. */
export const BODY_WAIT_MS = 5_000;

/** Records one response when it is a stylesheet or a font (by request type, or by its bytes). */
export async function capture(resp: HTTPResponse, state: CaptureState): Promise<void> {
  const status = resp.status();
  if (status < 200 || status >= 300) return;
  const request = resp.request();
  const type = request.resourceType();
  const url = resp.url();
  const urls = [...request.redirectChain().map((r) => r.url()), url];
  const headers = resp.headers();
  const contentType = headers["content-type"] ?? null;
  if (type === "stylesheet" || /^text\/css/i.test(contentType ?? "")) {
    const text = await resp.text();
    if (text.length <= MAX_CSS_CHARS) for (const u of urls) state.sheets[stripHash(u)] = text;
    return;
  }
  if (type !== "font" && type !== "fetch" && type !== "xhr") return;
  // Script-fetched fonts are recognisable only by their bytes; skip bodies that cannot be one.
  const scripted = type !== "font";
  const textual = /text|json|javascript|xml/i.test(contentType ?? "");
  if (scripted && (textual || Number(headers["content-length"]) > state.maxFontBytes)) return;
  const body = await resp.buffer();
  if (scripted && !sniffFontFormat(body)) return;
  const via = url.startsWith("data:") ? "data-uri" : scripted ? "script-fetch" : "font-request";
  state.captured.push({ urls, url, body, contentType, via });
}

/** Waits (bounded) for the body reads started so far; a read that fails only loses its file. */
export async function drain(state: CaptureState): Promise<void> {
  await withTimeout(Promise.allSettled(state.pending), BODY_WAIT_MS, "reading bodies").catch(() => undefined);
}

/** Font parsing (hash, name table, provider) of a page's captured files, in a `parse fonts` span. */
export function parseFontsSpan(captured: readonly Captured[], parse: () => Promise<FontFile[]>): Promise<FontFile[]> {
  return withSpan("parse fonts", { "glyphscan.fonts.captured": captured.length }, async (span) => {
    const files = await parse();
    span?.setAttribute("glyphscan.fonts.files", files.length);
    return files;
  });
}

/**
 * A body over maxFontBytes is still hashed (Chromium already held it and the protocol needs a
 * sha256 per file) but not parsed: parse time grows with size, and WOFF2 decoding is pure JS.
 */
export async function toFiles(
  captured: Captured[],
  maxFontBytes: number,
  pageUrl: string,
  faces: FontFace[],
): Promise<FontFile[]> {
  // A file on the site's own host inherits the provider of the kit whose stylesheet declared it.
  const faceProvider = new Map<string, ProviderId | null>();
  for (const f of faces)
    for (const sha of f.fileSha256) if (!faceProvider.get(sha)) faceProvider.set(sha, f.provider as ProviderId | null);
  const byKey = new Map<string, FontFile>();
  for (const c of captured) {
    const sha256 = sha256Hex(c.body);
    const key = `${sha256} ${c.url}`;
    if (byKey.has(key)) continue;
    const bytes = c.body.byteLength;
    const parsed =
      bytes > maxFontBytes
        ? { metadata: null, parseError: `too large: ${bytes} bytes` }
        : await parseFontMetadata(c.body);
    const provider = fontProvider(c.url, pageUrl, faceProvider.get(sha256) ?? null);
    byKey.set(key, {
      sha256,
      url: shortUrl(c.url),
      bytes,
      contentType: c.contentType,
      via: c.via,
      ...parsed,
      provider,
    });
  }
  return [...byKey.values()];
}

export const stripHash = (u: string): string => (u.startsWith("data:") ? u : (u.split("#", 1)[0] ?? u));

/** data: URIs can run to megabytes; reports keep their head and length. */
export function shortUrl(u: string): string {
  return u.startsWith("data:") && u.length > 128 ? `${u.slice(0, 64)}…[${u.length} chars]` : u;
}
