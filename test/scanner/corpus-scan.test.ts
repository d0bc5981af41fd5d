/**
 * End to end against the local corpus: every declaration variant yields exactly the expected
 * used families and file hashes, and declared-only faces come back unused.
 */
import test from "ava";
import { scanReportV1, type ScanReport } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { startCorpus, VARIANTS, type Corpus } from "../../ops/demo/corpus.ts";

let corpus: Corpus;
let pool: BrowserPool;
const reports = new Map<string, ScanReport>();
let pagesPerSecond = 0;

test.before(async () => {
  corpus = await startCorpus({ sites: 20 });
  pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 4,
    pageTimeoutMs: 30_000,
    hostResolverRules: corpus.hostResolverRules,
  });
  const opts = {
    allowHosts: ["*.test"],
    hostMap: { "*.test": "127.0.0.1" },
    maxFontBytes: 10 * 1024 * 1024,
    navigationTimeoutMs: 20_000,
    settleMs: 150,
  };
  const started = Date.now();
  const done = await Promise.all(corpus.sites.map((s) => scanSite(pool, { url: s.url }, opts)));
  pagesPerSecond = corpus.sites.length / ((Date.now() - started) / 1000);
  corpus.sites.forEach((s, i) => reports.set(s.domain, done[i]!));
});

test.after.always(async () => {
  await pool?.close();
  await corpus?.close();
});

const sorted = (xs: Iterable<string>): string[] => [...new Set(xs)].sort();

for (const variant of VARIANTS) {
  test(`variant ${variant}: exact used families, declared-only faces and file hashes`, (t) => {
    const sites = corpus.sites.filter((s) => s.variant === variant);
    t.true(sites.length >= 2);
    for (const site of sites) {
      const report = reports.get(site.domain)!;
      scanReportV1.parse(report);
      t.is(report.status, "ok", `${site.domain}: ${report.failure?.message}`);
      t.is(report.path, "browser");
      t.is(report.pages.length, 1);
      t.like(report.pages[0], { url: site.url, finalUrl: site.url, httpStatus: 200 });

      const used = report.faces.filter((f) => f.used);
      t.deepEqual(sorted(used.map((f) => f.family)), sorted(site.expectedUsedFamilies), site.domain);
      const unused = report.faces.filter((f) => !f.used);
      t.deepEqual(sorted(unused.map((f) => f.family)), sorted(site.expectedDeclaredOnlyFamilies), site.domain);
      const declaredIn = variant === "font-face-api" ? "font-face-api" : "stylesheet";
      t.true(
        report.faces.every((f) => f.declaredIn === declaredIn),
        site.domain,
      );

      t.deepEqual(
        sorted(report.files.map((f) => f.sha256)),
        sorted(site.expectedFiles.map((f) => f.sha256)),
        site.domain,
      );
      for (const expected of site.expectedFiles) {
        // Each used face points at the file fetched for it, by absolute URL.
        const face = used.find((f) => f.family === expected.family && f.fileSha256.includes(expected.sha256));
        t.truthy(face, `${site.domain}: no face of ${expected.family} holds ${expected.sha256}`);
        t.true(expected.url.startsWith("data:") || face?.srcUrls.includes(expected.url), site.domain);
      }
      for (const face of unused) t.deepEqual(face.fileSha256, [], `${site.domain}: ${face.family} was never fetched`);
      for (const file of report.files) {
        t.is(file.parseError, null, `${site.domain}: ${file.url}`);
        t.truthy(file.metadata?.family);
        t.is(file.via, file.url.startsWith("data:") ? "data-uri" : "font-request");
      }
    }
  });
}

test("a font embedded as a data: URI is captured and linked to its face", (t) => {
  const site = corpus.sites.find((s) => s.expectedFiles.some((f) => f.url.startsWith("data:")));
  t.truthy(site);
  const report = reports.get(site!.domain)!;
  const file = report.files.find((f) => f.via === "data-uri");
  t.truthy(file);
  t.true(file!.url.length < 200, "data: URIs are shortened in reports");
  t.is(file!.metadata?.family, "Lato");
});

test("images are blocked inside Chromium and never reach the server", (t) => {
  t.is(corpus.hits.image, 0);
  t.is(corpus.hits.page, corpus.sites.length);
  t.log(`${corpus.sites.length} sites at ${pagesPerSecond.toFixed(2)} pages/s (concurrency 4, CONTEXT mode)`);
});

test("no site leaks into another: every face family carries its own site's prefix", (t) => {
  for (const site of corpus.sites) {
    const prefix = site.domain.replace(/^site(\d+)\.test$/, "S$1 ");
    const report = reports.get(site.domain)!;
    t.true(report.faces.length > 0);
    t.true(
      report.faces.every((f) => f.family.startsWith(prefix)),
      site.domain,
    );
    t.true(report.files.every((f) => f.url.startsWith("data:") || new URL(f.url).hostname.endsWith(site.domain)));
  }
});
