/**
 * The frontier's state in MongoDB: admitting domains, leasing due ones as jobs, and recording
 * outcomes. Every write is keyed and conditional, so redelivered messages change nothing twice,
 * and a lease is checked by its owner token on write-back.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Collection } from "mongodb";
import type { Collections, HostDoc } from "../store/database.ts";
import type { DomainDoc, ScanSummary } from "../store/documents.ts";
import {
  schemaHeader,
  subjects,
  HEADERS,
  type Admission,
  type DeadLetter,
  type ScanJob,
  type ScanResult,
} from "../../protocol/mod.ts";
import type { Config } from "../../config/mod.ts";
import { backoffDelay, classifyFailure, retryPolicy, type AttemptRecord, type Cause } from "./failures.ts";

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
  /** The IP address of the last scan (per-IP politeness); null or absent before one is known. */
  ip?: string | null;
  /** The last `historyLimit` scan attempts, oldest first. */
  history?: AttemptRecord[];
  /** When the domain was parked after its last attempt (null while it is scheduled). */
  parkedAt?: Date | null;
};

export interface DomainStoreOptions {
  /** Stores a dead letter (a parked domain's, with its attempt history); without it, none is sent. */
  deadLetter?: (dl: DeadLetter) => Promise<void>;
  /** Source of the backoff jitter (tests). */
  random?: () => number;
}

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
  readonly #opts: DomainStoreOptions;

  constructor(collections: Collections, policy: FrontierPolicy, opts: DomainStoreOptions = {}) {
    this.#c = collections;
    this.#domains = collections.domains;
    this.#policy = policy;
    this.#opts = opts;
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
    // A replayed dead letter of a parked domain gives it its attempts back and makes it due.
    const revive = admissions.filter(({ admission: a }) => a.revive === true);
    if (revive.length > 0) {
      await this.#domains.bulkWrite(
        revive.map(({ admission: a }) => ({
          updateOne: {
            filter: { _id: a.domain, state: "failed" as const },
            update: { $set: { state: "queued" as const, attempts: 0, nextScanAt: now, parkedAt: null } },
          },
        })),
        { ordered: false },
      );
    }
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
      .find(
        { region, nextScanAt: { $lte: now } },
        { projection: { _id: 1, nextScanAt: 1, priority: 1, manual: 1, ip: 1, state: 1, attempts: 1, leaseToken: 1 } },
      )
      .sort({ manual: -1, priority: -1, nextScanAt: 1 })
      .hint("due_by_priority")
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
    const listed = await this.dueCursor(region, limit, now).toArray();
    if (listed.length === 0) return [];
    const parked = await this.#expiredLeases(listed, now);
    const due = listed.filter((d) => !parked.has(d._id));
    const { allowed: candidates, hosts } = await this.#perIpLimit(region, due, now);
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
    await this.#recordIpLeases(hosts, won, leaseUntil, now);
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
   * Due domains still `leased` had no result within their lease (the scanner, or its browser, died
   * on them every time): each such attempt goes into the history as `lease-expired`, and after the
   * cause's last attempt the domain is parked with a dead letter instead of being leased again.
   * Returns the parked ones.
   */
  async #expiredLeases(due: ReadonlyArray<Partial<FrontierDoc>>, now: Date): Promise<Set<string>> {
    const parked = new Set<string>();
    const policy = retryPolicy(this.#policy, { cause: "lease-expired", httpStatus: null });
    for (const d of due) {
      if (d.state !== "leased" || !d._id || !d.leaseToken) continue;
      const doc = await this.#domains.findOne({ _id: d._id, leaseToken: d.leaseToken });
      if (!doc) continue;
      const entry: AttemptRecord = {
        at: doc.leaseUntil ?? now,
        attempt: doc.attempts,
        jobId: `${doc._id}:${d.leaseToken}`,
        cause: "lease-expired",
        kind: null,
        httpStatus: null,
        reason: "no result within the lease",
        node: "",
      };
      const history = [...(doc.history ?? []), entry].slice(-this.#policy.historyLimit);
      const park = doc.attempts >= policy.maxAttempts;
      if (park && this.#opts.deadLetter) {
        const cause = { cause: "lease-expired" as const, httpStatus: null, reason: entry.reason! };
        await this.#opts.deadLetter(parkedLetter(doc, cause, doc.attempts, history, entry.at.toISOString(), now));
      }
      const updated = await this.#domains.updateOne(
        { _id: doc._id, leaseToken: d.leaseToken },
        park
          ? {
              $set: {
                history,
                state: "failed",
                nextScanAt: null,
                parkedAt: now,
                manual: false,
                leaseToken: null,
                leaseJobId: null,
                leaseUntil: null,
              },
            }
          : { $set: { history } },
      );
      if (park && updated.modifiedCount === 1) parked.add(doc._id);
    }
    return parked;
  }

  /**
   * Per-IP politeness: of the due domains whose IP is known (from their last scan), at most
   * `maxLeasesPerIp` may hold a live lease per address, and leases on one address start at least
   * `ipSpacingMs` apart (so one per round). The ones held back are made due again a little later,
   * so a feed full of one host's domains cannot fill every round with domains that must wait.
   */
  async #perIpLimit(
    region: string,
    due: ReadonlyArray<Pick<FrontierDoc, "_id" | "ip">>,
    now: Date,
  ): Promise<{ allowed: Array<Pick<FrontierDoc, "_id" | "ip">>; hosts: Map<string, HostDoc> }> {
    const hosts = new Map<string, HostDoc>();
    const ips = [...new Set(due.map((d) => d.ip).filter((ip): ip is string => typeof ip === "string" && ip !== ""))];
    if (ips.length === 0) return { allowed: [...due], hosts };
    const docs = await this.#c.frontierHosts.find({ _id: { $in: ips.map((ip) => hostKey(region, ip)) } }).toArray();
    const byId = new Map(docs.map((d) => [d._id, d]));
    const room = new Map<string, number>();
    for (const ip of ips) {
      const id = hostKey(region, ip);
      const doc = byId.get(id);
      const live = (doc?.leases ?? []).filter((l) => l.until.getTime() > now.getTime());
      hosts.set(ip, { _id: id, leases: live, lastAt: doc?.lastAt ?? null });
      const spaced =
        this.#policy.ipSpacingMs === 0 ||
        !doc?.lastAt ||
        now.getTime() - doc.lastAt.getTime() >= this.#policy.ipSpacingMs;
      const free = Math.max(0, this.#policy.maxLeasesPerIp - live.length);
      room.set(ip, spaced ? (this.#policy.ipSpacingMs > 0 ? Math.min(1, free) : free) : 0);
    }
    const allowed: Array<Pick<FrontierDoc, "_id" | "ip">> = [];
    const held: string[] = [];
    for (const d of due) {
      const ip = typeof d.ip === "string" && d.ip !== "" ? d.ip : null;
      if (ip === null) {
        allowed.push(d);
        continue;
      }
      const left = room.get(ip) ?? 0;
      if (left > 0) {
        room.set(ip, left - 1);
        allowed.push(d);
      } else held.push(d._id);
    }
    if (held.length > 0) {
      const later = new Date(now.getTime() + Math.max(this.#policy.ipSpacingMs, this.#policy.dispatchIntervalMs));
      await this.#domains.updateMany(
        { _id: { $in: held }, region, nextScanAt: { $lte: now } },
        { $set: { nextScanAt: later } },
      );
    }
    return { allowed, hosts };
  }

  /** Adds this round's leases to their addresses. */
  async #recordIpLeases(
    hosts: ReadonlyMap<string, HostDoc>,
    won: ReadonlyArray<FrontierDoc>,
    leaseUntil: Date,
    now: Date,
  ): Promise<void> {
    const added = new Map<string, string[]>();
    for (const doc of won) {
      if (typeof doc.ip === "string" && hosts.has(doc.ip)) added.set(doc.ip, [...(added.get(doc.ip) ?? []), doc._id]);
    }
    await Promise.all(
      [...added].map(([ip, domains]) => {
        const host = hosts.get(ip)!;
        const leases = [
          ...host.leases.filter((l) => !domains.includes(l.d)),
          ...domains.map((d) => ({ d, until: leaseUntil })),
        ];
        return this.#c.frontierHosts.updateOne({ _id: host._id }, { $set: { leases, lastAt: now } }, { upsert: true });
      }),
    );
  }

  /** A domain's lease on its address ends (its scan answered, or the lease was given back). */
  async #releaseIp(region: string, domain: string, ip: string | null | undefined): Promise<void> {
    if (typeof ip !== "string" || ip === "") return;
    const id = hostKey(region, ip);
    const host = await this.#c.frontierHosts.findOne({ _id: id });
    if (!host?.leases.some((l) => l.d === domain)) return;
    await this.#c.frontierHosts.updateOne({ _id: id }, { $set: { leases: host.leases.filter((l) => l.d !== domain) } });
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
    const doc = await this.#domains.findOne({ _id: domain, leaseToken: token }, { projection: { region: 1, ip: 1 } });
    if (doc) await this.#releaseIp(doc.region, domain, doc.ip);
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
      const cause = ok ? null : classifyFailure(result.report);
      const retry = cause ? retryPolicy(this.#policy, cause) : null;
      const attempts = ok ? 0 : current.attempts;
      const parked = retry !== null && attempts >= retry.maxAttempts;
      const fontsKey = ok ? fontsKeyOf(result) : current.fontsKey;
      const rescanMs = ok && fontsKey ? this.adaptiveInterval(current, fontsKey) : current.rescanMs;
      const nextScanAt =
        ok && rescanMs
          ? new Date(now.getTime() + rescanMs)
          : parked || !retry
            ? null
            : new Date(now.getTime() + backoffDelay(retry, attempts, this.#opts.random));
      const entry: AttemptRecord = {
        at: summary.finishedAt,
        attempt: result.attempt,
        jobId: result.jobId,
        cause: cause?.cause ?? "ok",
        kind: cause?.kind ?? null,
        httpStatus: cause?.httpStatus ?? null,
        reason: cause?.reason ?? null,
        node: result.scannerNode,
      };
      const history = [...(current.history ?? []), entry].slice(-this.#policy.historyLimit);
      if (parked && cause && this.#opts.deadLetter) {
        // Stored before the domain is parked: if this fails the result is retried, and a
        // retry that parks again sends the same letter (same payload, deduplicated).
        await this.#opts.deadLetter(parkedLetter(current, cause, attempts, history, result.report.finishedAt, now));
      }
      await this.#releaseIp(current.region, current._id, current.ip);
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
            history,
            parkedAt: parked ? now : null,
            ip: result.report.address ?? current.ip ?? null,
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

const hostKey = (region: string, ip: string) => `${region}|${ip}`;

/**
 * The dead letter of a domain parked after its last attempt: its payload is an admission with
 * `revive`, so `glyphscan dlq replay` gives the domain its attempts back; it carries the history.
 */
function parkedLetter(
  doc: FrontierDoc,
  cause: Pick<Cause, "httpStatus" | "reason"> & { cause: AttemptRecord["cause"] },
  attempts: number,
  history: readonly AttemptRecord[],
  finishedAt: string,
  now: Date,
): DeadLetter {
  const admission: Admission = {
    domain: doc._id,
    seedUrl: doc.seedUrl,
    source: doc.sources[0] ?? "dlq",
    region: doc.region,
    admittedAt: finishedAt,
    revive: true,
  };
  const status = cause.httpStatus === null ? "" : ` ${cause.httpStatus}`;
  return {
    stage: "frontier",
    code: "retries-exhausted",
    reason: `${cause.cause}${status} after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${cause.reason}`,
    subject: subjects.admit(doc.region),
    stream: null,
    streamSeq: null,
    deliveries: attempts,
    headers: {
      [HEADERS.schema]: schemaHeader("admission"),
      ...(doc.traceparent ? { [HEADERS.traceparent]: doc.traceparent } : {}),
    },
    payloadBase64: Buffer.from(JSON.stringify(admission)).toString("base64"),
    failedAt: now.toISOString(),
    history: history.map((h) => ({ ...h, at: h.at.toISOString() })),
  };
}
