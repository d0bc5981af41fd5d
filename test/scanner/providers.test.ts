/**
 * Provider patterns: pure tests of the table, then one local page per provider. Chromium reaches
 * the providers' real host names (fonts.googleapis.com, use.typekit.net, …) on the test server
 * through --host-resolver-rules, over HTTP on the test port, so the paths are the real shapes.
 * Hosts on Chromium's HSTS preload list (use.fontawesome.com) would be upgraded to HTTPS, so the
 * Font Awesome page uses its BootstrapCDN form.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import test from "ava";
import { scanReportV1, type ScanReport } from "../../protocol/messages.ts";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import {
  fontProvider,
  PROVIDER_IDS,
  PROVIDERS,
  providerOfUrl,
  stylesheetProvider,
  type Provider,
  type ProviderId,
} from "../../actors/scanner/providers.ts";
import { scanSite } from "../../actors/scanner/scan-site.ts";

// ---- The table, without a browser ----

const urlCases: Array<[string, "stylesheet" | "script" | "font", Provider["id"] | null]> = [
  ["https://fonts.googleapis.com/css2?family=Inter:wght@400;700&display=swap", "stylesheet", "google-fonts"],
  ["https://fonts.googleapis.com/css?family=Open+Sans:400,700|Lato", "stylesheet", "google-fonts"],
  ["https://fonts.googleapis.com/icon?family=Material+Icons", "stylesheet", "google-fonts"],
  ["https://fonts.gstatic.com/s/roboto/v30/KFOmCnqEu92Fr1Mu4mxK.woff2", "font", "google-fonts"],
  ["https://fonts.gstatic.com/l/font?kit=abc&skey=def&v=v12", "font", "google-fonts"],
  ["https://use.typekit.net/abc1234.css", "stylesheet", "adobe-fonts"],
  ["https://use.typekit.net/abc1234.js", "script", "adobe-fonts"],
  ["https://p.typekit.net/p.css?s=1&k=abc1234&ht=tk&f=1.2&a=99&app=typekit&e=css", "stylesheet", "adobe-fonts"],
  ["https://use.typekit.net/af/2a7c5d/00000000000000007735dfaf/30/l?primer=7cdc&fvd=n4&v=3", "font", "adobe-fonts"],
  ["https://fast.fonts.net/cssapi/0b6f6a9e-1c3a-4f7b-9c3e-2d0f4c1e0a11.css", "stylesheet", "monotype"],
  ["https://fast.fonts.net/jsapi/0b6f6a9e-1c3a-4f7b-9c3e-2d0f4c1e0a11.js", "script", "monotype"],
  ["https://cdn.fonts.net/kit/0b6f6a9e-1c3a/0b6f6a9e-1c3a.css", "stylesheet", "monotype"],
  ["https://fast.fonts.net/dv2/14/5729734.woff2?d44f19a6", "font", "monotype"],
  ["https://hello.myfonts.net/count/409a73", "stylesheet", "myfonts"],
  ["https://cloud.typography.com/6543210/7654321/css/fonts.css", "stylesheet", "hoefler-co"],
  ["https://use.fontawesome.com/releases/v5.15.4/css/all.css", "stylesheet", "font-awesome"],
  ["https://kit.fontawesome.com/0123456789.js", "script", "font-awesome"],
  ["https://ka-f.fontawesome.com/releases/v6.5.1/webfonts/free-fa-solid-900.woff2", "font", "font-awesome"],
  ["https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.5.1/css/all.min.css", "stylesheet", "font-awesome"],
  ["https://maxcdn.bootstrapcdn.com/font-awesome/4.7.0/css/font-awesome.min.css", "stylesheet", "font-awesome"],
  ["https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@6/webfonts/fa-solid-900.woff2", "font", "font-awesome"],
  ["https://fonts.bunny.net/css?family=inter:400,700", "stylesheet", "bunny-fonts"],
  ["https://fonts.bunny.net/inter/files/inter-latin-400-normal.woff2", "font", "bunny-fonts"],
  ["https://api.fontshare.com/v2/css?f[]=satoshi@400,700&display=swap", "stylesheet", "fontshare"],
  ["https://cdn.fontshare.com/wf/AAAA/BBBB/CCCC.woff2", "font", "fontshare"],
  ["https://cdn.jsdelivr.net/npm/@fontsource/inter@5.0.0/400.css", "stylesheet", "fontsource-cdn"],
  ["https://cdn.jsdelivr.net/fontsource/fonts/inter@latest/latin-400-normal.woff2", "font", "fontsource-cdn"],
  ["https://unpkg.com/@fontsource/roboto@5.3.0/files/roboto-latin-400-normal.woff2", "font", "fontsource-cdn"],
  // Near misses: the host alone, or the wrong kind, is not enough.
  ["https://cdn.jsdelivr.net/npm/bootstrap@5/dist/css/bootstrap.min.css", "stylesheet", null],
  ["https://unpkg.com/react@18/umd/react.production.min.js", "script", null],
  ["https://fonts.googleapis.com/css2?family=Inter", "font", null],
  ["https://evil.example/fonts.googleapis.com/css2?family=Inter", "stylesheet", null],
  ["https://fonts.googleapis.com.evil.example/css2?family=Inter", "stylesheet", null],
  ["data:font/woff2;base64,d09GMg==", "font", null],
];

for (const [url, kind, expected] of urlCases) {
  test(`pattern: ${kind} ${url.slice(0, 70)} → ${expected}`, (t) => {
    t.is(providerOfUrl(url, kind), expected);
  });
}

test("every provider but self-hosted has a pattern, and ids are unique", (t) => {
  const ids = PROVIDERS.map((p) => p.id);
  t.deepEqual(new Set(ids).size, ids.length);
  t.deepEqual([...ids, "self-hosted"].sort(), [...PROVIDER_IDS].sort());
  for (const p of PROVIDERS) t.true(p.urls.length > 0, p.id);
});

test("self-hosted: same registrable domain or data: URI; another unknown host is null", (t) => {
  const page = "https://www.example.co.uk/about";
  t.is(fontProvider("https://static.example.co.uk/f/a.woff2", page), "self-hosted");
  t.is(fontProvider("data:font/woff2;base64,AAAA", page), "self-hosted");
  t.is(fontProvider("https://cdn.other.co.uk/a.woff2", page), null);
  t.is(fontProvider("https://www.example.co.uk/kit/409A73_0_0.woff2", page, "myfonts"), "myfonts");
  t.is(fontProvider("https://www.example.co.uk/kit/409A73_0_0.woff2", page, "self-hosted"), "self-hosted");
  t.is(fontProvider("https://fonts.gstatic.com/s/inter/v12/x.woff2", page, "self-hosted"), "google-fonts");
  t.is(stylesheetProvider(null, page), "self-hosted");
  t.is(stylesheetProvider("https://cdn.other.co.uk/x.css", page), null);
  t.is(stylesheetProvider("https://www.example.co.uk/MyFontsWebfontsKit.css", page), "self-hosted");
});

// ---- One page per provider, rendered ----

const fontFile = (pkg: string, name: string) =>
  readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${pkg}/files/${name}`)));
const roboto = fontFile("roboto", "roboto-latin-400-normal.woff2");
const lato = fontFile("lato", "lato-latin-400-normal.woff2");

type Case = {
  provider: ProviderId | null;
  /** The page's path when several cases share a provider. */
  name?: string;
  /** The page's <head>; `@P` is replaced by the test port. */
  head: string;
  family: string;
  /** host+path → CSS served there. */
  css: Record<string, string>;
  /** host+path (no query) → font bytes served there. */
  fonts: Record<string, Buffer>;
};
const face = (family: string, src: string) =>
  `@font-face { font-family: "${family}"; src: url("${src}") format("woff2"); }\n`;
