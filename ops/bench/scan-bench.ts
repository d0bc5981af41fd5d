/**
 * `npm run bench:scan`: our scanner against Crawlee's PuppeteerCrawler on a local corpus, in
 * one run: `--corpus demo` (default: the bundled demo corpus, 200 sites) or `--corpus real` (sites
 * from real npm packages, scored against the reference's ground truth; --only id,id for a subset). Both use the same Chromium and the same page-side extraction (startCapture), and
 * both are scored against the corpus's ground truth. CPU is the process tree's (Chromium included)
 * user + system time: ours per page the browser rendered, Crawlee's per page. Times run from before the browser launch
 * to the last page answered. Ours tries the static fast path first (--no-fast-path: browser
 * only); the fast path is also run alone. Flags: --sites N (200), --concurrency N (browser
 * pages at once, 4, both crawlers), --isolation wiped-context|context-per-job (BrowserPool's mode,
 * default wiped-context), --json FILE, --skip-crawlee (development only: no ratio).
 * Ours runs the production path: BrowserPool behind the SSRF egress proxy, with the corpus's
 * `*.test` hosts allowed to 127.0.0.1. Both crawlers scan the landing page only (extraPages 0,
 * no enqueueLinks), with the same page-side extraction.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Configuration, log, PuppeteerCrawler } from "crawlee";
import puppeteerCore from "puppeteer-core";
import { BrowserPool, type BrowserIsolation } from "../../actors/scanner/browser-pool.ts";
import { startCapture, type Capturing } from "../../actors/scanner/extract-fonts.ts";
import { scanSite, type ScanSiteOptions } from "../../actors/scanner/scan-site.ts";
import { staticScan } from "../../actors/scanner/static-path.ts";
import { demoBenchCorpus, realBenchCorpus, type BenchCorpus } from "./scan-corpora.ts";
import { sampleTreeRss } from "./scan-rss.ts";
import { score, siteDiffs, type Found, type Score, type SiteDiff } from "./scan-score.ts";
import { verdictScore } from "./scan-verdicts.ts";

const CHROMIUM = "/usr/bin/chromium";
const EXTRACT = { maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 30_000, settleMs: 150 };

type Run = {
  seconds: number;
  pagesPerSecond: number;
  peakRssMb: number;
  cpuMs: number;
  score: Score;
  diffs?: SiteDiff[];
  /** Sites that failed, with the failure kind and message. */
  failures?: Record<string, string>;
  paths?: Record<string, number>;
  escalations?: Record<string, number>;
  slots?: BrowserPool["slotStats"];
};

/** Runs `work` over the items with `workers` workers pulling from one queue. */
async function pull<T>(items: readonly T[], workers: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const worker = async (): Promise<void> => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
  };
  await Promise.all(Array.from({ length: workers }, worker));
}

async function runOurs(
  corpus: BenchCorpus,
  concurrency: number,
  fastPath: boolean,
  isolation: BrowserIsolation,
): Promise<Run> {
  const rss = sampleTreeRss();
  const started = performance.now();
  const pool = await BrowserPool.launch({
    executablePath: CHROMIUM,
    concurrency,
    pageTimeoutMs: EXTRACT.navigationTimeoutMs,
    hostResolverRules: corpus.hostResolverRules,
    // As production (actors/compose.ts): every request and redirect hop goes through the SSRF guard.
    egress: { policy: corpus.policy, maxResponseBytes: 32 * 1024 * 1024 },
    isolation,
  });
  const escalations: Record<string, number> = {};
  const opts: ScanSiteOptions = {
    ...corpus.policy,
    ...EXTRACT,
    fastPath,
    extraPages: 0, // the Crawlee run scans landing pages only
    onEscalate: (reason) => void (escalations[reason] = (escalations[reason] ?? 0) + 1),
  };
  const found = new Map<string, Found>();
  const paths: Record<string, number> = {};
  const failures: Record<string, string> = {};
  let seconds = 0;
  try {
    // Workers pull sites as the scanner actor's workers pull jobs. There are twice as many as
    // browser slots, so a worker answering without the browser never leaves a slot idle, while
    // the pool's queue stays short (its job budget counts from the call, not from the start).
    await pull(corpus.sites, concurrency * 2, async (site) => {
      const report = await scanSite(pool, { url: site.url }, opts);
      paths[report.path] = (paths[report.path] ?? 0) + 1;
      found.set(site.domain, report.status === "ok" ? report : null);
      if (report.failure) failures[site.domain] = `${report.failure.kind}: ${report.failure.message}`;
    });
    seconds = (performance.now() - started) / 1000;
  } finally {
    await pool.close();
  }
  const cpuMs = rss.cpuMs();
  const peakRssMb = rss.stop();
  const scored = score(corpus.sites, found);
  const slots = { ...pool.slotStats };
  return {
    seconds,
    pagesPerSecond: corpus.sites.length / seconds,
    peakRssMb,
    cpuMs,
    score: scored,
    diffs: siteDiffs(corpus.sites, found),
    failures,
    paths,
    escalations,
    slots,
  };
}

