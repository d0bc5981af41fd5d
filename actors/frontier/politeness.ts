/**
 * Per-IP politeness: of the due domains whose IP is known (from their last scan), at most
 * `maxLeasesPerIp` may hold a live lease per address, and leases on one address start at least
 * `ipSpacingMs` apart (so one per round). The ones held back are made due again a little later,
 * so a feed full of one host's domains cannot fill every round with domains that must wait.
 * Leases per address are kept in `frontier_hosts`, one document per region and address.
 */
import { mapLimit } from "../../cluster/async.ts";
import type { FrontierDoc, HostDoc } from "../store/documents.ts";
import type { DueDomain } from "../store/due-queue.ts";
import type { FrontierContext } from "./schedule.ts";

/** Point operations in flight at once. */
const PARALLEL = 16;

const hostKey = (region: string, ip: string) => `${region}|${ip}`;
const ipOf = (d: { ip?: string | null | undefined }): string | null =>
  typeof d.ip === "string" && d.ip !== "" ? d.ip : null;

/** The addresses' lease documents as a round read them, by IP. */
export type Hosts = Map<string, HostDoc>;

/** How many of `due` each address may take this round, with the addresses' live leases. */
async function roomPerIp(ctx: FrontierContext, region: string, ips: string[], now: Date) {
  const { policy } = ctx;
  // Point reads, not `$in` (a server that indexes only `_id` answers `$in` by reading everything).
  const docs = await mapLimit(ips, PARALLEL, (ip) => ctx.stores.frontierHosts.findOne({ _id: hostKey(region, ip) }));
  const byId = new Map(docs.filter((d) => d !== null).map((d) => [d._id, d]));
  const hosts: Hosts = new Map();
  const room = new Map<string, number>();
  for (const ip of ips) {
    const id = hostKey(region, ip);
    const doc = byId.get(id);
    const live = (doc?.leases ?? []).filter((l) => l.until.getTime() > now.getTime());
    hosts.set(ip, { _id: id, leases: live, lastAt: doc?.lastAt ?? null });
    const spaced =
      policy.ipSpacingMs === 0 || !doc?.lastAt || now.getTime() - doc.lastAt.getTime() >= policy.ipSpacingMs;
    const free = Math.max(0, policy.maxLeasesPerIp - live.length);
    room.set(ip, spaced ? (policy.ipSpacingMs > 0 ? Math.min(1, free) : free) : 0);
  }
  return { hosts, room };
}

/** Splits `due` into the domains allowed a lease now and the ones held back, which are moved later. */
export async function limitPerIp(
  ctx: FrontierContext,
  region: string,
  due: readonly DueDomain[],
  now: Date,
): Promise<{ allowed: DueDomain[]; hosts: Hosts }> {
  const ips = [...new Set(due.map(ipOf).filter((ip) => ip !== null))];
  if (ips.length === 0) return { allowed: [...due], hosts: new Map() };
  const { hosts, room } = await roomPerIp(ctx, region, ips, now);
  const allowed: DueDomain[] = [];
  const held: DueDomain[] = [];
  for (const d of due) {
    const ip = ipOf(d);
    const left = ip === null ? Infinity : (room.get(ip) ?? 0);
    if (left <= 0) {
      held.push(d);
      continue;
    }
    if (ip !== null) room.set(ip, left - 1);
    allowed.push(d);
  }
  if (held.length > 0) {
    const later = new Date(now.getTime() + Math.max(ctx.policy.ipSpacingMs, ctx.policy.dispatchIntervalMs));
    await ctx.schedule.moveMany(
      held.map((doc) => ({ doc, nextScanAt: later })),
      () => mapLimit(held, PARALLEL, (d) => ctx.domains.updateOne({ _id: d._id }, { $set: { nextScanAt: later } })),
    );
  }
  return { allowed, hosts };
}

/** Adds this round's leases to their addresses. */
export async function recordIpLeases(
  ctx: FrontierContext,
  hosts: Hosts,
  won: ReadonlyArray<FrontierDoc>,
  leaseUntil: Date,
  now: Date,
): Promise<void> {
  const added = new Map<string, string[]>();
  for (const doc of won) {
    const ip = ipOf(doc);
    if (ip !== null && hosts.has(ip)) added.set(ip, [...(added.get(ip) ?? []), doc._id]);
  }
  await Promise.all(
    [...added].map(([ip, domains]) => {
      const host = hosts.get(ip)!;
      const leases = [
        ...host.leases.filter((l) => !domains.includes(l.d)),
        ...domains.map((d) => ({ d, until: leaseUntil })),
      ];
      return ctx.stores.frontierHosts.updateOne({ _id: host._id }, { $set: { leases, lastAt: now } }, { upsert: true });
    }),
  );
}

/** A domain's lease on its address ends (its scan answered, or the lease was given back). */
export async function releaseIp(
  ctx: FrontierContext,
  region: string,
  domain: string,
  ip: string | null | undefined,
): Promise<void> {
  const address = ipOf({ ip });
  if (address === null) return;
  const id = hostKey(region, address);
  const host = await ctx.stores.frontierHosts.findOne({ _id: id });
  if (!host?.leases.some((l) => l.d === domain)) return;
  const leases = host.leases.filter((l) => l.d !== domain);
  await ctx.stores.frontierHosts.updateOne({ _id: id }, { $set: { leases } });
}