const cases: Case[] = [
  {
    provider: "google-fonts",
    head: `<link rel="stylesheet" href="http://fonts.googleapis.com:@P/css2?family=Roboto&display=swap">`,
    family: "Roboto",
    css: {
      "fonts.googleapis.com/css2": face(
        "Roboto",
        "http://fonts.gstatic.com:@P/s/roboto/v30/KFOmCnqEu92Fr1Mu4mxK.woff2",
      ),
    },
    fonts: { "fonts.gstatic.com/s/roboto/v30/KFOmCnqEu92Fr1Mu4mxK.woff2": roboto },
  },
  {
    provider: "adobe-fonts",
    head: `<link rel="stylesheet" href="http://use.typekit.net:@P/abc1234.css">`,
    family: "proxima-nova",
    css: {
      "use.typekit.net/abc1234.css":
        `/* The Typekit service used to deliver this font or fonts for use on websites is subject to these Terms of Use */\n` +
        `@import url("http://p.typekit.net:@P/p.css?s=1&k=abc1234&ht=tk&f=139&a=1&app=typekit&e=css");\n` +
        face(
          "proxima-nova",
          "http://use.typekit.net:@P/af/2a7c5d/00000000000000007735dfaf/30/l?primer=7cdc&fvd=n4&v=3",
        ),
      "p.typekit.net/p.css": "",
    },
    fonts: { "use.typekit.net/af/2a7c5d/00000000000000007735dfaf/30/l": roboto },
  },
  {
    // A kit the site hosts itself is the site's: a tracking import in its own CSS names a
    // service but proves no licence (the site writes that text), so the bytes are judged.
    provider: "self-hosted",
    name: "self-hosted-monotype-kit",
    head: `<link rel="stylesheet" href="/mt/kit.css">`,
    family: "Avenir Next",
    css: {
      "prov.test/mt/kit.css":
        `@import url("http://fast.fonts.net:@P/lt/1.css?apiType=css&c=0b6f6a9e-1c3a&fontids=5729734");\n` +
        face("Avenir Next", "Fonts/5729734/0b6f6a9e.woff2"),
      "fast.fonts.net/lt/1.css": "",
    },
    fonts: { "prov.test/mt/Fonts/5729734/0b6f6a9e.woff2": roboto },
  },
  {
    provider: "self-hosted",
    name: "self-hosted-myfonts-kit",
    head: `<link rel="stylesheet" href="/MyFontsWebfontsKit.css">`,
    family: "Brandon Grotesque",
    css: {
      "prov.test/MyFontsWebfontsKit.css":
        `/* @license MyFonts Webfont Build ID 4233843, 2021-05-11T12:00:00-0400 */\n` +
        `@import url("//hello.myfonts.net:@P/count/409a73");\n` +
        face("Brandon Grotesque", "webFonts/409A73_0_0.woff2"),
      "hello.myfonts.net/count/409a73": "",
    },
    fonts: { "prov.test/webFonts/409A73_0_0.woff2": roboto },
  },
  {
    provider: "hoefler-co",
    head: `<link rel="stylesheet" href="http://cloud.typography.com:@P/6543210/7654321/css/fonts.css">`,
    family: "Gotham A",
    css: { "cloud.typography.com/6543210/7654321/css/fonts.css": face("Gotham A", "../fonts/gotham-a.woff2") },
    fonts: { "cloud.typography.com/6543210/7654321/fonts/gotham-a.woff2": roboto },
  },
  {
    provider: "font-awesome",
    head: `<link rel="stylesheet" href="http://maxcdn.bootstrapcdn.com:@P/font-awesome/4.7.0/css/font-awesome.min.css">`,
    family: "FontAwesome",
    css: {
      "maxcdn.bootstrapcdn.com/font-awesome/4.7.0/css/font-awesome.min.css": face(
        "FontAwesome",
        "../fonts/fontawesome-webfont.woff2?v=4.7.0",
      ),
    },
    fonts: { "maxcdn.bootstrapcdn.com/font-awesome/4.7.0/fonts/fontawesome-webfont.woff2": roboto },
  },
  {
    provider: "bunny-fonts",
    head: `<link rel="stylesheet" href="http://fonts.bunny.net:@P/css?family=lato:400">`,
    family: "Lato",
    css: { "fonts.bunny.net/css": face("Lato", "http://fonts.bunny.net:@P/lato/files/lato-latin-400-normal.woff2") },
    fonts: { "fonts.bunny.net/lato/files/lato-latin-400-normal.woff2": lato },
  },
  {
    provider: "fontshare",
    head: `<link rel="stylesheet" href="http://api.fontshare.com:@P/v2/css?f[]=satoshi@400&display=swap">`,
    family: "Satoshi",
    css: { "api.fontshare.com/v2/css": face("Satoshi", "http://cdn.fontshare.com:@P/wf/AAAA/BBBB/CCCC.woff2") },
    fonts: { "cdn.fontshare.com/wf/AAAA/BBBB/CCCC.woff2": lato },
  },
  {
    provider: "fontsource-cdn",
    head: `<link rel="stylesheet" href="http://cdn.jsdelivr.net:@P/npm/@fontsource/lato@5.3.0/400.css">`,
    family: "Lato",
    css: { "cdn.jsdelivr.net/npm/@fontsource/lato@5.3.0/400.css": face("Lato", "./files/lato-latin-400-normal.woff2") },
    fonts: { "cdn.jsdelivr.net/npm/@fontsource/lato@5.3.0/files/lato-latin-400-normal.woff2": lato },
  },
  {
    // A page imitating Adobe Fonts in its own CSS and HTML: the Typekit licence comment, an
    // import of the real p.typekit.net tracking sheet, Typekit's class names, a Typekit-like path.
    provider: "self-hosted",
    name: "imitates-adobe-fonts",
    head:
      `<link rel="stylesheet" href="/use.typekit.net/abc1234.css">` +
      `<script>/* Typekit.load({ async: true }) */</script><meta name="generator" content="use.typekit.net">`,
    family: "proxima-nova",
    css: {
      "prov.test/use.typekit.net/abc1234.css":
        `/* The Typekit service used to deliver this font or fonts for use on websites is subject to these Terms of Use */\n` +
        `/* https://typekit.com/eulas/00000000000000007735dfaf */\n` +
        `@import url("http://p.typekit.net:@P/p.css?s=1&k=abc1234&ht=tk&f=139&a=1&app=typekit&e=css");\n` +
        `.tk-proxima-nova { font-family: "proxima-nova", sans-serif; }\n` +
        face("proxima-nova", "/af/2a7c5d/00000000000000007735dfaf/30/l?primer=7cdc&fvd=n4&v=3"),
      "p.typekit.net/p.css": "",
    },
    fonts: { "prov.test/af/2a7c5d/00000000000000007735dfaf/30/l": lato },
  },
  {
    // On a subdomain of the site: the same registrable domain.
    provider: "self-hosted",
    head: `<link rel="stylesheet" href="http://static.prov.test:@P/fonts.css">`,
    family: "House Sans",
    css: { "static.prov.test/fonts.css": face("House Sans", "/f/house.woff2") },
    fonts: { "static.prov.test/f/house.woff2": lato },
  },
  {
    provider: null,
    head: `<link rel="stylesheet" href="http://cdn.elsewhere.test:@P/fonts.css">`,
    family: "Stranger Sans",
    css: { "cdn.elsewhere.test/fonts.css": face("Stranger Sans", "/f/stranger.woff2") },
    fonts: { "cdn.elsewhere.test/f/stranger.woff2": lato },
  },
];

