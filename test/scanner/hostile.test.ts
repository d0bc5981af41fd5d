/**
 * Hostile and broken pages, scanned the way production does (through the egress proxy): each one
 * ends within its budget as a recorded outcome with a reason, and the next scan on the same pool
 * still finds and identifies fonts.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test, { type ExecutionContext } from "ava";
import { pino } from "pino";
import type { ActorContext } from "../../cluster/actor.ts";
import { TransientError } from "../../cluster/errors.ts";
import { loadConfig } from "../../config/mod.ts";
import { scanReportV1, type ScanReport, type ScanResult } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { scanSite, type ScanSiteOptions } from "../../actors/scanner/scan-site.ts";
import { scannerActor } from "../../actors/scanner/scanner-actor.ts";

const roboto = readFileSync(
  fileURLToPath(import.meta.resolve("@fontsource/roboto/files/roboto-latin-400-normal.woff2")),
);
const noise = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919 + 17) % 256));
const HUGE = 50 * 1024 * 1024;
const CAP = 8 * 1024 * 1024;
const downloadName = `glyphscan-download-${process.pid}-${Date.now()}.bin`;

let server: http.Server;
let tlsServer: https.Server;
let port = 0;
let tlsPort = 0;
let pool: BrowserPool;
let certDir: string;
/** Server-side sockets of requests that never get an answer. */
const hanging = new Set<Socket>();
/** Bytes the 50 MB routes managed to write before the reader went away. */
const hugeWritten: Record<string, number> = {};
let crashed = false;

const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };
const opts: ScanSiteOptions = { ...policy, maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 5_000, settleMs: 100 };
const site = (path: string, host = "edge.test") => `http://${host}:${port}${path}`;
const face = (family: string, src: string) =>
  `@font-face { font-family: "${family}"; src: url("${src}") format("woff2"); }`;
const fontPage = (extra = "") =>
  `<!doctype html><style>${face("Site Roboto", "/roboto.woff2")} p { font-family: "Site Roboto"; }</style>` +
  `<p>Hello there</p>${extra}`;

function writeHuge(res: http.ServerResponse, key: string, declared: boolean): void {
  res.writeHead(200, { "content-type": "font/woff2", ...(declared ? { "content-length": HUGE } : {}) });
  const chunk = Buffer.alloc(64 * 1024, 7);
  hugeWritten[key] = 0;
  const pump = (): void => {
    while ((hugeWritten[key] ?? 0) < HUGE) {
      hugeWritten[key] = (hugeWritten[key] ?? 0) + chunk.length;
      if (!res.write(chunk)) return void res.once("drain", pump);
    }
    res.end();
  };
  res.on("close", () => res.removeAllListeners("drain"));
  pump();
}

const routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void> = {
  "/fonts": (_, res) => res.end(fontPage()),
  "/roboto.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(roboto),
  "/bad.woff2": (_, res) => res.writeHead(200, { "content-type": "font/woff2" }).end(noise),
  "/huge-declared.woff2": (_, res) => writeHuge(res, "declared", true),
  "/huge-chunked.woff2": (_, res) => writeHuge(res, "chunked", false),
  "/hang": (req) => void hanging.add(req.socket),
  "/loop": (req, res) => res.writeHead(302, { location: `/loop?${Number(req.url?.split("?")[1] ?? 0) + 1}` }).end(),
  "/to-nowhere": (_, res) => res.writeHead(302, { location: "http://no-such-host.invalid/" }).end(),
  // 200 000 elements and 100 000 text nodes, built at once by script (parsing as much HTML would
  // mostly measure the machine).
  "/huge-dom": (_, res) =>
    res.end(
      fontPage(
        `<script>document.body.insertAdjacentHTML("beforeend", "<div><span>node</span></div>".repeat(100000));</script>`,
      ),
    ),
  "/endless-script": (_, res) => res.end(fontPage("<script>while (true) {}</script>")),
  "/endless-after-load": (_, res) =>
    res.end(fontPage(`<script>addEventListener("load", () => setTimeout(() => { while (true) {} }, 0));</script>`)),
  "/dialogs": (_, res) =>
    res.end(
      fontPage(`<script>
        alert("hello"); confirm("sure?"); prompt("name?");
        addEventListener("beforeunload", (e) => { e.preventDefault(); e.returnValue = "stay"; });
        addEventListener("load", () => setTimeout(() => alert("again"), 0));
      </script>`),
    ),
  "/download": (_, res) =>
    res
      .writeHead(200, {
        "content-type": "application/octet-stream",
        "content-disposition": `attachment; filename="${downloadName}"`,
      })
      .end(Buffer.alloc(4096, 1)),
  "/download-frame": (_, res) =>
    res.end(
      fontPage(`<iframe src="/download"></iframe><a id=a href="/download" download>x</a>
        <script>addEventListener("load", () => document.getElementById("a").click());</script>`),
    ),
  "/huge-font": (_, res) =>
    res.end(
      `<!doctype html><style>${face("Huge", "/huge-declared.woff2")}${face("Huge Stream", "/huge-chunked.woff2")}` +
        `${face("Site Roboto", "/roboto.woff2")} h1 { font-family: Huge; } h2 { font-family: "Huge Stream"; }` +
        ` p { font-family: "Site Roboto"; }</style><h1>big</h1><h2>bigger</h2><p>Hello there</p>`,
    ),
  "/bad-and-good": (_, res) =>
    res.end(
      `<!doctype html><style>${face("Broken", "/bad.woff2")}${face("Site Roboto", "/roboto.woff2")}` +
        ` h1 { font-family: Broken; } p { font-family: "Site Roboto"; }</style><h1>broken</h1><p>Hello there</p>`,
    ),
  "/crash-once": (_, res) => {
    if (crashed) return void res.end(fontPage());
    crashed = true;
    routes["/crash-me"]!(_, res);
  },
  "/crash-me": () => {
    // The browser dies while the page is loading (every chromium this test process started).
    for (const pid of execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)], { encoding: "utf8" })
      .split("\n")
      .filter((l) => /chrom/i.test(l))
      .map((l) => Number(l.trim().split(/\s+/)[0]))) {
      process.kill(pid, "SIGKILL");
    }
  },
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

  certDir = mkdtempSync(join(tmpdir(), "glyphscan-tls-"));
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=tls.test"],
      ...["-keyout", join(certDir, "key.pem"), "-out", join(certDir, "cert.pem")],
    ],
    { stdio: "ignore" },
  );
  tlsServer = https.createServer(
    { key: readFileSync(join(certDir, "key.pem")), cert: readFileSync(join(certDir, "cert.pem")) },
    (_, res) => res.writeHead(200, { "content-type": "text/html" }).end(fontPage()),
  );
  await new Promise<void>((resolve) => tlsServer.listen(0, "127.0.0.1", resolve));
  tlsPort = (tlsServer.address() as AddressInfo).port;

  pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 8_000,
    egress: { policy, maxResponseBytes: CAP },
  });
});

