/**
 * `npm run bench:ingest`: the frontier's intake at scale, on private servers (test harness).
 *
 *  - domains/s from feed to frontier for a firehose-skewed feed (every distinct domain once,
 *    the rest repeats drawn with a power-law skew), with dedupe by the Bloom filter (as the
 *    coordinator does: has → admit → testAndSet), by MongoDB upserts alone, and by an exact
 *    Redis set (SADD);
 *  - Redis bytes per domain, Bloom vs exact set (MEMORY USAGE);
 *  - the Bloom filter's measured false-positive rate on domains never fed;
 *  - the dispatcher's due-domains query time at two frontier sizes.
 *
 * The issue's sizes (1M messages over 300k domains; frontier 100k and 1M) take far longer than
 * ten minutes against FerretDB v1 (SQLite) on a 2-core machine (5k messages already take ~1 min,
 * most of it FerretDB upserts), so the defaults are scaled down 200x (feed) and 100x (frontier),
 * in batches of 100 (FerretDB slows sharply on larger update batches). The full-size run:
 *   npm run bench:ingest -- --messages 1000000 --distinct 300000 --small 100000 --large 1000000 --batch 1000
 */
import { writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { SeenFilter } from "../../actors/coordinator/seen-filter.ts";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { loadConfig } from "../../config/mod.ts";
import { startMongo, startRedis, stopAll } from "../../test/harness/servers.ts";

const { values: args } = parseArgs({
  options: {
    messages: { type: "string", default: "5000" },
    distinct: { type: "string", default: "1500" },
    small: { type: "string", default: "1000" },
    large: { type: "string", default: "10000" },
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
  try {
    const feed = firehose();
    const variants = ["bloom", "mongo-only", "exact-set"] as const;
    const rates: Record<string, number> = {};
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
      for (let i = 0; i < feed.length; i += BATCH) {
        const now = new Date();
        const domains = [...new Set(feed.slice(i, i + BATCH))];
        // Each variant mirrors the coordinator: check, admit what is new, then mark it seen.
        let fresh = domains;
        if (variant === "bloom") {
          const had = await seen.has(domains, now.getTime());
          fresh = domains.filter((_, k) => !had[k]);
        } else if (variant === "exact-set") {
          const had = await redis.smismember("bench:exact", ...domains);
          fresh = domains.filter((_, k) => had[k] === 0);
        }
        await store.admit(
          fresh.map((d) => admission(d, now)),
          now,
        );
        if (variant === "bloom") await seen.testAndSet(fresh, now.getTime());
        else if (variant === "exact-set" && fresh.length > 0) await redis.sadd("bench:exact", ...fresh);
      }
      const seconds = (performance.now() - started) / 1000;
      rates[variant] = M / seconds;
      const count = await db.collections.domains.estimatedDocumentCount();
      table.push([
        `ingest ${variant}`,
        `${Math.round(rates[variant])} msgs/s (${seconds.toFixed(1)} s, ${count} domains stored)`,
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
    await dispatchTiming(mongoServer.url, results, table);
  } finally {
    redis.disconnect();
    await stopAll();
  }
  const width = Math.max(...table.map(([k]) => k.length));
  process.stdout.write(`${table.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n")}\n`);
  if (args.json) await writeFile(args.json, `${JSON.stringify({ messages: M, distinct: D, ...results }, null, 2)}\n`);
}

/** Median time of the dispatcher's due query (limit = one dispatch batch) at two frontier sizes. */
async function dispatchTiming(url: string, results: Record<string, number>, table: Array<[string, string]>) {
  const config = loadConfig({ env: {}, overrides: { mongo: { url, database: "bench_dispatch" } } });
  const db = await openDatabase(config);
  const store = new DomainStore(db.collections, config.frontier);
  const sizes = [Number(args.small), Number(args.large)];
  const base = Date.now() - 86_400_000;
  let have = 0;
  const medians: number[] = [];
  const idMedians: number[] = [];
  for (const size of sizes) {
    for (let i = have; i < size; i += 5_000) {
      const n = Math.min(5_000, size - i);
      await db.collections.domains.insertMany(
        Array.from({ length: n }, (_, k) => ({
          _id: `d${i + k}.example`,
          region: (i + k) % 4 === 0 ? "local" : "other",
          state: "queued" as const,
          seedUrl: "",
          sources: [],
          firstSeenAt: new Date(base),
          lastSeenAt: new Date(base),
          // Mostly in the future (scanned, waiting for the rescan), a few due now.
          nextScanAt: new Date(base + ((i + k) % 50 === 0 ? 0 : 2 * 86_400_000) + (i + k)),
          attempts: 0,
          leaseToken: null,
          leaseJobId: null,
          leaseUntil: null,
          lastScanAt: null,
          scanCount: 0,
          latest: null,
          traceparent: null,
        })),
        { ordered: false },
      );
    }
    have = size;
    process.stderr.write(`frontier of ${size} domains inserted\n`);
    const times: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t0 = performance.now();
      await store.dueCursor("local", config.frontier.dispatchBatch).toArray();
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    medians.push(times[3]!);
    table.push([`dispatch query @${size}`, `${times[3]!.toFixed(1)} ms median of 7`]);
    // The cheapest read there is, one document by `_id`: does even that depend on the size?
    const byId: number[] = [];
    for (let r = 0; r < 7; r++) {
      const t0 = performance.now();
      await db.collections.domains.findOne({ _id: `d${Math.floor(Math.random() * size)}.example` });
      byId.push(performance.now() - t0);
    }
    byId.sort((a, b) => a - b);
    idMedians.push(byId[3]!);
    table.push([`findOne by _id @${size}`, `${byId[3]!.toFixed(1)} ms median of 7`]);
  }
  results["dispatchMsSmall"] = medians[0]!;
  results["dispatchMsLarge"] = medians[1]!;
  results["dispatchRatio1MVs100k"] = medians[1]! / medians[0]!;
  results["idLookupRatio1MVs100k"] = idMedians[1]! / idMedians[0]!;
  table.push(["dispatch ratio large/small", results["dispatchRatio1MVs100k"].toFixed(2)]);
  table.push(["findOne by _id ratio large/small", results["idLookupRatio1MVs100k"].toFixed(2)]);
  table.push(["due query plan", describePlan(await store.dueCursor("local", config.frontier.dispatchBatch).explain())]);
  table.push([
    "findOne by _id plan",
    describePlan(await db.collections.domains.find({ _id: "d1.example" }).limit(1).explain()),
  ]);
  await db.db.dropDatabase();
  await db.close();
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
