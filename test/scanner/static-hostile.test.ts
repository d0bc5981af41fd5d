/**
 * Hostile input on the fast path: pages and stylesheets built to make a parser slow (megabytes of
 * `<a`, unclosed comments and attributes, deep nesting, pathological CSS). Each scan must end
 * within its budget, answered or escalated with a reason (never an internal error), and never
 * hold the event loop for more than 200 ms. Blocking is a timer's drift bounded by the CPU time
 * the process spent meanwhile: on a shared machine a descheduled process drifts too, but burns
 * no CPU; monitorEventLoopDelay's wall-clock maximum is logged beside it.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import test from "ava";
import { staticScan } from "../../actors/scanner/static-path.ts";

const KB = 1024;
const MB = 1024 * KB;
const BUDGET_MS = 5_000;
/** The scan's own budget plus the time to notice it ran out. */
const WALL_MS = BUDGET_MS + 1_500;
const MAX_BLOCK_MS = 200;

const page = (body: string) => `<!doctype html><html><body><p>text</p>${body}`;
const sheetPage = (name: string) => `<!doctype html><link rel="stylesheet" href="/s/${name}"><p>text</p>`;
const HTML: Record<string, () => string> = {
  "a-64k": () => page("<a".repeat(32 * KB)),
  "a-4m": () => "<a".repeat(2 * MB - 64),
  "comment-128k": () => page(`<!--${"x".repeat(128 * KB)}`),
  "comment-4m": () => page(`<!--${"x".repeat(4 * MB - 100)}`),
  "attribute-128k": () => page(`<p title="${"x".repeat(128 * KB)}`),
  "attribute-4m": () => page(`<p title="${"x".repeat(4 * MB - 100)}`),
  "nested-200k": () => page(`${"<div>".repeat(200_000)}deep`),
  "nested-span-100k": () => page(`${"<span><b>".repeat(50_000)}deep`),
};
const CSS: Record<string, () => string> = {
  "long-selector-64k": () => `${"a ".repeat(32 * KB)}{ font-family: x }`,
  "long-selector-list-128k": () => `${"p.x,".repeat(32 * KB)}b { font-weight: 700 }`,
  "nested-parens-64k": () => `a { font-family: ${"(".repeat(64 * KB)} }`,
  "nested-is-64k": () => `${":is(".repeat(16 * KB)}a { font-weight: 700 }`,
  "unterminated-string-64k": () => `a { font-family: "${"x".repeat(64 * KB)}`,
  "unterminated-string-2m": () => `a { font-family: "${"x".repeat(2 * MB - 100)}`,
  "unterminated-comment-2m": () => `/*${"x".repeat(2 * MB - 100)}`,
  "url-run-64k": () => `a { background: ${"url(".repeat(16 * KB)} }`,
  "url-run-2m": () => `a { background: ${"url(".repeat(512 * KB - 64)} }`,
  "brackets-2m": () => "[".repeat(2 * MB - 64),
  "open-blocks-2m": () => "a{".repeat(MB - 64),
  "many-rules-2m": () => ".a b > c:hover, p.x { font-weight: 700; font-family: x, y }\n".repeat(34 * KB),
};

/** Starts a 10 ms timer; the returned function stops it and gives the longest CPU-bounded block in ms. */
function watchBlocking(): () => number {
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  let worst = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    const cpu = process.cpuUsage(lastCpu);
    worst = Math.max(worst, Math.min(now - last - 10, (cpu.user + cpu.system) / 1000));
    last = now;
    lastCpu = process.cpuUsage();
  }, 10);
  return () => {
    clearInterval(timer);
    return worst;
  };
}

let server: http.Server;
let port = 0;
const bodies = new Map<string, string>();
const body = (key: string, make: () => string): string => {
  if (!bodies.has(key)) bodies.set(key, make());
  return bodies.get(key)!;
};

test.before(async () => {
  server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const [, kind = "", name = ""] = path.split("/");
    if (kind === "h" && HTML[name])
      return res.writeHead(200, { "content-type": "text/html" }).end(body(path, HTML[name]));
    if (kind === "c" && CSS[name]) return res.writeHead(200, { "content-type": "text/html" }).end(sheetPage(name));
    if (kind === "s" && CSS[name]) return res.writeHead(200, { "content-type": "text/css" }).end(body(path, CSS[name]));
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
const cases = [
  ...Object.keys(HTML).map((name) => ({ name: `HTML ${name}`, path: `/h/${name}` })),
  ...Object.keys(CSS).map((name) => ({ name: `CSS ${name}`, path: `/c/${name}` })),
];

for (const c of cases) {
  test.serial(`${c.name}: ends within budget, event loop never blocked over ${MAX_BLOCK_MS} ms`, async (t) => {
    const key = `${c.path.startsWith("/c/") ? "/s/" : "/h/"}${c.path.split("/")[2]}`;
    const source = c.path.startsWith("/c/") ? CSS : HTML;
    body(key, source[c.path.split("/")[2]!]!); // built before measuring: making it is not the scanner's time
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const stop = watchBlocking();
    const started = performance.now();
    const out = await staticScan(`http://hostile.test:${port}${c.path}`, {
      policy,
      maxFontBytes: MB,
      timeoutMs: BUDGET_MS,
    });
    const elapsed = performance.now() - started;
    const blockedMs = stop();
    delay.disable();
    const outcome = out.answered ? "answered" : `${out.rule}: ${out.reason}`;
    const wall = (delay.max / 1e6).toFixed(0);
    t.log(`${elapsed.toFixed(0)} ms, longest block ${blockedMs.toFixed(0)} ms (wall-clock ${wall} ms): ${outcome}`);
    t.true(elapsed < WALL_MS, `took ${elapsed.toFixed(0)} ms`);
    t.true(blockedMs < MAX_BLOCK_MS, `event loop blocked ${blockedMs.toFixed(0)} ms`);
    t.false(!out.answered && out.rule === "internal", out.answered ? "" : out.reason);
  });
}

test.serial("the block watcher sees a 300 ms synchronous stretch (the measure is not vacuous)", async (t) => {
  const stop = watchBlocking();
  await new Promise((resolve) => setTimeout(resolve, 30));
  // A synchronous stretch of 300 ms of CPU, as a slow regular expression would be. Counted in CPU
  // time, not wall time: on a loaded machine a 300 ms wall-clock loop may get far less CPU, and the
  // watcher rightly does not count time the process was not scheduled.
  const start = process.cpuUsage();
  const cpuMs = () => {
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000;
  };
  while (cpuMs() < 300);
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.true(stop() >= 250);
});
