/**
 * A domain's scan history (GET /v1/domains/{domain}/scans) through the scan index
 * (actors/store/scan-index.ts): newest first, paged by (finishedAt, jobId), every scan once, and
 * read by `_id` only; a domain scanned before the index existed is answered from `scans`.
 */
import test from "ava";
import type { Document } from "mongodb";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { recordScan } from "../../actors/results/results-actor.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { indexScan, scanHistory, PAGE_SIZE } from "../../actors/store/scan-index.ts";
import type { Config } from "../../config/mod.ts";
import { scanResultFor } from "../helpers/frontier.ts";
import { spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

const MIN = 60_000;
let stack: TestStack;
let db: Database;
let store: DomainStore;
let config: Config;
const scanFilters: Document[] = [];

test.before(async () => {
  stack = await startStack();
  config = stack.config({ roles: ["results"] });
  db = await openDatabase(config, { clientOptions: { monitorCommands: true } });
  db.client.on("commandStarted", (e) => {
    if (e.commandName === "find" && e.command.find === "scans") scanFilters.push(e.command.filter as Document);
  });
  store = new DomainStore(db.collections, config.frontier);
});
test.after.always(async () => {
  await db?.close();
  await stack?.stop();
});

/** Every page of the history, `limit` at a time, following the cursor as the API does. */
async function allPages(domain: string, limit: number): Promise<string[][]> {
  const pages: string[][] = [];
  let after: { at: Date; id: string } | null = null;
  for (;;) {
    const rows = await scanHistory(db.collections, domain, limit + 1, after);
    const page = rows.slice(0, limit);
    pages.push(page.map((s) => s._id));
    const last = page.at(-1);
    if (rows.length <= limit || !last) return pages;
    after = { at: last.finishedAt, id: last._id };
  }
}

test.serial("scans stored by the results writer are listed newest first, by _id only", async (t) => {
  const domain = "history.test";
  const t0 = new Date(Date.now() - 60 * MIN);
  await store.admit([
    {
      admission: { domain, seedUrl: `http://${domain}/`, source: "t", region: "local", admittedAt: t0.toISOString() },
      traceparent: undefined,
    },
  ]);
  const jobs: string[] = [];
  for (let i = 0; i < 5; i++) {
    const at = new Date(t0.getTime() + i * MIN);
    await store.requestRescan(domain, at);
    const [leased] = await store.leaseDue("local", 1, at);
    const result = scanResultFor(leased!.job, at);
    await recordScan(db.collections, store, result, at);
    jobs.push(result.jobId);
    // Redelivered: stored again under the same job id, listed once.
    if (i === 2) await recordScan(db.collections, store, result, at);
  }
  scanFilters.length = 0;
  const pages = await allPages(domain, 2);
  t.deepEqual(pages, [[jobs[4], jobs[3]], [jobs[2], jobs[1]], [jobs[0]]]);
  t.true(scanFilters.length >= 5);
  t.deepEqual(
    scanFilters.filter((f) => typeof f["_id"] !== "string" || Object.keys(f).length !== 1),
    [],
    "scans read by _id only",
  );
});

test.serial(
  "an index over several pages, with late results and a redelivery, lists each scan once in order",
  async (t) => {
    const domain = "pages.test";
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    const scan = (i: number) => ({ jobId: `job-${String(i).padStart(4, "0")}`, finishedAt: new Date(t0 + i * MIN) });
    const n = 2 * PAGE_SIZE + 30;
    // Two scans answer late, after scan 215: on the page after their own, behind newer scans.
    const late = [PAGE_SIZE + 93, PAGE_SIZE + 95];
    for (let i = 0; i < n; i++) {
      if (!late.includes(i)) await indexScan(db.collections.scanIndex, domain, scan(i), i === 0);
      if (i === PAGE_SIZE + 115)
        for (const l of late) await indexScan(db.collections.scanIndex, domain, scan(l), false);
    }
    await indexScan(db.collections.scanIndex, domain, scan(n - 1), false); // redelivered
    await db.collections.scans.insertMany(
      Array.from({ length: n }, (_, i) => ({ _id: scan(i).jobId, domain, finishedAt: scan(i).finishedAt })) as never,
    );
    const newestFirst = Array.from({ length: n }, (_, i) => scan(n - 1 - i).jobId);
    // At 29 the first page ends where the late scans would slip in ahead of scan 201, a page earlier.
    for (const limit of [3, 7, 29, 40])
      t.deepEqual((await allPages(domain, limit)).flat(), newestFirst, `limit ${limit}`);
    t.is((await db.collections.scanIndex.findOne({ _id: `${domain}|0` }))?.last, 2);
  },
);

test.serial("a domain scanned before the index existed is listed from scans", async (t) => {
  const domain = "old.test";
  await db.collections.scans.insertMany(
    [1, 2, 3].map((i) => ({ _id: `old-${i}`, domain, finishedAt: new Date(Date.UTC(2026, 0, i)) })) as never,
  );
  t.deepEqual((await allPages(domain, 2)).flat(), ["old-3", "old-2", "old-1"]);
  // New scans of it go to the index, which stays incomplete: still answered from scans.
  await indexScan(
    db.collections.scanIndex,
    domain,
    { jobId: "old-4", finishedAt: new Date(Date.UTC(2026, 0, 4)) },
    false,
  );
  await db.collections.scans.insertOne({ _id: "old-4", domain, finishedAt: new Date(Date.UTC(2026, 0, 4)) } as never);
  t.deepEqual((await allPages(domain, 2)).flat(), ["old-4", "old-3", "old-2", "old-1"]);
});

test.serial("`glyphscan scans reindex` indexes scans stored before the index and names assessed scans", async (t) => {
  const day = (d: number) => new Date(Date.UTC(2025, 0, d));
  const domain = "legacy.test";
  await store.admit([
    {
      admission: {
        domain,
        seedUrl: `http://${domain}/`,
        source: "t",
        region: "local",
        admittedAt: day(1).toISOString(),
      },
      traceparent: undefined,
    },
  ]);
  // 150 scans from before the index, every tenth assessed; then one more, indexed as it was stored.
  const old = Array.from({ length: 150 }, (_, i) => ({
    _id: `legacy-${String(i).padStart(3, "0")}`,
    domain,
    finishedAt: new Date(day(1).getTime() + i * MIN),
    ...(i % 10 === 0 ? { compliance: { counts: {}, changes: null, assessedAt: day(2) } } : {}),
  }));
  await db.collections.scans.insertMany(old as never);
  const newest = { _id: "legacy-new", domain, finishedAt: day(3) };
  await db.collections.scans.insertOne(newest as never);
  await indexScan(db.collections.scanIndex, domain, { jobId: newest._id, finishedAt: newest.finishedAt }, false);
  t.is((await db.collections.scanIndex.findOne({ _id: `${domain}|0` }))?.complete, false);

  const child = await spawnGlyphscan(config, ["scans", "reindex", "--batch", "20"]);
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  t.is(await new Promise<number | null>((resolve) => child.once("exit", resolve)), 0, err);
  t.regex(out, /scan index: \d+ scans of \d+ domains read, \d+ domains indexed, \d+ named their assessed scan/);

  const head = await db.collections.scanIndex.findOne({ _id: `${domain}|0` });
  t.like(head, { complete: true, last: 1 });
  t.deepEqual((await store.get(domain))?.assessed, { jobId: "legacy-140", finishedAt: old[140]!.finishedAt });
  scanFilters.length = 0;
  const listed = (await allPages(domain, 40)).flat();
  t.deepEqual(listed, ["legacy-new", ...old.map((s) => s._id).reverse()]);
  t.deepEqual(
    scanFilters.filter((f) => typeof f["_id"] !== "string"),
    [],
    "answered through the index now",
  );
  // Run again: nothing left to do for this domain.
  const again = await spawnGlyphscan(config, ["scans", "reindex"]);
  let out2 = "";
  again.stdout!.on("data", (b: Buffer) => (out2 += b.toString()));
  t.is(await new Promise<number | null>((resolve) => again.once("exit", resolve)), 0);
  t.regex(out2, / 0 domains indexed, 0 named/);
});
