/**
 * Coordinator: turns feed URLs into admitted domains. Each URL is normalised to its registrable
 * domain or rejected with a reason (a dead letter); domains seen within the Bloom window are
 * dropped; new ones are routed to a region and published for its frontier.
 *
 * Order matters for "nothing lost": check the filter, publish admissions, and only then mark
 * the domains seen. A crash in between at worst admits a domain twice, which the admission
 * stream's Nats-Msg-Id window and the frontier's keyed upsert absorb.
 */
import type { ActorDefinition } from "../../cluster/actor.ts";
import { TransientError, errorMessage } from "../../cluster/errors.ts";
import { instruments } from "../../cluster/metrics.ts";
import type { Config } from "../../config/mod.ts";
import { consumers, msgIds, streams, subjects, type FeedSubmission } from "../../protocol/mod.ts";
import { normaliseSubmission } from "./normalise-url.ts";
import { routeRegion } from "./route-region.ts";
import type { SeenFilter } from "./seen-filter.ts";

export function coordinatorActor(config: Config, seen: SeenFilter): ActorDefinition<"feed-submission" | "feed-batch"> {
  const { coordinator } = config;
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
      instruments().seen.add(domains.length - fresh.length, { result: "seen" });
      instruments().seen.add(fresh.length, { result: "new" });
      // The window index makes the id stable across redeliveries of this message.
      const epoch = Math.floor(now / coordinator.seenWindowMs);
      await Promise.all(
        fresh.map((domain) => {
          const region = routeRegion(domain, message.regionHint, {
            regions: config.regions,
            defaultRegion: config.region,
            tldRegions: coordinator.tldRegions,
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
