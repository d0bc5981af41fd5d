/** Admissions into the frontier: insert the domain due now (its due entry first); a known one only gains the source. */
import type { ActorDefinition } from "../../cluster/actor.ts";
import { consumers, streams } from "../../protocol/mod.ts";
import type { DomainStore } from "./domain-store.ts";

export function frontierActor(region: string, store: DomainStore): ActorDefinition<"admission"> {
  return {
    name: `frontier-${region}`,
    stage: "frontier",
    stream: streams.admit,
    consumer: consumers.frontier(region),
    accept: ["admission"],
    concurrency: 16,
    async handle(admission, ctx) {
      // The coordinator admits only what its Bloom filter says is new: insert, upsert on a duplicate.
      await store.admit([{ admission, traceparent: ctx.traceparent }], new Date(), {
        fresh: admission.revive !== true,
      });
    },
  };
}
