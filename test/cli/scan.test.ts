/**
 * `glyphscan scan` as a user runs it (its own process, no cluster): its `--json` is the very
 * report the cluster's scanner publishes for the same site, and the one the results writer stores
 * (a real node on a real NATS, Redis and MongoDB-wire stack scans it through the feed; the
 * scan-result message is read off the results subject, the stored scan and its font catalogue
 * entries from the database), the table names faces, files and verdicts, and bad flags exit 2.
 */
import test from "ava";
import type { ChildProcess } from "node:child_process";
import { startNode } from "../../actors/compose.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import type { FrontierDoc } from "../../actors/store/documents.ts";
import { connectNats, createLogger, publishMessage, type ClusterNode, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { decodeMessage, HEADERS, scanReportV1, subjects, type ScanReport } from "../../protocol/mod.ts";
import { eventually, spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
let corpus: Corpus;
let config: Config;

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 5, tag: "cli" })]);
  config = stack.config();
});

test.after.always(async () => {
  await corpus?.close();
  await stack?.stop();
});

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child: ChildProcess = await spawnGlyphscan(config, args);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, stdout, stderr };
}

/** What a stored scan says, as a scanReportV1: the scan document with each file's metadata from the font catalogue. */
async function storedReport(db: Database, domain: string): Promise<ScanReport> {
  const scan = await eventually(
    `the stored scan of ${domain}`,
    async () => (await db.collections.scans.findOne({ domain })) ?? undefined,
    90_000,
  );
  // The results writer adds the files to the font catalogue after the scan itself.
  const fonts = await eventually(`the font catalogue entries of ${domain}`, async () => {
    const docs = await db.collections.fonts.find({ _id: { $in: scan.files.map((f) => f.sha256) } }).toArray();
    return docs.length === new Set(scan.files.map((f) => f.sha256)).size
      ? new Map(docs.map((f) => [f._id, f]))
      : undefined;
  });
  // The scan's address is kept on the domain, for the frontier's per-IP politeness.
  const ip = await eventually(`the address of ${domain}`, async () => {
    const doc: FrontierDoc | null = await db.collections.domains.findOne({ _id: domain });
    return doc?.ip ?? undefined;
  });
  return scanReportV1.parse({
    status: scan.status,
    failure: scan.failure,
    path: scan.path,
    pages: scan.pages,
    faces: scan.faces,
    files: scan.files.map(({ family: _family, ...f }) => ({ ...f, metadata: fonts.get(f.sha256)?.metadata ?? null })),
    ...(scan.blocked && scan.blocked.length > 0 ? { blocked: scan.blocked } : {}),
    ...(scan.renderedFonts && scan.renderedFonts.length > 0 ? { renderedFonts: scan.renderedFonts } : {}),
    address: ip,
    startedAt: scan.startedAt.toISOString(),
    finishedAt: scan.finishedAt.toISOString(),
  });
}

/** The report without its clock readings (when it ran, how long a page took to settle), which no two scans share. */
const TIMINGS = new Set(["startedAt", "finishedAt", "ms"]);
/**
 * Report fields the results writer does not keep on the scan document (actors/results): the
 * stored comparison leaves them out, the published one does not. Empty this when the store keeps them.
 */
const NOT_STORED = ["escalation"] as const;
const storedPart = (r: ScanReport): ScanReport => {
  const out = { ...r };
  for (const key of NOT_STORED) delete out[key];
  return out;
};

/** Lists compared as sets: faces come in the order they loaded, which two scans need not share. */
const sorted = <T>(xs: readonly T[] | undefined): T[] | undefined =>
  xs && [...xs].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

const untimed = (r: ScanReport): unknown => {
  const plain = JSON.parse(JSON.stringify(r), (key, value: unknown) =>
    TIMINGS.has(key) ? "(time)" : value,
  ) as ScanReport;
  return {
    ...plain,
    faces: sorted(plain.faces),
    files: sorted(plain.files),
    renderedFonts: sorted(plain.renderedFonts),
  };
};

