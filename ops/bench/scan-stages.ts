/**
 * Where the browser path's time goes: scans the corpus sites the fast path escalates (browser
 * only, as `npm run bench:scan` does for them) and sums, per stage, the time spent in each page
 * operation of extractFonts (waiting for a page, navigation, settle, inventory, rendered-font
 * sampling, links) across all jobs, and counts the renderer processes Chromium launched per page.
 * Flags: --corpus demo|real (demo; real: the sites from npm packages, --only id,id), --sites N (200), --concurrency N (4),
 * --isolation wiped-context|context-per-job, --no-egress (without the SSRF egress proxy).
 * `node ops/bench/scan-stages.ts`
 */
import { parseArgs } from "node:util";
import type { Page } from "puppeteer-core";
import { BrowserPool, type BrowserIsolation } from "../../actors/scanner/browser-pool.ts";
import { extractFonts } from "../../actors/scanner/extract-fonts.ts";
import { staticScan } from "../../actors/scanner/static-path.ts";
import { demoBenchCorpus, realBenchCorpus } from "./scan-corpora.ts";
import { countRendererLaunches } from "./scan-rss.ts";

const EXTRACT = { maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 30_000, settleMs: 150 };

const totals = new Map<string, { ms: number; n: number }>();
const add = (stage: string, ms: number): void => {
  const t = totals.get(stage) ?? { ms: 0, n: 0 };
  t.ms += ms;
  t.n++;
  totals.set(stage, t);
};

/** The page with goto/evaluate/createCDPSession timed; evaluate is named after its function. */
function timed(page: Page): Page {
  return new Proxy(page, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      const fn = (value as (...a: unknown[]) => unknown).bind(target);
      if (key !== "goto" && key !== "evaluate" && key !== "createCDPSession" && key !== "evaluateOnNewDocument") {
        return fn;
      }
      return async (...args: unknown[]) => {
        const name = key === "evaluate" && typeof args[0] === "function" ? `evaluate ${args[0].name}` : String(key);
        const started = performance.now();
        try {
          return await fn(...args);
        } finally {
          add(name, performance.now() - started);
        }
      };
    },
  });
}

const { values } = parseArgs({
  options: {
    corpus: { type: "string", default: "demo" },
    only: { type: "string" },
    sites: { type: "string", default: "200" },
    concurrency: { type: "string", default: "4" },
    isolation: { type: "string", default: "wiped-context" },
    "no-egress": { type: "boolean", default: false },
  },
});
const concurrency = Number(values.concurrency);
const corpus =
  values.corpus === "real"
    ? await realBenchCorpus(values.only?.split(","))
    : await demoBenchCorpus(Number(values.sites));
const POLICY = corpus.policy;
try {
  const escalated = [];
  for (const site of corpus.sites) {
    const out = await staticScan(site.url, { policy: POLICY, maxFontBytes: EXTRACT.maxFontBytes, timeoutMs: 5_000 });
    if (!out.answered) escalated.push(site);
  }
  const pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency,
    pageTimeoutMs: EXTRACT.navigationTimeoutMs,
    hostResolverRules: corpus.hostResolverRules,
    ...(values["no-egress"] ? {} : { egress: { policy: POLICY, maxResponseBytes: 32 * 1024 * 1024 } }),
    isolation: values.isolation as BrowserIsolation,
  });
  const queue = [...escalated];
  const renderers = countRendererLaunches();
  const started = performance.now();
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency * 2 }, async () => {
      for (let site = queue.shift(); site; site = queue.shift()) {
        const called = performance.now();
        await pool
          .run(site.url, async (page, url) => {
            add("wait for a page (queue + acquire)", performance.now() - called);
            const began = performance.now();
            try {
              return await extractFonts(timed(page), url, { ...EXTRACT, refusalFor: (u) => pool.refusalFor(u) });
            } finally {
              add("task total", performance.now() - began);
            }
          })
          .catch(() => failed++);
        add("run total (call to answer)", performance.now() - called);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const launched = renderers.stop();
  await pool.close();
  const label = `${values.isolation}${values["no-egress"] ? ", no egress proxy" : ", egress proxy"}`;
  console.log(`${escalated.length} browser sites, concurrency ${concurrency}, ${label}: ${seconds.toFixed(1)} s,`);
  console.log(
    `${(escalated.length / seconds).toFixed(2)} pages/s, ${failed} failed; slots ${JSON.stringify(pool.slotStats)}`,
  );
  console.log(`renderer processes launched: ${launched} (${(launched / escalated.length).toFixed(2)} per page)`);
  console.log("| stage | calls | total s | mean ms |\n|---|---|---|---|");
  for (const [stage, t] of [...totals].sort((a, b) => b[1].ms - a[1].ms)) {
    console.log(`| ${stage} | ${t.n} | ${(t.ms / 1000).toFixed(1)} | ${(t.ms / t.n).toFixed(0)} |`);
  }
} finally {
  await corpus.close();
}
