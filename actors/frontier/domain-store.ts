/**
 * The frontier's state in MongoDB: admitting domains, leasing due ones as jobs, and recording
 * outcomes. Every write is keyed and conditional, so redelivered messages change nothing twice,
 * and a lease is checked by its owner token on write-back: in the update's filter on MongoDB, on
 * a read by `_id` just before it on FerretDB (guardedById says why).
 */
import { createHash, randomBytes } from "node:crypto";
import { MongoBulkWriteError, type Collection } from "mongodb";
import { guardedById, type Collections, type HostDoc } from "../store/database.ts";
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
import { mapLimit } from "../../cluster/async.ts";
import { DueIndex, type DueCandidate, type DueRoundStats } from "./due-index.ts";

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

/** Admission upserts per bulk write. */
const UPSERT_CHUNK = 100;
/** Claims (point updates) in flight at once within a round. */
const CLAIM_PARALLEL = 16;

/** What a round reads of a domain to validate and order it. */
const DUE_PROJECTION = {
  _id: 1,
  region: 1,
  nextScanAt: 1,
  priority: 1,
  manual: 1,
  ip: 1,
  state: 1,
  attempts: 1,
  leaseToken: 1,
} as const;
type DueDomain = Pick<
  FrontierDoc,
  "_id" | "region" | "nextScanAt" | "priority" | "manual" | "ip" | "state" | "attempts" | "leaseToken"
>;

export interface LeasedJob {
  job: ScanJob;
  traceparent: string | undefined;
}

export class DomainStore {
  readonly #c: Collections;
  readonly #domains: Collection<FrontierDoc>;
  readonly #policy: FrontierPolicy;
  readonly #opts: DomainStoreOptions;
  readonly #due: DueIndex;
  /** Point operations of the last leaseDue round (bench, tests). */
  lastRound: DueRoundStats & { claims: number } = { indexReads: 0, domainReads: 0, stale: 0, claims: 0 };

