/**
 * What real pages do after DOMContentLoaded, and whether the browser path sees it: a stylesheet a
 * script inserts later, a face a script builds from fetched bytes (linked to that file by SHA-256),
 * a face built from bytes made in the page (linked by the font's own names), and a used face whose
 * first matching elements are hidden. The settle says why it ended and how long it took.
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

const file = (path: string) => readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${path}`)));
const roboto = file("roboto/files/roboto-latin-400-normal.woff2");
const lato = file("lato/files/lato-latin-400-normal.woff2");
const inter = file("inter/files/inter-latin-400-normal.woff2");
const interWoff = file("inter/files/inter-latin-400-normal.woff");

let server: http.Server;
let port = 0;
let pool: BrowserPool;
let blobs = 0;
const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };
const opts: ScanSiteOptions = {
  ...policy,
  maxFontBytes: 10 * 1024 * 1024,
  navigationTimeoutMs: 8_000,
  settleMs: 100,
  settleQuietMs: 300,
  settleBudgetMs: 4_000,
};
const at = (path: string) => `http://www.signals.test:${port}${path}`;
const face = (family: string, src: string) =>
  `@font-face { font-family: "${family}"; src: url("${src}") format("woff2"); }`;
const font =
  (body: Buffer, type = "font/woff2") =>
  (_: unknown, res: http.ServerResponse) =>
    void res.writeHead(200, { "content-type": type }).end(body);

const routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void> = {
  "/lato.woff2": font(lato),
  "/inter.woff2": font(inter),
  "/late.css": (_, res) => void res.writeHead(200, { "content-type": "text/css" }).end(face("Late", "/lato.woff2")),
  // The stylesheet arrives by script 600 ms after DOMContentLoaded, with nothing loading before it.
  "/late-sheet": (_, res) =>
    res.end(`<!doctype html><style>p { font-family: Late, sans-serif; }</style><p>Late text</p>
      <script>document.addEventListener("DOMContentLoaded", () => setTimeout(() => {
        const link = Object.assign(document.createElement("link"), { rel: "stylesheet", href: "/late.css" });
        document.head.append(link);
      }, 600));</script>`),
  // Served as an opaque blob after 50-400 ms: the face exists only once the script has the bytes.
  "/blob/font.bin": (_, res) => {
    const delay = 50 + ((blobs++ * 113) % 350);
    setTimeout(() => res.writeHead(200, { "content-type": "application/octet-stream" }).end(roboto), delay);
  },
  "/fetched-face": (_, res) =>
    res.end(`<!doctype html><style>p { font-family: Fetched, serif; }</style><p>Fetched text</p>
      <script>fetch("/blob/font.bin").then((r) => r.arrayBuffer()).then((bytes) => {
        document.fonts.add(new FontFace("Fetched", bytes));
      });</script>`),
  // Bytes made in the page (here decoded from base64): no request carries them, but the font's names
  // match the WOFF2 the stylesheet loaded.
  "/inline-bytes": (_, res) =>
    res.end(`<!doctype html><style>${face("Inter Web", "/inter.woff2")}
      h1 { font-family: "Inter Web"; } p { font-family: Inline, serif; }</style><h1>Web</h1><p>Inline text</p>
      <script>const bytes = Uint8Array.from(atob("${interWoff.toString("base64")}"), (c) => c.charCodeAt(0));
      document.fonts.add(new FontFace("Inline", bytes));</script>`),
  // The face draws visible text, but the first elements naming it are hidden in every usual way.
  "/hidden-first": (_, res) =>
    res.end(`<!doctype html><style>${face("Brand", "/brand.woff2")}
      .b { font-family: Brand, sans-serif; }</style>
      <nav style="display: none"><a class="b">Menu one</a><a class="b">Menu two</a><a class="b">Menu three</a></nav>
      <noscript><p class="b">Please enable scripts</p></noscript>
      <div style="visibility: hidden"><p class="b">Invisible</p><p class="b">Invisible too</p></div>
      <div style="width: 0; height: 0; overflow: hidden"><p class="b">Zero</p><p class="b">Zero too</p></div>
      <template><p class="b">Template</p></template>
      <main><p class="b">Visible brand text</p></main>`),
  "/brand.woff2": font(roboto),
  "/plain": (_, res) =>
    res.end(`<!doctype html><style>${face("Plain", "/inter.woff2")} p { font-family: Plain; }</style><p>Plain</p>
      <script>document.title = "scripted";</script>`),
  // Work that never ends but brings no fonts: a timer chain, a sleep loop, an interval, animation frames.
  "/busy-forever": (_, res) =>
    res.end(`<!doctype html><style>${face("Busy", "/inter.woff2")} p { font-family: Busy; }</style><p>Busy</p>
      <script>
        const poll = () => setTimeout(poll, 50); poll();
        (async () => { for (;;) await new Promise((resolve) => setTimeout(resolve, 100)); })();
        setInterval(() => { document.title = String(Date.now()); }, 30);
        const frame = () => requestAnimationFrame(frame); frame();
      </script>`),
  // A request that never ends: the settle gives up at its budget and still reports what it saw.
  "/hanging-fetch": (_, res) =>
    res.end(`<!doctype html><style>${face("Still", "/lato.woff2")} p { font-family: Still; }</style><p>Still</p>
      <script>fetch("/never").catch(() => undefined);</script>`),
  "/never": () => undefined,
};

test.before(async () => {
  server = http.createServer((req, res) => {
    const route = routes[new URL(req.url ?? "/", "http://x").pathname];
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

test.serial("a stylesheet a script inserts 600 ms after DOMContentLoaded is seen and used", async (t) => {
  const report = await scan(at("/late-sheet"));
  t.is(report.status, "ok");
  t.like(
    report.faces.find((f) => f.family === "Late"),
    { used: true, declaredIn: "stylesheet", fileSha256: [sha256Hex(lato)], renderedAs: ["Lato-Regular"] },
  );
  t.is(report.pages[0]?.settle?.ended, "quiet");
});

test.serial("a face built from fetched bytes is seen on every scan and linked to its file", async (t) => {
  for (let round = 0; round < 10; round++) {
    const reports = await Promise.all([scan(at("/fetched-face")), scan(at("/fetched-face"))]);
    for (const [i, report] of reports.entries()) {
      const scanNo = round * 2 + i + 1;
      t.is(report.status, "ok", `scan ${scanNo}`);
      const fetched = report.faces.find((f) => f.family === "Fetched");
      t.like(
        fetched,
        { used: true, declaredIn: "font-face-api", fileSha256: [sha256Hex(roboto)], renderedAs: ["Roboto-Regular"] },
        `scan ${scanNo}`,
      );
      t.like(
        report.files.find((f) => f.sha256 === sha256Hex(roboto)),
        { via: "script-fetch" },
        `scan ${scanNo}`,
      );
    }
  }
});

test.serial("a face built from bytes made in the page is linked by the font's own names", async (t) => {
  const report = await scan(at("/inline-bytes"));
  t.like(
    report.faces.find((f) => f.family === "Inline"),
    { used: true, declaredIn: "font-face-api", srcUrls: [], fileSha256: [sha256Hex(inter)] },
  );
  t.false(
    report.files.some((f) => f.sha256 === sha256Hex(interWoff)),
    "bytes no request carried are not a file",
  );
});

test.serial("a used face whose first matching elements are hidden is still used", async (t) => {
  const report = await scan(at("/hidden-first"));
  t.like(
    report.faces.find((f) => f.family === "Brand"),
    { used: true, renderedAs: ["Roboto-Regular"] },
  );
});

test.serial("a page with no late activity settles quiet, soon after its quiet interval", async (t) => {
  const report = await scan(at("/plain"));
  t.like(
    report.faces.find((f) => f.family === "Plain"),
    { used: true },
  );
  const settle = report.pages[0]?.settle;
  t.is(settle?.ended, "quiet");
  t.true((settle?.ms ?? Infinity) < 300 + 700, `settled in ${settle?.ms} ms`);
});

test.serial("a page that polls forever with timers still settles quiet", async (t) => {
  const report = await scan(at("/busy-forever"));
  const settle = report.pages[0]?.settle;
  t.is(settle?.ended, "quiet");
  t.true((settle?.ms ?? Infinity) < 2_000, `settled in ${settle?.ms} ms`);
  t.like(
    report.faces.find((f) => f.family === "Busy"),
    { used: true, fileSha256: [sha256Hex(inter)] },
  );
});

test.serial("a request that never ends stops the settle at its budget, with the fonts seen so far", async (t) => {
  const started = Date.now();
  const report = await scan(at("/hanging-fetch"), { settleBudgetMs: 1_500 });
  t.is(report.status, "ok");
  t.like(report.pages[0]?.settle, { ended: "budget" });
  t.true((report.pages[0]?.settle?.ms ?? 0) >= 1_500);
  t.true(Date.now() - started < 6_000, "the budget bounds the page");
  t.like(
    report.faces.find((f) => f.family === "Still"),
    { used: true, fileSha256: [sha256Hex(lato)] },
  );
});
