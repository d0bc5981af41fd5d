/**
 * The static fast path: fetch the HTML, its stylesheets and scripts over HTTP, work out which
 * faces the cascade selects for the page's text (static-html, static-sheets, static-cascade,
 * static-match), download and hash those files, and answer without a browser. It answers only
 * when no script may change the fonts (script-triage) and everything it needs was read; anything
 * else escalates to the browser with the reason, the rule that fired and the script. Every
 * request passes the SSRF guard; a request the guard refuses is refused to the browser too
 * (its egress proxy applies the same policy), so it is recorded as blocked and treated as absent.
 */
import type { FontFace } from "../../protocol/messages.ts";
import { descriptors, parseFontsSpan, toFiles, type PageExtraction } from "./extract-fonts.ts";
import { fetchPinned, FetchError, type FetchOptions } from "./http-fetch.ts";
import type { Blocked } from "./page-guards.ts";
import { fontProvider, stylesheetProvider, type ProviderId } from "./providers.ts";
import { checkToggles, triageScripts } from "./script-triage.ts";
import { resolvePublicAddress, type AddressPolicy } from "./ssrf.ts";
import { textRuns, type CascadeRule } from "./static-cascade.ts";
import { fetchFont, pickSource, shortUrl, sourceUrls, type CapturedWithSha } from "./static-fonts.ts";
import { decodeHtml, parseHtml } from "./static-html.ts";
import { Escalate, LIMITS, Slicer } from "./static-limits.ts";
import { usedFaces } from "./static-match.ts";
import { loadStyles, type FaceWithDoubt } from "./static-sheets.ts";

export type StaticOptions = {
  policy: AddressPolicy;
  maxFontBytes: number;
  /** Budget of the whole static attempt; past it the browser takes over. */
  timeoutMs: number;
};

/** Why the fast path handed the page on: the message, the rule that fired and the script it fired on. */
export type Escalation = { reason: string; rule: string; script?: string };
export type StaticOutcome = { answered: true; page: PageExtraction } | ({ answered: false } & Escalation);

/** Answers statically, or says why the browser must (never throws). */
export async function staticScan(url: string, opts: StaticOptions): Promise<StaticOutcome> {
  try {
    return { answered: true, page: await scan(url, opts) };
  } catch (err) {
    if (err instanceof Escalate)
      return { answered: false, reason: err.message, rule: err.rule, ...(err.script ? { script: err.script } : {}) };
    if (err instanceof FetchError) return { answered: false, reason: err.message, rule: "fetch" };
    return { answered: false, reason: `internal: ${String(err)}`, rule: "internal" };
  }
}

type Fetch = (url: string, maxBytes: number, accept: string) => Promise<{ text: string; url: string } | null>;

async function scan(url: string, opts: StaticOptions): Promise<PageExtraction> {
  const deadline = Date.now() + opts.timeoutMs;
  const slicer = new Slicer(deadline);
  const fetchOpts = (maxBytes: number, accept?: string): FetchOptions => ({
    policy: opts.policy,
    deadline,
    maxBytes,
    ...(accept ? { accept } : {}),
  });
  const page = await fetchPinned(url, fetchOpts(LIMITS.htmlBytes, "text/html,application/xhtml+xml"));
  if (page.status !== 200) throw new Escalate(`landing page answered HTTP ${page.status}`, "http-status");
  const type = (page.contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "text/html") throw new Escalate(`landing page is ${page.contentType}`, "content-type");
  const pageUrl = page.url;
  const html = await parseHtml(decodeHtml(page.body, page.contentType), pageUrl, slicer);

  const blocked: Blocked[] = [];
  // A subresource the address policy refuses never reaches the browser either; a 4xx is not applied.
  const fetchText: Fetch = async (target, maxBytes, accept) => {
    const u = new URL(target);
    if (u.protocol !== "http:" && u.protocol !== "https:")
      throw new Escalate(`cannot read ${target.slice(0, 60)}`, "url");
    const check = await resolvePublicAddress(u.hostname, opts.policy);
    if (!check.ok) {
      if (blocked.length < 100) blocked.push({ url: target.slice(0, 2_048), reason: check.reason.slice(0, 500) });
      return null;
    }
    const res = await fetchPinned(target, fetchOpts(maxBytes, accept));
    if (res.status >= 400 && res.status < 500) return null;
    if (res.status !== 200) throw new Escalate(`${target} answered HTTP ${res.status}`, "fetch");
    return { text: res.body.toString("utf8"), url: res.url };
  };
  const styles = await loadStyles(html, (u) => fetchText(u, LIMITS.cssBytes, "text/css,*/*;q=0.1"), slicer);
  const fetchScript = async (u: string) => (await fetchText(u, LIMITS.scriptBytes + 1, "*/*"))?.text ?? null;
  const triage = await triageScripts(html.scripts, fetchScript);

  const runs = await textRuns(html.document, styles.rules, slicer);
  const used = await usedFaces(
    styles.faces,
    runs.filter((r) => !r.hidden),
    slicer,
  );
  if (triage.runs) {
    checkToggles(triage, selectorTokens(styles.rules));
    for (const face of await usedFaces(styles.faces, runs, slicer))
      if (!used.has(face)) throw new Escalate(`a script may show hidden text set in "${face.family}"`, "hidden-text");
  }
  for (const face of used as Set<FaceWithDoubt>)
    if (face.doubt) throw new Escalate(`"${face.family}" is declared under ${face.doubt}`, "css-condition");
  return collect(html.fontPreloads, styles.faces, used, {
    pageUrl,
    opts,
    fetchOpts,
    blocked,
    links: html.links,
    status: page.status,
  });
}

