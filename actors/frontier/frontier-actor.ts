/** Admissions into the frontier: upsert the domain, due now if it is new. */
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
      await store.admit([{ admission, traceparent: ctx.traceparent }]);
    },
  };
}
