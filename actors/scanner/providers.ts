/**
 * Web-font delivery services as data: which hosts and paths serve a provider's stylesheets,
 * scripts and font files. Sources: the provider URL formats in shared/notes/fonts.md §2 (AMP's
 * font stylesheet allow-list, Wappalyzer's font script rules, and the providers' own docs).
 *
 * Attribution comes only from evidence the site cannot write: the host that delivered the font
 * bytes, or the host that delivered the stylesheet declaring them. Never from text in the site's
 * own files: a "The Typekit service" comment or a MyFonts build-id banner in a self-hosted
 * sheet once turned a self-hosted commercial font into "licensed through the provider's kit".
 * A kit the site hosts itself is self-hosted; its licence belongs in the licence registry.
 */
import { getDomain } from "tldts";

export const PROVIDER_IDS = [
  "google-fonts",
  "adobe-fonts",
  "monotype",
  "myfonts",
  "hoefler-co",
  "font-awesome",
  "bunny-fonts",
  "fontshare",
  "fontsource-cdn",
  "self-hosted",
] as const;
export type ProviderId = (typeof PROVIDER_IDS)[number];

/** What a URL was fetched as: a stylesheet, a script, or a font file. */
export type ResourceKind = "stylesheet" | "script" | "font";

/** A URL matches when its host matches `host` and its path plus query matches `path` (if given). */
export type UrlPattern = { kind: ResourceKind; host: RegExp; path?: RegExp };

export type Provider = {
  id: Exclude<ProviderId, "self-hosted">;
  name: string;
  urls: UrlPattern[];
};

const css = (host: RegExp, path?: RegExp): UrlPattern => ({ kind: "stylesheet", host, ...(path ? { path } : {}) });
const js = (host: RegExp, path?: RegExp): UrlPattern => ({ kind: "script", host, ...(path ? { path } : {}) });
const font = (host: RegExp, path?: RegExp): UrlPattern => ({ kind: "font", host, ...(path ? { path } : {}) });

/**
 * Ordered: the first provider whose pattern matches wins, so Font Awesome's packages on jsDelivr
 * and unpkg are claimed before the generic @fontsource CDN rules look at those hosts.
 */
