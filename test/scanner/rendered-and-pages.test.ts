/**
 * What actually renders text (CDP CSS.getPlatformFontsForNode / CSS.fontsUpdated) decides which
 * faces are used: a CSS alias is reported as the real font, a face that loads but draws nothing is
 * only declared, and a family merely named in a font-family stack is never a used face. And a site
 * is its landing page plus a few same-site pages it links to (scanner.extraPages), merged.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";
import { scanReportV1, type ScanReport } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { scanSite, type ScanSiteOptions } from "../../actors/scanner/scan-site.ts";
import { sameSitePages } from "../../actors/scanner/same-site.ts";

const file = (pkg: string) => readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${pkg}`)));
const roboto = file("roboto/files/roboto-latin-400-normal.woff2");
const lato = file("lato/files/lato-latin-400-normal.woff2");
const inter = file("inter/files/inter-latin-400-normal.woff2");

let server: http.Server;
let port = 0;
let pool: BrowserPool;
const served: string[] = [];
const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };
const opts: ScanSiteOptions = { ...policy, maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 8_000, settleMs: 100 };
const at = (path: string, host = "www.shop.test") => `http://${host}:${port}${path}`;
const face = (family: string, src: string) =>
  `@font-face { font-family: "${family}"; src: url("${src}") format("woff2"); }`;

const routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void> = {
  "/roboto.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(roboto),
  "/lato.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(lato),
  "/inter.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(inter),
  "/alias": (_, res) =>
    res.end(`<!doctype html><style>
      ${face("Brand Sans", "/roboto.woff2")}
      ${face("Preloaded", "/lato.woff2")}
      ${face("Icons", "/inter.woff2")}
      p { font-family: "Brand Sans", "Helvetica Neue", Arial, sans-serif; }
      h1 { font-family: "Only Named", "Another Named", serif; }
      i::before { content: "Q"; font-family: Icons; }
    </style>
    <h1>Title</h1><p>Hello there</p><i></i>
    <script>document.fonts.load('16px "Preloaded"');</script>`),
  // Landing page and same-site pages; the pages scripted so that the browser scans them.
  "/": (_, res) =>
    res.end(`<!doctype html><style>${face("Home", "/roboto.woff2")} p { font-family: Home; }</style>
      <p>Home</p>
      <a href="/brochure.pdf">pdf</a>
      <a href="http://other.test:${port}/elsewhere">another site</a>
      <a href="/#top">this page again</a>
      <a href="/about">about</a> <a href="/about#team">about again</a>
      <a href="http://blog.shop.test:${port}/post">blog</a>
      <a href="/contact">contact</a>`),
  "/about": (_, res) =>
    res.end(`<!doctype html><style>${face("About", "/lato.woff2")} p { font-family: About; }</style><p>About</p>`),
  "/post": (_, res) =>
    res.end(`<!doctype html><style>${face("Blog", "/inter.woff2")} p { font-family: Blog; }</style><p>Post</p>`),
  "/contact": (_, res) => res.end(`<!doctype html><p>contact</p>`),
};

test.before(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    served.push(`${req.headers.host?.split(":")[0]}${path}`);
    const route = routes[path];
    if (!res.hasHeader("content-type")) res.setHeader("content-type", "text/html; charset=utf-8");
    if (route) route(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 10_000,
    egress: { policy, maxResponseBytes: 8 * 1024 * 1024 },
  });
});

test.after.always(async () => {
  await pool?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

async function scan(url: string, overrides: Partial<ScanSiteOptions> = {}): Promise<ScanReport> {
  return scanReportV1.parse(await scanSite(pool, { url }, { ...opts, ...overrides }));
}

test.serial("a CSS alias is reported as the real font that rendered it", async (t) => {
  const report = await scan(at("/alias"));
  t.is(report.status, "ok");
  t.like(
    report.faces.find((f) => f.family === "Brand Sans"),
    { used: true, renderedAs: ["Roboto-Regular"], fileSha256: [sha256Hex(roboto)] },
  );
  t.like(
    report.renderedFonts?.find((f) => f.custom && f.family === "Roboto"),
    { postScriptName: "Roboto-Regular" },
  );
  // Generated text (::before) counts: icon fonts render that way.
  t.like(
    report.faces.find((f) => f.family === "Icons"),
    { used: true, renderedAs: ["Inter-Regular"] },
  );
});

test.serial("a face that loads but renders no text is declared only", async (t) => {
  const report = await scan(at("/alias"));
  // document.fonts.load() fetched Lato (so the file is listed), yet no text is drawn with it.
  t.true(report.files.some((f) => f.sha256 === sha256Hex(lato)));
  t.like(
    report.faces.find((f) => f.family === "Preloaded"),
    { used: false, renderedAs: [] },
  );
  t.false(report.renderedFonts?.some((f) => f.postScriptName === "Lato-Regular"));
});

test.serial("families only named in a font-family stack are never used faces", async (t) => {
  const report = await scan(at("/alias"));
  const named = ["Only Named", "Another Named", "Helvetica Neue", "Arial"];
  t.false(report.faces.some((f) => named.includes(f.family)));
  // The heading rendered with a system fallback, which is reported as such.
  t.true(report.renderedFonts?.some((f) => !f.custom && f.glyphs > 0));
  t.false(report.renderedFonts?.some((f) => f.custom && named.includes(f.family)));
});

test.serial("same-site pages linked from the landing page are scanned and merged", async (t) => {
  served.length = 0;
  const report = await scan(at("/"), { extraPages: 2 });
  t.is(report.status, "ok");
  t.deepEqual(
    report.pages.map((p) => p.url),
    [at("/"), at("/about"), at("/post", "blog.shop.test")],
  );
  const used = new Set(report.faces.filter((f) => f.used).map((f) => f.family));
  t.deepEqual([...used].sort(), ["About", "Blog", "Home"]);
  t.deepEqual(new Set(report.files.map((f) => f.metadata?.family)), new Set(["Roboto", "Lato", "Inter"]));
  t.false(
    served.some((s) => s.startsWith("other.test")),
    "another site is not scanned",
  );
  t.false(served.includes("www.shop.test/contact"), "no more than extraPages pages");
  t.false(served.includes("www.shop.test/brochure.pdf"), "assets are not pages");
});

test.serial("extraPages 0 scans the landing page only", async (t) => {
  const report = await scan(at("/"), { extraPages: 0 });
  t.deepEqual(
    report.pages.map((p) => p.url),
    [at("/")],
  );
  t.false(report.files.some((f) => f.sha256 === sha256Hex(lato)));
});

test.serial("the static fast path follows same-site links too", async (t) => {
  const report = await scan(at("/"), { extraPages: 1, fastPath: true });
  t.is(report.path, "static");
  t.deepEqual(
    report.pages.map((p) => p.url),
    [at("/"), at("/about")],
  );
  t.true(report.faces.some((f) => f.family === "About" && f.used));
});

test("same-site page selection", (t) => {
  const links = [
    "http://www.shop.test/",
    "http://www.shop.test/#x",
    "https://shop.test/a",
    "https://shop.test/a/",
    "http://www.shop.test/a/",
    "http://cdn.shop.test/logo.svg",
    "http://evil.test/b",
    "mailto:x@shop.test",
    "http://user:pw@www.shop.test/c",
    "http://www.shop.test/d?page=2",
  ];
  t.deepEqual(sameSitePages("http://www.shop.test/", links, 5), [
    "https://shop.test/a",
    "http://www.shop.test/a/",
    "http://www.shop.test/d?page=2",
  ]);
  t.deepEqual(sameSitePages("http://www.shop.test/", links, 1), ["https://shop.test/a"]);
  t.deepEqual(sameSitePages("http://www.shop.test/", links, 0), []);
});