test.after.always(async () => {
  await pool?.close();
  for (const s of [server, tlsServer]) {
    s?.closeAllConnections();
    await new Promise((resolve) => s?.close(resolve));
  }
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

async function scan(url: string, overrides: Partial<ScanSiteOptions> = {}): Promise<ScanReport> {
  return scanReportV1.parse(await scanSite(pool, { url }, { ...opts, ...overrides }));
}

/** Scans `url` and checks it ended within the job's budget. */
async function timedScan(
  t: ExecutionContext,
  url: string,
  overrides: Partial<ScanSiteOptions> = {},
): Promise<ScanReport> {
  const started = Date.now();
  const report = await scan(url, overrides);
  const elapsed = Date.now() - started;
  t.true(elapsed < pool.jobTimeoutMs, `took ${elapsed} ms, budget ${pool.jobTimeoutMs} ms`);
  return report;
}

/** The next scan on the same pool still finds and identifies the font. */
async function stillWorks(t: ExecutionContext): Promise<void> {
  const report = await scan(site("/fonts"));
  t.is(report.status, "ok", "the next scan works");
  t.like(report.files, [{ sha256: sha256Hex(roboto), metadata: { family: "Roboto" } }]);
}

test.serial("a huge DOM (200 000 elements) ends within budget: its fonts, or a recorded timeout", async (t) => {
  const report = await timedScan(t, site("/huge-dom"), { navigationTimeoutMs: 8_000 });
  // Chromium alone needs seconds to lay out 200 000 elements on a busy machine; either way the scan
  // must end within its budget as a recorded outcome.
  if (report.status === "ok") {
    t.like(report.faces, [{ family: "Site Roboto", used: true }]);
    t.like(report.files, [{ sha256: sha256Hex(roboto) }]);
    t.like(
      report.renderedFonts?.find((f) => f.custom),
      { postScriptName: "Roboto-Regular" },
    );
  } else {
    t.like(report.failure, { kind: "timeout" });
  }
  await stillWorks(t);
});

test.serial("an endless script during parsing ends as a timeout", async (t) => {
  const report = await timedScan(t, site("/endless-script"));
  t.like(report, { status: "failed", failure: { kind: "timeout" } });
  await stillWorks(t);
});

test.serial("an endless script after load ends as a timeout", async (t) => {
  const report = await timedScan(t, site("/endless-after-load"));
  t.like(report, { status: "failed", failure: { kind: "timeout" } });
  await stillWorks(t);
});

test.serial("a page that never answers ends as a timeout and its connection is dropped", async (t) => {
  hanging.clear();
  const report = await timedScan(t, site("/hang"));
  t.like(report, { status: "failed", failure: { kind: "timeout" } });
  t.true(hanging.size > 0);
  // The proxy drops the upstream request when the browser gives up: no socket left open.
  for (let i = 0; i < 50 && [...hanging].some((s) => !s.destroyed); i++) await new Promise((r) => setTimeout(r, 100));
  t.true(
    [...hanging].every((s) => s.destroyed),
    "the hung connection was closed",
  );
  await stillWorks(t);
});

test.serial("alert, confirm, prompt and beforeunload are dismissed and the scan completes", async (t) => {
  const report = await timedScan(t, site("/dialogs"));
  t.is(report.status, "ok");
  t.like(report.faces, [{ family: "Site Roboto", used: true }]);
  await stillWorks(t);
});

test.serial("downloads are never written: a download page fails, a page that downloads still scans", async (t) => {
  const places = [join(homedir(), "Downloads", downloadName), join(process.cwd(), downloadName)];
  const landing = await timedScan(t, site("/download"));
  t.like(landing, { status: "failed", failure: { kind: "navigation" } });
  t.regex(landing.failure!.message, /ERR_ABORTED/);
  const page = await timedScan(t, site("/download-frame"));
  t.is(page.status, "ok");
  t.like(page.faces, [{ family: "Site Roboto", used: true }]);
  await new Promise((r) => setTimeout(r, 500));
  for (const place of places) t.false(existsSync(place), `${place} was written`);
  await stillWorks(t);
});

test.serial("a 50 MB font is cut at the response cap, recorded, and never read whole", async (t) => {
  const report = await timedScan(t, site("/huge-font"));
  t.is(report.status, "ok");
  const blocked = new Map((report.blocked ?? []).map((b) => [b.url, b.reason]));
  t.regex(blocked.get(site("/huge-declared.woff2")) ?? "", new RegExp(`response of ${HUGE} bytes exceeds ${CAP}`));
  t.regex(blocked.get(site("/huge-chunked.woff2")) ?? "", new RegExp(`response exceeded ${CAP} bytes`));
  t.true((hugeWritten["declared"] ?? 0) < HUGE, "the declared one was not sent whole");
  t.true((hugeWritten["chunked"] ?? 0) < HUGE, "the streamed one was not sent whole");
  t.false(
    report.files.some((f) => f.bytes > CAP),
    "no oversized body in the report",
  );
  t.like(
    report.faces.find((f) => f.family === "Huge"),
    { used: false, fileSha256: [] },
  );
  t.like(
    report.faces.find((f) => f.family === "Site Roboto"),
    { used: true, fileSha256: [sha256Hex(roboto)] },
  );
  await stillWorks(t);
});

test.serial("a malformed font records its parse error and the other font is still identified", async (t) => {
  const report = await timedScan(t, site("/bad-and-good"));
  t.is(report.status, "ok");
  const bad = report.files.find((f) => f.sha256 === sha256Hex(noise));
  t.like(bad, { metadata: null });
  t.truthy(bad?.parseError);
  t.like(
    report.files.find((f) => f.sha256 === sha256Hex(roboto)),
    { parseError: null, metadata: { family: "Roboto", postscriptName: "Roboto-Regular" } },
  );
  t.like(
    report.faces.find((f) => f.family === "Broken"),
    { used: false },
  );
  await stillWorks(t);
});

test.serial("a redirect loop ends as redirect-loop", async (t) => {
  const report = await timedScan(t, site("/loop"));
  t.like(report, { status: "failed", failure: { kind: "redirect-loop" } });
  await stillWorks(t);
});

test.serial("a self-signed certificate ends as tls", async (t) => {
  const report = await timedScan(t, `https://tls.test:${tlsPort}/`);
  t.like(report, { status: "failed", failure: { kind: "tls" } });
  t.regex(report.failure!.message, /ERR_CERT_/);
  await stillWorks(t);
});

test.serial("DNS failures end as dns, before the browser and at a redirect hop", async (t) => {
  const direct = await timedScan(t, "http://no-such-host.invalid/");
  t.like(direct, { status: "failed", failure: { kind: "dns" }, pages: [] });
  const hop = await timedScan(t, site("/to-nowhere"));
  t.like(hop, { status: "failed", failure: { kind: "dns" } });
  t.regex(hop.failure!.message, /no-such-host\.invalid/);
  await stillWorks(t);
});

test.serial("Chromium killed mid-scan gives browser-crash (retried by the actor) and the retry succeeds", async (t) => {
  const report = await scan(site("/crash-me"));
  t.like(report, { status: "failed", failure: { kind: "browser-crash" } });
  // scanner-actor turns browser-crash into a TransientError: the job is redelivered, not lost.
  await stillWorks(t);
  t.is((await scan(site("/fonts"))).status, "ok");
});

test.serial(
  "the scanner actor hands a crashed scan back for redelivery, and the redelivered job is published",
  async (t) => {
    const config = loadConfig({
      env: {},
      overrides: { nodeId: "hostile-test", scanner: { ...policy, navigationTimeoutMs: 5_000, fastPath: false } },
    });
    const actor = scannerActor(config, pool);
    const published: ScanResult[] = [];
    const ctx: ActorContext = {
      subject: "jobs.local",
      deliveryCount: 1,
      traceparent: undefined,
      log: pino({ level: "silent" }),
      publish: async (out) => void published.push(out.body as ScanResult),
      reject: async () => undefined,
    };
    const now = Date.now();
    const job = {
      jobId: "job-crash",
      domain: "edge.test",
      url: site("/crash-once"),
      region: "local",
      attempt: 1,
      leaseToken: "lease",
      leaseUntil: new Date(now + 600_000).toISOString(),
      dispatchedAt: new Date(now).toISOString(),
    };
    // A TransientError naks the message: JetStream redelivers it, nothing is published or lost.
    await t.throwsAsync(actor.handle(job, ctx), { instanceOf: TransientError, message: /browser crashed/ });
    t.is(published.length, 0);
    await actor.handle(job, { ...ctx, deliveryCount: 2 });
    t.is(published.length, 1);
    t.like(published[0], { jobId: "job-crash", report: { status: "ok" } });
    t.like(published[0]!.report.files, [{ sha256: sha256Hex(roboto) }]);
  },
);