/**
 * The fast path alone, no browser: every site is tried; pages/s counts every site tried
 * (escalations end early), and the score covers only the sites it answered.
 */
async function runFastPath(corpus: BenchCorpus, concurrency: number): Promise<Run & { answered: number }> {
  const rss = sampleTreeRss();
  const found = new Map<string, Found>();
  const started = performance.now();
  await pull(corpus.sites, concurrency * 2, async (site) => {
    const out = await staticScan(site.url, {
      policy: corpus.policy,
      maxFontBytes: EXTRACT.maxFontBytes,
      timeoutMs: 5_000,
    });
    if (out.answered) found.set(site.domain, out.page);
  });
  const seconds = (performance.now() - started) / 1000;
  const cpuMs = rss.cpuMs();
  const peakRssMb = rss.stop();
  const answeredSites = corpus.sites.filter((s) => found.has(s.domain));
  return {
    seconds,
    pagesPerSecond: corpus.sites.length / seconds,
    peakRssMb,
    cpuMs,
    score: score(answeredSites, found),
    answered: answeredSites.length,
  };
}

async function runCrawlee(corpus: BenchCorpus, concurrency: number): Promise<Run> {
  log.setLevel(log.LEVELS.WARNING);
  const found = new Map<string, Found>();
  const capturing = new Map<string, Capturing>();
  let lastDone = 0;
  const args = ["--disable-gpu", `--host-resolver-rules=${corpus.hostResolverRules}`];
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  // Crawlee's defaults except concurrency (and the launcher, binary and host mapping it needs to
  // reach the corpus); in-memory storage so the run leaves no ./storage behind.
  const crawler = new PuppeteerCrawler(
    {
      launchContext: { launcher: puppeteerCore, launchOptions: { executablePath: CHROMIUM, headless: true, args } },
      minConcurrency: concurrency,
      maxConcurrency: concurrency,
      preNavigationHooks: [
        async ({ page, request }) => {
          capturing.set(request.uniqueKey, await startCapture(page, EXTRACT));
        },
      ],
      async requestHandler({ request, response }) {
        const capture = capturing.get(request.uniqueKey)!;
        try {
          const result = await capture.collect(response?.status() ?? null, Date.now() + EXTRACT.navigationTimeoutMs);
          found.set(String(request.userData.domain), result);
        } finally {
          capture.stop();
          capturing.delete(request.uniqueKey);
          lastDone = performance.now();
        }
      },
      failedRequestHandler({ request }) {
        found.set(String(request.userData.domain), null);
        lastDone = performance.now();
      },
    },
    new Configuration({ persistStorage: false }),
  );
  const rss = sampleTreeRss();
  const started = performance.now();
  await crawler.run(corpus.sites.map((s) => ({ url: s.url, userData: { domain: s.domain } })));
  const cpuMs = rss.cpuMs();
  const peakRssMb = rss.stop();
  const seconds = ((lastDone || performance.now()) - started) / 1000;
  return {
    seconds,
    pagesPerSecond: corpus.sites.length / seconds,
    peakRssMb,
    cpuMs,
    score: score(corpus.sites, found),
    diffs: siteDiffs(corpus.sites, found),
  };
}