const PROVIDER_HOSTS = [
  "fonts.googleapis.com",
  "fonts.gstatic.com",
  "use.typekit.net",
  "p.typekit.net",
  "fast.fonts.net",
  "hello.myfonts.net",
  "cloud.typography.com",
  "maxcdn.bootstrapcdn.com",
  "fonts.bunny.net",
  "api.fontshare.com",
  "cdn.fontshare.com",
  "cdn.jsdelivr.net",
];

let server: http.Server;
let port = 0;
let pool: BrowserPool;
const reports = new Map<string, ScanReport>();
const label = (c: Case) => c.name ?? c.provider ?? "unknown";
const withPort = (s: string) => s.replaceAll("@P", String(port));

test.before(async () => {
  server = http.createServer((req, res) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "");
    const url = new URL(req.url ?? "/", "http://x");
    const key = host + url.pathname;
    const cors = { "access-control-allow-origin": "*", "cache-control": "no-store" };
    const page = host === "prov.test" ? cases.find((c) => url.pathname === `/${label(c)}`) : undefined;
    if (page) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(
        `<!doctype html><head>${withPort(page.head)}</head><body style='font-family: "${page.family}", serif'>` +
          `<p>The quick brown fox</p></body>`,
      );
    }
    for (const c of cases) {
      const sheet = c.css[key];
      if (sheet !== undefined) return res.writeHead(200, { "content-type": "text/css", ...cors }).end(withPort(sheet));
      const bytes = c.fonts[key];
      if (bytes) return res.writeHead(200, { "content-type": "font/woff2", ...cors }).end(bytes);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
  const mapped = ["*.test", ...PROVIDER_HOSTS];
  pool = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 3,
    pageTimeoutMs: 15_000,
    hostResolverRules: mapped.map((h) => `MAP ${h} 127.0.0.1`).join(", "),
  });
  const opts = {
    allowHosts: mapped,
    hostMap: Object.fromEntries(mapped.map((h) => [h, "127.0.0.1"])),
    maxFontBytes: 10 * 1024 * 1024,
    navigationTimeoutMs: 10_000,
    settleMs: 100,
  };
  await Promise.all(
    cases.map(async (c) => {
      const report = await scanSite(pool, { url: `http://prov.test:${port}/${label(c)}` }, opts);
      reports.set(label(c), scanReportV1.parse(report));
    }),
  );
});

test.after.always(async () => {
  await pool?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

for (const c of cases) {
  test.serial(`page served as ${label(c)}: face and file carry provider ${c.provider}`, (t) => {
    const report = reports.get(label(c))!;
    t.is(report.status, "ok", report.failure?.message);
    const used = report.faces.filter((f) => f.used);
    t.deepEqual(
      used.map((f) => [f.family, f.provider]),
      [[c.family, c.provider]],
    );
    const expectedSha = Object.values(c.fonts).map((b) => sha256Hex(b));
    t.deepEqual(
      report.files.map((f) => [f.sha256, f.provider]),
      expectedSha.map((sha) => [sha, c.provider]),
    );
  });
}
