/**
 * SSRF for everything a page loads: the browser reaches the network only through the egress proxy,
 * which resolves every request (subresources, frames, fetches, redirect hops, https tunnels) through
 * the guard and connects to the address it approved. Refusals are recorded on the report with the
 * reason and the scan goes on; the private server never sees a request.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";
import { scanReportV1, type ScanReport } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { EgressProxy, REFUSED_HEADER } from "../../actors/scanner/egress-proxy.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { scanSite, type ScanSiteOptions } from "../../actors/scanner/scan-site.ts";

const roboto = readFileSync(
  fileURLToPath(import.meta.resolve("@fontsource/roboto/files/roboto-latin-400-normal.woff2")),
);

let server: http.Server;
let port = 0;
let pool: BrowserPool;
/** Requests that reached the server on /secret/*: each one would be an SSRF. */
const secretHits: string[] = [];
const policy = {
  allowHosts: ["*.test"],
  hostMap: { "*.test": "127.0.0.1", "intranet.corp": "10.255.255.1", "metadata.corp": "169.254.169.254" },
};
const opts: ScanSiteOptions = {
  ...policy,
  maxFontBytes: 10 * 1024 * 1024,
  navigationTimeoutMs: 8_000,
  settleMs: 100,
};
const site = (path: string, host = "edge.test") => `http://${host}:${port}${path}`;
const secret = (what: string, host = "127.0.0.1", scheme = "http") => `${scheme}://${host}:${port}/secret/${what}`;

const routes: Record<string, (req: http.IncomingMessage, res: http.ServerResponse) => void> = {
  "/plain": (_, res) => res.end("<!doctype html><p>plain</p>"),
  "/roboto.woff2": (_, res) =>
    res.writeHead(200, { "content-type": "font/woff2", "content-length": roboto.length }).end(roboto),
  "/to-private": (_, res) => res.writeHead(302, { location: secret("redirected") }).end(),
  "/ssrf-page": (_, res) =>
    res.end(`<!doctype html>
      <link rel="stylesheet" href="${secret("css")}">
      <link rel="stylesheet" href="/to-private">
      <script src="${secret("js", "intranet.corp")}"></script>
      <script src="${secret("tls-js", "127.0.0.1", "https")}"></script>
      <style>
        @font-face { font-family: "Site Roboto"; src: url("/roboto.woff2") format("woff2"); }
        @font-face { font-family: Leak; src: url("${secret("font", "[::1]")}") format("woff2"); }
        p { font-family: "Site Roboto"; } h1 { font-family: Leak; }
      </style>
      <h1>leak</h1><p>Hello there</p>
      <iframe src="${secret("frame", "metadata.corp")}"></iframe>
      <script>
        fetch("${secret("xhr")}").catch(() => {});
        try { new WebSocket("ws://127.0.0.1:${port}/secret/ws"); } catch {}
      </script>`),
};

