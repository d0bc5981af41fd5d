/** `glyphscan rescan <domain>`: a manual rescan request that jumps the frontier's queue. */
import type { Config } from "../../config/mod.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { DomainStore, type RescanRequest } from "../../actors/frontier/domain-store.ts";
import { domainOf } from "./lookup.ts";

export async function requestRescan(
  config: Config,
  input: string,
): Promise<{ domain: string; outcome: RescanRequest }> {
  const db = await openDatabase(config);
  try {
    const domain = domainOf(input, config);
    return { domain, outcome: await new DomainStore(db.collections, config.frontier).requestRescan(domain) };
  } finally {
    await db.close();
  }
}

export function formatRescan(r: { domain: string; outcome: RescanRequest }): string {
  switch (r.outcome) {
    case "requested":
      return `${r.domain}: due now, ahead of the queue`;
    case "leased":
      return `${r.domain}: a scan is already under way`;
    case "unknown":
      return `${r.domain}: not known (submit it first)`;
  }
}
