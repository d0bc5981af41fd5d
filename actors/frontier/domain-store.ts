/**
 * The frontier's state, one object for its callers (the frontier actor, the dispatcher, the
 * results writer, the rescan route): admission (admission.ts), leasing and per-IP politeness
 * (leasing.ts, politeness.ts), outcomes and what they schedule (outcomes.ts), parked letters
 * (parked-letters.ts), every move of nextScanAt through the schedule (schedule.ts). Every write is
 * keyed and conditional, so redelivered messages change nothing twice, and a lease is checked by
 * its owner token on write-back.
 */
import type { Collection } from "mongodb";
import type { DeadLetter, ScanResult } from "../../protocol/mod.ts";
import type { Stores } from "../store/database.ts";
import type { DomainDoc, FrontierDoc, ScanSummary } from "../store/documents.ts";
import { admit, priorityOf, type AdmissionInput } from "./admission.ts";
import {
  countInFlight,
  leaseDue,
  releaseLease,
  requestRescan,
  type LeasedJob,
  type RescanRequest,
  type RoundStats,
} from "./leasing.ts";
import { adaptiveInterval, fontsKeyOf, recordOutcome, rescanIntervalFor } from "./outcomes.ts";
import { Schedule, type FrontierContext, type FrontierPolicy } from "./schedule.ts";

export type { FrontierDoc, FrontierPolicy, LeasedJob, RescanRequest };
export { fontsKeyOf };

export interface DomainStoreOptions {
  /** Stores a dead letter (a parked domain's, with its attempt history); without it, none is sent. */
  deadLetter?: (dl: DeadLetter) => Promise<void>;
  /** Source of the backoff jitter (tests). */
  random?: () => number;
}

export class DomainStore {
  readonly #ctx: FrontierContext;
  readonly #domains: Collection<FrontierDoc>;
  /** Point operations of the last leaseDue round (bench, tests). */
  lastRound: RoundStats = { indexReads: 0, domainReads: 0, stale: 0, claims: 0 };

  constructor(stores: Stores, policy: FrontierPolicy, opts: DomainStoreOptions = {}) {
    this.#domains = stores.domains;
    this.#ctx = {
      stores,
      domains: this.#domains,
      policy,
      schedule: new Schedule(stores, policy),
      deadLetter: opts.deadLetter,
      random: opts.random,
    };
  }

  /**
   * Pushes the due entries of domains written to `domains` directly (bulk loads, the bench), as
   * the store's own writes would have.
   */
  async indexDomains(
    docs: ReadonlyArray<Pick<FrontierDoc, "_id" | "region" | "nextScanAt" | "manual" | "priority">>,
  ): Promise<void> {
    const { schedule } = this.#ctx;
    await schedule.queue.push(docs.filter((d) => d.nextScanAt).map((d) => schedule.entry(d, d.nextScanAt!)));
  }

  /** The sweep: puts back the region's missing due entries; returns how many were added. */
  repairDueIndex(region: string): Promise<number> {
    return this.#ctx.schedule.queue.repair(region);
  }

  priorityOf(source: string): number {
    return priorityOf(this.#ctx, source);
  }

  adaptiveInterval(doc: FrontierDoc, fontsKey: string): number {
    return adaptiveInterval(this.#ctx.policy, doc, fontsKey);
  }

  rescanIntervalFor(priority: number | undefined): number {
    return rescanIntervalFor(this.#ctx.policy, priority);
  }

  /** Inserts new domains as due now; a known domain only gains the source (admission.ts). */
  admit(admissions: readonly AdmissionInput[], now = new Date(), opts: { fresh?: boolean } = {}): Promise<void> {
    return admit(this.#ctx, admissions, now, opts);
  }

  countInFlight(region: string, now = new Date()): Promise<number> {
    return countInFlight(this.#ctx, region, now);
  }

  /** Leases up to `limit` due domains in one round (leasing.ts). */
  leaseDue(region: string, limit: number, now = new Date()): Promise<LeasedJob[]> {
    return leaseDue(this.#ctx, region, limit, now, (s) => (this.lastRound = s));
  }

  requestRescan(domain: string, now = new Date()): Promise<RescanRequest> {
    return requestRescan(this.#ctx, domain, now);
  }

  releaseLease(domain: string, token: string, now = new Date()): Promise<void> {
    return releaseLease(this.#ctx, domain, token, now);
  }

  /** Applies a scan outcome (outcomes.ts). */
  recordOutcome(result: ScanResult, summary: ScanSummary, now = new Date()): Promise<"current" | "stale"> {
    return recordOutcome(this.#ctx, result, summary, now);
  }

  async get(domain: string): Promise<DomainDoc | null> {
    return this.#domains.findOne({ _id: domain });
  }
}
