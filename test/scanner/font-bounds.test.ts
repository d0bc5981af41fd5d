/**
 * A font file can no longer freeze or exhaust a scanner node. The WOFF whose name table is cut
 * mid-stream spun fontkitten's inflate forever on the node's main thread; a name table of 65 000
 * 64 KB strings grows the heap until the process dies; a collection listing one face 200 000
 * times keeps the parser busy for minutes. Anything that could hang runs in a child process with
 * a kill timer, never on this runner's thread: on the old code those children are the ones
 * killed, and these tests fail instead of hanging.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import test from "ava";
import { fontFileV1, type FontFile } from "../../protocol/messages.ts";
import { FontParsePool } from "../../actors/scanner/font-parse-pool.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { cutWoffTable, nameHeapBomb, woff2Zeros } from "../../ops/fuzz/font-forge.ts";

const font = (spec: string) => readFileSync(fileURLToPath(import.meta.resolve(spec)));
const lato = font("@fontsource/lato/files/lato-latin-700-normal.woff");
const roboto = font("@fontsource/roboto/files/roboto-latin-400-normal.woff2");
const katex = font("katex/dist/fonts/KaTeX_Main-Regular.ttf");
const cutWoff = cutWoffTable(lato, "name");
const heapBomb = nameHeapBomb();
const ttcBomb = collectionOfOneFace(katex, 200_000);
const moduleUrl = (path: string) => new URL(path, import.meta.url).href;

/** A TrueType collection whose header lists the same face `times` times (about 4 bytes each). */
function collectionOfOneFace(ttf: Buffer, times: number): Buffer {
  const head = Buffer.alloc(12 + 4 * times);
  head.write("ttcf", 0, "latin1");
  head.writeUInt16BE(1, 4);
  head.writeUInt32BE(times, 8);
  for (let i = 0; i < times; i++) head.writeUInt32BE(head.length, 12 + 4 * i);
  const face = Buffer.from(ttf);
  for (let i = 0; i < face.readUInt16BE(4); i++) {
    const at = 12 + 16 * i + 8; // table offsets count from the start of the collection
    face.writeUInt32BE(face.readUInt32BE(at) + head.length, at);
  }
  return Buffer.concat([head, face]);
}

type ChildRun = { killed: boolean; ms: number; stdout: string; stderr: string; code: number | null };

/** Runs ES module code in a child node, its stdin fed `input`, killed after `killAfterMs`. */
function inChild(code: string, input: Uint8Array, killAfterMs: number, args: string[] = []): Promise<ChildRun> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["--input-type=module", "-e", code, ...args], { stdio: "pipe" });
    let stdout = "";
    let stderr = "";
    let killed = false;
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, killAfterMs);
    child.on("close", (exit) => {
      clearTimeout(timer);
      resolve({ killed, ms: Date.now() - started, stdout, stderr: stderr.slice(-2_000), code: exit });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(input);
  });
}

const READ_STDIN = `const chunks = []; for await (const c of process.stdin) chunks.push(c); const bytes = Buffer.concat(chunks);`;

test("the cut WOFF is the shape that hangs fontkitten's own inflate (checked in a child, killed at 4 s)", async (t) => {
  const run = await inChild(
    `import { create } from "fontkitten"; ${READ_STDIN}
     create(bytes).getName("postscriptName"); process.stdout.write("answered");`,
    cutWoff,
    4_000,
  );
  t.true(run.killed, `fontkitten answered the cut WOFF in ${run.ms} ms: the fixture no longer reproduces the hang`);
});

