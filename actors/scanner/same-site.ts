/**
 * Same-site pages: a site is its landing page plus a few pages it links to on the same registrable
 * domain (`scanner.extraPages`). Links to assets (documents, images, media, archives, fonts, feeds)
 * and to the landing page itself are skipped; one page per path. Results of every page are merged.
 */
import { getDomain } from "tldts";
import type { FontFace, FontFile } from "../../protocol/messages.ts";
import type { Blocked } from "./page-guards.ts";
import type { RenderedFont } from "./rendered-fonts.ts";

const ASSET =
  /\.(?:pdf|zip|gz|tgz|bz2|xz|7z|rar|tar|dmg|exe|msi|apk|iso|img|png|jpe?g|gif|webp|avif|svg|ico|bmp|tiff?|mp[34]|m4[av]|webm|ogg|ogv|wav|flac|mov|avi|mkv|woff2?|ttf|otf|eot|css|js|mjs|json|xml|rss|atom|txt|csv|docx?|xlsx?|pptx?|odt|ods)$/i;
const MAX_LINKS = 200;

/** Links of the current document, absolute http(s), in document order (run in the page). */
export function pageLinks(max: number): string[] {
  const out: string[] = [];
  for (const a of Array.from(document.querySelectorAll("a[href]"))) {
    const href = (a as HTMLAnchorElement).href;
    if (typeof href === "string" && /^https?:/i.test(href) && !out.includes(href)) out.push(href);
    if (out.length >= max) break;
  }
  return out;
}
export const MAX_PAGE_LINKS = MAX_LINKS;

/** Up to `n` same-site page URLs among `links`, not the landing page, one per path. */
export function sameSitePages(landing: string, links: readonly string[], n: number): string[] {
  if (n <= 0 || !URL.canParse(landing)) return [];
  const home = new URL(landing);
  const site = registrable(home.hostname);
  const seen = new Set([pathKey(home)]);
  const picked: string[] = [];
  for (const link of links) {
    if (picked.length >= n) break;
    if (!URL.canParse(link)) continue;
    const u = new URL(link);
    if (u.protocol !== "http:" && u.protocol !== "https:") continue;
    if (u.username || u.password) continue;
    if (registrable(u.hostname) !== site) continue;
    if (ASSET.test(u.pathname)) continue;
    const key = pathKey(u);
    if (seen.has(key)) continue;
    seen.add(key);
    u.hash = "";
    picked.push(u.href);
  }
  return picked;
}

function registrable(host: string): string {
  const h = host.toLowerCase().replace(/\.$/, "");
  return getDomain(h) ?? h;
}

function pathKey(u: URL): string {
  return `${u.hostname.toLowerCase()}${u.pathname.replace(/(?<!\/)\/+$/, "") || "/"}`;
}

export type PageFonts = {
  faces: FontFace[];
  files: FontFile[];
  blocked?: Blocked[];
  renderedFonts?: RenderedFont[];
};

/** One site's fonts from several pages: faces used if any page used them, files and renders once. */
export function mergePages(pages: readonly PageFonts[]): Required<PageFonts> | PageFonts {
  const [first, ...rest] = pages;
  if (!first) return { faces: [], files: [] };
  if (rest.length === 0) return first;
  const faces = new Map<string, FontFace>();
  for (const p of pages) {
    for (const f of p.faces) {
      const key = [f.family.toLowerCase(), f.weight, f.style, f.declaredIn, f.srcUrls.join(" ")].join("|");
      const seen = faces.get(key);
      if (!seen) {
        faces.set(key, {
          ...f,
          fileSha256: [...f.fileSha256],
          ...(f.renderedAs ? { renderedAs: [...f.renderedAs] } : {}),
        });
        continue;
      }
      seen.used ||= f.used;
      seen.fileSha256 = [...new Set([...seen.fileSha256, ...f.fileSha256])];
      if (f.renderedAs) seen.renderedAs = [...new Set([...(seen.renderedAs ?? []), ...f.renderedAs])].slice(0, 50);
      seen.provider ??= f.provider;
    }
  }
  const files = new Map<string, FontFile>();
  for (const p of pages)
    for (const f of p.files) if (!files.has(`${f.sha256} ${f.url}`)) files.set(`${f.sha256} ${f.url}`, f);
  const blocked = new Map<string, Blocked>();
  for (const p of pages) for (const b of p.blocked ?? []) if (!blocked.has(b.url)) blocked.set(b.url, b);
  const rendered = new Map<string, RenderedFont>();
  let anyRendered = false;
  for (const p of pages) {
    if (!p.renderedFonts) continue;
    anyRendered = true;
    for (const r of p.renderedFonts) {
      const key = `${r.postScriptName}|${r.family}|${r.custom}`;
      const seen = rendered.get(key);
      if (seen) seen.glyphs += r.glyphs;
      else rendered.set(key, { ...r });
    }
  }
  return {
    faces: [...faces.values()],
    files: [...files.values()],
    blocked: [...blocked.values()].slice(0, 100),
    ...(anyRendered ? { renderedFonts: [...rendered.values()].slice(0, 200) } : {}),
  };
}
