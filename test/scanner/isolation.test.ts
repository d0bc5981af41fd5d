/**
 * Sites scanned one after another on the same browser slot (concurrency 1) cannot see what an
 * earlier site left: cookies (its own and a shared host's), local/session storage,
 * IndexedDB, Cache API, service workers, the HTTP cache, and popups. Hosts are *.localhost, which
 * Chromium resolves to loopback and treats as secure contexts (service workers and caches need one).
 * In a plain shared profile (puppeteer-cluster PAGE mode) these tests fail.
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";
import type { Page } from "puppeteer-core";
import { BrowserPool } from "../../actors/scanner/browser-pool.ts";
import { extractFonts, type PageExtraction } from "../../actors/scanner/extract-fonts.ts";

const lato = readFileSync(fileURLToPath(import.meta.resolve("@fontsource/lato/files/lato-latin-400-normal.woff2")));
const extract = { maxFontBytes: 10 * 1024 * 1024, navigationTimeoutMs: 10_000, settleMs: 50 };

let server: http.Server;
let port = 0;
let pool: BrowserPool;
/** Requests the server saw, with the Cookie header they carried. */
const seen: Array<{ host: string; path: string; cookie: string }> = [];

const url = (host: string, path: string) => `http://${host}.localhost:${port}${path}`;
const fontCss = () =>
  `@font-face { font-family: "Shared Lato"; src: url("${url("fonts", "/lato.woff2")}") format("woff2"); }`;
const fontPage = (body: string) =>
  `<!doctype html><link rel="stylesheet" href="${url("fonts", "/font.css")}">` +
  `<style>p { font-family: "Shared Lato"; }</style><p>Shared font text</p>${body}`;

/** Site A leaves a trace in every store a site can write to, then says so in window.done. */
const siteA = () =>
  fontPage(`<script>
  document.cookie = "first=a; max-age=3600; path=/";
  localStorage.setItem("left", "a");
  sessionStorage.setItem("left", "a");
  window.done = Promise.all([
    new Promise((resolve, reject) => {
      const open = indexedDB.open("left-db", 1);
      open.onupgradeneeded = () => open.result.createObjectStore("s");
      open.onsuccess = () => { open.result.close(); resolve(); };
      open.onerror = () => reject(open.error);
    }),
    caches.open("left-cache").then((c) => c.put("/cached", new Response("a"))),
    navigator.serviceWorker.register("/sw.js").then(() => navigator.serviceWorker.ready),
  ]).then(() => "ok");
</script>`);

/** Served by A's service worker for any page of A's origin, if it survived. */
const serviceWorker = `self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  if (new URL(e.request.url).pathname === "/check") {
    e.respondWith(new Response("<title>from-service-worker</title>", { headers: { "content-type": "text/html" } }));
  }
});`;

/** A popup on the shared font host that keeps writing a cookie for as long as it lives. */
const popup = `<!doctype html><title>popup</title><script>
  setInterval(() => { document.cookie = "popup=" + Date.now() + "; max-age=3600; path=/"; }, 20);
</script>`;

/** What a later page of A's own origin can see of A's storage. */
type Leftovers = {
  title: string;
  cookie: string;
  local: number;
  session: number;
  databases: string[];
  caches: string[];
  workers: number;
};
const leftovers = (): Promise<Leftovers> =>
  (async () => ({
    title: document.title,
    cookie: document.cookie,
    local: localStorage.length,
    session: sessionStorage.length,
    databases: (await indexedDB.databases()).map((d) => d.name ?? ""),
    caches: await caches.keys(),
    workers: (await navigator.serviceWorker.getRegistrations()).length,
  }))();

