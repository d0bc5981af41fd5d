/**
 * `glyphscan bloom rebuild|stats`: the coordinator's "seen recently" Bloom filter in Redis.
 *
 * Redis is only a cache. After a flush (or a new, empty Redis) `rebuild` reads MongoDB `domains` and puts
 * every domain whose `lastSeenAt` (its last admission) falls within the live window back into the slice of
 * that time, so it is forgotten when it would have been anyway. Domains last admitted before the window are
 * left out: the filter would have forgotten them too. Rebuilding only sets bits, so it is idempotent and safe
 * while coordinators run (a domain they admit meanwhile is just recorded twice).
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { seenFilterOptions, SeenFilter, type FilterStats } from "../../actors/coordinator/seen-filter.ts";
import { openDatabase } from "../../actors/store/database.ts";
import type { Config } from "../../config/mod.ts";

export type RebuildSummary = {
  filter: string;
  /** Domains in MongoDB `domains` (estimated count). */
  total: number;
  /** Start of the oldest live slice: domains last seen before it were left out. */
  since: Date;
  /** Domains read (last seen within the live window). */
  read: number;
  /** Domains whose bits were not all set yet. */
  added: number;
  /** Domains already in their slice. */
  present: number;
  /** Slices written, oldest first, with domains written into each. */
  slices: Array<{ key: string; start: Date; domains: number }>;
  ms: number;
};

export type RebuildOptions = {
  /** Domains read from MongoDB per batch (default 5000). */
  batch?: number;
  /** Progress lines (one per batch) go here. */
  progress?: { write(line: string): unknown };
  /** Clock (ms since the epoch); default `Date.now()`. */
  now?: number;
};

async function withRedis<T>(config: Config, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on("error", () => undefined); // surfaced by the failing command
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    await redis.quit().catch(() => redis.disconnect());
  }
}

/** Writes the domains MongoDB last saw within the live window into their slices. */
export async function rebuildSeenFilter(config: Config, opts: RebuildOptions = {}): Promise<RebuildSummary> {
  const started = performance.now();
  const now = opts.now ?? Date.now();
  const batchSize = opts.batch ?? 5000;
  const options = seenFilterOptions(config.coordinator);
  const since = new Date((Math.floor(now / options.windowMs) - options.slices + 1) * options.windowMs);
  const db = await openDatabase(config);
  try {
    return await withRedis(config, async (redis) => {
      const filter = new SeenFilter(redis, options);
      const total = await db.collections.domains.estimatedDocumentCount();
      const perSlice = new Map<number, number>();
      let read = 0;
      let added = 0;
      let present = 0;
      const flush = async (docs: Array<{ _id: string; lastSeenAt: Date }>) => {
        const bySlice = new Map<number, string[]>();
        for (const d of docs) {
          const slice = Math.min(
            Math.floor(d.lastSeenAt.getTime() / options.windowMs),
            Math.floor(now / options.windowMs),
          );
          const list = bySlice.get(slice) ?? [];
          list.push(d._id);
          bySlice.set(slice, list);
        }
        for (const [slice, names] of bySlice) {
          const there = await filter.addAt(names, slice * options.windowMs, now);
          if (there === null) continue; // slipped out of the window while we read
          perSlice.set(slice, (perSlice.get(slice) ?? 0) + names.length);
          for (const already of there) {
            if (already) present++;
            else added++;
          }
        }
        read += docs.length;
        opts.progress?.write(`bloom rebuild: ${read} domains read, ${added} added, ${present} already present\n`);
      };
      const cursor = db.collections.domains
        .find({ lastSeenAt: { $gte: since } }, { projection: { _id: 1, lastSeenAt: 1 } })
        .batchSize(batchSize);
      let docs: Array<{ _id: string; lastSeenAt: Date }> = [];
      for await (const doc of cursor) {
        if (!(doc.lastSeenAt instanceof Date)) continue;
        docs.push({ _id: doc._id, lastSeenAt: doc.lastSeenAt });
        if (docs.length >= batchSize) {
          await flush(docs);
          docs = [];
        }
      }
      if (docs.length > 0) await flush(docs);
      const slices = [...perSlice.entries()]
        .sort(([a], [b]) => a - b)
        .map(([slice, domains]) => ({
          key: filter.keyAt(slice * options.windowMs),
          start: new Date(slice * options.windowMs),
          domains,
        }));
      return { filter: options.name, total, since, read, added, present, slices, ms: performance.now() - started };
    });
  } finally {
    await db.close();
  }
}

