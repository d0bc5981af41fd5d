/**
 * `glyphscan export` as an operator runs it (its own process) over results stored the way the
 * results writer stores them (recordScan with the real verdict engine, registry and licensing
 * client) on a real MongoDB-wire server: every filter, both formats read back with csv-parse and
 * JSON, a file output, a reader that closes the pipe early, and flags it refuses with exit code 2.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "csv-parse/sync";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import type { LicensingDeps } from "../../actors/licensing/compliance.ts";
import { importLicenses } from "../../actors/licensing/import.ts";
import { LicensingClient } from "../../actors/licensing/licensing-client.ts";
import { openCatalogue } from "../../actors/licensing/open-licence.ts";
import { LicenseRegistry } from "../../actors/licensing/registry.ts";
import { recordScan } from "../../actors/results/results-actor.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { EXPORT_COLUMNS, countExportDomains } from "../../actors/store/export.ts";
import { csvField, csvLine, parseIsoDate, parseVerdicts } from "../../bin/commands/export.ts";
import type { Config } from "../../config/mod.ts";
import type { FontFace, FontFile, ScanResult } from "../../protocol/mod.ts";
import { startMongo, stopAll, type ManagedServer } from "../harness/servers.ts";
import { spawnGlyphscan, testConfig, uniqueName } from "../helpers/stack.ts";

const COMMERCIAL = readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));
const OPEN = readFileSync(fileURLToPath(import.meta.resolve("@fontsource/inter/files/inter-latin-400-normal.woff2")));
const COMMERCIAL_SHA = sha256Hex(COMMERCIAL);
const OPEN_SHA = sha256Hex(OPEN);

function file(bytes: Buffer, url: string, provider: string | null): FontFile {
  const { metadata, parseError } = readFontMetadata(bytes);
  return {
    sha256: sha256Hex(bytes),
    url,
    bytes: bytes.length,
    contentType: null,
    via: "font-request",
    metadata,
    parseError,
    provider,
  };
}
/** A file the scanner could not parse: no metadata, so the page's CSS family names it. */
function unreadable(seed: string, url: string): FontFile {
  const sha256 = sha256Hex(Buffer.from(seed));
  return {
    sha256,
    url,
    bytes: 10,
    contentType: null,
    via: "font-request",
    metadata: null,
    parseError: "not a font",
    provider: "self-hosted",
  };
}
const face = (family: string, f: FontFile): FontFace => ({
  family,
  weight: "400",
  style: "normal",
  used: true,
  declaredIn: "stylesheet",
  srcUrls: [f.url],
  fileSha256: [f.sha256],
  provider: f.provider,
});

function result(
  domain: string,
  region: string,
  finishedAt: string,
  fonts: Array<[string, FontFile]>,
  failed = false,
): ScanResult {
  return {
    jobId: `${domain}:${finishedAt}`,
    domain,
    region,
    leaseToken: "seed",
    attempt: 1,
    scannerNode: "seed-node",
    report: {
      status: failed ? "failed" : "ok",
      failure: failed ? { kind: "timeout", message: "navigation timed out" } : null,
      path: "static",
      pages: [{ url: `http://${domain}/`, finalUrl: `http://${domain}/`, httpStatus: failed ? null : 200 }],
      faces: fonts.map(([family, f]) => face(family, f)),
      files: fonts.map(([, f]) => f),
      startedAt: new Date(Date.parse(finishedAt) - 1_000).toISOString(),
      finishedAt,
    },
  };
}

let mongo: ManagedServer;
let db: Database;
let config: Config;
const BIG_FILES = 700;