test.before(async () => {
  server = http.createServer((req, res) => {
    const host = (req.headers.host ?? "").split(".")[0] ?? "";
    const path = new URL(req.url ?? "/", "http://x").pathname;
    seen.push({ host, path, cookie: req.headers.cookie ?? "" });
    const send = (type: string, body: string | Buffer, headers: Record<string, string> = {}) =>
      res.writeHead(200, { "content-type": type, ...headers }).end(body);
    if (host === "fonts" && path === "/font.css") return send("text/css", fontCss());
    if (host === "fonts" && path === "/lato.woff2") {
      return send("font/woff2", lato, { "cache-control": "public, max-age=86400", "access-control-allow-origin": "*" });
    }
    if (host === "a" && path === "/") return send("text/html", siteA());
    if (host === "a" && path === "/sw.js") return send("text/javascript", serviceWorker);
    if (host === "a" && path === "/check") return send("text/html", fontPage("<title>from-network</title>"));
    if (host === "b" && path === "/") return send("text/html", fontPage(""));
    // Incognito contexts block third-party cookies, so the shared host sets its own in A's popup.
    if (host === "fonts" && path === "/popup")
      return send("text/html", popup, { "set-cookie": "shared=a; Max-Age=3600" });
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  pool = await BrowserPool.launch({ executablePath: "/usr/bin/chromium", concurrency: 1, pageTimeoutMs: 10_000 });
});

test.after.always(async () => {
  await pool?.close();
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

const fontFiles = (ex: PageExtraction) => ex.files.filter((f) => f.url === url("fonts", "/lato.woff2"));
const fontHits = () => seen.filter((s) => s.host === "fonts" && s.path === "/lato.woff2").length;
const popupTargets = (page: Page) =>
  page
    .browser()
    .targets()
    .filter((t) => t.url() === url("fonts", "/popup"));

test.serial("a site sees nothing the previous site on its slot left", async (t) => {
  // Other sites in between, as on a busy slot.
  const contexts: Array<string | undefined> = [];
  const other = () => pool.run(url("b", "/"), async (page) => page.browserContext().id);
  // Site A: scanned, then leaves state everywhere and opens a popup that keeps writing cookies.
  const a = await pool.run(url("a", "/"), async (page, u) => {
    contexts.push(page.browserContext().id);
    const ex = await extractFonts(page, u, extract);
    t.is(await page.evaluate(() => (window as unknown as { done: Promise<string> }).done), "ok");
    await page.evaluate((p) => void window.open(p), url("fonts", "/popup"));
    await page.browserContext().waitForTarget((target) => target.url() === url("fonts", "/popup"));
    await new Promise((r) => setTimeout(r, 100));
    // Preconditions: the traces exist, so their absence later means they were wiped.
    const cookies = (await page.browserContext().cookies()).map((c) => `${c.domain}:${c.name}`).sort();
    t.true(cookies.includes("a.localhost:first"), cookies.join());
    t.true(cookies.includes("fonts.localhost:shared"), cookies.join());
    t.true(cookies.includes("fonts.localhost:popup"), cookies.join());
    t.is(popupTargets(page).length, 1);
    return ex;
  });
  t.is(fontFiles(a).length, 1, "site A's font is in its report");
  const hitsAfterA = fontHits();
  await other();

  // Site B, a different site, next on the same slot, loading the same cacheable font.
  const b = await pool.run(url("b", "/"), async (page, u) => {
    contexts.push(page.browserContext().id);
    t.deepEqual(await page.browserContext().cookies(), [], "the cookie jar is empty when B starts");
    t.deepEqual(popupTargets(page), [], "A's popup is gone");
    // Besides B's page, only the blank tab the slot opens for its next job may exist.
    const loaded = (await page.browserContext().pages()).filter((p) => p.url() !== "about:blank");
    t.deepEqual(loaded, [], "no page of A is left in the context");
    return await extractFonts(page, u, extract);
  });
  t.is(fontFiles(b).length, 1, "the shared font is in B's report too");
  t.is(fontFiles(b)[0]!.sha256, fontFiles(a)[0]!.sha256);
  const sharedFromB = seen.filter((s) => s.host === "fonts").slice(-2);
  t.true(sharedFromB.length > 0);
  for (const s of sharedFromB)
    t.notRegex(s.cookie, /shared=|popup=/, "no third-party cookie of A reaches B's requests");
  t.true(fontHits() > hitsAfterA, "B's font came from the font host, not A's cache");
  const hitsAfterB = fontHits();
  await other();

  // A later page of A's own origin (a retry of A) on the same slot finds none of A's storage.
  const check = await pool.run(url("a", "/check"), async (page, u) => {
    contexts.push(page.browserContext().id);
    const ex = await extractFonts(page, u, extract);
    return { ex, left: await page.evaluate(leftovers) };
  });
  t.deepEqual(check.left, {
    title: "from-network",
    cookie: "",
    local: 0,
    session: 0,
    databases: [],
    caches: [],
    workers: 0,
  });
  t.is(fontFiles(check.ex).length, 1, "the font is observed again");
  t.true(fontHits() > hitsAfterB, "the HTTP cache was wiped: the font was fetched again");
  t.true(
    seen.some((s) => s.host === "a" && s.path === "/check" && s.cookie === ""),
    "no cookie reached A again",
  );
  t.deepEqual(new Set(contexts).size, 1, "A, B and the check ran in one context, wiped between them");
  t.true(pool.slotStats.wipes >= 4);
});

test.serial("wiping one slot leaves another slot's running page alone", async (t) => {
  const two = await BrowserPool.launch({ executablePath: "/usr/bin/chromium", concurrency: 2, pageTimeoutMs: 10_000 });
  try {
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let started: () => void = () => undefined;
    const running = new Promise<void>((r) => (started = r));
    // Job 1 writes cookies and storage on its slot and waits while job 2 runs and its slot is wiped.
    const first = two.run(url("a", "/check"), async (page, u) => {
      await page.goto(u);
      await page.evaluate(() => {
        document.cookie = "kept=1; max-age=3600; path=/";
        localStorage.setItem("kept", "1");
      });
      started();
      await held;
      return await page.evaluate(() => ({ cookie: document.cookie, local: localStorage.getItem("kept") }));
    });
    await running;
    const wipes = two.slotStats.wipes;
    await two.run(url("b", "/"), async (page, u) => {
      await page.goto(u);
      await page.evaluate(() => void (document.cookie = "gone=1; max-age=3600; path=/"));
    });
    for (let i = 0; i < 100 && two.slotStats.wipes === wipes; i++) await new Promise((r) => setTimeout(r, 50));
    t.is(two.slotStats.wipes, wipes + 1, "job 2's slot was wiped");
    release();
    t.deepEqual(await first, { cookie: "kept=1", local: "1" });
  } finally {
    await two.close();
  }
});

test.serial("a context is replaced after its job budget and after a timeout", async (t) => {
  const small = await BrowserPool.launch({
    executablePath: "/usr/bin/chromium",
    concurrency: 1,
    pageTimeoutMs: 2_000,
    recycleAfter: 2,
  });
  try {
    const contextOf = (p: Page) => p.browserContext().id;
    const ids: Array<string | undefined> = [];
    for (let i = 0; i < 5; i++)
      ids.push(await small.run(url("b", "/"), async (p, u) => (await p.goto(u), contextOf(p))));
    t.is(ids[0], ids[1], "the second job reuses the first job's wiped context");
    t.is(ids[2], ids[3]);
    t.not(ids[1], ids[2], "after two jobs a context is replaced");
    t.false(ids.slice(0, 4).includes(ids[4]));
    // A task that outlives the job budget: its context (and the page still in use) is closed.
    let stuck: Page | null = null;
    await t.throwsAsync(
      small.run(url("b", "/"), async (p) => {
        stuck = p;
        await new Promise((r) => setTimeout(r, 60_000));
      }),
    );
    const stuckContext = contextOf(stuck!);
    const later = [await small.run(url("b", "/"), async (p) => contextOf(p))];
    later.push(await small.run(url("b", "/"), async (p) => contextOf(p)));
    t.false(later.includes(stuckContext), "the timed-out job's context is not used again");
    t.true((stuck as Page | null)?.isClosed() ?? false, "the timed-out job's page was closed");
  } finally {
    await small.close();
  }
});