export function formatRebuild(s: RebuildSummary): string {
  const lines = [
    `bloom rebuild of "${s.filter}": ${s.read} of ${s.total} domains in MongoDB were last seen since ${s.since.toISOString()}`,
    `  ${s.added} added, ${s.present} already present, in ${(s.ms / 1000).toFixed(1)} s`,
    ...s.slices.map((x) => `  slice ${x.start.toISOString()} (${x.key}): ${x.domains} domains`),
  ];
  return lines.join("\n");
}

export type BloomStatsReport = FilterStats & {
  /** Random names that were never added, probed with `has`. */
  probes: number;
  /** Probes the filter called seen. */
  probeHits: number;
  /** probeHits / probes. */
  measuredFalsePositiveRate: number;
};

/** Sizing, fill of each live slice, and the false-positive rate measured on random names never added. */
export async function bloomStats(
  config: Config,
  opts: { probes?: number; now?: number } = {},
): Promise<BloomStatsReport> {
  const now = opts.now ?? Date.now();
  const probes = opts.probes ?? 100_000;
  return withRedis(config, async (redis) => {
    const filter = new SeenFilter(redis, seenFilterOptions(config.coordinator));
    const stats = await filter.stats(now);
    // `.invalid` names are never admitted (reserved, RFC 6761), so every hit is a false positive.
    const tag = randomBytes(6).toString("hex");
    const names = Array.from({ length: probes }, (_, i) => `p${i}-${tag}.probe.invalid`);
    const probeHits = (await filter.has(names, now)).filter(Boolean).length;
    return { ...stats, probes, probeHits, measuredFalsePositiveRate: probes > 0 ? probeHits / probes : 0 };
  });
}

const pct = (x: number) => `${(x * 100).toPrecision(3)}%`;

function duration(ms: number): string {
  if (ms < 0) return ms === -1 ? "no expiry" : "-";
  const h = Math.floor(ms / 3600_000);
  const m = Math.floor((ms % 3600_000) / 60_000);
  return h >= 24 ? `${Math.floor(h / 24)}d ${h % 24}h` : h > 0 ? `${h}h ${m}m` : `${m}m ${Math.floor(ms / 1000) % 60}s`;
}

export function formatBloomStats(r: BloomStatsReport): string {
  const { sizing } = r;
  const live = r.slices.filter((s) => s.exists);
  const spent = r.estimatedDomains > 0 ? (live.length * sizing.bitsPerSlice) / r.estimatedDomains : null;
  const lines = [
    `Bloom filter "${r.name}": ${r.slices.length} slices, sized for ${Math.round(sizing.bitsPerSlice / sizing.bitsPerDomain)} domains per slice at ${pct(r.targetFalsePositiveRate)} false positives`,
    `  bits per domain: ${sizing.bitsPerDomain.toFixed(2)} per slice as sized (k=${sizing.hashes}, ${(sizing.bytesPerSlice / 2 ** 20).toFixed(2)} MiB per slice)` +
      (spent === null ? "" : `; ${spent.toFixed(2)} spent per domain stored now`),
    ...r.slices.map((s) =>
      s.exists
        ? `  slice ${s.start.toISOString()}  fill ${pct(s.fill)}  ~${s.estimatedDomains} domains  expires in ${duration(s.ttlMs)}`
        : `  slice ${s.start.toISOString()}  absent`,
    ),
    `  false-positive rate: measured ${pct(r.measuredFalsePositiveRate)} (${r.probeHits} of ${r.probes} random names), ` +
      `expected from the fill ${pct(r.estimatedFalsePositiveRate)}, target ${pct(r.targetFalsePositiveRate)} when full`,
  ];
  return lines.join("\n");
}