test.before(async () => {
  mongo = await startMongo();
  config = testConfig(
    { nats: "nats://127.0.0.1:1", redis: "redis://127.0.0.1:1", mongo: mongo.url },
    { mongo: { database: uniqueName("export") } },
  );
  db = await openDatabase(config);
  const store = new DomainStore(db.collections, config.frontier);
  const registry = new LicenseRegistry(db.collections);
  const catalogue = openCatalogue();
  // The licensing service is down (nothing listens on port 1): what only it could decide is pending.
  const down = new LicensingClient({
    url: "http://127.0.0.1:1",
    timeoutMs: 500,
    retries: 0,
    retryBaseMs: 10,
    breakerFailures: 100,
    breakerResetMs: 1_000,
    cacheTtlMs: 1,
  });
  const offline: LicensingDeps = { registry, catalogue };
  const withService: LicensingDeps = { registry, catalogue, external: down.check.bind(down) };
  await importLicenses(registry, [
    {
      line: 1,
      data: { id: "b-web", licensee: "B Ltd", domains: "b.test", family: "Glyphscan Commercial Sans", type: "web" },
    },
  ]);
  const domains: Array<[string, string]> = [
    ["a.test", "eu"],
    ["b.test", "us"],
    ["c.test", "eu"],
    ["d.test", "eu"],
    ["e.test", "eu"],
    ["f.test", "eu"],
    ["big.test", "ap"],
  ];
  await store.admit(
    domains.map(([domain, region]) => ({
      admission: { domain, region, seedUrl: `http://${domain}/`, source: "seed", admittedAt: new Date().toISOString() },
      traceparent: undefined,
    })),
  );
  const record = (r: ScanResult, deps: LicensingDeps) => recordScan(db.collections, store, r, new Date(), deps);
  const commercial = (d: string) => file(COMMERCIAL, `http://${d}/brand.ttf`, "self-hosted");
  const open = (d: string) => file(OPEN, `http://${d}/inter.woff2`, "self-hosted");
  // a: a commercial font with no licence, and an open one.
  await record(
    result("a.test", "eu", "2026-06-01T00:00:00.000Z", [
      ["Brand Sans", commercial("a.test")],
      ["Inter", open("a.test")],
    ]),
    offline,
  );
  // b (another region): the same commercial font, licensed in the registry.
  await record(result("b.test", "us", "2026-06-10T00:00:00.000Z", [["Brand Sans", commercial("b.test")]]), offline);
  // c: assessed while the licensing service was down.
  await record(result("c.test", "eu", "2026-06-20T00:00:00.000Z", [["Brand Sans", commercial("c.test")]]), withService);
  // d: assessed, then its latest scan failed: its verdicts are those of the earlier scan.
  await record(result("d.test", "eu", "2026-06-05T00:00:00.000Z", [["Inter", open("d.test")]]), offline);
  await record(result("d.test", "eu", "2026-06-07T00:00:00.000Z", [], true), offline);
  // e: never scanned. f: unreadable files, named by CSS families a spreadsheet must not run or split.
  await record(
    result("f.test", "eu", "2026-06-15T00:00:00.000Z", [
      ['Weird, "Quoted"\nFamily', unreadable("f1", "http://f.test/1.woff2")],
      ["=HYPERLINK(1)", unreadable("f2", "http://f.test/2.woff2")],
    ]),
    offline,
  );
  // big: enough rows that a reader closing the pipe early leaves most of them unwritten.
  await record(
    result(
      "big.test",
      "ap",
      "2026-06-02T00:00:00.000Z",
      Array.from({ length: BIG_FILES }, (_, i) => [`Big ${i}`, unreadable(`big-${i}`, `http://big.test/${i}.woff2`)]),
    ),
    offline,
  );
});

test.after.always(async () => {
  await db?.close();
  await stopAll();
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function glyphscan(args: string[]): Promise<Run> {
  const child = await spawnGlyphscan(config, ["export", ...args]);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, stdout, stderr };
}

type Row = Record<(typeof EXPORT_COLUMNS)[number], string>;
const csvRows = (text: string): Row[] => parse<Row>(text, { columns: true, skip_empty_lines: true });
const jsonRows = (text: string) =>
  text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, string | null> & Row);
const keyOf = (r: Pick<Row, "domain" | "sha256" | "verdict">) => `${r.domain} ${r.verdict} ${r.sha256}`;
const withoutBig = <T extends { domain: string }>(rows: T[]) => rows.filter((r) => r.domain !== "big.test");

const F1 = sha256Hex(Buffer.from("f1"));
const F2 = sha256Hex(Buffer.from("f2"));
const ALL = [
  `a.test unlicensed ${COMMERCIAL_SHA}`,
  `a.test open-licence ${OPEN_SHA}`,
  `b.test licensed ${COMMERCIAL_SHA}`,
  `c.test pending ${COMMERCIAL_SHA}`,
  `d.test open-licence ${OPEN_SHA}`,
  `f.test unknown ${F1}`,
  `f.test unknown ${F2}`,
].sort();