const fmt = (n: number, digits = 2) => n.toFixed(digits);

function printTable(rows: Array<[string, Run | null]>): void {
  const header = [
    "run",
    "pages/s",
    "seconds",
    "file recall",
    "file precision",
    "used-face recall",
    "used-face prec.",
    "family recall",
    "family prec.",
    "failed",
    "peak RSS MB",
  ];
  const lines = rows.map(([name, r]) =>
    r
      ? [
          name,
          fmt(r.pagesPerSecond),
          fmt(r.seconds, 1),
          fmt(r.score.fileRecall, 3),
          fmt(r.score.filePrecision, 3),
          fmt(r.score.usedFaceRecall, 3),
          fmt(r.score.usedFacePrecision, 3),
          fmt(r.score.familyRecall, 3),
          fmt(r.score.familyPrecision, 3),
          String(r.score.failedSites),
          fmt(r.peakRssMb, 0),
        ]
      : [name, "not measured", ...header.slice(2).map(() => "")],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(widths[i]!)).join(" | ") + " |";
  console.log(row(header));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const l of lines) console.log(row(l));
}

type Flags = {
  corpus: "demo" | "real";
  sites: number;
  only?: string[];
  concurrency: number;
  fastPath: boolean;
  isolation: BrowserIsolation;
  skipCrawlee: boolean;
  json?: string;
};

function flags(): Flags {
  const { values } = parseArgs({
    options: {
      corpus: { type: "string", default: "demo" },
      sites: { type: "string", default: "200" },
      only: { type: "string" },
      concurrency: { type: "string", default: "4" },
      json: { type: "string" },
      "no-fast-path": { type: "boolean", default: false },
      "skip-crawlee": { type: "boolean", default: false },
      isolation: { type: "string", default: "wiped-context" },
    },
  });
  const sites = Number(values.sites);
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(sites) || sites < 5 || !Number.isInteger(concurrency) || concurrency < 1) {
    throw new Error("--sites must be an integer ≥ 5 and --concurrency ≥ 1");
  }
  const isolation = values.isolation as BrowserIsolation;
  if (isolation !== "wiped-context" && isolation !== "context-per-job") {
    throw new Error("--isolation must be wiped-context or context-per-job");
  }
  if (values.corpus !== "demo" && values.corpus !== "real") throw new Error("--corpus must be demo or real");
  return {
    corpus: values.corpus,
    sites,
    ...(values.only ? { only: values.only.split(",").map((x) => x.trim()) } : {}),
    concurrency,
    fastPath: !values["no-fast-path"],
    isolation,
    skipCrawlee: values["skip-crawlee"],
    ...(values.json ? { json: values.json } : {}),
  };
}

function printDiffs(name: string, diffs: readonly SiteDiff[] | undefined): void {
  for (const d of diffs ?? []) {
    const what = d.failed
      ? "failed"
      : [
          d.missingFamilies.length ? `missed ${d.missingFamilies.join(", ")}` : "",
          d.extraFamilies.length ? `extra ${d.extraFamilies.join(", ")}` : "",
          d.missingFiles ? `${d.missingFiles} used file(s) missed` : "",
          d.extraFiles ? `${d.extraFiles} file(s) wrongly used` : "",
        ]
          .filter((x) => x !== "")
          .join("; ");
    console.log(`  ${name} ${d.domain}: ${what}`);
  }
}