export const PROVIDERS: readonly Provider[] = [
  {
    id: "google-fonts",
    name: "Google Fonts",
    urls: [
      css(/^fonts\.googleapis\.com$/, /^\/(css2?|icon)\?|^\/earlyaccess\/[^/]+\.css/),
      font(/^fonts\.gstatic\.com$/, /^\/(s\/[a-z0-9]+\/v\d+\/|l\/font\?)/),
    ],
  },
  {
    id: "adobe-fonts",
    name: "Adobe Fonts (Typekit)",
    urls: [
      css(/^use\.typekit\.(net|com)$/, /^\/[a-z0-9]+\.css/),
      css(/^p\.typekit\.net$/, /^\/p\.css/),
      js(/^use\.typekit\.(net|com)$/, /^\/[a-z0-9]+\.js/),
      font(/^use\.typekit\.(net|com)$/, /^\/af\/[0-9a-f]+\/[0-9a-f]+\//),
    ],
  },
  {
    id: "monotype",
    name: "Monotype Fonts (Fonts.com)",
    urls: [
      css(/^fast\.fonts\.net$/, /^\/(cssapi|lt)\//),
      css(/^cdn\.fonts\.net$/, /^\/kit\//),
      js(/^fast\.fonts\.net$/, /^\/jsapi\//),
      js(/^cdn\.fonts\.net$/, /^\/kit\//),
      font(/^fast\.fonts\.net$/),
      font(/^cdn\.fonts\.net$/),
    ],
  },
  {
    id: "myfonts",
    name: "MyFonts",
    urls: [css(/(^|\.)myfonts\.net$/), js(/(^|\.)myfonts\.net$/), font(/(^|\.)myfonts\.net$/)],
  },
  {
    id: "hoefler-co",
    name: "Hoefler&Co Cloud.typography",
    urls: [css(/^cloud\.typography\.com$/, /^\/\d+\/\d+\/css\/fonts\.css/), font(/^cloud\.typography\.com$/)],
  },
  {
    id: "font-awesome",
    name: "Font Awesome",
    urls: [
      css(/^(use|pro|kit|kit-pro|ka-f|ka-p)\.fontawesome\.com$/),
      js(/^(use|pro|kit|kit-pro|ka-f|ka-p)\.fontawesome\.com$/),
      font(/^(use|pro|kit|kit-pro|ka-f|ka-p)\.fontawesome\.com$/),
      ...(["stylesheet", "font"] as const).flatMap((kind) => [
        { kind, host: /^cdnjs\.cloudflare\.com$/, path: /^\/ajax\/libs\/(font-awesome|fontawesome)\// },
        { kind, host: /^(maxcdn|stackpath|netdna)\.bootstrapcdn\.com$/, path: /^\/font-awesome\// },
        { kind, host: /^cdn\.jsdelivr\.net$/, path: /^\/npm\/(@fortawesome\/|font-awesome@)/ },
        { kind, host: /^unpkg\.com$/, path: /^\/(@fortawesome\/|font-awesome@)/ },
      ]),
    ],
  },
  {
    id: "bunny-fonts",
    name: "Bunny Fonts",
    urls: [css(/^fonts\.bunny\.net$/, /^\/css2?\?/), font(/^fonts\.bunny\.net$/)],
  },
  {
    id: "fontshare",
    name: "Fontshare",
    urls: [css(/^api\.fontshare\.com$/, /^\/v\d+\/css\?/), font(/^cdn\.fontshare\.com$/)],
  },
  {
    id: "fontsource-cdn",
    name: "Fontsource on a public CDN",
    urls: (["stylesheet", "font"] as const).flatMap((kind) => [
      { kind, host: /^cdn\.jsdelivr\.net$/, path: /^\/(npm\/@fontsource(-variable)?\/|fontsource\/)/ },
      { kind, host: /^unpkg\.com$/, path: /^\/@fontsource(-variable)?\// },
      { kind, host: /^cdnjs\.cloudflare\.com$/, path: /^\/ajax\/libs\/fontsource/ },
    ]),
  },
];

/** The provider whose `kind` pattern matches the URL, or null. `data:` and unparsable URLs match nothing. */
export function providerOfUrl(url: string, kind: ResourceKind): Provider["id"] | null {
  const u = URL.canParse(url) ? new URL(url) : null;
  if (!u || (u.protocol !== "http:" && u.protocol !== "https:")) return null;
  const host = u.hostname.toLowerCase().replace(/\.$/, "");
  const rest = u.pathname + u.search;
  for (const p of PROVIDERS) {
    if (p.urls.some((pat) => pat.kind === kind && pat.host.test(host) && (!pat.path || pat.path.test(rest)))) {
      return p.id;
    }
  }
  return null;
}

/** Whether both URLs are on the same registrable domain (IP literals: the same host). */
export function sameSite(url: string, pageUrl: string): boolean {
  if (!URL.canParse(url) || !URL.canParse(pageUrl)) return false;
  const a = new URL(url).hostname.toLowerCase();
  const b = new URL(pageUrl).hostname.toLowerCase();
  return (getDomain(a) ?? a) === (getDomain(b) ?? b);
}

/**
 * Who delivered a font file: a known service by the URL that delivered it; else the provider
 * that delivered the stylesheet declaring it (a provider's CSS naming files on another of its
 * hosts); else `self-hosted` when it came from the page's own registrable domain or inline as a
 * `data:` URI; else null (a third-party host we do not know).
 */
export function fontProvider(
  fileUrl: string,
  pageUrl: string,
  sheetProvider: ProviderId | null = null,
): ProviderId | null {
  const byUrl = providerOfUrl(fileUrl, "font");
  if (byUrl) return byUrl;
  if (sheetProvider && sheetProvider !== "self-hosted") return sheetProvider;
  if (fileUrl.startsWith("data:") || sameSite(fileUrl, pageUrl)) return "self-hosted";
  return null;
}

/**
 * Provider of a stylesheet, by the URL that delivered it; an inline sheet or one on the page's
 * own registrable domain is self-hosted, whatever its text claims.
 */
export function stylesheetProvider(sheetUrl: string | null, pageUrl: string): ProviderId | null {
  const byUrl = sheetUrl ? providerOfUrl(sheetUrl, "stylesheet") : null;
  if (byUrl) return byUrl;
  if (sheetUrl === null || sameSite(sheetUrl, pageUrl)) return "self-hosted";
  return null;
}
