/**
 * The frontier's state in MongoDB: admitting domains, leasing due ones as jobs, and recording
 * outcomes. Every write is keyed and conditional, so redelivered messages change nothing twice,
 * and a lease is checked by its owner token on write-back.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Collection } from "mongodb";
import type { Collections } from "../store/database.ts";
import type { DomainDoc, ScanSummary } from "../store/documents.ts";
import type { Admission, ScanJob, ScanResult } from "../../protocol/mod.ts";
import type { Config } from "../../config/mod.ts";

export type FrontierPolicy = Config["frontier"];

/**
 * The frontier's own fields on a domain document. Dispatch order: manual rescans first, then
 * highest `priority` (the highest of the domain's sources'), then soonest due.
 */
export type FrontierDoc = DomainDoc & {
  priority?: number;
  /** A manual rescan is pending: set by requestRescan, cleared by the scan that answers it. */
  manual?: boolean;
  /** SHA-256 of the sorted set of font file digests of the last successful scan. */
  fontsKey?: string;
  /** The adaptive interval that scheduled the next scan after the last successful one. */
  rescanMs?: number;
};

/** One digest for a scan's set of font files: order and repeats do not matter. */
export function fontsKeyOf(result: ScanResult): string {
  const shas = [...new Set(result.report.files.map((f) => f.sha256))].sort();
  return createHash("sha256").update(shas.join("\n")).digest("hex");
}

export type RescanRequest = "requested" | "leased" | "unknown";

export interface LeasedJob {
  job: ScanJob;
  traceparent: string | undefined;
}

export class DomainStore {
  readonly #c: Collections;
  readonly #domains: Collection<FrontierDoc>;
  readonly #policy: FrontierPolicy;

  constructor(collections: Collections, policy: FrontierPolicy) {
    this.#c = collections;
    this.#domains = collections.domains;
    this.#policy = policy;
  }

  /** A source's dispatch priority from config. */
  priorityOf(source: string): number {
    return this.#policy.sourcePriority[source] ?? this.#policy.defaultPriority;
  }

  /**
   * The interval to the next scan after a successful one: the priority's base interval for a first
   * scan; half the last interval when the set of font files changed, double when it did not;
   * always within [minRescanMs, maxRescanMs] (unset: a quarter and four times the base).
   */
  adaptiveInterval(doc: FrontierDoc, fontsKey: string): number {
    const base = this.rescanIntervalFor(doc.priority);
    const min = this.#policy.minRescanMs ?? base / 4;
    const max = this.#policy.maxRescanMs ?? base * 4;
    const last = doc.rescanMs ?? base;
    const next = doc.fontsKey === undefined ? base : doc.fontsKey === fontsKey ? last * 2 : last / 2;
    return Math.round(Math.min(max, Math.max(min, next)));
  }

  /** The base time between scans for a domain of this priority. */
  rescanIntervalFor(priority: number | undefined): number {
    return (
      (priority === undefined ? undefined : this.#policy.rescanIntervalByPriority[String(priority)]) ??
      this.#policy.rescanIntervalMs
    );
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
    await this.#domains.bulkWrite(
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
            $max: { priority: this.priorityOf(a.source) },
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

  /** The dispatcher's query: due domains of a region, highest priority first, then soonest. */
  dueCursor(region: string, limit: number, now = new Date()) {
    return this.#domains
      .find({ region, nextScanAt: { $lte: now } }, { projection: { _id: 1, nextScanAt: 1, priority: 1, manual: 1 } })
      .sort({ manual: -1, priority: -1, nextScanAt: 1 })
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

  /**
   * Makes a domain due now, ahead of every priority, unless a live lease holds it (then its scan
   * is already under way). A parked domain gets its attempts back.
   */
  async requestRescan(domain: string, now = new Date()): Promise<RescanRequest> {
    const updated = await this.#domains.updateOne(
      { _id: domain, $or: [{ state: { $ne: "leased" } }, { leaseUntil: null }, { leaseUntil: { $lte: now } }] },
      { $set: { nextScanAt: now, manual: true, attempts: 0 } },
    );
    if (updated.matchedCount === 1) return "requested";
    return (await this.#domains.countDocuments({ _id: domain })) === 1 ? "leased" : "unknown";
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
    const current = await this.#domains.findOne({
      _id: result.domain,
      leaseToken: result.leaseToken,
    });
    if (current) {
      const attempts = ok ? 0 : current.attempts;
      const parked = !ok && attempts >= this.#policy.maxAttempts;
      const fontsKey = ok ? fontsKeyOf(result) : current.fontsKey;
      const rescanMs = ok && fontsKey ? this.adaptiveInterval(current, fontsKey) : current.rescanMs;
      const nextScanAt =
        ok && rescanMs
          ? new Date(now.getTime() + rescanMs)
          : parked
            ? null
            : new Date(now.getTime() + this.#policy.retryBaseMs * 2 ** Math.max(0, attempts - 1));
      const updated = await this.#domains.updateOne(
        { _id: result.domain, leaseToken: result.leaseToken },
        {
          $set: {
            ...(fontsKey === undefined ? {} : { fontsKey }),
            ...(rescanMs === undefined ? {} : { rescanMs }),
            // A manual request stays pending through retries, until a scan answers it or parks.
            manual: !ok && !parked && current.manual === true,
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
