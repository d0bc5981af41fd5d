/**
 * `npm run bench:ingest`: the frontier's intake at scale, on private servers (test harness).
 *
 *  - domains/s from feed to frontier for a firehose-skewed feed (every distinct domain once,
 *    the rest repeats drawn with a power-law skew), with dedupe by the Bloom filter (as the
 *    coordinator and frontier do: has → insert what is new, upsert on a duplicate key →
 *    testAndSet), by MongoDB upserts alone (one per message, deduplicated within a batch), and by
 *    an exact Redis set (SADD);
 *  - FerretDB's cost of inserting new domains vs upserting them;
 *  - Redis bytes per domain, Bloom vs exact set (MEMORY USAGE);
 *  - the Bloom filter's measured false-positive rate on domains never fed;
 *  - a dispatch round (find due domains in the due index + claim a batch) at two frontier sizes,
 *    with its point reads, next to FerretDB's plan for the old due query; and what recording a
 *    scan's outcome on its lease costs at both sizes, next to an update by `_id` plus a condition
 *    (the filter outcomes had before);
 *  - whether the server applies 40 concurrent conditional updates of one document atomically.
 *
 * The issue's sizes (1M messages over 300k domains; frontier 100k and 1M) take far longer than
 * ten minutes against FerretDB v1 (SQLite) on a 2-core machine, so the defaults are scaled down
 * 200x (feed) and 10x (frontier), in batches of 100. The full-size run:
 *   npm run bench:ingest -- --messages 1000000 --distinct 300000 --small 100000 --large 1000000 --batch 1000
 */
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { SeenFilter } from "../../actors/coordinator/seen-filter.ts";
import { NEVER_SCANNED } from "../../actors/frontier/admission.ts";
import { DomainStore, type LeasedJob } from "../../actors/frontier/domain-store.ts";
import { summarise } from "../../actors/results/results-actor.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { loadConfig } from "../../config/mod.ts";
import { startMongo, startRedis, stopAll } from "../harness/servers.ts";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "5000" },
    distinct: { type: "string", default: "1500" },
    small: { type: "string", default: "10000" },
    large: { type: "string", default: "100000" },
    batch: { type: "string", default: "100" },
    "fp-probes": { type: "string", default: "100000" },
    json: { type: "string" },
  },
});
const M = Number(args.messages);
const D = Number(args.distinct);
const BATCH = Number(args.batch);

