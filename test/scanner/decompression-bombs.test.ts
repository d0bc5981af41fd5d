/**
 * Decompression never runs without a decoded-size limit. A WOFF table declaring 1.1 GiB (about
 * 1 MB of deflated zeros) and a WOFF2 whose 1 GiB brotli stream declares 1 000 bytes are refused
 * as `oversized` before or while decoding; an HTTP gzip bomb on the static path stops at the body
 * cap; and for the browser, which decodes Content-Encoding itself, the egress proxy decodes a
 * copy of each chunk and cuts the response past the cap, recording `decoded-size` in `blocked`.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, deflateRawSync, gzipSync } from "node:zlib";
import test, { type ExecutionContext } from "ava";
import { scanReportV1, type ScanReport } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { EgressProxy, REFUSED_HEADER } from "../../actors/scanner/egress-proxy.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { FontParsePool } from "../../actors/scanner/font-parse-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { staticScan } from "../../actors/scanner/static-path.ts";
import { gzipBomb, woff, woff2Zeros, woffInflateBomb } from "../../ops/fuzz/font-forge.ts";

const GIB = 1024 * 1024 * 1024;
const roboto = readFileSync(
  fileURLToPath(import.meta.resolve("@fontsource/roboto/files/roboto-latin-400-normal.woff2")),
);
const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };

let woffBomb: Buffer;
let lyingWoff: Buffer;
let woff2Bomb: Buffer;
let woff2Declared: Buffer;
let gzip: Buffer;
let server: http.Server;
let port = 0;
const served = new Map<string, { body: Buffer; headers: http.OutgoingHttpHeaders }>();
const site = (path: string) => `http://bombs.test:${port}${path}`;

test.before(async () => {
  woffBomb = await woffInflateBomb(1_100 * 1024 * 1024);
  // The same stream declaring 4 MiB, under the cap: a table that lies about its size.
  const stream = woffBomb.subarray(
    woffBomb.readUInt32BE(44 + 4),
    woffBomb.readUInt32BE(44 + 4) + woffBomb.readUInt32BE(44 + 8),
  );
  lyingWoff = woff([{ tag: "name", stream, origLength: 4 << 20 }]);
  woff2Bomb = await woff2Zeros({ decodedBytes: GIB, declaredBytes: 1_000 });
  woff2Declared = await woff2Zeros({ decodedBytes: 1_000, totalSfntSize: 0xfffffff0 });
  gzip = await gzipBomb(1_100 * 1024 * 1024);
  const page = (fonts: string[]) =>
    `<!doctype html><style>${fonts
      .map((f, i) => `@font-face { font-family: F${i}; src: url(${f}); } .f${i} { font-family: F${i} }`)
      .join("\n")}</style>${fonts.map((_, i) => `<p class="f${i}">text ${i}</p>`).join("")}`;
  const html = (body: string) => ({ body: Buffer.from(body), headers: { "content-type": "text/html" } });
  const fontFile = (body: Buffer) => ({ body, headers: { "content-type": "font/woff" } });
  served.set(
    "/font-bombs",
    html(page(["/bomb.woff", "/lying.woff", "/bomb.woff2", "/declared.woff2", "/roboto.woff2"])),
  );
  served.set("/gzip-font", html(page(["/gzip.woff2", "/roboto.woff2"])));
  served.set("/gzip-page", { body: gzip, headers: { "content-type": "text/html", "content-encoding": "gzip" } });
  served.set("/roboto-page", html(page(["/roboto.woff2"])));
  served.set("/bomb.woff", fontFile(woffBomb));
  served.set("/lying.woff", fontFile(lyingWoff));
  served.set("/bomb.woff2", fontFile(woff2Bomb));
  served.set("/declared.woff2", fontFile(woff2Declared));
  served.set("/roboto.woff2", fontFile(roboto));
  served.set("/gzip.woff2", { body: gzip, headers: { "content-type": "font/woff2", "content-encoding": "gzip" } });
  server = http.createServer((req, res) => {
    const route = served.get(new URL(req.url ?? "/", "http://x").pathname);
    if (!route) return res.writeHead(404).end();
    res.writeHead(200, { ...route.headers, "content-length": route.body.length }).end(route.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

test.after.always(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

/** Runs `fn` while sampling this process's RSS; returns the peak growth in MB. */
async function rssGrowth<T>(fn: () => Promise<T>): Promise<{ value: T; growthMb: number }> {
  const base = process.memoryUsage.rss();
  let peak = base;
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  try {
    const value = await fn();
    return { value, growthMb: Math.round((Math.max(peak, process.memoryUsage.rss()) - base) / 2 ** 20) };
  } finally {
    clearInterval(sample);
  }
}

