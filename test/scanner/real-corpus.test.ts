/**
 * The scanner on a fixed subset of the real corpus (pages real packages ship, or our pages using
 * them as their READMEs say), scanned as production does (fast path first, BrowserPool behind the
 * SSRF egress proxy) and scored against the reference's checked-in ground truth
 * (ops/real-corpus/ground-truth.json, made by `npm run corpus:reference` with Chromium alone).
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { realBenchCorpus, type BenchCorpus } from "../../ops/bench/scan-corpora.ts";
import { score, siteDiffs, type Found } from "../../ops/bench/scan-score.ts";
import { verdictScore } from "../../ops/bench/scan-verdicts.ts";
import { MANIFEST, manifestOf } from "../../ops/real-corpus/generate.ts";
import { SITES } from "../../ops/real-corpus/sites.ts";
import type { ScanReport } from "../../protocol/mod.ts";

/** One or two of each kind: admin template, slides, maths, icons, script-loaded, client-rendered docs. */
const SUBSET = [
  "sb-admin-2-buttons",
  "reveal-demo-league",
  "katex-auto-render",
  "fontawesome-free",
  "bootstrap-icons",
  "webfontloader-custom",
  "fontface-fetch",
  "docsify-readme",
];

let corpus: BenchCorpus;
const reports = new Map<string, ScanReport>();

test.before(async () => {
  corpus = await realBenchCorpus(SUBSET);
  const pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 30_000,
    hostResolverRules: corpus.hostResolverRules,
    egress: { policy: corpus.policy, maxResponseBytes: 32 * 1024 * 1024 },
  });
  try {
    for (const site of corpus.sites) {
      const report = await scanSite(
        pool,
        { url: site.url },
        {
          ...corpus.policy,
          maxFontBytes: 10 * 1024 * 1024,
          navigationTimeoutMs: 30_000,
          settleMs: 150,
          fastPath: true,
        },
      );
      reports.set(site.domain, report);
    }
  } finally {
    await pool.close();
  }
});

test.after.always(async () => {
  await corpus?.close();
});

const found = (): Map<string, Found> =>
  new Map([...reports].map(([domain, r]) => [domain, r.status === "ok" ? r : null] as const));

test("used-face files and used families match the reference on every kind of site", (t) => {
  t.is(corpus.sites.length, SUBSET.length);
  t.true(
    corpus.sites.some((s) => s.expectedDeclaredOnlyFamilies.length > 0),
    "some site declares faces it never uses",
  );
  const s = score(corpus.sites, found());
  t.log(
    `used-face files recall ${s.usedFaceRecall.toFixed(3)} precision ${s.usedFacePrecision.toFixed(3)}; ` +
      `families recall ${s.familyRecall.toFixed(3)} precision ${s.familyPrecision.toFixed(3)}; exact ${s.exactSites}/${s.sites}`,
  );
  for (const d of siteDiffs(corpus.sites, found())) t.log(JSON.stringify(d));
  for (const [domain, r] of reports) if (r.failure) t.log(`${domain}: ${r.failure.kind}: ${r.failure.message}`);
  t.is(s.failedSites, 0);
  t.true(s.usedFaceRecall >= 0.98, `used-face file recall ${s.usedFaceRecall}`);
  t.true(s.usedFacePrecision >= 0.98, `used-face file precision ${s.usedFacePrecision}`);
  t.true(s.familyRecall >= 0.99, `family recall ${s.familyRecall}`);
  t.true(s.familyPrecision >= 0.99, `family precision ${s.familyPrecision}`);
});

test("the verdict engine agrees with the licence each package declares for its fonts", (t) => {
  const v = verdictScore();
  t.log(`${v.files} font files, agreement ${v.verdictAgreement.toFixed(3)}`);
  for (const d of v.disagreements.slice(0, 10))
    t.log(`${d.path}: ${d.verdict} ${d.licence ?? ""} (declared ${d.declared})`);
  t.true(v.files > 1000, "every font file of the corpus's packages is judged");
  t.true(v.verdictAgreement >= 0.95, `verdict agreement ${v.verdictAgreement}`);
  t.is(v.openCalledUnlicensed, 0);
  // Icon fonts shipped inside a framework carry the framework's licence, not "all rights reserved".
  const glyphicons = v.disagreements.filter((d) => d.path.startsWith("bootstrap3/"));
  t.deepEqual(glyphicons, []);
});

test("the manifest describes the corpus as it is built now", (t) => {
  const stored = JSON.parse(readFileSync(MANIFEST, "utf8")) as { sites: unknown[] };
  t.deepEqual(stored.sites, SITES.map(manifestOf));
  t.true(SITES.length >= 40);
  t.true(SITES.filter((s) => s.ours).length * 2 < SITES.length, "pages of ours stay a minority");
});