/** Every distinct domain once plus M - D repeats skewed toward a few hot domains, shuffled. */
function firehose(): string[] {
  const ids = new Array<number>(M);
  for (let i = 0; i < M; i++) ids[i] = i < D ? i : Math.floor(D * Math.random() ** 3);
  for (let i = M - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return ids.map((i) => `site${i}.example`);
}

const admission = (domain: string, now: Date) => ({
  admission: { domain, seedUrl: `https://${domain}/`, source: "bench", region: "local", admittedAt: now.toISOString() },
  traceparent: undefined,
});

async function main() {
  const [redisServer, mongoServer] = await Promise.all([startRedis(), startMongo()]);
  const redis = new Redis(redisServer.url);
  const results: Record<string, number> = {};
  const table: Array<[string, string]> = [];
  // Each figure also goes to stderr as soon as it is measured: a long run that is cut short keeps what it had.
  const push = table.push.bind(table);
  table.push = (...rows) => {
    for (const [k, v] of rows) process.stderr.write(`  = ${k}: ${v}\n`);
    return push(...rows);
  };
  try {
    // Dispatch first: at the issue's sizes the ingest passes take the longest.
    await dispatchTiming(mongoServer.url, results, table);
    const feed = firehose();
    const variants = ["bloom", "mongo-only", "exact-set"] as const;
    const rates: Record<string, number> = {};
    const redisMs: Record<string, number> = {};
    for (const variant of variants) {
      const config = loadConfig({
        env: {},
        overrides: { mongo: { url: mongoServer.url, database: `bench_${variant.replace("-", "_")}` } },
      });
      const db = await openDatabase(config);
      const store = new DomainStore(db.collections, config.frontier);
      const seen = new SeenFilter(redis, {
        name: `bench-${variant}`,
        windowMs: config.coordinator.seenWindowMs,
        slices: config.coordinator.seenSlices,
        expectedPerWindow: D,
        falsePositiveRate: config.coordinator.falsePositiveRate,
      });
      process.stderr.write(`ingest ${variant}...\n`);
      const started = performance.now();
      let inRedis = 0;
      for (let i = 0; i < feed.length; i += BATCH) {
        const now = new Date();
        const domains = [...new Set(feed.slice(i, i + BATCH))];
        // Each variant mirrors the coordinator: check, admit what is new, then mark it seen.
        let fresh = domains;
        const r0 = performance.now();
        if (variant === "bloom") {
          const had = await seen.has(domains, now.getTime());
          fresh = domains.filter((_, k) => !had[k]);
        } else if (variant === "exact-set") {
          const had = await redis.smismember("bench:exact", ...domains);
          fresh = domains.filter((_, k) => had[k] === 0);
        }
        inRedis += performance.now() - r0;
        // What the filter says is new is inserted (the frontier upserts only duplicate keys);
        // MongoDB-only dedupe has nothing to go by, so it upserts every domain of the batch.
        await store.admit(
          fresh.map((d) => admission(d, now)),
          now,
          { fresh: variant !== "mongo-only" },
        );
        const r1 = performance.now();
        if (variant === "bloom") await seen.testAndSet(fresh, now.getTime());
        else if (variant === "exact-set" && fresh.length > 0) await redis.sadd("bench:exact", ...fresh);
        inRedis += performance.now() - r1;
        if ((i / BATCH) % 100 === 99) process.stderr.write(`  ${i + BATCH} messages\n`);
      }
      const seconds = (performance.now() - started) / 1000;
      redisMs[variant] = inRedis;
      rates[variant] = M / seconds;
      const count = await db.collections.domains.estimatedDocumentCount();
      table.push([
        `ingest ${variant}`,
        `${Math.round(rates[variant])} msgs/s (${seconds.toFixed(1)} s, ${(inRedis / 1000).toFixed(1)} s of it in Redis, ` +
          `${count} domains stored)`,
      ]);
      if (variant === "bloom") {
        const bytes = Number(await redis.call("MEMORY", "USAGE", seen.keyAt(Date.now()), "SAMPLES", "0"));
        results["bloomBytesPerDomain"] = bytes / D;
        results["bloomBitsPerDomain"] = seen.sizing().bitsPerDomain;
        const probes = Array.from({ length: Number(args["fp-probes"]) }, (_, i) => `never${i}.example`);
        const hits = (await seen.has(probes)).filter(Boolean).length;
        results["measuredFalsePositiveRate"] = hits / probes.length;
        results["targetFalsePositiveRate"] = config.coordinator.falsePositiveRate;
      }
      await db.db.dropDatabase();
      await db.close();
    }
    results["ingestBloomPerSec"] = rates["bloom"]!;
    results["ingestMongoOnlyPerSec"] = rates["mongo-only"]!;
    results["ingestExactSetPerSec"] = rates["exact-set"]!;
    results["ingestRatioBloomVsMongoOnly"] = rates["bloom"]! / rates["mongo-only"]!;
    results["bloomRedisShare"] = redisMs["bloom"]! / 1000 / (M / rates["bloom"]!);
    table.push(["ingest ratio Bloom/MongoDB-only", results["ingestRatioBloomVsMongoOnly"].toFixed(2)]);
    const exactBytes = Number(await redis.call("MEMORY", "USAGE", "bench:exact", "SAMPLES", "0"));
    results["exactSetBytesPerDomain"] = exactBytes / D;
    results["memoryRatioExactVsBloom"] = results["exactSetBytesPerDomain"] / results["bloomBytesPerDomain"]!;
    table.push([
      "Redis bytes/domain",
      `Bloom ${results["bloomBytesPerDomain"]!.toFixed(2)}, exact set ${results["exactSetBytesPerDomain"].toFixed(2)}`,
    ]);
    table.push([
      "Bloom false positives",
      `${results["measuredFalsePositiveRate"]} measured, ${results["targetFalsePositiveRate"]} target`,
    ]);
    await insertVsUpsert(mongoServer.url, results, table);
  } finally {
    redis.disconnect();
    await stopAll();
  }
  const width = Math.max(...table.map(([k]) => k.length));
  process.stdout.write(`${table.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n")}\n`);
  if (args.json) await writeFile(args.json, `${JSON.stringify({ messages: M, distinct: D, ...results }, null, 2)}\n`);
}

/** FerretDB's cost per new domain: insertMany vs upsert (bulkWrite of updateOne with upsert), same documents. */
async function insertVsUpsert(url: string, results: Record<string, number>, table: Array<[string, string]>) {
  const config = loadConfig({ env: {}, overrides: { mongo: { url, database: "bench_insert" } } });
  const db = await openDatabase(config);
  const n = Math.min(D, 20_000);
  const doc = (id: string) => ({
    region: "local",
    state: "queued" as const,
    seedUrl: `https://${id}/`,
    nextScanAt: new Date(),
  });
  const t0 = performance.now();
  for (let i = 0; i < n; i += BATCH) {
    await db.collections.domains.insertMany(
      Array.from({ length: Math.min(BATCH, n - i) }, (_, k) => ({
        _id: `i${i + k}.example`,
        ...doc(`i${i + k}`),
      })) as never,
      { ordered: false },
    );
  }
  const insertMs = (performance.now() - t0) / n;
  const t1 = performance.now();
  for (let i = 0; i < n; i += BATCH) {
    await db.collections.domains.bulkWrite(
      Array.from({ length: Math.min(BATCH, n - i) }, (_, k) => ({
        updateOne: { filter: { _id: `u${i + k}.example` }, update: { $setOnInsert: doc(`u${i + k}`) }, upsert: true },
      })),
      { ordered: false },
    );
  }
  const upsertMs = (performance.now() - t1) / n;
  results["insertMsPerDomain"] = insertMs;
  results["upsertMsPerDomain"] = upsertMs;
  table.push([
    "FerretDB new domain",
    `insert ${insertMs.toFixed(3)} ms, upsert ${upsertMs.toFixed(3)} ms (${n} each, batches of ${BATCH})`,
  ]);
  await db.db.dropDatabase();
  await db.close();
}

/**
 * A dispatch round as the dispatcher runs it (due domains from the due index, checked and claimed
 * by `_id`), median of 7, at two frontier sizes; the frontier is loaded with insertMany and
 * indexed through the store's bulk path.
 */
async function dispatchTiming(url: string, results: Record<string, number>, table: Array<[string, string]>) {
  const config = loadConfig({ env: {}, overrides: { mongo: { url, database: "bench_dispatch" } } });
  const db = await openDatabase(config);
  const store = new DomainStore(db.collections, config.frontier);
  const sizes = [Number(args.small), Number(args.large)];
  const base = Date.now() - 86_400_000;
  // A twentieth of the local region is due; one batch per round, small enough for 7 rounds at the small size.
  const batch = Math.max(1, Math.min(config.frontier.dispatchBatch, Math.floor(sizes[0]! / 20 / 8)));
  let have = 0;
  const medians: number[] = [];
  const idMedians: number[] = [];
  const outcomeMedians: number[] = [];
  const guardedMedians: number[] = [];
  const reads: number[] = [];
  for (const size of sizes) {
    for (let i = have; i < size; i += 5_000) {
      const n = Math.min(5_000, size - i);
      const docs = Array.from({ length: n }, (_, k) => ({
        _id: `d${i + k}.example`,
        ...NEVER_SCANNED,
        region: (i + k) % 4 === 0 ? "local" : "other",
        seedUrl: "",
        sources: [],
        firstSeenAt: new Date(base),
        lastSeenAt: new Date(base),
        // Mostly in the future (scanned, waiting for the rescan), a few due now.
        nextScanAt: new Date(base + ((i + k) % 5 === 0 ? 0 : 2 * 86_400_000) + (i + k)),
        traceparent: null,
      }));
      await db.collections.domains.insertMany(docs, { ordered: false });
      await store.indexDomains(docs);
    }
    have = size;
    process.stderr.write(`frontier of ${size} domains inserted and indexed\n`);
    // One round untimed: the first after a bulk load pays for SQLite's checkpoint and a cold cache.
    await store.leaseDue("local", batch);
    const times: number[] = [];
    const roundReads: number[] = [];
    let claimed = 0;
    const jobs: LeasedJob[] = [];
    for (let r = 0; r < 7; r++) {
      const t0 = performance.now();
      const round = await store.leaseDue("local", batch);
      times.push(performance.now() - t0);
      claimed += round.length;
      jobs.push(...round);
      const s = store.lastRound;
      roundReads.push(s.indexReads + s.domainReads);
    }
    times.sort((a, b) => a - b);
    medians.push(times[3]!);
    reads.push(Math.max(...roundReads));
    const s = store.lastRound;
    table.push([
      `dispatch round @${size}`,
      `${times[3]!.toFixed(1)} ms median of 7 (batch ${batch}, ${claimed} claimed; last round: ` +
        `${s.indexReads} index + ${s.domainReads} domain point reads, ${s.claims} claims)`,
    ]);
    const randomId = () => `d${Math.floor(Math.random() * size)}.example`;
    // The cheapest read there is, one document by `_id`: does even that depend on the size?
    const byId = await medianMs(7, () => db.collections.domains.findOne({ _id: randomId() }));
    idMedians.push(byId);
    table.push([`findOne by _id @${size}`, `${byId.toFixed(1)} ms median of 7`]);
    // The baseline of the next line: an update by `_id` plus a condition, as outcomes were written before.
    const guarded = await medianMs(3, () =>
      db.collections.domains.updateOne({ _id: randomId(), leaseToken: null }, { $set: { attempts: 0 } }),
    );
    guardedMedians.push(guarded);
    table.push([
      `update by _id + leaseToken @${size}`,
      `${guarded.toFixed(1)} ms median of 3 (the old outcome filter)`,
    ]);
    // What each scan result costs the frontier now: the outcome written back on the lease.
    const outcomeJobs = jobs.slice(0, 15);
    const outcomeMedian = await medianMs(outcomeJobs.length, async (i) => {
      const { job } = outcomeJobs[i]!;
      const finishedAt = new Date().toISOString();
      const result = {
        ...{ jobId: job.jobId, domain: job.domain, region: job.region, leaseToken: job.leaseToken },
        ...{ attempt: job.attempt, scannerNode: "bench" },
        report: {
          ...{ status: "ok" as const, failure: null, path: "static" as const, pages: [], faces: [], files: [] },
          ...{ startedAt: finishedAt, finishedAt },
        },
      };
      if ((await store.recordOutcome(result, summarise(result))) !== "current") throw new Error("lease lost");
    });
    outcomeMedians.push(outcomeMedian);
    table.push([`scan outcome recorded @${size}`, `${outcomeMedian.toFixed(1)} ms median of ${outcomeJobs.length}`]);
  }
  results["guardedUpdateMsSmall"] = guardedMedians[0]!;
  results["guardedUpdateMsLarge"] = guardedMedians[1]!;
  table.push(["update by _id + leaseToken ratio large/small", (guardedMedians[1]! / guardedMedians[0]!).toFixed(2)]);
  results["outcomeMsSmall"] = outcomeMedians[0]!;
  results["outcomeMsLarge"] = outcomeMedians[1]!;
  results["outcomeRatioLargeVsSmall"] = outcomeMedians[1]! / outcomeMedians[0]!;
  table.push(["scan outcome ratio large/small", results["outcomeRatioLargeVsSmall"].toFixed(2)]);
  results["dispatchMsSmall"] = medians[0]!;
  results["dispatchMsLarge"] = medians[1]!;
  results["dispatchRatio1MVs100k"] = medians[1]! / medians[0]!;
  results["dispatchPointReadsSmall"] = reads[0]!;
  results["dispatchPointReadsLarge"] = reads[1]!;
  results["idLookupRatio1MVs100k"] = idMedians[1]! / idMedians[0]!;
  table.push(["dispatch ratio large/small", results["dispatchRatio1MVs100k"].toFixed(2)]);
  table.push(["point reads per round small/large", `${reads[0]} / ${reads[1]} (most in any of the 7 rounds)`]);
  table.push(["findOne by _id ratio large/small", results["idLookupRatio1MVs100k"].toFixed(2)]);
  table.push([
    "due index read",
    "by _id only: per rank its cursor, then per bucket from it to now the entry documents n = 0, 1, … up to the " +
      "first missing one, then each due entry's domain; claims: one findOneAndUpdate by _id per domain",
  ]);
  table.push([
    "old due query plan (unused)",
    // The query the due index replaced, explained only: FerretDB reads every domain for it.
    describePlan(
      await db.collections.domains
        .find({ region: "local", nextScanAt: { $lte: new Date() } })
        .sort({ manual: -1, priority: -1, nextScanAt: 1 })
        .limit(config.frontier.dispatchBatch)
        .explain(),
    ),
  ]);
  table.push([
    "findOne by _id plan",
    describePlan(await db.collections.domains.find({ _id: "d1.example" }).limit(1).explain()),
  ]);
  // Whether the server applies a conditional update atomically: 40 at once, each conditional on the
  // value all of them change. MongoDB applies one; the server adapter (actors/store/server-adapter.ts) relies on this.
  const cas = db.db.collection<{ _id: string; v: number }>("bench_cas");
  const applied: number[] = [];
  for (let round = 0; round < 5; round++) {
    await cas.replaceOne({ _id: "cas" }, { v: 0 }, { upsert: true });
    const writes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => cas.updateOne({ _id: "cas", v: 0 }, { $set: { v: i + 1 } })),
    );
    applied.push(writes.filter((w) => w.modifiedCount === 1).length);
  }
  results["casAppliedMax"] = Math.max(...applied);
  table.push([
    "40 concurrent conditional updates",
    `applied per round of 5: ${applied.join(", ")} (atomic: 1; the server adapter says ${String(db.collections.server.atomicUpdates)})`,
  ]);
  await db.db.dropDatabase();
  await db.close();
}

