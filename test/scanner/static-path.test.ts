/**
 * The static fast path: pure-CSS sites answer without a browser and match the ground truth;
 * pages whose fonts script could change escalate, as do pages it cannot fully resolve; every
 * request, redirects included, passes the SSRF guard.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import test from "ava";
import { scanReportV1 } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { parseSheet } from "../../actors/scanner/css-read.ts";
import { Slicer } from "../../actors/scanner/static-limits.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { staticScan, type StaticOptions } from "../../actors/scanner/static-path.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";

const fontFile = (pkg: string, name: string) =>
  readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${pkg}/files/${name}`)));
const inter400 = fontFile("inter", "inter-latin-400-normal.woff2");
const inter700 = fontFile("inter", "inter-latin-700-normal.woff2");

let corpus: Corpus;
let server: http.Server;
let port = 0;
const opts: StaticOptions = {
  policy: { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } },
  maxFontBytes: 10 * 1024 * 1024,
  timeoutMs: 5_000,
};
const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();
const interFaces = `@font-face { font-family: Inter; font-weight: 400; src: url(/inter-400.woff2) format("woff2"); }
@font-face { font-family: Inter; font-weight: 700; src: url(/inter-700.woff2) format("woff2"); }`;
const pages: Record<string, string> = {
  "/regular-only": `<!doctype html><style>${interFaces} p { font-family: Inter, sans-serif }</style><p>Only regular text</p>`,
  "/bold-too": `<!doctype html><style>${interFaces} p { font-family: Inter }</style><p>Some <strong>bold</strong> text</p>`,
  "/local-first": `<!doctype html><style>${interFaces} p { font-family: "Helvetica Neue", Inter }</style><p>Text</p>`,
  "/var-family": `<!doctype html><style>${interFaces} :root { --body: Inter, serif } .x { font: 16px/1.4 var(--body) }</style><p class="x">Text</p>`,
  "/unmatched-selector": `<!doctype html><style>${interFaces} .nowhere { font-family: Inter }</style><p>Text</p>`,
  "/preload": `<!doctype html><link rel="preload" as="font" href="/inter-700.woff2" crossorigin><p>No faces</p>`,
  "/missing-sheet": `<!doctype html><link rel="stylesheet" href="/nope.css"><p>Text</p>`,
  "/inline-handler": `<!doctype html><body onload="void 0"><p>Text</p></body>`,
  "/font-handler": `<!doctype html><body onload="document.fonts.load('1em Inter')"><p>Text</p></body>`,
  "/safe-script": `<!doctype html><script defer src="https://static.cloudflareinsights.com/beacon.min.js"></script><script type="application/ld+json">{"@type":"Thing"}</script><style>${interFaces} p { font-family: Inter }</style><p>Text</p>`,
  "/to-private": "",
};

test.before(async () => {
  corpus = await startCorpus({ sites: 10 });
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/inter-400.woff2") return res.writeHead(200, { "content-type": "font/woff2" }).end(inter400);
    if (path === "/inter-700.woff2") return res.writeHead(200, { "content-type": "font/woff2" }).end(inter700);
    if (path === "/gzipped") {
      const body = gzipSync(`<!doctype html><style>${interFaces} p { font-family: Inter }</style><p>Zipped</p>`);
      return res.writeHead(200, { "content-type": "text/html", "content-encoding": "gzip" }).end(body);
    }
    if (path === "/to-private") return res.writeHead(302, { location: `http://127.0.0.1:${port}/regular-only` }).end();
    const html = pages[path];
    if (html === undefined) return res.writeHead(404, { "content-type": "text/plain" }).end("no");
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});

test.after.always(async () => {
  await corpus?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

const local = (path: string) => `http://static.test:${port}${path}`;

test("pure-CSS corpus sites (inline, link, @import, data: URI) answer statically with the right files", async (t) => {
  const sites = corpus.sites.filter((s) => ["inline-style", "link", "import"].includes(s.variant));
  t.true(sites.length >= 6);
  t.true(sites.some((s) => s.expectedFiles.some((f) => f.url.startsWith("data:"))));
  for (const site of sites) {
    const out = await staticScan(site.url, opts);
    t.true(out.answered, `${site.domain}: ${out.answered ? "" : out.reason}`);
    if (!out.answered) continue;
    const { faces, files } = out.page;
    t.deepEqual(sorted(files.map((f) => f.sha256)), sorted(site.expectedFiles.map((f) => f.sha256)), site.domain);
    t.deepEqual(sorted(faces.filter((f) => f.used).map((f) => f.family)), sorted(site.expectedUsedFamilies));
    t.deepEqual(sorted(faces.filter((f) => !f.used).map((f) => f.family)), sorted(site.expectedDeclaredOnlyFamilies));
    for (const file of files) {
      t.is(file.parseError, null);
      t.truthy(file.metadata?.family);
      t.is(file.via, file.url.startsWith("data:") ? "data-uri" : "font-request");
      t.is(file.provider, "self-hosted");
    }
    for (const face of faces.filter((f) => !f.used)) t.deepEqual(face.fileSha256, []);
  }
});

test("script-inserted and FontFace-API corpus sites escalate to the browser", async (t) => {
  const sites = corpus.sites.filter((s) => ["script-inserted", "font-face-api"].includes(s.variant));
  t.true(sites.length >= 4);
  for (const site of sites) {
    const out = await staticScan(site.url, opts);
    t.false(out.answered, site.domain);
    // Each escalates on the rule for what its script does: a stylesheet or FontFace from script.
    t.true(out.answered === false && ["style-insertion", "font-api", "font-file"].includes(out.rule), site.domain);
    t.true(out.answered === false && out.script === "inline script", site.domain);
  }
});

test("scanSite records which path answered: static for pure CSS, browser for the FontFace API", async (t) => {
  const pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 15_000,
    hostResolverRules: corpus.hostResolverRules,
  });
  t.teardown(() => pool.close());
  const scanOpts = {
    allowHosts: ["*.test"],
    hostMap: { "*.test": "127.0.0.1" },
    maxFontBytes: 10 * 1024 * 1024,
    navigationTimeoutMs: 15_000,
    settleMs: 100,
    fastPath: true,
  };
  const css = corpus.sites.find((s) => s.variant === "link")!;
  const api = corpus.sites.find((s) => s.variant === "font-face-api")!;
  const escalations: string[] = [];
  const [a, b] = await Promise.all(
    [css, api].map((s) => scanSite(pool, { url: s.url }, { ...scanOpts, onEscalate: (r) => escalations.push(r) })),
  );
  scanReportV1.parse(a);
  t.like(a, { status: "ok", path: "static", pages: [{ url: css.url, finalUrl: css.url, httpStatus: 200 }] });
  t.like(b, { status: "ok", path: "browser" });
  t.is(escalations.length, 1);
  // The report says why: the triage rule and the script it fired on.
  t.like(b!.escalation, { rule: "font-api", script: "inline script" });
  t.is(a!.escalation, undefined);
  t.regex(escalations[0] ?? "", /a script (uses the CSS Font Loading API|names a font file)/);
  t.deepEqual(sorted(b!.files.map((f) => f.sha256)), sorted(api.expectedFiles.map((f) => f.sha256)));
});

test("only the weights the page asks for are used and fetched", async (t) => {
  const regular = await staticScan(local("/regular-only"), opts);
  t.true(regular.answered);
  if (!regular.answered) return;
  t.deepEqual(
    regular.page.files.map((f) => f.sha256),
    [sha256Hex(inter400)],
  );
  t.deepEqual(
    regular.page.faces.map((f) => [f.weight, f.used]),
    [
      ["400", true],
      ["700", false],
    ],
  );
  const bold = await staticScan(local("/bold-too"), opts);
  t.true(bold.answered);
  if (bold.answered)
    t.deepEqual(sorted(bold.page.files.map((f) => f.sha256)), sorted([inter400, inter700].map(sha256Hex)));
});

test("custom properties and the font shorthand are followed; unmatched selectors use nothing", async (t) => {
  const viaVar = await staticScan(local("/var-family"), opts);
  t.true(viaVar.answered && viaVar.page.faces.some((f) => f.family === "Inter" && f.used));
  const unmatched = await staticScan(local("/unmatched-selector"), opts);
  t.true(unmatched.answered);
  if (unmatched.answered) {
    t.deepEqual(unmatched.page.files, []);
    t.true(unmatched.page.faces.every((f) => !f.used));
  }
});

test("preloaded fonts are fetched and reported; known analytics and JSON-LD scripts do not escalate", async (t) => {
  const preload = await staticScan(local("/preload"), opts);
  t.true(preload.answered);
  if (preload.answered)
    t.deepEqual(
      preload.page.files.map((f) => f.sha256),
      [sha256Hex(inter700)],
    );
  const safe = await staticScan(local("/safe-script"), opts);
  t.true(safe.answered, safe.answered ? "" : safe.reason);
});

test("what the fast path cannot be sure of escalates, with the reason", async (t) => {
  const reasonOf = async (path: string, o: StaticOptions = opts) => {
    const out = await staticScan(local(path), o);
    return out.answered ? "answered" : out.reason;
  };
  t.regex(await reasonOf("/local-first"), /Helvetica Neue.*local font/);
  // A 404 stylesheet is not applied by the browser either; a harmless handler does not escalate.
  t.is(await reasonOf("/missing-sheet"), "answered");
  t.is(await reasonOf("/inline-handler"), "answered");
  t.regex(await reasonOf("/font-handler"), /CSS Font Loading API/);
  t.regex(await reasonOf("/regular-only", { ...opts, maxFontBytes: 1_000 }), /inter-400\.woff2.*exceeds 1001 bytes/);
  t.regex(await reasonOf("/to-private"), /127\.0\.0\.1 resolves to 127\.0\.0\.1 \(loopback\)/);
  t.regex(
    await reasonOf("/regular-only", { ...opts, policy: { allowHosts: [], hostMap: opts.policy.hostMap! } }),
    /loopback/,
  );
});

test("CSS reading: data: URIs with semicolons, @media blocks, comments with braces, @import forms", async (t) => {
  const css = await parseSheet(
    `@import url("a.css"); @import 'b.css' screen; @import "print.css" print; /* } { */
    @media (min-width: 1px) { @font-face { font-family: "M"; src: url(data:font/woff2;base64,AAAA) format("woff2"); } }
    @media (min-width: 5000px) { h2 { font-weight: 900 } }
    h1 { font: 700 2em/1.1 "M", serif; color: red }`,
    "http://x.test/",
    null,
    new Slicer(Date.now() + 5_000),
  );
  const kinds = css.events.map((e) => e.kind);
  t.deepEqual(kinds, ["import", "import", "face", "rule"]);
  t.deepEqual(
    css.events.flatMap((e) => (e.kind === "import" ? [e.href] : [])),
    ["a.css", "b.css"],
  );
  const face = css.events.find((e) => e.kind === "face");
  t.is(face?.kind === "face" ? face.face.src : "", `url(data:font/woff2;base64,AAAA) format("woff2")`);
  const rule = css.events.find((e) => e.kind === "rule");
  t.deepEqual(rule?.kind === "rule" ? rule.decls : [], [
    { property: "font", value: `700 2em/1.1 "M", serif`, important: false },
  ]);
});

test("compressed responses are decoded", async (t) => {
  const out = await staticScan(local("/gzipped"), opts);
  t.true(out.answered, out.answered ? "" : out.reason);
  if (out.answered)
    t.deepEqual(
      out.page.files.map((f) => f.sha256),
      [sha256Hex(inter400)],
    );
});