test.serial("--json prints exactly the report the cluster stores for the same site", async (t) => {
  // One site answered by the fast path, one that needs the browser (its fonts come from a script).
  const sites = [
    corpus.sites.find((s) => s.variant === "link")!,
    corpus.sites.find((s) => s.variant === "font-face-api")!,
  ];
  let node: ClusterNode | undefined;
  let nats: NatsHandles | undefined;
  let db: Database | undefined;
  try {
    node = await startNode(config, createLogger(config.logLevel, {}));
    nats = await connectNats(config, "cli-scan-test");
    db = await openDatabase(config);
    // Every scan-result the scanner publishes, as the results writer receives it.
    const published = new Map<string, ScanReport>();
    const sub = nats.nc.subscribe(subjects.results(config.region));
    void (async () => {
      for await (const m of sub) {
        const decoded = decodeMessage(["scan-result"], m.headers?.get(HEADERS.schema), m.data, 8 * 1024 * 1024);
        if (decoded.ok) published.set(decoded.value.domain, decoded.value.report);
      }
    })();
    for (const site of sites)
      await publishMessage(nats.js, {
        subject: subjects.feed("cli"),
        schema: "feed-submission",
        body: { url: site.url, source: "cli", submittedAt: new Date().toISOString() },
        msgId: `cli:${site.url}`,
      });
    for (const site of sites) {
      const stored = await storedReport(db, site.domain);
      const sent = await eventually(`the published result of ${site.domain}`, async () => published.get(site.domain));
      const cli = await run(["scan", stored.pages[0]!.url, "--json", "--allow-host", "*.test=127.0.0.1"]);
      t.is(cli.code, 0, cli.stderr);
      const printed = scanReportV1.parse(JSON.parse(cli.stdout));
      t.true(printed.files.length > 0, `${site.domain}: the CLI found no font files`);
      t.deepEqual(untimed(printed), untimed(sent), `published: ${site.domain} (${site.variant})`);
      t.deepEqual(untimed(storedPart(printed)), untimed(stored), `stored: ${site.domain} (${site.variant})`);
    }
  } finally {
    await node?.stop();
    await nats?.nc.close();
    await db?.close();
  }
});

test.serial("the table names the used faces, their files and verdicts, and the sources it could not ask", async (t) => {
  const site = corpus.sites.find((s) => s.variant === "inline-style")!;
  const out = await run(["scan", site.url]);
  t.is(out.code, 0, out.stderr);
  for (const family of site.expectedUsedFamilies) t.regex(out.stdout, new RegExp(`used\\s+${family}`));
  for (const file of site.expectedFiles) t.true(out.stdout.includes(file.sha256.slice(0, 12)), file.url);
  t.regex(out.stdout, /open-licence\s+OFL-1\.1/);
  t.regex(out.stdout, /not available without the cluster: licence registry \(MongoDB\), external licensing service/);
});

for (const [name, args, message] of [
  ["no URL", ["scan"], /missing required argument/],
  ["a URL that is not http(s)", ["scan", "ftp://example.test/"], /not an http\(s\) URL: ftp:\/\/example\.test\//],
  [
    "a malformed --allow-host",
    ["scan", "http://a.test/", "--allow-host", "not a pattern!"],
    /--allow-host wants PATTERN\[=ADDRESS\]/,
  ],
  [
    "an --allow-host address that is not an IP",
    ["scan", "http://a.test/", "--allow-host", "*.test=home"],
    /home is not an IP address/,
  ],
  ["an unknown flag", ["scan", "http://a.test/", "--bogus"], /unknown option '--bogus'/],
] as const) {
  test(`${name} exits 2 with a message`, async (t) => {
    const out = await run([...args]);
    t.is(out.code, 2);
    t.regex(out.stderr, message);
    t.is(out.stdout, "");
  });
}