  constructor(collections: Collections, policy: FrontierPolicy, opts: DomainStoreOptions = {}) {
    this.#c = collections;
    this.#domains = collections.domains;
    this.#policy = policy;
    this.#opts = opts;
    this.#due = new DueIndex(collections.frontierDue, {
      bucketMs: policy.dueBucketMs,
      priorities: [...Object.values(policy.sourcePriority), policy.defaultPriority],
    });
  }

  /** The due index entry of a domain that will be due at `due` (written before the domain's change). */
  #entry(doc: { _id: string; region: string; manual?: boolean; priority?: number }, due: Date) {
    return { region: doc.region, rank: this.#due.rankOf(doc, this.#policy.defaultPriority), domain: doc._id, due };
  }

  /**
   * Indexes domains written to `domains` directly (bulk loads, the bench): their due entries, as
   * the store's own writes would have made them.
   */
  async indexDomains(
    docs: ReadonlyArray<Pick<FrontierDoc, "_id" | "region" | "nextScanAt" | "manual" | "priority">>,
  ): Promise<void> {
    await this.#due.add(docs.filter((d) => d.nextScanAt).map((d) => this.#entry(d, d.nextScanAt!)));
  }

  /**
   * The sweep: puts back the due entries of a region's domains that are missing (a crash between
   * a domain write and its index write, a direct write to `domains`). One streamed read of the
   * region's domains; returns how many entries were added.
   */
  async repairDueIndex(region: string): Promise<number> {
    const docs = this.#domains
      .find({ region }, { projection: { _id: 1, nextScanAt: 1, manual: 1, priority: 1 } })
      .batchSize(1000);
    return this.#due.repair(region, docs, this.#policy.defaultPriority);
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

  /**
   * Inserts new domains as due now; a known domain only gains the source. With `fresh` (the
   * caller's Bloom filter says these are new) they are inserted at once, their due entries written
   * first, and only the ones MongoDB already has (a duplicate key: seen before the filter's window)
   * take the upsert; without it, every admission is an upsert and the new ones are indexed after.
   */
  async admit(
    admissions: ReadonlyArray<{
      admission: Admission;
      traceparent: string | undefined;
    }>,
    now = new Date(),
    { fresh = false }: { fresh?: boolean } = {},
  ): Promise<void> {
    if (admissions.length === 0) return;
    // A replayed dead letter of a parked domain gives it its attempts back and makes it due.
    for (const { admission: a } of admissions.filter(({ admission: a }) => a.revive === true)) {
      const projection = { region: 1, manual: 1, priority: 1, state: 1 };
      const doc = await this.#domains.findOne({ _id: a.domain }, { projection });
      if (doc?.state !== "failed") continue;
      await this.#due.add([this.#entry(doc, now)]);
      await this.#domains.updateOne(guardedById(this.#c, a.domain, { state: "failed" as const }), {
        $set: { state: "queued" as const, attempts: 0, nextScanAt: now, parkedAt: null },
      });
    }
    let upserts = admissions;
    if (fresh) {
      const docs = new Map<string, FrontierDoc>();
      for (const { admission: a, traceparent } of admissions) {
        const doc = docs.get(a.domain);
        if (doc) {
          if (!doc.sources.includes(a.source)) doc.sources.push(a.source);
          doc.priority = Math.max(doc.priority!, this.priorityOf(a.source));
          continue;
        }
        docs.set(a.domain, {
          _id: a.domain,
          ...this.#newDomain(a, traceparent ?? null, now),
          sources: [a.source],
          lastSeenAt: now,
          priority: this.priorityOf(a.source),
        });
      }
      await this.#due.add([...docs.values()].map((d) => this.#entry(d, now)));
      const known = new Set<string>();
      try {
        await this.#domains.insertMany([...docs.values()], { ordered: false });
      } catch (err) {
        if (!(err instanceof MongoBulkWriteError)) throw err;
        const errors: Array<{ code: number; index: number }> = [err.writeErrors].flat();
        if (errors.some((e) => e.code !== 11000)) throw err;
        const ids = [...docs.keys()];
        for (const e of errors) known.add(ids[e.index]!);
      }
      upserts = admissions.filter(({ admission: a }) => known.has(a.domain));
      if (upserts.length === 0) return;
    }
    // In chunks: FerretDB v1 stalls on bulk upserts of 1,000 (seen in the ingest bench), not on 100.
    const upserted: Array<{ k: number; id: unknown }> = [];
    for (let i = 0; i < upserts.length; i += UPSERT_CHUNK) {
      const chunk = upserts.slice(i, i + UPSERT_CHUNK);
      const result = await this.#upsertChunk(chunk, now);
      for (const [k, id] of Object.entries(result.upsertedIds)) upserted.push({ k: i + Number(k), id });
    }
    // Indexed after the upsert (only it tells which are new); a crash in between is the sweep's.
    const inserted = new Map<string, { _id: string; region: string; priority: number }>();
    for (const { k, id } of upserted) {
      const a = upserts[k]!.admission;
      inserted.set(String(id), { _id: String(id), region: a.region, priority: -Infinity });
    }
    // An upserted domain's priority is the highest of the batch's sources, as `$max` makes it.
    for (const { admission: a } of upserts) {
      const d = inserted.get(a.domain);
      if (d) d.priority = Math.max(d.priority, this.priorityOf(a.source));
    }
    await this.#due.add([...inserted.values()].map((d) => this.#entry(d, now)));
  }

  /** One bulk write of admission upserts: a new domain gets its first fields, a known one the source. */
  #upsertChunk(upserts: ReadonlyArray<{ admission: Admission; traceparent: string | undefined }>, now: Date) {
    return this.#domains.bulkWrite(
      upserts.map(({ admission: a, traceparent }) => ({
        updateOne: {
          filter: { _id: a.domain },
          update: {
            $setOnInsert: this.#newDomain(a, traceparent ?? null, now),
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

  /** The fields a new domain starts with. */
  #newDomain(a: Admission, traceparent: string | null, now: Date) {
    return {
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
      traceparent,
    };
  }

  /** Jobs not yet answered whose lease still runs: what the region's scanners hold. */
  async countInFlight(region: string, now = new Date()): Promise<number> {
    return this.#c.domains.countDocuments({
      region,
      state: "leased",
      leaseUntil: { $gt: now },
    });
  }

  /**
   * Leases up to `limit` due domains in one round, without transactions and with `_id` point
   * operations only: the due index yields the round's due domains in dispatch order (manual
   * rescans, then priority, then soonest), each checked against its domain document (an index
   * entry whose due time is no longer the domain's nextScanAt is stale and dropped). Each is then
   * claimed by one update by `_id`, after the index entry of its lease's end is written, so a job
   * whose scanner vanished becomes due again by itself when the lease runs out. The claim is not
   * conditional in the database (FerretDB v1 scans the whole collection for any filter beyond
   * `_id`): a region's dispatchers are kept apart by its leader lease, and rounds of two stores one
   * after the other never claim a domain twice, since the first moves its nextScanAt.
   */
  async leaseDue(region: string, limit: number, now = new Date()): Promise<LeasedJob[]> {
    if (limit <= 0) return [];
    const round = await this.#due.round<DueDomain>(
      region,
      limit,
      now,
      (_id) => this.#domains.findOne<DueDomain>({ _id }, { projection: DUE_PROJECTION }),
      this.#policy.dueBucketMs,
    );
    this.lastRound = { ...round.stats, claims: 0 };
    if (round.candidates.length === 0) {
      await round.commit([]);
      return [];
    }
    // Within a rank (manual rescans of every priority share one): highest priority, then soonest.
    const rankIndex = new Map(this.#due.ranks.map((r, i) => [r, i]));
    const listed = [...round.candidates]
      .sort(
        (a, b) =>
          rankIndex.get(a.rank)! - rankIndex.get(b.rank)! ||
          (b.doc.priority ?? this.#policy.defaultPriority) - (a.doc.priority ?? this.#policy.defaultPriority) ||
          a.due - b.due,
      )
      .map((c) => c.doc);
    const parked = await this.#expiredLeases(listed, now);
    const due = listed.filter((d) => !parked.has(d._id));
    const { allowed: candidates, hosts } = await this.#perIpLimit(region, due, now);
    const token = `${now.getTime().toString(36)}-${randomBytes(6).toString("hex")}`;
    const leaseUntil = new Date(now.getTime() + this.#policy.leaseMs);
    await this.#due.add(candidates.map((c) => this.#entry(c, leaseUntil)));
    const claimed = await mapLimit(candidates, CLAIM_PARALLEL, (c) =>
      this.#domains.findOneAndUpdate(
        { _id: c._id },
        {
          $set: { state: "leased", leaseToken: token, leaseJobId: null, leaseUntil, nextScanAt: leaseUntil },
          $inc: { attempts: 1 },
        },
        { returnDocument: "after" },
      ),
    );
    const won = claimed.filter((d): d is NonNullable<typeof d> => d !== null && d.leaseToken === token);
    this.lastRound.claims = candidates.length;
    // Every candidate is handled: claimed, parked, or moved later (per-IP), each with its new entry.
    await round.commit(round.candidates as Iterable<DueCandidate<DueDomain>>);
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
      const doc = await this.#domains.findOne({ _id: d._id });
      if (!doc || doc.leaseToken !== d.leaseToken) continue;
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
      // By `_id` only (FerretDB scans for more): the round's leader read the token just now.
      const updated = await this.#domains.updateOne(
        { _id: doc._id },
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
    due: readonly DueDomain[],
    now: Date,
  ): Promise<{ allowed: DueDomain[]; hosts: Map<string, HostDoc> }> {
    const hosts = new Map<string, HostDoc>();
    const ips = [...new Set(due.map((d) => d.ip).filter((ip): ip is string => typeof ip === "string" && ip !== ""))];
    if (ips.length === 0) return { allowed: [...due], hosts };
    // Point reads, not `$in` (FerretDB v1 answers `$in` by reading the whole collection).
    const docs = await mapLimit(ips, CLAIM_PARALLEL, (ip) =>
      this.#c.frontierHosts.findOne({ _id: hostKey(region, ip) }),
    );
    const byId = new Map(docs.filter((d) => d !== null).map((d) => [d._id, d]));
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
    const allowed: DueDomain[] = [];
    const held: DueDomain[] = [];
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
      } else held.push(d);
    }
    if (held.length > 0) {
      const later = new Date(now.getTime() + Math.max(this.#policy.ipSpacingMs, this.#policy.dispatchIntervalMs));
      await this.#due.add(held.map((d) => this.#entry(d, later)));
      await mapLimit(held, CLAIM_PARALLEL, (d) =>
        this.#domains.updateOne({ _id: d._id }, { $set: { nextScanAt: later } }),
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
    const projection = { region: 1, priority: 1, state: 1, leaseUntil: 1 };
    const doc = await this.#domains.findOne({ _id: domain }, { projection });
    if (!doc) return "unknown";
    if (doc.state === "leased" && doc.leaseUntil && doc.leaseUntil > now) return "leased";
    // The entry first: if the domain turns out leased, it is stale and dropped when read.
    await this.#due.add([this.#entry({ ...doc, manual: true }, now)]);
    const unleased = {
      $or: [{ state: { $ne: "leased" as const } }, { leaseUntil: null }, { leaseUntil: { $lte: now } }],
    };
    const updated = await this.#domains.updateOne(guardedById(this.#c, domain, unleased), {
      $set: { nextScanAt: now, manual: true, attempts: 0 },
    });
    if (updated.matchedCount === 1) return "requested";
    return (await this.#domains.countDocuments({ _id: domain })) === 1 ? "leased" : "unknown";
  }

  /** Gives a lease back at once (its job could not be published), so the domain is due again. */
  async releaseLease(domain: string, token: string, now = new Date()): Promise<void> {
    const doc = await this.#domains.findOne(
      { _id: domain },
      { projection: { region: 1, ip: 1, leaseToken: 1, manual: 1, priority: 1 } },
    );
    if (doc?.leaseToken !== token) return;
    await this.#releaseIp(doc.region, domain, doc.ip);
    await this.#due.add([this.#entry(doc, now)]);
    await this.#c.domains.updateOne(guardedById(this.#c, domain, { leaseToken: token }), {
      $set: {
        state: "queued",
        leaseToken: null,
        leaseUntil: null,
        nextScanAt: now,
      },
      $inc: { attempts: -1 },
    });
  }

  /**
   * Applies a scan outcome. On the current lease it schedules the next scan (or a retry with
   * exponential backoff, or parks the domain after the last attempt). A late result of an
   * expired lease is still kept as the latest scan when it is newer, but schedules nothing.
   */
  async recordOutcome(result: ScanResult, summary: ScanSummary, now = new Date()): Promise<"current" | "stale"> {
    const ok = result.report.status === "ok";
    const doc = await this.#domains.findOne({ _id: result.domain });
    const current = doc?.leaseToken === result.leaseToken ? doc : null;
    // A scan with verdicts becomes the domain's assessed scan when it is the newest one.
    const newer = (d: FrontierDoc | null): boolean =>
      summary.compliance != null && !(d?.assessed && d.assessed.finishedAt >= summary.finishedAt);
    const assessed = (d: FrontierDoc | null) =>
      newer(d) ? { assessed: { jobId: result.jobId, finishedAt: summary.finishedAt } } : {};
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
      const manual = !ok && !parked && current.manual === true;
      if (nextScanAt) await this.#due.add([this.#entry({ ...current, manual }, nextScanAt)]);
      const updated = await this.#domains.updateOne(
        guardedById(this.#c, result.domain, { leaseToken: result.leaseToken }),
        {
          $set: {
            ...(fontsKey === undefined ? {} : { fontsKey }),
            ...(rescanMs === undefined ? {} : { rescanMs }),
            // A manual request stays pending through retries, until a scan answers it or parks.
            manual,
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
            ...assessed(current),
          },
          $inc: { scanCount: 1 },
        },
      );
      if (updated.modifiedCount === 1) return "current";
    }
    // A stale result: newer than what the domain shows, it becomes the latest scan.
    const seen = current ? await this.#domains.findOne({ _id: result.domain }) : doc;
    if (!seen) return "stale";
    if (!seen.lastScanAt || seen.lastScanAt < summary.finishedAt) {
      await this.#c.domains.updateOne(
        guardedById(this.#c, result.domain, {
          $or: [{ lastScanAt: null }, { lastScanAt: { $lt: summary.finishedAt } }],
        }),
        { $set: { lastScanAt: summary.finishedAt, latest: summary, ...assessed(seen) }, $inc: { scanCount: 1 } },
      );
    } else if (newer(seen)) {
      await this.#c.domains.updateOne(
        guardedById(this.#c, result.domain, {
          $or: [{ assessed: null }, { "assessed.finishedAt": { $lt: summary.finishedAt } }],
        }),
        { $set: assessed(seen) },
      );
    }
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
