/**
 * `npm run corpus:reference`: the independent ground truth of the real corpus. Per site, a fresh
 * browser context with the cache off, a long wait (reference-page.ts), then: which received font
 * files back a face that drew text (used face files, SHA-256 + URL, with the face's CSS family,
 * weight, style), the used CSS families, and every declared family. A loaded face counts as used
 * when the real family it loaded (CSS.fontsUpdated) drew glyphs (CSS.getPlatformFontsForNode) in
 * an element whose computed font-family names the face's family;
 * Chromium fetches a face only when its font matching picks it for some text, so weights and
 * unicode-range subsets nobody needs are never received.
 * Flags: --out FILE (default ground-truth.json here), --check (compare with the file instead of
 * writing; exit 1 on any difference), --only id,id, --concurrency N (2).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { format, resolveConfig } from "prettier";
import puppeteer, { type Browser } from "puppeteer-core";
import { viewPage, type PageView } from "./reference-page.ts";
import { startRealCorpus, type RealSite } from "./server.ts";

export const GROUND_TRUTH = fileURLToPath(new URL("./ground-truth.json", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";

export type UsedFile = { sha256: string; url: string; family: string; weight: string; style: string };
export type SiteTruth = {
  id: string;
  httpStatus: number | null;
  usedFiles: UsedFile[];
  usedFamilies: string[];
  declaredFamilies: string[];
  /** Fonts that drew text, by the name inside the file (system fallbacks marked custom: false). */
  renderedFonts: string[];
};
export type GroundTruth = { sites: SiteTruth[] };

type LoadedFace = PageView["loaded"][number];

/** A face's weight as a range ("400", "100 900", "bold"). */
function weightRange(w: string): [number, number] {
  const named: Record<string, number> = { normal: 400, bold: 700 };
  const [lo, hi] = w.split(/\s+/).map((x) => named[x] ?? Number(x));
  return [lo ?? 400, hi ?? lo ?? 400];
}

/**
 * The loaded faces CSS font matching (CSS Fonts 4 §5.2, style then weight) picks for text that
 * the real family `real` drew under the stack family `css`: the face's weight and style are read
 * from what matched, so a loaded italic or bold that drew nothing is not counted. Faces that
 * differ only in unicode-range are all kept: Chromium fetches a subset only for text in its range.
 */
function facesFor(loaded: readonly LoadedFace[], text: PageView["drewWith"][number]): LoadedFace[] {
  const family = loaded.filter((f) => f.family.toLowerCase() === text.css && f.platformFamily === text.real);
  const styleOrder =
    text.style === "normal"
      ? ["normal", "oblique", "italic"]
      : [text.style, text.style === "italic" ? "oblique" : "italic", "normal"];
  const style = styleOrder.find((s) => family.some((f) => f.style === s));
  const sameStyle = family.filter((f) => f.style === style);
  if (sameStyle.length === 0) return [];
  const w = text.weight;
  const distance = (f: LoadedFace): number => {
    const [lo, hi] = weightRange(f.weight);
    if (w >= lo && w <= hi) return 0;
    // Below 400 look lighter first, above 500 heavier first; 400-500 look up to 500, then lighter, then heavier.
    const lighter = hi < w;
    const gap = lighter ? w - hi : lo - w;
    if (w < 400) return lighter ? gap : 1000 + gap;
    if (w > 500) return lighter ? 1000 + gap : gap;
    if (!lighter && lo <= 500) return gap;
    return lighter ? 500 + gap : 1000 + gap;
  };
  const best = Math.min(...sameStyle.map(distance));
  return sameStyle.filter((f) => distance(f) === best);
}

/** The received file a loaded face's src names (URL, data: URI or FontFace bytes). */
function fileOf(view: PageView, face: PageView["loaded"][number]): PageView["received"][number] | null {
  if (face.src === "") {
    const bytes = view.byteFaces.find(
      (b) => b.family === face.family && b.weight === face.weight && b.style === face.style,
    );
    // The bytes' URL, when the page fetched them.
    const url = bytes
      ? (view.received.find((r) => r.sha256 === bytes.sha256 && r.url.startsWith("http"))?.url ?? "")
      : "";
    return bytes ? { sha256: bytes.sha256, url, via: "font-face-bytes" } : null;
  }
  const urls = [...face.src.matchAll(/url\(["']?([^"')\s]+)["']?\)/g)].map((m) => m[1]!);
  const candidates = urls.length > 0 ? urls : [face.src];
  for (const url of candidates) {
    const hit = view.received.find((r) => r.url === url || (url.startsWith("data:") && r.url === url.slice(0, 120)));
    if (hit) return hit;
  }
  return null;
}

