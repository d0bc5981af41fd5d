/**
 * The results role: stores each scan, schedules the domain's next one and decides a licence
 * verdict per font (registry, provider, open licence, and the licensing service when one is
 * configured, whose pending verdicts a re-check decides once it answers again).
 */
import { someActor, type Service } from "../../cluster/mod.ts";
import { LicensingClient } from "../licensing/licensing-client.ts";
import { lazyCatalogue } from "../licensing/open-licence.ts";
import { PendingRecheck } from "../licensing/pending-recheck.ts";
import { LicenseRegistry } from "../licensing/registry.ts";
import type { FontUse } from "../licensing/verdict.ts";
import { resultsActor } from "../results/results-actor.ts";
import type { RoleContext, RoleParts } from "./context.ts";

export async function resultsRole(ctx: RoleContext): Promise<RoleParts> {
  const { config, log, nats } = ctx;
  const db = await ctx.database();
  const store = await ctx.domainStore();
  const { serviceUrl, pendingRecheckIntervalMs, pendingRecheckBatch, ...service } = config.licensing;
  const client = serviceUrl ? new LicensingClient({ url: serviceUrl, ...service }) : null;
  const licensing = {
    registry: new LicenseRegistry(db.collections),
    catalogue: lazyCatalogue(),
    ...(client ? { external: (domain: string, uses: FontUse[]) => client.check(domain, uses) } : {}),
  };
  const actor = resultsActor(config.region, db.collections, store, licensing, { leaseMs: config.frontier.leaseMs });
  const services: Service[] = [];
  // Pending verdicts wait for the licensing service; decided when it answers again, not at the next scan.
  if (client) {
    const options = { intervalMs: pendingRecheckIntervalMs, batch: pendingRecheckBatch };
    services.push(new PendingRecheck(config.region, db.collections, licensing, nats.js, log, options));
  }
  return { actors: [someActor(actor)], services };
}
