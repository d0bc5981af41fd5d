/**
 * Leasing: due domains become jobs. A round takes the region's due domains from the due queue in
 * dispatch order, parks those whose lease ran out for the last time (outcomes.ts), holds back what
 * per-IP politeness does not allow (politeness.ts), and claims the rest, each by one update by
 * `_id` after its due entry for the lease's end is pushed, so a job whose scanner vanished becomes
 * due again by itself when the lease runs out. The claim is not conditional in the database (not
 * every server serves a filter beyond `_id` from an index): a region's dispatchers are kept apart
 * by its leader lease, and rounds of two stores one after the other never claim a domain twice,
 * since the first moves its nextScanAt.
 */
import { randomBytes } from "node:crypto";
import { mapLimit } from "../../cluster/async.ts";
import type { ScanJob } from "../../protocol/mod.ts";
import type { FrontierDoc } from "../store/documents.ts";
import type { DueDomain, DueRoundStats } from "../store/due-queue.ts";
import { recordExpiredLeases } from "./outcomes.ts";
import { limitPerIp, recordIpLeases, releaseIp } from "./politeness.ts";
import type { FrontierContext } from "./schedule.ts";

export interface LeasedJob {
  job: ScanJob;
  traceparent: string | undefined;
}

export type RoundStats = DueRoundStats & { claims: number };
export type RescanRequest = "requested" | "leased" | "unknown";

/** Claims (point updates) in flight at once within a round. */
const CLAIM_PARALLEL = 16;

/** Claims `candidates` under one new token; returns the domains won. */
async function claim(ctx: FrontierContext, candidates: readonly DueDomain[], token: string, leaseUntil: Date) {
  const claimed = await ctx.schedule.moveMany(
    candidates.map((doc) => ({ doc, nextScanAt: leaseUntil })),
    () =>
      mapLimit(candidates, CLAIM_PARALLEL, (c) =>
        ctx.domains.findOneAndUpdate(
          { _id: c._id },
          {
            $set: { state: "leased", leaseToken: token, leaseJobId: null, leaseUntil, nextScanAt: leaseUntil },
            $inc: { attempts: 1 },
          },
          { returnDocument: "after" },
        ),
      ),
  );
  return claimed.filter((d): d is FrontierDoc => d !== null && d.leaseToken === token);
}

function jobOf(doc: FrontierDoc, region: string, token: string, leaseUntil: Date, now: Date): LeasedJob {
  return {
    traceparent: doc.traceparent ?? undefined,
    job: {
      jobId: `${doc._id}:${token}`,
      domain: doc._id,
      url: doc.seedUrl,
      region,
      attempt: doc.attempts,
      leaseToken: token,
      leaseUntil: leaseUntil.toISOString(),
      dispatchedAt: now.toISOString(),
    },
  };
}

/** Leases up to `limit` due domains of `region` in one round; `stats` gets the round's reads. */
export async function leaseDue(
  ctx: FrontierContext,
  region: string,
  limit: number,
  now: Date,
  stats: (s: RoundStats) => void,
): Promise<LeasedJob[]> {
  if (limit <= 0) return [];
  const batch = await ctx.schedule.queue.due(region, limit, now);
  const round: RoundStats = { ...batch.stats, claims: 0 };
  stats(round);
  if (batch.items.length === 0) {
    await batch.remove([]);
    return [];
  }
  const listed = batch.items.map((c) => c.doc);
  const parked = await recordExpiredLeases(ctx, listed, now);
  const { allowed, hosts } = await limitPerIp(
    ctx,
    region,
    listed.filter((d) => !parked.has(d._id)),
    now,
  );
  const token = `${now.getTime().toString(36)}-${randomBytes(6).toString("hex")}`;
  const leaseUntil = new Date(now.getTime() + ctx.policy.leaseMs);
  const won = await claim(ctx, allowed, token, leaseUntil);
  round.claims = allowed.length;
  // Every item is handled: claimed, parked, or moved later (per-IP), each with its new entry.
  await batch.remove(batch.items);
  await recordIpLeases(ctx, hosts, won, leaseUntil, now);
  return won.map((doc) => jobOf(doc, region, token, leaseUntil, now));
}

/** Jobs not yet answered whose lease still runs: what the region's scanners hold. */
export function countInFlight(ctx: FrontierContext, region: string, now: Date): Promise<number> {
  return ctx.domains.countDocuments({ region, state: "leased", leaseUntil: { $gt: now } });
}

/** Gives a lease back at once (its job could not be published), so the domain is due again. */
export async function releaseLease(ctx: FrontierContext, domain: string, token: string, now: Date): Promise<void> {
  const projection = { region: 1, ip: 1, leaseToken: 1, manual: 1, priority: 1 };
  const doc = await ctx.domains.findOne({ _id: domain }, { projection });
  if (doc?.leaseToken !== token) return;
  await releaseIp(ctx, doc.region, domain, doc.ip);
  const update = { $set: { state: "queued" as const, leaseToken: null, leaseUntil: null }, $inc: { attempts: -1 } };
  await ctx.schedule.writeSchedule(doc, now, update, { leaseToken: token });
}

/**
 * Makes a domain due now, ahead of every priority, unless a live lease holds it (then its scan
 * is already under way). A parked domain gets its attempts back.
 */
export async function requestRescan(ctx: FrontierContext, domain: string, now: Date): Promise<RescanRequest> {
  const projection = { region: 1, priority: 1, state: 1, leaseUntil: 1 };
  const doc = await ctx.domains.findOne({ _id: domain }, { projection });
  if (!doc) return "unknown";
  if (doc.state === "leased" && doc.leaseUntil && doc.leaseUntil > now) return "leased";
  // The entry goes first: if the domain turns out leased, it is stale and dropped when read.
  const unleased = {
    $or: [{ state: { $ne: "leased" as const } }, { leaseUntil: null }, { leaseUntil: { $lte: now } }],
  };
  const update = { $set: { manual: true, attempts: 0 } };
  if (await ctx.schedule.writeSchedule({ ...doc, manual: true }, now, update, unleased)) return "requested";
  return (await ctx.domains.countDocuments({ _id: domain })) === 1 ? "leased" : "unknown";
}
