/**
 * Coordinator: turns feed URLs into admitted domains. Each URL is normalised to its registrable
 * domain or rejected with a reason (a dead letter); domains seen within the Bloom window are
 * dropped; new ones are routed to a region and published for its frontier.
 *
 * Order matters for "nothing lost": check the filter, publish admissions, and only then mark
 * the domains seen. A crash in between at worst admits a domain twice, which the admission
 * stream's Nats-Msg-Id window and the frontier's keyed upsert absorb.
 *
 * A Bloom false positive never loses a domain for good: it is not recorded, so it is new again once
 * the slices that collide with it roll past (its next appearance after the window is admitted). For
 * the sources in `coordinator.confirmSources` it is not even delayed: a "maybe seen" from the filter
 * is confirmed against MongoDB `domains` by key, and a domain not stored there is admitted.
 */
import type { ActorDefinition } from "../../cluster/actor.ts";
import { FatalError, TransientError, errorMessage } from "../../cluster/errors.ts";
import { instruments } from "../../cluster/metrics.ts";
import type { Config } from "../../config/mod.ts";
import { consumers, msgIds, streams, subjects, type FeedSubmission } from "../../protocol/mod.ts";
import { normaliseSubmission } from "./normalise-url.ts";
import { routeRegion } from "./route-region.ts";
import type { SeenFilter } from "./seen-filter.ts";

/** Of `domains`, those stored in MongoDB `domains` (the confirm check of `coordinator.confirmSources`). */
export type KnownDomains = (domains: readonly string[]) => Promise<Set<string>>;

/** Point reads in flight at once while confirming a batch. */
const CONFIRM_PARALLEL = 32;

/**
 * {@link KnownDomains} on the `domains` collection: one `findOne({_id})` per name, projected to
 * `_id`, a bounded number at once. Point reads, not `$in`: FerretDB v1 serves only `_id` equality
 * from the index and answers `$in` by reading the whole collection.
 */
export function knownInCollection(domains: {
  findOne(filter: { _id: string }, options: { projection: { _id: 1 } }): Promise<{ _id: string } | null>;
}): KnownDomains {
  return async (names) => {
    const known = new Set<string>();
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const name = names[next++]!;
        if (await domains.findOne({ _id: name }, { projection: { _id: 1 } })) known.add(name);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONFIRM_PARALLEL, names.length) }, worker));
    return known;
  };
}

export function coordinatorActor(
  config: Config,
  seen: SeenFilter,
  /** Region health (set when `coordinator.fallbackRegions` is): new domains of a down region go to its fallback. */
  health?: { isDown(region: string): boolean },
  /** The MongoDB check of `coordinator.confirmSources`; required when that list is not empty. */
  known?: KnownDomains,
): ActorDefinition<"feed-submission" | "feed-batch"> {
  const { coordinator } = config;
  const confirmSources = new Set(coordinator.confirmSources);
  if (confirmSources.size > 0 && !known)
    throw new FatalError("coordinator.confirmSources needs a MongoDB connection", "bad-config");
  const fallback = health ? { fallbacks: coordinator.fallbackRegions, isDown: (r: string) => health.isDown(r) } : {};
  return {
    name: "coordinator",
    stage: "coordinator",
    stream: streams.feeds,
    consumer: consumers.coordinator,
    accept: ["feed-submission", "feed-batch"],
    concurrency: coordinator.concurrency,
    async handle(message, ctx) {
      const urls = "urls" in message ? message.urls : [message.url];
      const firstSeed = new Map<string, string>();
      for (const url of urls) {
        const outcome = normaliseSubmission(url, { allowHosts: coordinator.allowHosts });
        if (!outcome.ok) {
          const single: FeedSubmission = {
            url,
            source: message.source,
            submittedAt: message.submittedAt,
            ...(message.regionHint ? { regionHint: message.regionHint } : {}),
          };
          await ctx.reject(`${outcome.code}: ${outcome.reason}`, single);
          continue;
        }
        if (!firstSeed.has(outcome.domain)) firstSeed.set(outcome.domain, outcome.seedUrl);
      }
      const domains = [...firstSeed.keys()];
      if (domains.length === 0) return;
      const now = Date.now();
      let seenBefore: boolean[];
      try {
        seenBefore = await seen.has(domains, now);
      } catch (err) {
        throw new TransientError(`seen filter unavailable: ${errorMessage(err)}`);
      }
      const fresh = domains.filter((_, i) => !seenBefore[i]);
      instruments().seen.add(fresh.length, { result: "new" });
      let overrides = 0;
      if (known && confirmSources.has(message.source) && fresh.length < domains.length) {
        // "Maybe seen" is only a hint here: a domain MongoDB does not have is admitted anyway.
        const maybe = domains.filter((_, i) => seenBefore[i]);
        let stored: Set<string>;
        try {
          stored = await known(maybe);
        } catch (err) {
          throw new TransientError(`confirm lookup in MongoDB failed: ${errorMessage(err)}`);
        }
        for (const domain of maybe) {
          if (stored.has(domain)) continue;
          fresh.push(domain);
          overrides++;
        }
        instruments().seen.add(overrides, { result: "confirm-override" });
        if (overrides > 0) ctx.log.debug({ overrides }, "seen filter said maybe seen; not in MongoDB, admitted");
      }
      instruments().seen.add(domains.length - fresh.length, { result: "seen" });
      // The window index makes the id stable across redeliveries of this message.
      const epoch = Math.floor(now / coordinator.seenWindowMs);
      await Promise.all(
        fresh.map((domain) => {
          const region = routeRegion(domain, message.regionHint, {
            regions: config.regions,
            defaultRegion: config.region,
            tldRegions: coordinator.tldRegions,
            ...fallback,
          });
          return ctx.publish({
            subject: subjects.admit(region),
            schema: "admission",
            msgId: msgIds.admit(region, domain, epoch),
            body: {
              domain,
              seedUrl: firstSeed.get(domain)!,
              source: message.source,
              region,
              admittedAt: new Date(now).toISOString(),
            },
          });
        }),
      );
      try {
        await seen.testAndSet(fresh, now);
      } catch (err) {
        throw new TransientError(`seen filter unavailable: ${errorMessage(err)}`);
      }
      if (fresh.length < domains.length) ctx.log.debug({ dropped: domains.length - fresh.length }, "seen recently");
    },
  };
}
