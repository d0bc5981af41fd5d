/**
 * The coordinator role: feed URLs to registrable domains, with the Bloom filter of seen domains
 * in Redis, region health when fallbacks are configured, and a MongoDB check of "maybe seen" for
 * the sources where every domain counts.
 */
import { closeRedis, openRedis } from "../../cluster/redis.ts";
import { RegionHealth, natsRegionCheck } from "../../cluster/region-health.ts";
import { someActor } from "../../cluster/mod.ts";
import { coordinatorActor, knownInCollection, type KnownDomains } from "../coordinator/coordinator-actor.ts";
import { SeenFilter } from "../coordinator/seen-filter.ts";
import type { RoleContext, RoleParts } from "./context.ts";

export async function coordinatorRole(ctx: RoleContext): Promise<RoleParts> {
  const { config, log, nats, stack } = ctx;
  const c = config.coordinator;
  const redis = stack.use(
    "redis (seen filter)",
    await openRedis("seen-filter", config.redis.url, log, { whileDown: "feed messages will be retried" }),
    closeRedis,
  );
  const seen = new SeenFilter(redis, {
    name: c.seenFilterName,
    windowMs: c.seenWindowMs,
    slices: c.seenSlices,
    expectedPerWindow: c.expectedDomainsPerWindow,
    falsePositiveRate: c.falsePositiveRate,
  });
  const services = [];
  // With fallbacks configured, new domains of a region down past its grace period go to its fallback.
  let health: RegionHealth | undefined;
  if (Object.keys(c.fallbackRegions).length > 0) {
    const probeTimeoutMs = Math.min(Math.max(c.regionProbeMs, 2_000), 5_000);
    health = new RegionHealth({
      regions: config.regions,
      graceMs: c.regionGraceMs,
      probeMs: c.regionProbeMs,
      check: natsRegionCheck(nats, config.actors.heartbeatMs, probeTimeoutMs),
      log: log.child({ service: "region-health" }),
    });
    services.push(health);
  }
  // Sources where every domain counts confirm a Bloom "maybe seen" against MongoDB by key.
  let known: KnownDomains | undefined;
  if (c.confirmSources.length > 0) known = knownInCollection((await ctx.database()).collections.domains);
  return { actors: [someActor(coordinatorActor(config, seen, health, known))], services };
}