test("the font reader answers the cut WOFF at once, from the tables that are intact", async (t) => {
  const run = await inChild(
    `const { readFontMetadata } = await import(${JSON.stringify(moduleUrl("../../actors/scanner/font-metadata.ts"))});
     ${READ_STDIN} process.stdout.write(JSON.stringify(readFontMetadata(bytes)));`,
    cutWoff,
    15_000,
  );
  t.false(run.killed, "reading the cut WOFF hung (killed after 15 s)");
  t.is(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { metadata: { vendorId: string | null } | null; parseError: string | null };
  t.is(result.parseError, null);
  t.is(result.metadata?.vendorId, "tyPL", "the OS/2 table, intact, is still read");
});

test("a heap bomb ends as parseError memory in its worker; the pool parses the next file", async (t) => {
  const pool = new FontParsePool({ workers: 1, timeoutMs: 20_000, maxHeapMb: 96, maxDecodedBytes: 32 << 20 });
  t.teardown(() => pool.close());
  const started = Date.now();
  const result = await pool.parse(heapBomb);
  t.like(result, { metadata: null, parseLimit: "memory" });
  t.regex(result.parseError ?? "", /^memory: /);
  t.true(Date.now() - started < 20_000, "the heap limit, not the time limit, ended it");
  t.like(await pool.parse(roboto), { parseError: null, metadata: { postscriptName: "Roboto-Regular" } });
});

test("a parse past the time limit is terminated as parseError timeout; queued files keep their own budget", async (t) => {
  // 160 MiB of zeros, under this pool's cap: fontkitten's pure-JS brotli needs seconds for it.
  const slow = await woff2Zeros({ decodedBytes: 160 << 20 });
  const pool = new FontParsePool({ workers: 1, timeoutMs: 1_000, maxHeapMb: 128, maxDecodedBytes: 256 << 20 });
  t.teardown(() => pool.close());
  t.like(await pool.parse(roboto), { parseError: null }, "a normal font parses well within the limit");
  const started = Date.now();
  const [first, second, after] = await Promise.all([pool.parse(slow), pool.parse(slow), pool.parse(lato)]);
  for (const r of [first, second]) {
    t.like(r, { metadata: null, parseLimit: "timeout" });
    t.regex(r.parseError ?? "", /^timeout: /);
  }
  t.like(after, { parseError: null, metadata: { postscriptName: "Lato-Bold" } }, "a replacement worker took it");
  t.true(Date.now() - started < 10_000, `three files took ${Date.now() - started} ms`);
});

test("a closed pool answers instead of hanging, and closing twice is safe", async (t) => {
  const pool = new FontParsePool({ workers: 1, timeoutMs: 3_000, maxHeapMb: 64, maxDecodedBytes: 32 << 20 });
  t.like(await pool.parse(roboto), { parseError: null });
  await pool.close();
  await pool.close();
  t.like(await pool.parse(roboto), { metadata: null, parseError: "internal: font parse pool closed" });
});

// The static scan path, end to end, in a child process standing in for the scanner node.
const PAGE = `<!doctype html><style>
  @font-face { font-family: Cut; src: url(/cut.woff) format("woff"); }
  @font-face { font-family: Heap; src: url(/heap.ttf) format("truetype"); }
  @font-face { font-family: Faces; src: url(/faces.ttc) format("collection"); }
  @font-face { font-family: Good; src: url(/roboto.woff2) format("woff2"); }
  h1 { font-family: Cut } h2 { font-family: Heap } h3 { font-family: Faces } p { font-family: Good }
</style><h1>cut</h1><h2>heap</h2><h3>faces</h3><p>good</p>`;
const PLAIN = `<!doctype html><style>
  @font-face { font-family: Good; src: url(/roboto.woff2) format("woff2"); } p { font-family: Good }
</style><p>good</p>`;
const FILES: Record<string, Buffer> = {
  "/cut.woff": cutWoff,
  "/heap.ttf": heapBomb,
  "/faces.ttc": ttcBomb,
  "/roboto.woff2": roboto,
};

test("a static scan of a page serving every hostile font finishes, and the next scan in that process works", async (t) => {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const body = FILES[path];
    if (body) return res.writeHead(200, { "content-type": "font/ttf" }).end(body);
    if (path === "/hostile" || path === "/plain") {
      return res.writeHead(200, { "content-type": "text/html" }).end(path === "/plain" ? PLAIN : PAGE);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => server.close());
  const base = `http://fonts.test:${(server.address() as AddressInfo).port}`;
  const run = await inChild(
    `const { staticScan } = await import(${JSON.stringify(moduleUrl("../../actors/scanner/static-path.ts"))});
     const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };
     let peak = 0;
     const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
     const scans = [];
     for (const url of process.argv.slice(1)) {
       const outcome = await staticScan(url, { policy, maxFontBytes: 10 << 20, timeoutMs: 40_000 });
       scans.push(outcome.answered ? outcome.page.files : { escalated: outcome.reason });
     }
     clearInterval(sample);
     process.stdout.write(JSON.stringify({ scans, peakRssMb: Math.round(peak / 2 ** 20) }));
     process.exit(0);`,
    new Uint8Array(),
    60_000,
    [`${base}/hostile`, `${base}/plain`],
  );
  t.false(run.killed, "the scanner process hung on a hostile font (killed after 60 s)");
  t.is(run.code, 0, `the scanner process died: ${run.stderr}`);
  const { scans, peakRssMb } = JSON.parse(run.stdout) as { scans: FontFile[][]; peakRssMb: number };
  const [hostile, plain] = scans.map((files) => files.map((f) => fontFileV1.parse(f)));
  const bySha = new Map(hostile!.map((f) => [f.sha256, f]));
  t.like(bySha.get(sha256Hex(heapBomb)), { metadata: null, parseLimit: "memory" });
  t.like(bySha.get(sha256Hex(cutWoff)), { parseError: null, metadata: { vendorId: "tyPL" } });
  t.like(bySha.get(sha256Hex(ttcBomb)), { parseError: null, metadata: { postscriptName: "KaTeX_Main-Regular" } });
  t.like(bySha.get(sha256Hex(roboto)), { parseError: null, metadata: { family: "Roboto" } });
  t.like(
    plain,
    [{ sha256: sha256Hex(roboto), parseError: null, metadata: { family: "Roboto" } }],
    "the next scan works",
  );
  t.true(peakRssMb < 1_024, `the scanner process peaked at ${peakRssMb} MB`);
});
