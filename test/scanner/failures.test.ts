/**
 * Site problems become failed reports (never throws), odd fonts do not fail a scan, and a
 * browser crash surfaces as a rejected run while the pool keeps working.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import test from "ava";
import { scanReportV1, type ScanReport } from "../../protocol/messages.ts";
import { BrowserCrashError, BrowserPool, JobTimeoutError } from "../../actors/scanner/browser-pool.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { classify, scanSite, type ScanSiteOptions } from "../../actors/scanner/scan-site.ts";

const roboto = readFileSync(
  fileURLToPath(import.meta.resolve("@fontsource/roboto/files/roboto-latin-400-normal.woff2")),
);
const noise = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919 + 17) % 256));
const fontPage = (family: string, src: string) =>
  `<!doctype html><style>@font-face { font-family: "${family}"; src: url("${src}") format("woff2"); }</style>` +
  `<p style='font-family: "${family}"'>Hello there</p>`;

let server: http.Server;
let port = 0;
let pool: BrowserPool;
const base = (path: string, host = "edge.test") => `http://${host}:${port}${path}`;
const opts: ScanSiteOptions = {
  allowHosts: ["*.test"],
  hostMap: { "*.test": "127.0.0.1" },
  maxFontBytes: 10 * 1024 * 1024,
  navigationTimeoutMs: 10_000,
  settleMs: 100,
};

const routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void> = {
  "/plain": (_, res) => res.end("<!doctype html><p>no fonts here</p>"),
  "/loop": (req, res) => res.writeHead(302, { location: `/loop?${Number(req.url?.split("?")[1] ?? 0) + 1}` }).end(),
  "/hang": () => undefined, // never answers
  "/missing": (_, res) => res.writeHead(404, { "content-type": "text/html" }).end("<h1>Not Found</h1>"),
  "/to-private": (_, res) => res.writeHead(302, { location: `http://127.0.0.1:${port}/plain` }).end(),
  "/bad-font": (_, res) => res.end(fontPage("Broken", "/bad.woff2")),
  "/bad.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(noise),
  "/roboto-page": (_, res) => res.end(fontPage("Site Roboto", "/roboto.woff2")),
  "/roboto.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(roboto),
  "/font.bin": (_, res) => res.writeHead(200, { "content-type": "application/octet-stream" }).end(roboto),
  "/fetched-font": (_, res) =>
    res.end(`<!doctype html><p style="font-family: Fetched">Hi</p><script>
      fetch("/font.bin").then((r) => r.arrayBuffer()).then((b) => document.fonts.add(new FontFace("Fetched", b)));
    </script>`),
  "/js-redirect": (_, res) =>
    res.end(
      `<!doctype html><script>addEventListener("load", () => setTimeout(() => location.replace("/roboto-page"), 20));</script>`,
    ),
};

test.before(async () => {
  server = http.createServer((req, res) => {
    const route = routes[new URL(req.url ?? "/", "http://x").pathname];
    if (!res.hasHeader("content-type")) res.setHeader("content-type", "text/html; charset=utf-8");
    if (route) route(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
  pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 15_000,
    hostResolverRules: "MAP *.test 127.0.0.1",
  });
});

test.after.always(async () => {
  await pool?.close();
  await pool?.close(); // closing twice is safe
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

async function scan(url: string, overrides: Partial<ScanSiteOptions> = {}): Promise<ScanReport> {
  return scanReportV1.parse(await scanSite(pool, { url }, { ...opts, ...overrides }));
}

test.serial("a host that does not resolve gives dns (checked before the browser)", async (t) => {
  const report = await scan("http://no-such-host.invalid/");
  t.like(report, { status: "failed", failure: { kind: "dns" }, pages: [], faces: [], files: [] });
});

test.serial("a host that the browser cannot resolve gives dns", async (t) => {
  // The SSRF check sees a public address; Chromium's own lookup then fails.
  const report = await scan("http://ghost.invalid/", { hostMap: { "ghost.invalid": "93.184.216.34" } });
  t.like(report, { status: "failed", failure: { kind: "dns" } });
  t.regex(report.failure!.message, /ERR_NAME_NOT_RESOLVED/);
});

test.serial("a page that redirects forever gives redirect-loop", async (t) => {
  const report = await scan(base("/loop"));
  t.like(report, { status: "failed", failure: { kind: "redirect-loop" } });
});

test.serial("a page that never responds gives timeout within its budget", async (t) => {
  const started = Date.now();
  const report = await scan(base("/hang"), { navigationTimeoutMs: 1_500 });
  const elapsed = Date.now() - started;
  t.like(report, { status: "failed", failure: { kind: "timeout" } });
  t.true(elapsed >= 1_500 && elapsed < 1_500 + 3_000, `took ${elapsed} ms`);
});

test.serial("TLS failures give tls", async (t) => {
  const report = await scan(`https://edge.test:${port}/plain`); // plain HTTP behind an https URL
  t.like(report, { status: "failed", failure: { kind: "tls" } });
});

test.serial("HTTP >= 400 on the landing page gives http-status, still with the page", async (t) => {
  const report = await scan(base("/missing"));
  t.like(report, { status: "failed", failure: { kind: "http-status" } });
  t.like(report.pages[0], { httpStatus: 404, finalUrl: base("/missing") });
});

test.serial("private targets are refused before and after redirects", async (t) => {
  const direct = await scan(`http://127.0.0.1:${port}/plain`);
  t.like(direct, { status: "failed", failure: { kind: "blocked-address" }, pages: [] });
  const redirected = await scan(base("/to-private"));
  t.like(redirected, { status: "failed", failure: { kind: "blocked-address" }, faces: [], files: [] });
  t.regex(redirected.failure!.message, /127\.0\.0\.1.*loopback/);
  const scheme = await scan("file:///etc/passwd");
  t.like(scheme, { status: "failed", failure: { kind: "blocked-address" } });
});

test.serial("a malformed font is listed with a parseError and does not fail the scan", async (t) => {
  const report = await scan(base("/bad-font"));
  t.is(report.status, "ok");
  t.is(report.files.length, 1);
  t.like(report.files[0], { sha256: sha256Hex(noise), bytes: noise.length, metadata: null, via: "font-request" });
  t.truthy(report.files[0]!.parseError);
  // Chromium rejects the bytes, so the face never loads: declared, fetched, not used.
  t.like(report.faces, [{ family: "Broken", used: false, declaredIn: "stylesheet", fileSha256: [sha256Hex(noise)] }]);
});

test.serial("a font over maxFontBytes is hashed but not parsed", async (t) => {
  const report = await scan(base("/roboto-page"), { maxFontBytes: 1_000 });
  t.is(report.status, "ok");
  t.like(report.files[0], {
    sha256: sha256Hex(roboto),
    metadata: null,
    parseError: `too large: ${roboto.length} bytes`,
  });
});

test.serial("a font fetched by script and built from bytes is caught by its magic", async (t) => {
  const report = await scan(base("/fetched-font"));
  t.is(report.status, "ok");
  t.like(report.files, [{ sha256: sha256Hex(roboto), via: "script-fetch", url: base("/font.bin") }]);
  t.is(report.files[0]!.metadata?.family, "Roboto");
  // The face holds the fetched bytes, so it is linked to that file by SHA-256.
  t.like(report.faces, [
    { family: "Fetched", used: true, declaredIn: "font-face-api", srcUrls: [], fileSha256: [sha256Hex(roboto)] },
  ]);
});

test.serial("a script redirect after load is followed and the landing document inventoried", async (t) => {
  const report = await scan(base("/js-redirect"));
  t.is(report.status, "ok");
  t.is(report.pages[0]!.finalUrl, base("/roboto-page"));
  t.like(report.faces, [{ family: "Site Roboto", used: true, fileSha256: [sha256Hex(roboto)] }]);
});

test.serial("a renderer crash rejects the run with BrowserCrashError", async (t) => {
  const run = pool.run(base("/plain"), async (page, url) => {
    await page.goto(url);
    const cdp = await page.createCDPSession();
    cdp.send("Page.crash").catch(() => undefined);
    return page.evaluate(() => new Promise<number>(() => undefined));
  });
  await t.throwsAsync(run, { instanceOf: BrowserCrashError });
  t.is((await scan(base("/roboto-page"))).status, "ok");
});

test.serial("a killed browser rejects the run, and the pool relaunches it", async (t) => {
  const run = pool.run(base("/plain"), async (page, url) => {
    await page.goto(url);
    page.browser().process()?.kill("SIGKILL");
    await page.goto(base("/roboto-page"));
    return "survived";
  });
  await t.throwsAsync(run, { instanceOf: BrowserCrashError });
  const after = await scan(base("/roboto-page"));
  t.is(after.status, "ok");
  t.is(after.files.length, 1);
});

test("error classification", (t) => {
  const kind = (err: unknown) => classify(err).kind;
  t.is(kind(new Error("net::ERR_NAME_NOT_RESOLVED at http://x/")), "dns");
  t.is(kind(new Error("net::ERR_CERT_AUTHORITY_INVALID at https://x/")), "tls");
  t.is(kind(new Error("net::ERR_SSL_PROTOCOL_ERROR at https://x/")), "tls");
  t.is(kind(new Error("net::ERR_TOO_MANY_REDIRECTS at http://x/")), "redirect-loop");
  t.is(kind(new Error("net::ERR_CONNECTION_REFUSED at http://x/")), "navigation");
  t.is(kind(new BrowserCrashError("browser disconnected")), "browser-crash");
  t.is(kind(new JobTimeoutError("job exceeded 45000 ms")), "timeout");
  t.is(kind(Object.assign(new Error("Navigation timeout of 10 ms exceeded"), { name: "TimeoutError" })), "timeout");
  t.is(kind("weird"), "internal");
});