/** Median wall time of `n` calls of `fn(i)`, one at a time, in ms. */
async function medianMs(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b)[Math.floor(n / 2)]!;
}

/**
 * One line from an explain: FerretDB v1 says what it pushed down to its backend and the backend's
 * own plan (SQLite `SCAN` = the whole table); MongoDB names the winning plan's stages and index.
 */
function describePlan(plan: Record<string, unknown>): string {
  const qp = (plan["queryPlanner"] ?? {}) as Record<string, unknown>;
  const server = (plan["serverInfo"] ?? {}) as Record<string, unknown>;
  if (typeof server["ferretdbVersion"] === "string") {
    const backend = Array.isArray(qp["Plan"]) ? (qp["Plan"] as string[]).join("; ") : JSON.stringify(qp);
    return (
      `FerretDB ${server["ferretdbVersion"]}: filterPushdown=${String(plan["filterPushdown"])} ` +
      `sortPushdown=${String(plan["sortPushdown"])} limitPushdown=${String(plan["limitPushdown"])}; ` +
      `backend plan: ${backend}`
    );
  }
  const stages: string[] = [];
  for (let s = qp["winningPlan"] as Record<string, unknown> | undefined; s;) {
    const index = typeof s["indexName"] === "string" ? `(${s["indexName"]})` : "";
    stages.push(`${String(s["stage"])}${index}`);
    s = (s["inputStage"] ?? (s["queryPlan"] as Record<string, unknown> | undefined)?.["inputStage"]) as
      Record<string, unknown> | undefined;
  }
  const version = typeof server["version"] === "string" ? server["version"] : "";
  return `MongoDB ${version}: ${stages.join(" <- ")}`;
}

await main();