test("CSV: one row per font per domain with the stored verdicts and evidence; a header; a summary on stderr", async (t) => {
  const run = await glyphscan([]);
  t.is(run.code, 0, run.stderr);
  t.true(run.stdout.startsWith(`${EXPORT_COLUMNS.join(",")}\r\n`));
  const rows = csvRows(run.stdout);
  t.is(rows.filter((r) => r.domain === "big.test").length, BIG_FILES);
  const rest = withoutBig(rows);
  t.deepEqual(rest.map(keyOf).sort(), ALL);
  t.regex(run.stderr, new RegExp(`exported ${ALL.length + BIG_FILES} rows for 6 domains \\(csv\\) to stdout`));

  const b = rest.find((r) => r.domain === "b.test")!;
  t.like(b, {
    region: "us",
    scannedAt: "2026-06-10T00:00:00.000Z",
    jobId: "b.test:2026-06-10T00:00:00.000Z",
    family: "Glyphscan Commercial Sans",
    provider: "self-hosted",
    licence: "b-web",
  });
  t.regex(b.evidence, /licence record b-web \(B Ltd\)/);
  t.true(Date.parse(b.assessedAt) > 0);
  const pending = rest.find((r) => r.domain === "c.test")!;
  t.regex(pending.reason, /licensing service is unavailable/);
  const a = rest.find((r) => r.domain === "a.test" && r.verdict === "unlicensed")!;
  t.regex(a.evidence, /copyright: .*All rights reserved/i, "the name fields the verdict read");
  // The failed latest scan of d does not hide the verdicts of its previous scan.
  t.is(rest.find((r) => r.domain === "d.test")?.scannedAt, "2026-06-05T00:00:00.000Z");
  // Fields with commas, quotes and newlines survive; a formula is neutralised.
  const families = rest.filter((r) => r.domain === "f.test").map((r) => r.family);
  t.deepEqual(families.sort(), ["'=HYPERLINK(1)", 'Weird, "Quoted"\nFamily'].sort());
});

test("JSON Lines with --verdict (repeated and comma-separated)", async (t) => {
  const run = await glyphscan(["--format", "jsonl", "--verdict", "pending,unknown", "--verdict", "licensed"]);
  t.is(run.code, 0, run.stderr);
  const rows = withoutBig(jsonRows(run.stdout));
  t.deepEqual(
    rows.map((r) => keyOf(r)).sort(),
    ALL.filter((k) => / (?:pending|unknown|licensed) /.test(k)),
  );
  // JSON keeps text as it is, formula-looking or not.
  t.true(rows.some((r) => r["family"] === "=HYPERLINK(1)"));
  t.like(
    rows.find((r) => r["domain"] === "c.test"),
    { region: "eu", verdict: "pending", provider: "self-hosted" },
  );

  const open = await glyphscan(["--format", "jsonl", "--verdict", "open-licence"]);
  t.deepEqual(
    jsonRows(open.stdout)
      .map((r) => keyOf(r))
      .sort(),
    ALL.filter((k) => k.includes(" open-licence ")),
  );
});

test("--region and --since/--until (since inclusive, until exclusive, on the scan's finish time)", async (t) => {
  const us = await glyphscan(["--region", "us"]);
  t.is(us.code, 0, us.stderr);
  t.deepEqual(csvRows(us.stdout).map(keyOf), [`b.test licensed ${COMMERCIAL_SHA}`]);

  const window = await glyphscan(["--format", "jsonl", "--since", "2026-06-05", "--until", "2026-06-20"]);
  t.is(window.code, 0, window.stderr);
  t.deepEqual(
    [...new Set(jsonRows(window.stdout).map((r) => r["domain"]))].sort(),
    ["b.test", "d.test", "f.test"],
    "a (06-01) and big (06-02) before, c (06-20) at the end",
  );

  // Date-times with an offset; combined with a region and a verdict.
  const late = await glyphscan(["--since", "2026-06-19T23:00:00-02:00", "--region", "eu", "--verdict", "pending"]);
  t.deepEqual(csvRows(late.stdout).map(keyOf), [], "c finished before 06-20T01:00Z");
  const late2 = await glyphscan(["--since", "2026-06-19T23:00:00+02:00", "--region", "eu", "--verdict", "pending"]);
  t.deepEqual(csvRows(late2.stdout).map(keyOf), [`c.test pending ${COMMERCIAL_SHA}`]);
});