export function truthOf(id: string, view: PageView): SiteTruth {
  const chosen = new Set<PageView["loaded"][number]>();
  for (const text of view.drewWith) for (const face of facesFor(view.loaded, text)) chosen.add(face);
  const used = new Map<string, UsedFile>();
  const families = new Set<string>();
  for (const face of view.loaded) {
    if (!chosen.has(face)) continue;
    const file = fileOf(view, face);
    families.add(face.family);
    if (!file) continue;
    const key = `${file.sha256} ${face.family} ${face.weight} ${face.style}`;
    // Data URIs are kept by hash and a short prefix: the ground truth stays small.
    const url = file.url.startsWith("data:") ? file.url.slice(0, 40) : file.url;
    used.set(key, { sha256: file.sha256, url, family: face.family, weight: face.weight, style: face.style });
  }
  const byKey = (a: UsedFile, b: UsedFile) =>
    `${a.sha256}${a.family}${a.weight}`.localeCompare(`${b.sha256}${b.family}${b.weight}`);
  return {
    id,
    httpStatus: view.httpStatus,
    usedFiles: [...used.values()].sort(byKey),
    usedFamilies: [...families].sort(),
    declaredFamilies: view.declaredFamilies,
    renderedFonts: view.rendered.map((r) => `${r.postScriptName}${r.custom ? "" : " (system)"}`),
  };
}

/** Port-free URLs, so runs on different ports compare equal. */
const portless = (truth: SiteTruth): SiteTruth => ({
  ...truth,
  usedFiles: truth.usedFiles.map((f) => ({ ...f, url: f.url.replace(/^(http:\/\/[^/:]+):\d+/, "$1") })),
});

export async function referenceRun(
  sites: readonly RealSite[],
  browser: Browser,
  concurrency: number,
): Promise<SiteTruth[]> {
  const queue = [...sites];
  const out = new Map<string, SiteTruth>();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let site = queue.shift(); site; site = queue.shift()) {
        const context = await browser.createBrowserContext();
        try {
          const page = await context.newPage();
          const view = await viewPage(page, site.url, { quietMs: 2_000, budgetMs: 30_000 });
          process.stderr.write(`${site.id}: ${view.quiet ? "quiet" : "did not go quiet within 30 s"}\n`);
          out.set(site.id, portless(truthOf(site.id, view)));
        } finally {
          await context.close();
        }
      }
    }),
  );
  return sites.map((s) => out.get(s.id)!);
}

export async function launchReferenceBrowser(hostResolverRules: string): Promise<Browser> {
  const args = ["--disable-gpu", `--host-resolver-rules=${hostResolverRules}, MAP * ~NOTFOUND`];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  // A CDP call that wedges fails after 30 s instead of holding the run.
  return puppeteer.launch({ executablePath: CHROMIUM, headless: true, args, protocolTimeout: 30_000 });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: "string", default: GROUND_TRUTH },
      check: { type: "boolean", default: false },
      only: { type: "string" },
      concurrency: { type: "string", default: "2" },
    },
  });
  const only = values.only?.split(",").map((s) => s.trim());
  const corpus = await startRealCorpus(only ? { only } : {});
  const browser = await launchReferenceBrowser(corpus.hostResolverRules);
  let truth: SiteTruth[];
  try {
    truth = await referenceRun(corpus.sites, browser, Number(values.concurrency));
  } finally {
    await browser.close();
    await corpus.close();
  }
  for (const t of truth)
    console.log(
      `${t.id}: ${t.usedFiles.length} used files, families ${t.usedFamilies.join(", ") || "-"}; declared ${t.declaredFamilies.length}`,
    );
  if (!values.check) {
    // Written as the repository formats JSON, so the file passes the format check as generated.
    writeFileSync(
      values.out,
      await format(JSON.stringify({ sites: truth } satisfies GroundTruth), {
        ...(await resolveConfig(values.out)),
        filepath: values.out,
      }),
    );
    console.log(`ground truth of ${truth.length} sites written to ${values.out}`);
    return;
  }
  const stored = new Map((JSON.parse(readFileSync(values.out, "utf8")) as GroundTruth).sites.map((s) => [s.id, s]));
  const differ = truth.filter((t) => JSON.stringify(t) !== JSON.stringify(stored.get(t.id)));
  for (const t of differ)
    console.log(`differs: ${t.id}\n  now    ${JSON.stringify(t)}\n  stored ${JSON.stringify(stored.get(t.id))}`);
  console.log(`${truth.length - differ.length}/${truth.length} sites as stored`);
  if (differ.length > 0) process.exitCode = 1;
}

if (import.meta.main) await main();
