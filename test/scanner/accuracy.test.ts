/**
 * Acceptance: accuracy over the corpus, as the scanner runs in production (fast path first,
 * browser for the rest). Used font files are found (recall ≥ 0.98) and identified (the family in
 * the file's name table), families used are told apart from families only declared, and
 * precision is reported. The scoring is the benchmark's (ops/bench/scan-score.ts).
 */
import test from "ava";
import type { ScanReport } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { score, type Found } from "../../ops/bench/scan-score.ts";
import { startCorpus, VARIANTS, type Corpus } from "../../ops/demo/corpus.ts";

let corpus: Corpus;
const reports = new Map<string, ScanReport>();

test.before(async () => {
  corpus = await startCorpus({ sites: 50 });
  const pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 4,
    pageTimeoutMs: 30_000,
    hostResolverRules: corpus.hostResolverRules,
  });
  try {
    const opts = {
      allowHosts: ["*.test"],
      hostMap: { "*.test": "127.0.0.1" },
      maxFontBytes: 10 * 1024 * 1024,
      navigationTimeoutMs: 20_000,
      settleMs: 150,
      fastPath: true,
    };
    const queue = [...corpus.sites];
    const worker = async () => {
      for (let s = queue.shift(); s; s = queue.shift())
        reports.set(s.domain, await scanSite(pool, { url: s.url }, opts));
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  } finally {
    await pool.close();
  }
});

test.after.always(async () => {
  await corpus?.close();
});

const found = (): Map<string, Found> =>
  new Map([...reports].map(([domain, r]) => [domain, r.status === "ok" ? r : null] as const));

test("used font files: recall ≥ 0.98 over the corpus, precision reported", (t) => {
  t.is(corpus.sites.length, 50);
  for (const v of VARIANTS) t.is(corpus.sites.filter((s) => s.variant === v).length, 10, v);
  const s = score(corpus.sites, found());
  t.log(
    `files recall ${s.fileRecall.toFixed(3)} precision ${s.filePrecision.toFixed(3)}; ` +
      `families used recall ${s.familyRecall.toFixed(3)} precision ${s.familyPrecision.toFixed(3)}; ` +
      `declared-only told apart ${s.declaredOnlyRecall.toFixed(3)}; exact sites ${s.exactSites}/${s.sites}`,
  );
  for (const [domain, r] of reports) if (r.failure) t.log(`${domain}: ${r.failure.kind}: ${r.failure.message}`);
  t.is(s.failedSites, 0);
  t.true(s.fileRecall >= 0.98, `file recall ${s.fileRecall}`);
  t.true(s.filePrecision >= 0.98, `file precision ${s.filePrecision}`);
});

test("families: used ones reported used, declared-only ones reported declared and unused", (t) => {
  const s = score(corpus.sites, found());
  t.true(s.familyRecall >= 0.98, `family recall ${s.familyRecall}`);
  t.true(s.familyPrecision >= 0.98, `family precision ${s.familyPrecision}`);
  t.true(corpus.sites.some((site) => site.expectedDeclaredOnlyFamilies.length > 0));
  t.is(s.declaredOnlyRecall, 1);
});

test("every used file is identified: its name table gives the expected family", (t) => {
  let identified = 0;
  let expected = 0;
  for (const site of corpus.sites) {
    const report = reports.get(site.domain)!;
    for (const file of site.expectedFiles) {
      expected++;
      const got = report.files.find((f) => f.sha256 === file.sha256);
      // Subset web fonts often lack typographic names (ID 16), so a light weight's family reads
      // "Roboto Light" (legacy ID 1, which names non-RIBBI weights): the family is its prefix.
      if (got?.metadata?.family?.startsWith(file.fontFamily)) identified++;
    }
  }
  t.log(`${identified}/${expected} used files identified by family`);
  t.true(identified / expected >= 0.98);
});

test("both paths answered: script-free sites statically, script-driven ones in the browser", (t) => {
  for (const site of corpus.sites) {
    const path = reports.get(site.domain)!.path;
    const scripted = site.variant === "script-inserted" || site.variant === "font-face-api";
    t.is(path, scripted ? "browser" : "static", site.domain);
  }
});
