/**
 * Script triage on the fast path: real library files (jQuery, Bootstrap's bundle, Chart.js) and
 * page scripts, served on loopback. Font, stylesheet and content changes escalate with the rule
 * and the script; known libraries are known by their bytes (a changed copy is not), or by an exact
 * version on a public npm CDN, never by a path on the site's own host.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";
import { staticScan } from "../../actors/scanner/static-path.ts";

const read = (spec: string) => readFileSync(fileURLToPath(import.meta.resolve(spec)), "utf8");
const jquery = read("jquery/dist/jquery.min.js");
const bootstrap = read("bootstrap/dist/js/bootstrap.bundle.min.js");
const chart = read("startbootstrap-sb-admin-2/vendor/chart.js/Chart.min.js");
const inter = readFileSync(fileURLToPath(import.meta.resolve("@fontsource/inter/files/inter-latin-400-normal.woff2")));
const STYLE = `<style>@font-face { font-family: Inter; src: url(/inter.woff2) format("woff2") }
  @font-face { font-family: Heading; src: url(/inter.woff2) format("woff2") }
  body { font-family: Inter } .fw-bold { font-family: Heading } .collapse:not(.show) { display: none }</style>`;
const page = (scripts: string, body = "<p>Text</p>") =>
  `<!doctype html><html><head>${STYLE}${scripts}</head><body>${body}</body></html>`;
const SCRIPTS: Record<string, string> = {
  "/jquery.min.js": jquery,
  "/jquery-changed.min.js": `${jquery}\ndocument.body.innerHTML += "<p>added</p>";`,
  "/bootstrap.bundle.min.js": bootstrap,
  "/npm/bootstrap@5.3.9/dist/js/bootstrap.bundle.min.js": bootstrap,
  "/chart.min.js": chart,
};
const PAGES: Record<string, string> = {
  "/known-libraries": page(`<script src="/jquery.min.js"></script><script src="/bootstrap.bundle.min.js"></script>`),
  "/changed-library": page(`<script src="/jquery-changed.min.js"></script>`),
  "/site-path-like-cdn": page(`<script src="/npm/bootstrap@5.3.9/dist/js/bootstrap.bundle.min.js"></script>`),
  "/chart": page(`<script src="/chart.min.js"></script>`),
  "/inner-html": page(`<script>document.querySelector("p").innerHTML = "<b>new</b>";</script>`),
  "/webfont-loader": page(`<script>WebFont.load({ google: { families: ["Inter"] } });</script>`),
  "/module-import": page(`<script type="module">import { x } from "./x.js"; x();</script>`),
  "/toggles-font-class": page(
    `<script>addEventListener("load", () => document.body.classList.add("fw-bold"));</script>`,
  ),
  "/toggles-other-class": page(
    `<script>addEventListener("load", () => document.body.classList.add("shadow"));</script>`,
  ),
  "/shows-hidden-text": page(
    `<script>addEventListener("load", () => document.querySelector(".x").classList.add("show"));</script>`,
    `<p>Text</p><div class="collapse x"><p class="fw-bold">Bold when shown</p></div>`,
  ),
  "/gtag": page(`<script>window.dataLayer = window.dataLayer || [];
    function gtag(){dataLayer.push(arguments);}
    gtag('js', new Date());
    gtag('config', 'G-ABC123');</script>`),
  "/gtag-plus": page(`<script>window.dataLayer = window.dataLayer || [];
    function gtag(){dataLayer.push(arguments);}
    gtag('js', new Date());
    gtag('config', 'G-ABC123');document.body.innerHTML="<p>x</p>"</script>`),
  "/handler": page("", `<p onclick="this.classList.toggle('fw-bold')">Text</p>`),
};

let server: http.Server;
let port = 0;
test.before(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/inter.woff2") return res.writeHead(200, { "content-type": "font/woff2" }).end(inter);
    if (SCRIPTS[path]) return res.writeHead(200, { "content-type": "text/javascript" }).end(SCRIPTS[path]);
    if (PAGES[path]) return res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGES[path]);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
test.after.always(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };
const triage = async (path: string) => {
  const out = await staticScan(`http://triage.test:${port}${path}`, {
    policy,
    maxFontBytes: 1 << 20,
    timeoutMs: 8_000,
  });
  return out.answered
    ? { rule: "answered", script: "" }
    : { rule: out.rule, script: out.script ?? "", reason: out.reason };
};

test("known libraries by their bytes, a snippet known whole, a harmless class change: answered", async (t) => {
  for (const path of ["/known-libraries", "/toggles-other-class", "/gtag"])
    t.like(await triage(path), { rule: "answered" }, path);
});

test("a changed copy of a known library is read as any script", async (t) => {
  // jQuery's own text has style insertion in it; only its exact release bytes are known not to run it at load.
  t.like(await triage("/changed-library"), {
    rule: "style-insertion",
    script: `http://triage.test:${port}/jquery-changed.min.js`,
  });
  t.like(await triage("/gtag-plus"), { rule: "dom-write", script: "inline script" });
});

test("a CDN-like path on the site's own host is not a CDN: the bundle is read by its bytes", async (t) => {
  t.like(await triage("/site-path-like-cdn"), { rule: "answered" });
});

test("what may change fonts escalates with the rule and the script", async (t) => {
  t.like(await triage("/chart"), { script: `http://triage.test:${port}/chart.min.js` });
  t.like(await triage("/inner-html"), { rule: "dom-write", script: "inline script" });
  t.like(await triage("/webfont-loader"), { rule: "webfont-loader" });
  t.like(await triage("/module-import"), { rule: "module-import" });
  t.like(await triage("/toggles-font-class"), { rule: "class-change" });
  t.like(await triage("/shows-hidden-text"), { rule: "hidden-text" });
  t.like(await triage("/handler"), { rule: "class-change", script: "onclick attribute" });
});