type Collect = {
  pageUrl: string;
  opts: StaticOptions;
  fetchOpts: (maxBytes: number) => FetchOptions;
  blocked: Blocked[];
  links: string[];
  status: number;
};

/** Downloads the used faces' files (and preloaded fonts) and builds the page's faces and files. */
async function collect(preloads: string[], declared: FaceWithDoubt[], used: Set<unknown>, c: Collect) {
  const downloads = new Map<string, Promise<CapturedWithSha>>();
  const download = (fontUrl: string): Promise<CapturedWithSha> => {
    let p = downloads.get(fontUrl);
    if (!p) {
      if (downloads.size >= LIMITS.fonts) throw new Escalate("too many font files", "limit");
      p = fetchFont(fontUrl, c.opts.maxFontBytes, c.fetchOpts(c.opts.maxFontBytes + 1));
      downloads.set(fontUrl, p);
    }
    return p;
  };
  const primaryOf = new Map<FaceWithDoubt, string>();
  const captured: CapturedWithSha[] = [];
  await Promise.all([
    ...declared
      .filter((face) => used.has(face))
      .map(async (face) => {
        const chosen = pickSource(face.src, face.base);
        if (!chosen) throw new Escalate(`no loadable src for "${face.family}"`, "font-src");
        primaryOf.set(face, chosen);
        captured.push(await download(chosen));
      }),
    ...preloads.map(async (u) => captured.push(await download(u))),
  ]);
  const providers = new Map<string, ProviderId | null>();
  const providerOf = (sheet: FaceWithDoubt["sheet"]): ProviderId | null => {
    const key = sheet.url ?? `inline:${sheet.text.length}:${sheet.text.slice(0, 200)}`;
    if (!providers.has(key)) providers.set(key, stylesheetProvider(sheet.url, c.pageUrl));
    return providers.get(key) ?? null;
  };
  const byUrl = new Map(captured.map((f) => [f.urls[0], f]));
  const faces: FontFace[] = declared.map((face) => {
    const urls = sourceUrls(face.src, face.base);
    const primary = primaryOf.get(face);
    const file = primary === undefined ? undefined : byUrl.get(primary);
    const fromSheet = providerOf(face.sheet);
    const first = primary ?? urls[0];
    return {
      ...descriptors(face),
      used: used.has(face),
      declaredIn: "stylesheet",
      srcUrls: urls.map(shortUrl),
      fileSha256: file ? [file.sha256] : [],
      provider: first === undefined ? fromSheet : fontProvider(first, c.pageUrl, fromSheet),
    };
  });
  const files = await parseFontsSpan(captured, () => toFiles(captured, c.opts.maxFontBytes, c.pageUrl, faces));
  const blocked = c.blocked.length > 0 ? { blocked: c.blocked } : {};
  return { httpStatus: c.status, finalUrl: c.pageUrl, faces, files, links: c.links, ...blocked };
}

/** Classes, ids and attributes that rules setting a font (not only display) select on. */
function selectorTokens(rules: CascadeRule[]): Set<string> {
  const tokens = new Set<string>();
  for (const r of rules) {
    if (r.decls.every((d) => d.property === "display")) continue;
    for (const alt of r.alternatives) for (const t of alt.tokens) tokens.add(t);
  }
  return tokens;
}
