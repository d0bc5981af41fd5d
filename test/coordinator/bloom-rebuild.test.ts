/**
 * `glyphscan bloom rebuild|stats`: Redis is a cache; after a flush the filter is rebuilt from MongoDB.
 */
import test from "ava";
import { once } from "node:events";
import { Redis } from "ioredis";
import { seenFilterOptions, SeenFilter } from "../../actors/coordinator/seen-filter.ts";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { bloomStats, rebuildSeenFilter } from "../../bin/commands/bloom.ts";
import type { Config } from "../../config/mod.ts";
import { spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const HOUR = 3600_000;

async function run(config: Config, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = await spawnGlyphscan(config, args);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

test("rebuild puts the domains MongoDB saw within the window back, each in its slice; idempotent", async (t) => {
  const config = stack.config({ coordinator: { seenWindowMs: HOUR, seenSlices: 3, expectedDomainsPerWindow: 10_000 } });
  const db = await openDatabase(config);
  const redis = new Redis(config.redis.url);
  t.teardown(async () => {
    redis.disconnect();
    await db.close();
  });
  const now = Date.now();
  // Only what the rebuild reads (inserts are much faster than the frontier's upserts on FerretDB).
  const admit = (domains: string[], at: number) =>
    db.db
      .collection<{ _id: string; lastSeenAt: Date }>("domains")
      .insertMany(domains.map((_id) => ({ _id, lastSeenAt: new Date(at) })));
  const recent = Array.from({ length: 1_200 }, (_, i) => `recent${i}.test`);
  const older = Array.from({ length: 800 }, (_, i) => `older${i}.test`);
  const expired = Array.from({ length: 300 }, (_, i) => `expired${i}.test`);
  await admit(recent, now);
  await admit(older, now - 2 * HOUR); // the oldest live slice
  await admit(expired, now - 3 * HOUR); // left the window: the filter would have forgotten it
  const filter = new SeenFilter(redis, seenFilterOptions(config.coordinator));

  // As after FLUSHALL: nothing is seen.
  t.true((await filter.has([...recent, ...older])).every((seen) => !seen));

  const lines: string[] = [];
  const summary = await rebuildSeenFilter(config, { batch: 400, now, progress: { write: (l) => lines.push(l) } });
  t.is(summary.total, 2_300);
  t.is(summary.read, 2_000);
  t.is(summary.added, 2_000);
  t.is(summary.present, 0);
  t.deepEqual(
    summary.slices.map((s) => [s.key, s.domains]),
    [
      [filter.keyAt(now - 2 * HOUR), 800],
      [filter.keyAt(now), 1_200],
    ],
  );
  t.true(lines.length >= 5, "a progress line per batch");

  t.true(
    (await filter.has([...recent, ...older], now)).every(Boolean),
    "every domain seen in the window is seen again",
  );
  t.is((await filter.has(expired, now)).filter(Boolean).length, 0, "domains from before the window are not");
  // The older slice expires when it leaves the window, as if the coordinator had written it.
  const olderSlice = Math.floor((now - 2 * HOUR) / HOUR);
  t.is(await redis.call("PEXPIRETIME", filter.keyAt(now - 2 * HOUR)), (olderSlice + 3) * HOUR);
  // It is only in its own slice: one hour later its slice is gone from the live window.
  t.is((await filter.has(older, now + HOUR)).filter(Boolean).length, 0);

  const again = await rebuildSeenFilter(config, { now });
  t.is(again.added, 0, "a second rebuild adds nothing");
  t.is(again.present, 2_000);
});

test("bloom rebuild and bloom stats on the command line", async (t) => {
  const config = stack.config({ coordinator: { expectedDomainsPerWindow: 10_000, falsePositiveRate: 0.01 } });
  const db = await openDatabase(config);
  const redis = new Redis(config.redis.url);
  t.teardown(async () => {
    redis.disconnect();
    await db.close();
  });
  const store = new DomainStore(db.collections, config.frontier);
  const domains = Array.from({ length: 300 }, (_, i) => `cli${i}.test`);
  await store.admit(
    domains.map((domain) => ({
      admission: {
        domain,
        seedUrl: `https://${domain}/`,
        source: "cli",
        region: "local",
        admittedAt: new Date().toISOString(),
      },
      traceparent: undefined,
    })),
  );
  const rebuilt = await run(config, ["bloom", "rebuild"]);
  t.is(rebuilt.code, 0, rebuilt.stderr);
  t.regex(rebuilt.stdout, /300 of 300 domains in MongoDB/);
  t.regex(rebuilt.stdout, /300 added, 0 already present/);
  const filter = new SeenFilter(redis, seenFilterOptions(config.coordinator));
  t.true((await filter.has(domains)).every(Boolean));

  const stats = await run(config, ["bloom", "stats", "--probes", "20000"]);
  t.is(stats.code, 0, stats.stderr);
  t.log(stats.stdout);
  t.regex(stats.stdout, /bits per domain: \d+\.\d\d per slice/);
  t.regex(stats.stdout, /false-positive rate: measured [\d.]+% \(\d+ of 20000 random names\)/);

  const report = await bloomStats(config, { probes: 20_000 });
  t.true(Math.abs(report.estimatedDomains - 300) < 20, `estimated ${report.estimatedDomains}`);
  // 300 domains in a filter sized for 10,000 per slice: far below the target.
  t.true(report.measuredFalsePositiveRate < 0.001, String(report.measuredFalsePositiveRate));
});