test.serial(
  "WOFF and WOFF2 bombs are refused as oversized in the parse pool, which then parses a real font",
  async (t) => {
    const pool = new FontParsePool({ workers: 2, timeoutMs: 10_000, maxHeapMb: 128, maxDecodedBytes: 32 << 20 });
    t.teardown(() => pool.close());
    const started = Date.now();
    const { value, growthMb } = await rssGrowth(() =>
      Promise.all([woffBomb, lyingWoff, woff2Bomb, woff2Declared].map((b) => pool.parse(b))),
    );
    const [bomb, lying, brotli, declared] = value;
    t.like(bomb, { metadata: null, parseLimit: "oversized" });
    t.regex(bomb!.parseError ?? "", /^oversized: woff declares \d+ decoded bytes/);
    t.regex(lying!.parseError ?? "", /^oversized: woff table name inflates past its declared 4194304 bytes/);
    t.regex(brotli!.parseError ?? "", /^oversized: woff2 brotli stream decodes past its declared 1000 bytes/);
    t.regex(declared!.parseError ?? "", /^oversized: woff2 declares 4294967280 decoded bytes/);
    t.true(Date.now() - started < 10_000, `the bombs took ${Date.now() - started} ms`);
    t.true(growthMb < 300, `RSS grew by ${growthMb} MB`);
    t.like(await pool.parse(roboto), { parseError: null, metadata: { family: "Roboto" } });
  },
);

test.serial(
  "the static path records the font bombs as oversized and answers; the next static scan works",
  async (t) => {
    const { value: outcome, growthMb } = await rssGrowth(() =>
      staticScan(site("/font-bombs"), { policy, maxFontBytes: 10 << 20, timeoutMs: 30_000 }),
    );
    if (!outcome.answered) return t.fail(`escalated: ${outcome.reason}`);
    const bySha = new Map(outcome.page.files.map((f) => [f.sha256, f]));
    for (const bomb of [woffBomb, lyingWoff, woff2Bomb, woff2Declared]) {
      t.like(bySha.get(sha256Hex(bomb)), { metadata: null, parseLimit: "oversized" });
    }
    t.like(bySha.get(sha256Hex(roboto)), { parseError: null, metadata: { family: "Roboto" } });
    t.true(growthMb < 300, `RSS grew by ${growthMb} MB`);
    const next = await staticScan(site("/roboto-page"), { policy, maxFontBytes: 10 << 20, timeoutMs: 30_000 });
    t.like(next, { answered: true });
  },
);