test.before(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path.startsWith("/secret/")) secretHits.push(path);
    const route = routes[path];
    if (!res.hasHeader("content-type")) res.setHeader("content-type", "text/html; charset=utf-8");
    if (route) route(req, res);
    else res.writeHead(404).end();
  });
  server.on("upgrade", (req: http.IncomingMessage, socket) => {
    secretHits.push(req.url ?? "upgrade");
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 10_000,
    // Chromium's own resolver would send *.test to 127.0.0.2, where nothing listens: a scan that
    // works proves each connection went to the address the guard approved (127.0.0.1).
    hostResolverRules: "MAP *.test 127.0.0.2",
    egress: { policy, maxResponseBytes: 5 * 1024 * 1024 },
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

test.serial("connections go to the address the guard approved, not Chromium's own DNS answer", async (t) => {
  const report = await scan(site("/plain"));
  t.like(report, { status: "ok", pages: [{ httpStatus: 200 }] });
  t.true(pool.guarded);
});

test.serial("every private subresource is refused and recorded, the scan completes with its fonts", async (t) => {
  secretHits.length = 0;
  const report = await scan(site("/ssrf-page"));
  t.is(report.status, "ok");
  t.deepEqual(secretHits, [], "no request reached a private address");
  // The allowed font is still found and identified.
  t.like(report.files, [{ sha256: sha256Hex(roboto), metadata: { family: "Roboto" } }]);
  const reasons = new Map((report.blocked ?? []).map((b) => [b.url, b.reason]));
  const expect: Array<[string, RegExp]> = [
    [secret("css"), /127\.0\.0\.1 .*loopback/],
    [secret("redirected"), /loopback/], // the hop of a same-site redirect
    [secret("js", "intranet.corp"), /intranet\.corp resolves to 10\.255\.255\.1 \(private\)/],
    [secret("tls-js", "127.0.0.1", "https"), /loopback/], // an https tunnel
    [secret("font", "[::1]"), /loopback/],
    [secret("frame", "metadata.corp"), /169\.254\.169\.254 \(linkLocal\)/],
    [secret("xhr"), /loopback/],
  ];
  for (const [url, why] of expect) {
    const reason = reasons.get(url);
    t.truthy(reason, `${url} recorded as blocked (got ${JSON.stringify(report.blocked)})`);
    if (reason) t.regex(reason, why);
  }
  // The refused face is declared, never used.
  t.like(
    report.faces.find((f) => f.family === "Leak"),
    { used: false, fileSha256: [] },
  );
  t.like(
    report.faces.find((f) => f.family === "Site Roboto"),
    { used: true },
  );
});

test.serial("a landing page that redirects to a private address is refused at the hop", async (t) => {
  secretHits.length = 0;
  const report = await scan(site("/to-private"));
  t.like(report, { status: "failed", failure: { kind: "blocked-address" }, faces: [], files: [] });
  t.regex(report.failure!.message, /loopback/);
  t.deepEqual(secretHits, []);
  t.is((await scan(site("/plain"))).status, "ok", "the pool keeps working");
});

// ---- The proxy on its own ----

async function withProxy(run: (proxy: EgressProxy) => Promise<void>, maxResponseBytes = 1_000): Promise<void> {
  const proxy = await EgressProxy.start({ policy, maxResponseBytes });
  try {
    await run(proxy);
  } finally {
    await proxy.close();
  }
}

function viaProxy(
  proxy: EgressProxy,
  url: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const p = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: p.hostname, port: p.port, path: url, headers: { host: new URL(url).host } },
      (res) => {
        let body = "";
        res.setEncoding("latin1");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

function connectVia(proxy: EgressProxy, authority: string): Promise<{ status: number; refused?: string }> {
  const p = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: p.hostname, port: p.port, method: "CONNECT", path: authority });
    req.on("connect", (res, socket) => {
      socket.destroy();
      const refused = res.headers[REFUSED_HEADER];
      resolve({ status: res.statusCode ?? 0, ...(typeof refused === "string" ? { refused } : {}) });
    });
    req.on("error", reject);
    req.end();
  });
}

test("the proxy forwards allowlisted hosts and refuses private ones with the reason", async (t) => {
  await withProxy(async (proxy) => {
    const ok = await viaProxy(proxy, site("/plain"));
    t.is(ok.status, 200);
    t.regex(ok.body, /plain/);
    const refused = await viaProxy(proxy, secret("direct"));
    t.is(refused.status, 403);
    t.regex(String(refused.headers[REFUSED_HEADER]), /loopback/);
    t.regex(proxy.refusalFor(secret("direct")) ?? "", /loopback/);
    // The proxy's own port is loopback too.
    t.is((await viaProxy(proxy, `${proxy.url}/`)).status, 403);
    const tunnel = await connectVia(proxy, "intranet.corp:443");
    t.is(tunnel.status, 403);
    t.regex(tunnel.refused ?? "", /private/);
    t.regex(proxy.refusalFor("https://intranet.corp/x") ?? "", /private/);
    t.is((await connectVia(proxy, `edge.test:${port}`)).status, 200);
    t.deepEqual(
      secretHits.filter((h) => h.endsWith("/direct")),
      [],
    );
  });
});

test("a DNS failure is refused with a dns: reason", async (t) => {
  await withProxy(async (proxy) => {
    const res = await viaProxy(proxy, "http://no-such-host.invalid/x");
    t.is(res.status, 403);
    t.regex(String(res.headers[REFUSED_HEADER]), /^dns: /);
  });
});

test("responses over maxResponseBytes are refused when declared and cut when streamed", async (t) => {
  await withProxy(async (proxy) => {
    // roboto.woff2 declares its length (over 1000 bytes).
    const declared = await viaProxy(proxy, site("/roboto.woff2"));
    t.is(declared.status, 403);
    t.regex(String(declared.headers[REFUSED_HEADER]), /exceeds 1000/);
    routes["/chunked"] = (_, res) => {
      res.writeHead(200, { "content-type": "font/woff2" });
      for (let i = 0; i < 10; i++) res.write(Buffer.alloc(500, i));
      res.end();
    };
    const streamed = await viaProxy(proxy, site("/chunked")).catch((err: Error) => err);
    if (streamed instanceof Error) t.pass("the connection was cut");
    else t.true(streamed.body.length <= 1_500, `got ${streamed.body.length} bytes`);
    t.regex(proxy.refusalFor(site("/chunked")) ?? "", /exceeded 1000/);
  });
});
