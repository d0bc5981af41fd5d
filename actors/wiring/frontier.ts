/**
 * The frontier role: admitted domains into MongoDB, and the region's dispatcher (one active per
 * region, by leader lease) turning due domains into scan jobs. Its node also reports the job
 * backlog and the dead letters as metrics.
 */
import { someActor } from "../../cluster/mod.ts";
import { observeDeadLetters, observeJobsPending } from "../../cluster/metrics.ts";
import { Dispatcher } from "../frontier/dispatcher.ts";
import { frontierActor } from "../frontier/frontier-actor.ts";
import type { RoleContext, RoleParts } from "./context.ts";

export async function frontierRole(ctx: RoleContext): Promise<RoleParts> {
  const { config, log, nats, stack } = ctx;
  const store = await ctx.domainStore();
  const dispatcher = new Dispatcher(config.region, store, nats.js, config.frontier, log, {
    jsm: nats.jsm,
    nodeId: config.nodeId!,
    heartbeatMs: config.actors.heartbeatMs,
  });
  stack.defer("jobs-pending metric", observeJobsPending(nats.jsm, config.region));
  stack.defer("dead-letters metric", observeDeadLetters(nats.jsm));
  return { actors: [someActor(frontierActor(config.region, store))], services: [dispatcher] };
}
