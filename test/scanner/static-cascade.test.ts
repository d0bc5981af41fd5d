/**
 * The failure class "the static fast path reports faces the cascade never selects": one page per
 * way the cascade decides (weights and styles per family, descendant/child/compound selectors,
 * specificity, order, !important, inheritance, unicode-range, fallback down the family list,
 * pseudo-elements, display: none, var() and the font shorthand). Each page's used faces must be
 * exactly the expected ones on the fast path, and the browser path must agree with them.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";
import { staticScan } from "../../actors/scanner/static-path.ts";

const FILES: Record<string, string> = {
  "r400.woff2": "@fontsource/roboto/files/roboto-latin-400-normal.woff2",
  "r700.woff2": "@fontsource/roboto/files/roboto-latin-700-normal.woff2",
  "r400i.woff2": "@fontsource/roboto/files/roboto-latin-400-italic.woff2",
  "r400cyr.woff2": "@fontsource/roboto/files/roboto-cyrillic-400-normal.woff2",
  "l400.woff2": "@fontsource/lato/files/lato-latin-400-normal.woff2",
  "l700.woff2": "@fontsource/lato/files/lato-latin-700-normal.woff2",
  "l400i.woff2": "@fontsource/lato/files/lato-latin-400-italic.woff2",
  "fa900.woff2": "@fortawesome/fontawesome-free/webfonts/fa-solid-900.woff2",
};
const bytes = new Map(Object.entries(FILES).map(([k, v]) => [k, readFileSync(fileURLToPath(import.meta.resolve(v)))]));
const face = (family: string, file: string, extra = "") =>
  `@font-face { font-family: "${family}"; src: url(/f/${file}) format("woff2"); ${extra} }`;
const LATIN = "unicode-range: U+0000-00FF;";
const FACES = [
  face("A", "r400.woff2", `font-weight: 400; ${LATIN}`),
  face("A", "r700.woff2", `font-weight: 700; ${LATIN}`),
  face("A", "r400i.woff2", `font-weight: 400; font-style: italic; ${LATIN}`),
  face("A", "r400cyr.woff2", "font-weight: 400; unicode-range: U+0400-045F;"),
  face("B", "l400.woff2", "font-weight: 400;"),
  face("B", "l700.woff2", "font-weight: 700;"),
  face("B", "l400i.woff2", "font-weight: 400; font-style: italic;"),
  face("FA", "fa900.woff2", "font-weight: 900; unicode-range: U+F000-F8FF;"),
].join("\n");

/** Page: its own CSS, its body, and the files of the faces the cascade selects. */
const PAGES: Record<string, { css: string; body: string; used: string[] }> = {
  "weights-and-styles-per-family": {
    css: "h1 { font-family: B } p { font-family: A }",
    body: "<h1>Title</h1><p>Body text with <em>stress</em></p>",
    used: ["l700.woff2", "r400.woff2", "r400i.woff2"],
  },
  descendant: {
    css: "body { font-family: A } .card .title { font-family: B }",
    body: `<div class="card"><p>card text</p></div><h2 class="title">Heading</h2>`,
    used: ["r400.woff2", "r700.woff2"],
  },
  child: {
    css: "body { font-family: A } .a > .b { font-family: B }",
    body: `<div class="a"><div><span class="b">grandchild</span></div></div>`,
    used: ["r400.woff2"],
  },
  compound: {
    css: "body { font-family: A } p.x { font-family: B }",
    body: `<p>plain</p><span class="x">not a paragraph</span>`,
    used: ["r400.woff2"],
  },
  specificity: {
    css: "#main p { font-family: A } p { font-family: B }",
    body: `<div id="main"><p>inside main</p></div>`,
    used: ["r400.woff2"],
  },
  order: {
    css: "p { font-family: B } p { font-family: A }",
    body: "<p>later rule wins</p>",
    used: ["r400.woff2"],
  },
  important: {
    css: "p { font-family: B !important } #x p { font-family: A }",
    body: `<div id="x"><p>important wins</p></div>`,
    used: ["l400.woff2"],
  },
  inheritance: {
    css: "body { font-family: A } .wrap { font-family: B } .wrap p { font-family: A } .inherit { font-family: B }",
    body: `<div class="wrap"><p>only the paragraph has text</p></div><div class="inherit"><b>bold child</b></div>`,
    used: ["r400.woff2", "l700.woff2"],
  },
  "unicode-range": {
    css: "body { font-family: B } .ru { font-family: A }",
    body: `<p class="ru">digits 123</p><p>Привет from Lato's element</p>`,
    used: ["l400.woff2", "r400.woff2"],
  },
  "fallback-down-the-list": {
    css: "p { font-family: A, B }",
    body: "<p>Plain and € euro</p>",
    used: ["r400.woff2", "l400.woff2"],
  },
  "pseudo-element": {
    css: `body { font-family: A } .fa::before { font-family: FA; font-weight: 900; content: "\\f015"; }`,
    body: `<p>Home <i class="fa"></i></p>`,
    used: ["r400.woff2", "fa900.woff2"],
  },
  "display-none": {
    css: "body { font-family: A } .hidden { display: none } .fancy { font-family: B }",
    body: `<div class="hidden"><p class="fancy">never shown</p></div><p hidden class="fancy">hidden too</p><p>shown</p>`,
    used: ["r400.woff2"],
  },
  "var-and-shorthand": {
    css: ":root { --f: B } body { font-family: A } h2 { font: italic 700 2em/1 var(--missing, var(--f)), serif }",
    body: "<h2>Synthesised bold italic</h2>",
    used: ["l400i.woff2"],
  },
};

let server: http.Server;
let port = 0;
const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };

test.before(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const font = bytes.get(path.replace("/f/", ""));
    if (path.startsWith("/f/") && font) return res.writeHead(200, { "content-type": "font/woff2" }).end(font);
    const page = PAGES[path.slice(1)];
    if (!page) return res.writeHead(404).end();
    const html = `<!doctype html><html><head><style>${FACES}\n${page.css}</style></head><body>${page.body}</body></html>`;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

test.after.always(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

const url = (name: string) => `http://cascade.test:${port}/${name}`;
const usedFiles = (faces: Array<{ used: boolean; srcUrls: string[] }>) =>
  faces
    .filter((f) => f.used)
    .map((f) => f.srcUrls[0]?.split("/").at(-1) ?? "")
    .sort();

for (const [name, page] of Object.entries(PAGES)) {
  test(`fast path: ${name}`, async (t) => {
    const out = await staticScan(url(name), { policy, maxFontBytes: 10 * 1024 * 1024, timeoutMs: 5_000 });
    if (!out.answered) return t.fail(`escalated: ${out.rule}: ${out.reason}`);
    t.deepEqual(usedFiles(out.page.faces), [...page.used].sort());
    t.deepEqual(out.page.files.map((f) => f.url.split("/").at(-1)).sort(), [...page.used].sort());
  });
}

test("the browser path agrees on every page", async (t) => {
  const pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 2,
    pageTimeoutMs: 15_000,
    egress: { policy, maxResponseBytes: 8 * 1024 * 1024 },
  });
  t.teardown(() => pool.close());
  const opts = { ...policy, maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 15_000, settleMs: 100 };
  for (const [name, page] of Object.entries(PAGES)) {
    const report = await scanSite(pool, { url: url(name) }, opts);
    t.is(report.path, "browser");
    t.deepEqual(usedFiles(report.faces), [...page.used].sort(), name);
  }
});
