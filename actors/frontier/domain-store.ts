/**
 * The frontier's state in MongoDB: admitting domains, leasing due ones as jobs, and recording
 * outcomes. Every write is keyed and conditional, so redelivered messages change nothing twice,
 * and a lease is checked by its owner token on write-back.
 */
import { randomBytes } from "node:crypto";
import type { Collections } from "../store/database.ts";
import type { DomainDoc, ScanSummary } from "../store/documents.ts";
import type { Admission, ScanJob, ScanResult } from "../../protocol/mod.ts";
import type { Config } from "../../config/mod.ts";

export type FrontierPolicy = Config["frontier"];

export interface LeasedJob {
  job: ScanJob;
  traceparent: string | undefined;
}

export class DomainStore {
  readonly #c: Collections;
  readonly #policy: FrontierPolicy;

  constructor(collections: Collections, policy: FrontierPolicy) {
    this.#c = collections;
    this.#policy = policy;
  }

  /** Inserts new domains as due now; a known domain only gains the source. */
  async admit(
    admissions: ReadonlyArray<{
      admission: Admission;
      traceparent: string | undefined;
    }>,
    now = new Date(),
  ): Promise<void> {
    if (admissions.length === 0) return;
    await this.#c.domains.bulkWrite(
      admissions.map(({ admission: a, traceparent }) => ({
        updateOne: {
          filter: { _id: a.domain },
          update: {
            $setOnInsert: {
              region: a.region,
              state: "queued" as const,
              seedUrl: a.seedUrl,
              firstSeenAt: now,
              nextScanAt: now,
              attempts: 0,
              leaseToken: null,
              leaseJobId: null,
              leaseUntil: null,
              lastScanAt: null,
              scanCount: 0,
              latest: null,
              // The first scan continues the trace of the feed message that brought the domain.
              traceparent: traceparent ?? null,
            },
            $addToSet: { sources: a.source },
            $set: { lastSeenAt: now },
          },
          upsert: true,
        },
      })),
      { ordered: false },
    );
  }

  /** Jobs not yet answered whose lease still runs: what the region's scanners hold. */
  async countInFlight(region: string, now = new Date()): Promise<number> {
    return this.#c.domains.countDocuments({
      region,
      state: "leased",
      leaseUntil: { $gt: now },
    });
  }

  /** The dispatcher's query: due domains of a region, soonest first (index `due_by_region`). */
  dueCursor(region: string, limit: number, now = new Date()) {
    return this.#c.domains
      .find({ region, nextScanAt: { $lte: now } }, { projection: { _id: 1, nextScanAt: 1 } })
      .sort({ nextScanAt: 1 })
      .limit(limit);
  }

  /**
   * Leases up to `limit` due domains in one round, without transactions: read the soonest due
   * ids, claim them in one conditional updateMany (`_id` among them and still due: a domain
   * another dispatcher claimed meanwhile has moved its nextScanAt to its lease's end and no longer
   * matches), then read back which ones carry this round's token. A lease moves nextScanAt to the
   * lease's end, so a job whose scanner vanished becomes due again by itself when it runs out.
   * (One updateMany, not a bulkWrite of per-id updates: FerretDB v1 runs the latter very slowly.)
   */
  async leaseDue(region: string, limit: number, now = new Date()): Promise<LeasedJob[]> {
    if (limit <= 0) return [];
    const candidates = await this.dueCursor(region, limit, now).toArray();
    if (candidates.length === 0) return [];
    const token = `${now.getTime().toString(36)}-${randomBytes(6).toString("hex")}`;
    const leaseUntil = new Date(now.getTime() + this.#policy.leaseMs);
    await this.#c.domains.updateMany(
      { _id: { $in: candidates.map((c) => c._id) }, region, nextScanAt: { $lte: now } },
      {
        $set: { state: "leased", leaseToken: token, leaseJobId: null, leaseUntil, nextScanAt: leaseUntil },
        $inc: { attempts: 1 },
      },
    );
    const won = await this.#c.domains.find({ _id: { $in: candidates.map((c) => c._id) }, leaseToken: token }).toArray();
    const order = new Map(candidates.map((c, i) => [c._id, i]));
    won.sort((a, b) => order.get(a._id)! - order.get(b._id)!);
    return won.map((doc) => ({
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
    }));
  }

  /** Gives a lease back at once (its job could not be published), so the domain is due again. */
  async releaseLease(domain: string, token: string, now = new Date()): Promise<void> {
    await this.#c.domains.updateOne(
      { _id: domain, leaseToken: token },
      {
        $set: {
          state: "queued",
          leaseToken: null,
          leaseUntil: null,
          nextScanAt: now,
        },
        $inc: { attempts: -1 },
      },
    );
  }

  /**
   * Applies a scan outcome. On the current lease it schedules the next scan (or a retry with
   * exponential backoff, or parks the domain after the last attempt). A late result of an
   * expired lease is still kept as the latest scan when it is newer, but schedules nothing.
   */
  async recordOutcome(result: ScanResult, summary: ScanSummary, now = new Date()): Promise<"current" | "stale"> {
    const ok = result.report.status === "ok";
    const current = await this.#c.domains.findOne({
      _id: result.domain,
      leaseToken: result.leaseToken,
    });
    if (current) {
      const attempts = ok ? 0 : current.attempts;
      const parked = !ok && attempts >= this.#policy.maxAttempts;
      const nextScanAt = ok
        ? new Date(now.getTime() + this.#policy.rescanIntervalMs)
        : parked
          ? null
          : new Date(now.getTime() + this.#policy.retryBaseMs * 2 ** Math.max(0, attempts - 1));
      const updated = await this.#c.domains.updateOne(
        { _id: result.domain, leaseToken: result.leaseToken },
        {
          $set: {
            state: ok ? "scanned" : parked ? "failed" : "retry",
            attempts,
            nextScanAt,
            leaseToken: null,
            leaseJobId: null,
            leaseUntil: null,
            lastScanAt: summary.finishedAt,
            latest: summary,
          },
          $inc: { scanCount: 1 },
        },
      );
      if (updated.modifiedCount === 1) return "current";
    }
    await this.#c.domains.updateOne(
      {
        _id: result.domain,
        $or: [{ lastScanAt: null }, { lastScanAt: { $lt: summary.finishedAt } }],
      },
      {
        $set: { lastScanAt: summary.finishedAt, latest: summary },
        $inc: { scanCount: 1 },
      },
    );
    return "stale";
  }

  async get(domain: string): Promise<DomainDoc | null> {
    return this.#c.domains.findOne({ _id: domain });
  }
}
