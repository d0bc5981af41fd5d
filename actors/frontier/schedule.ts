/**
 * When each domain is next due, written in one place. The due queue (store/due-queue.ts) must never
 * miss a domain that is due, so every change of a domain's nextScanAt pushes its due entry first and
 * writes the domain after: a crash in between leaves a stale entry, which a round drops, never a
 * missing one. The one exception is admission's upsert path (admission.ts), where only the upsert
 * tells which domains are new; the sweep (DueQueue.repair) covers its crash window.
 */
import type { Collection, Filter, UpdateFilter } from "mongodb";
import type { Config } from "../../config/mod.ts";
import type { DeadLetter } from "../../protocol/mod.ts";
import type { Stores } from "../store/database.ts";
import type { FrontierDoc } from "../store/documents.ts";
import type { DueEntry, DueQueue } from "../store/due-queue.ts";

export type FrontierPolicy = Config["frontier"];

/** What a domain's rank in the due queue is read from. */
export type Rankable = { _id: string; region: string; manual?: boolean | undefined; priority?: number | undefined };

/** What every frontier module works with: the stores, the policy, the schedule. */
export interface FrontierContext {
  stores: Stores;
  domains: Collection<FrontierDoc>;
  policy: FrontierPolicy;
  schedule: Schedule;
  /** Stores a dead letter (a parked domain's, with its attempt history); without it, none is sent. */
  deadLetter: ((dl: DeadLetter) => Promise<void>) | undefined;
  /** Source of the backoff jitter (tests). */
  random: (() => number) | undefined;
}

export class Schedule {
  readonly queue: DueQueue;
  readonly #stores: Stores;
  readonly #domains: Collection<FrontierDoc>;

  constructor(stores: Stores, policy: FrontierPolicy) {
    this.#stores = stores;
    this.#domains = stores.domains;
    this.queue = stores.server.dueQueue(
      { domains: this.#domains, frontierDue: stores.frontierDue },
      {
        bucketMs: policy.dueBucketMs,
        priorities: [...Object.values(policy.sourcePriority), policy.defaultPriority],
        defaultPriority: policy.defaultPriority,
      },
    );
  }

  /** The due entry of a domain that will be due at `due`. */
  entry(doc: Rankable, due: Date): DueEntry {
    return { region: doc.region, rank: this.queue.rankOf(doc), domain: doc._id, due };
  }

  /**
   * Moves domains' nextScanAt: their entries first, then `write` (which sets each domain's
   * nextScanAt to the time given here). Domains given a null time (parked) need no entry.
   */
  async moveMany<T>(moves: ReadonlyArray<{ doc: Rankable; nextScanAt: Date | null }>, write: () => Promise<T>) {
    await this.queue.push(moves.filter((m) => m.nextScanAt !== null).map((m) => this.entry(m.doc, m.nextScanAt!)));
    return write();
  }

  /**
   * Moves one domain's nextScanAt with `update` (which must not set nextScanAt itself), applied only
   * if the domain matches `condition` (absent: by `_id` alone, for a caller that just read it).
   * True when the domain was written.
   */
  async writeSchedule(
    doc: Rankable,
    nextScanAt: Date | null,
    update: UpdateFilter<FrontierDoc> & { $set?: Partial<FrontierDoc> },
    condition?: Filter<FrontierDoc>,
  ): Promise<boolean> {
    const full = { ...update, $set: { ...update.$set, nextScanAt } } as UpdateFilter<FrontierDoc>;
    return this.moveMany([{ doc, nextScanAt }], async () =>
      condition
        ? this.#stores.server.updateIf(this.#domains, doc._id, condition, full)
        : (await this.#domains.updateOne({ _id: doc._id }, full)).matchedCount === 1,
    );
  }
}