test("--out writes the file and nothing on stdout", async (t) => {
  const out = join(await mkdtemp(join(tmpdir(), "glyphscan-export-")), "verdicts.csv");
  const run = await glyphscan(["--out", out, "--verdict", "unlicensed"]);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, "");
  t.deepEqual(csvRows(await readFile(out, "utf8")).map(keyOf), [`a.test unlicensed ${COMMERCIAL_SHA}`]);
  t.regex(run.stderr, new RegExp(`exported 1 rows for 1 domains \\(csv\\) to ${out}`));
});

test("a reader that closes the pipe early (| head) ends the export quietly with exit code 0", async (t) => {
  const child = await spawnGlyphscan(config, ["export", "--region", "ap"]);
  let stderr = "";
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  let first = "";
  child.stdout!.once("data", (chunk: Buffer) => {
    first = chunk.toString();
    child.stdout!.destroy();
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  t.true(first.startsWith("domain,"));
  t.is(code, 0, stderr);
  t.regex(stderr, /exported \d+ rows for \d+ domains \(csv\) to stdout; the output was closed early/);
  const written = Number(/exported (\d+) rows/.exec(stderr)?.[1]);
  t.true(written < BIG_FILES, `stopped early (${written} rows)`);
  t.notRegex(stderr, /EPIPE|Error|at /);
});

test("bad flags: a clear message and exit code 2, nothing on stdout", async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [["--verdict", "licensed,bogus"], /--verdict: unknown verdict "bogus" \(one of licensed, open-licence/],
    [["--since", "yesterday"], /--since: "yesterday" is not an ISO 8601 date/],
    [["--until", "2026-02-30"], /--until: "2026-02-30" is not an ISO 8601 date/],
    [["--since", "2026-06-02", "--until", "2026-06-01"], /--since must be before --until/],
    [["--format", "xml"], /--format: "xml" is not csv or jsonl/],
    [["--no-such-flag"], /unknown option '--no-such-flag'/],
  ];
  for (const [args, message] of cases) {
    const run = await glyphscan(args);
    t.is(run.code, 2, args.join(" "));
    t.regex(run.stderr, message);
    t.is(run.stdout, "");
  }
});

test("the progress bar's total: the domains an export reads", async (t) => {
  t.is(await countExportDomains(db.collections, {}), 6, "every scanned domain; e was never scanned");
  t.is(await countExportDomains(db.collections, { region: "us" }), 1);
  // c holds a pending verdict; d's latest scan failed, so its verdicts are read from the scan before.
  t.is(await countExportDomains(db.collections, { verdicts: ["pending"] }), 2);
  t.is(await countExportDomains(db.collections, { since: new Date("2026-06-15T00:00:00Z") }), 2, "c and f");
});

test("csvField: RFC 4180 quoting, formula neutralising, and csv-parse reads back what was written", (t) => {
  t.is(csvField(null), "");
  t.is(csvField("plain"), "plain");
  t.is(csvField("a,b"), '"a,b"');
  t.is(csvField('say "hi"'), '"say ""hi"""');
  t.is(csvField("two\nlines"), '"two\nlines"');
  t.is(csvField(" edge "), '" edge "');
  t.is(csvField("=1+1"), "'=1+1");
  t.is(csvField("@cmd,x"), `"'@cmd,x"`);
  const fields = ["a,b", 'q"q', "line\r\nbreak", "", "ünïcode ✓", "-2"];
  const records: string[][] = parse(csvLine(fields));
  const back = records[0];
  t.deepEqual(back, ["a,b", 'q"q', "line\r\nbreak", "", "ünïcode ✓", "'-2"]);
});

test("flag parsers: ISO dates and verdict lists", (t) => {
  t.is(parseIsoDate("since", "2026-06-01").toISOString(), "2026-06-01T00:00:00.000Z");
  t.is(parseIsoDate("since", "2026-06-01T12:30").toISOString(), "2026-06-01T12:30:00.000Z");
  t.is(parseIsoDate("since", "2026-06-01T12:30:00+02:00").toISOString(), "2026-06-01T10:30:00.000Z");
  t.throws(() => parseIsoDate("since", "2026-13-01"), { message: /not an ISO 8601 date/ });
  t.throws(() => parseIsoDate("since", "1717200000"), { message: /not an ISO 8601 date/ });
  t.deepEqual(parseVerdicts(["pending, Unknown", "pending"]), ["pending", "unknown"]);
  t.throws(() => parseVerdicts(["licenced"]), { message: /unknown verdict "licenced"/ });
});
