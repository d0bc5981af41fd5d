/**
 * The fast path against the browser path on real pages: real framework pages and real CSS from
 * the installed packages (KaTeX's stylesheet with its 20 faces and server-rendered formulas, Font
 * Awesome Free's all.css with icon markup, @fontsource-variable/inter's unicode-range subsets, a
 * Gentelella page, Start Bootstrap templates), served on loopback; CDN references stay
 * unresolvable, as a blocked CDN does. Where the fast path answers, its used faces must reach the
 * browser's with recall ≥ 0.98; where it escalates, the reason names the rule.
 */
import { readFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import katex from "katex";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { staticScan } from "../../actors/scanner/static-path.ts";

const MODULES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../node_modules");
const TYPES: Record<string, string> = { ".html": "text/html", ".css": "text/css", ".js": "text/javascript" };
Object.assign(TYPES, { ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf" });
const formulas = [
  "\\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2}",
  "\\mathbb{R}^n \\to \\mathcal{L}(V)",
  "\\sum_{k=1}^{n} k^2",
];
const BUILT: Record<string, string> = {
  katex: `<!doctype html><link rel="stylesheet" href="/m/katex/dist/katex.min.css">
    <p>Gaussian integral: ${formulas.map((f) => katex.renderToString(f, { throwOnError: false })).join(" and ")}</p>`,
  icons: `<!doctype html><link rel="stylesheet" href="/m/@fortawesome/fontawesome-free/css/all.css">
    <link rel="stylesheet" href="/m/@fontsource-variable/inter/index.css">
    <style>body { font-family: "Inter Variable", sans-serif } h1 { font-weight: 800 }</style>
    <h1>Dashboard</h1><p><i class="fa-solid fa-house"></i> Home · <i class="fa-brands fa-github"></i> Code
    · Привет, мир · Ελληνικά</p><p><em>Italic</em> words</p>`,
};
/** Real pages as their packages ship them. */
const SHIPPED = [
  "gentelella/dist/production/icons.html",
  "startbootstrap-resume/dist/index.html",
  "startbootstrap-sb-admin/dist/login.html",
  "startbootstrap-sb-admin-2/404.html",
];

let server: http.Server;
let port = 0;
const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };

test.before(async () => {
  server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    if (p.startsWith("/p/") && BUILT[p.slice(3)])
      return void res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(BUILT[p.slice(3)]);
    const file = path.join(MODULES, p.replace(/^\/m\//, "/"));
    if (!p.startsWith("/m/") || !file.startsWith(MODULES)) return void res.writeHead(404).end();
    readFile(file).then(
      (body) =>
        res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

test.after.always(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

const key = (f: { family: string; weight: string; style: string; srcUrls: string[] }) =>
  `${f.family}|${f.weight}|${f.style}|${f.srcUrls[0] ?? ""}`;

test("where the fast path answers, it finds the faces the browser uses (recall ≥ 0.98)", async (t) => {
  const pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 20_000,
    egress: { policy, maxResponseBytes: 8 * 1024 * 1024 },
  });
  t.teardown(() => pool.close());
  const urls = [...Object.keys(BUILT).map((n) => `/p/${n}`), ...SHIPPED.map((p) => `/m/${p}`)];
  let expected = 0;
  let found = 0;
  let extra = 0;
  let answered = 0;
  for (const u of urls) {
    const url = `http://real.test:${port}${u}`;
    const quick = await staticScan(url, { policy, maxFontBytes: 10 * 1024 * 1024, timeoutMs: 15_000 });
    const opts = { ...policy, maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 20_000, settleMs: 200 };
    const browser = await scanSite(pool, { url }, opts);
    t.is(browser.status, "ok", `${u}: ${browser.failure?.message}`);
    const truth = new Set(browser.faces.filter((f) => f.used).map(key));
    if (!quick.answered) {
      t.log(`${u}: escalated (${quick.rule}) ${quick.reason}; browser used ${truth.size} faces`);
      t.truthy(quick.rule);
      continue;
    }
    answered++;
    const mine = new Set(quick.page.faces.filter((f) => f.used).map(key));
    const hit = [...truth].filter((k) => mine.has(k)).length;
    expected += truth.size;
    found += hit;
    extra += [...mine].filter((k) => !truth.has(k)).length;
    t.log(`${u}: answered; browser used ${truth.size}, fast path ${mine.size}, common ${hit}`);
    for (const k of truth) if (!mine.has(k)) t.log(`  missed ${k}`);
    for (const k of mine) if (!truth.has(k)) t.log(`  extra ${k}`);
  }
  t.log(`fast path answered ${answered}/${urls.length}; recall ${found}/${expected}, ${extra} extra faces`);
  t.true(answered >= 3, "the fast path answers the script-free pages");
  t.true(expected >= 10, "the answered pages use faces");
  t.true(found / expected >= 0.98, `recall ${found}/${expected}`);
});