test.serial("an HTTP gzip bomb on the static path stops at the body cap instead of decoding 1.1 GiB", async (t) => {
  const started = Date.now();
  const { value: outcome, growthMb } = await rssGrowth(() =>
    staticScan(site("/gzip-page"), { policy, maxFontBytes: 10 << 20, timeoutMs: 30_000 }),
  );
  t.like(outcome, { answered: false });
  t.regex(outcome.answered ? "" : outcome.reason, /body exceeds \d+ bytes/);
  t.true(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
  t.true(growthMb < 100, `RSS grew by ${growthMb} MB`);
});

/** A GET through the proxy: what arrived before the end or the cut. */
function viaProxy(
  proxy: EgressProxy,
  url: string,
): Promise<{ status: number; bytes: number; cut: boolean; refused?: string }> {
  const p = new URL(proxy.url);
  return new Promise((resolve) => {
    const req = http.request(
      { host: p.hostname, port: p.port, path: url, headers: { host: new URL(url).host } },
      (res) => {
        let bytes = 0;
        const refused = res.headers[REFUSED_HEADER];
        const done = (cut: boolean) =>
          resolve({ status: res.statusCode ?? 0, bytes, cut, ...(typeof refused === "string" ? { refused } : {}) });
        res.on("data", (c: Buffer) => (bytes += c.length));
        res.on("end", () => done(false));
        res.on("error", () => done(true));
        res.on("aborted", () => done(true));
      },
    );
    req.on("error", () => resolve({ status: 0, bytes: 0, cut: true }));
    req.end();
  });
}

test.serial("the egress proxy cuts encoded responses past the decoded cap and passes small ones whole", async (t) => {
  const proxy = await EgressProxy.start({ policy, maxResponseBytes: 4 << 20, maxDecodedBytes: 1 << 20 });
  t.teardown(() => proxy.close());
  const zeros = Buffer.alloc(50 << 20);
  const small = Buffer.from("body { font-family: serif }\n".repeat(1_000));
  const encoded: Record<string, [string, Buffer]> = {
    "/gzip-bomb": ["gzip", gzip],
    "/br-bomb": ["br", brotliCompressSync(zeros, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } })],
    "/deflate-raw-bomb": ["deflate", deflateRawSync(zeros)],
    "/small-gzip": ["gzip", gzipSync(small)],
    "/stacked": ["gzip, br", brotliCompressSync(gzipSync(small))],
  };
  for (const [path, [coding, body]] of Object.entries(encoded)) {
    served.set(path, { body, headers: { "content-type": "text/css", "content-encoding": coding } });
  }
  for (const path of ["/gzip-bomb", "/br-bomb", "/deflate-raw-bomb"]) {
    const got = await viaProxy(proxy, site(path));
    t.true(got.cut, `${path}: the response was cut`);
    t.true(got.bytes < encoded[path]![1].length, `${path}: ${got.bytes} bytes passed of ${encoded[path]![1].length}`);
    t.regex(proxy.refusalFor(site(path)) ?? "", /^decoded-size: response decodes to over 1048576 bytes/, path);
  }
  const whole = await viaProxy(proxy, site("/small-gzip"));
  t.like(whole, { status: 200, cut: false, bytes: encoded["/small-gzip"]![1].length });
  t.is(proxy.refusalFor(site("/small-gzip")), null);
  const stacked = await viaProxy(proxy, site("/stacked"));
  t.is(stacked.status, 403);
  t.regex(stacked.refused ?? "", /^decoded-size: content-encoding gzip, br cannot be bounded/);
});

let pool: BrowserPool | undefined;
test.after.always(async () => await pool?.close());

async function browserScan(t: ExecutionContext, url: string): Promise<ScanReport> {
  pool ??= await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 1,
    pageTimeoutMs: 15_000,
    egress: { policy, maxResponseBytes: 5 << 20 },
  });
  const started = Date.now();
  const report = scanReportV1.parse(
    await scanSite(pool, { url }, { ...policy, maxFontBytes: 10 << 20, navigationTimeoutMs: 12_000, settleMs: 100 }),
  );
  t.true(Date.now() - started < pool.jobTimeoutMs, `the scan took ${Date.now() - started} ms`);
  return report;
}

test.serial(
  "a gzip 'font' decoding to 1.1 GiB is cut by the egress proxy and recorded; the next scan works",
  async (t) => {
    const report = await browserScan(t, site("/gzip-font"));
    t.is(report.status, "ok", report.failure?.message);
    const blocked = new Map((report.blocked ?? []).map((b) => [b.url, b.reason]));
    t.regex(blocked.get(site("/gzip.woff2")) ?? "", /^decoded-size: response decodes to over 5242880 bytes \(gzip\)/);
    t.false(
      report.files.some((f) => f.bytes > 5 << 20),
      "no body past the cap reached the report",
    );
    t.like(
      report.files.find((f) => f.sha256 === sha256Hex(roboto)),
      { metadata: { family: "Roboto" } },
    );
    const next = await browserScan(t, site("/roboto-page"));
    t.is(next.status, "ok");
    t.like(next.files, [{ sha256: sha256Hex(roboto), metadata: { family: "Roboto" } }]);
  },
);

test.serial("font bombs fetched by the browser end as oversized, and the scan completes", async (t) => {
  const report = await browserScan(t, site("/font-bombs"));
  t.is(report.status, "ok", report.failure?.message);
  const bySha = new Map(report.files.map((f) => [f.sha256, f]));
  for (const bomb of [woffBomb, lyingWoff, woff2Bomb, woff2Declared]) {
    t.like(bySha.get(sha256Hex(bomb)), { metadata: null, parseLimit: "oversized" });
  }
  t.like(bySha.get(sha256Hex(roboto)), { parseError: null, metadata: { family: "Roboto" } });
});