async function main(): Promise<void> {
  const f = flags();
  const corpus = f.corpus === "real" ? await realBenchCorpus(f.only) : await demoBenchCorpus(f.sites);
  const sites = corpus.sites.length;
  try {
    console.log(`${corpus.label}; browser concurrency ${f.concurrency}`);
    const ours = await runOurs(corpus, f.concurrency, f.fastPath, f.isolation);
    const crawlee = f.skipCrawlee ? null : await runCrawlee(corpus, f.concurrency);
    const fast = await runFastPath(corpus, f.concurrency);
    const fastPathShare = (ours.paths?.static ?? 0) / sites;
    const browserPages = ours.paths?.browser ?? 0;
    printTable([
      [`glyphscan (${f.fastPath ? "fast path, then " : ""}BrowserPool ${f.isolation}, egress proxy)`, ours],
      ["Crawlee PuppeteerCrawler (defaults)", crawlee],
      [`fast path alone (answered ${fast.answered}/${sites}; scored on those)`, fast],
    ]);
    const ratio = crawlee ? ours.pagesPerSecond / crawlee.pagesPerSecond : null;
    const cpuMsPerBrowserPage = browserPages > 0 ? ours.cpuMs / browserPages : null;
    const crawleeCpuMsPerPage = crawlee ? crawlee.cpuMs / sites : null;
    console.log(`paths: ${JSON.stringify(ours.paths)}; fast path share ${fmt(fastPathShare, 3)}`);
    console.log(`escalated to the browser: ${JSON.stringify(ours.escalations)}`);
    if (f.isolation === "wiped-context") console.log(`browser slots: ${JSON.stringify(ours.slots)}`);
    const cpu = (n: number | null) => (n === null ? "not measured" : `${fmt(n, 0)} ms`);
    console.log(`CPU: ours ${cpu(cpuMsPerBrowserPage)} per browser page, Crawlee ${cpu(crawleeCpuMsPerPage)} per page`);
    console.log(`ratio vs Crawlee: ${ratio === null ? "not measured" : fmt(ratio)}x (goal ≥ 2x)`);
    const verdicts = f.corpus === "real" ? verdictScore() : null;
    if (verdicts) {
      console.log(
        `verdicts on the corpus's ${verdicts.files} font files: agreement ${fmt(verdicts.verdictAgreement, 3)}, ` +
          `open fonts called unlicensed ${verdicts.openCalledUnlicensed}`,
      );
    }
    console.log("sites whose used faces differ from the ground truth:");
    printDiffs("ours", ours.diffs);
    for (const [domain, why] of Object.entries(ours.failures ?? {})) console.log(`  ours ${domain} failed: ${why}`);
    printDiffs("crawlee", crawlee?.diffs);
    if (f.json) {
      const figures = {
        corpus: f.corpus,
        sites,
        concurrency: f.concurrency,
        isolation: f.isolation,
        pagesPerSecond: ours.pagesPerSecond,
        crawleePagesPerSecond: crawlee?.pagesPerSecond ?? null,
        ratioVsCrawlee: ratio,
        recall: ours.score.fileRecall,
        precision: ours.score.filePrecision,
        usedFaceRecall: ours.score.usedFaceRecall,
        usedFacePrecision: ours.score.usedFacePrecision,
        familyRecall: ours.score.familyRecall,
        familyPrecision: ours.score.familyPrecision,
        verdictAgreement: verdicts?.verdictAgreement ?? null,
        openCalledUnlicensed: verdicts?.openCalledUnlicensed ?? null,
        cpuMsPerBrowserPage,
        crawleeCpuMsPerPage,
        crawleeRecall: crawlee?.score.fileRecall ?? null,
        crawleePrecision: crawlee?.score.filePrecision ?? null,
        fastPathShare,
        fastPathPagesPerSecond: fast.pagesPerSecond,
        peakRssMb: ours.peakRssMb,
        crawleePeakRssMb: crawlee?.peakRssMb ?? null,
        runs: { ours, crawlee, fastPath: fast, verdictDisagreements: verdicts?.disagreements ?? null },
      };
      writeFileSync(f.json, JSON.stringify(figures, null, 2) + "\n");
      console.log(`figures written to ${f.json}`);
    }
  } finally {
    await corpus.close();
  }
}

await main();
