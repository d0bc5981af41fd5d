/**
 * The frontier's due queue: which domains of a region are due, in dispatch order (manual rescans,
 * then priority highest first, then soonest). The domain document stays the truth: an entry counts
 * only while its domain's nextScanAt equals the entry's due time and is not in the future, so an
 * entry pushed before a domain write that never happened is stale and never dispatched.
 *
 * Two implementations, chosen by the server adapter (server-adapter.ts): {@link IndexedDueQueue}
 * asks the domains themselves through an index on `{region, manual, priority, nextScanAt}`, and the
 * time wheel (due-wheel.ts) keeps entries of its own, read by `_id` only, for a server that serves
 * nothing else from an index.
 */
import type { Collection } from "mongodb";
import type { FrontierDoc } from "./documents.ts";

/** That `domain` will be due at `due`, in `rank` of `region`. */
export interface DueEntry {
  region: string;
  rank: string;
  domain: string;
  due: Date;
}

/** What a round reads of a domain to validate and order it. */
export const DUE_PROJECTION = {
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
export type DueDomain = Pick<
  FrontierDoc,
  "_id" | "region" | "nextScanAt" | "priority" | "manual" | "ip" | "state" | "attempts" | "leaseToken"
>;

/** A due domain as a round found it. */
export interface DueItem {
  doc: DueDomain;
  rank: string;
  /** The due time (ms) the domain was found due at. */
  due: number;
}

/** Reads of one round, for the bench and the bounded-cost test. */
export interface DueRoundStats {
  /** Reads of the queue's own documents (or queries, for the indexed queue). */
  indexReads: number;
  /** `_id` reads of domain documents (validating entries). */
  domainReads: number;
  /** Entries dropped as stale (the domain moved on or is gone). */
  stale: number;
}

/** One round's due domains, in dispatch order. */
export interface DueBatch {
  items: DueItem[];
  stats: DueRoundStats;
  /**
   * Takes the entries the caller handled (and the stale ones found) out of the queue. Every item
   * handled must have been given its next entry first (or parked): what is not removed comes
   * back next round.
   */
  remove(handled: Iterable<DueItem>): Promise<void>;
}

export interface DueQueue {
  /** Ranks in dispatch order: `m` (manual rescans) first, then priorities highest first. */
  readonly ranks: readonly string[];
  rankOf(doc: { manual?: boolean | undefined; priority?: number | undefined }): string;
  /** Records entries; called before the domain writes that move nextScanAt to them. */
  push(entries: readonly DueEntry[]): Promise<void>;
  /** Up to `limit` domains of `region` due at `now`, in dispatch order. */
  due(region: string, limit: number, now: Date): Promise<DueBatch>;
  /** Puts back entries missing after a crash or a direct write to `domains`; returns how many. */
  repair(region: string): Promise<number>;
}

export interface DueQueueOptions {
  /** Time wheel bucket width, also the grace for an entry whose domain write is on its way. */
  bucketMs: number;
  /** Every priority a source can have (config's sourcePriority values and defaultPriority). */
  priorities: readonly number[];
  defaultPriority: number;
}

/** Ranks and dispatch order, shared by both queues so they order alike. */
export class DueOrder {
  readonly ranks: readonly string[];
  readonly #priorities: number[];
  readonly #defaultPriority: number;
  readonly #rankIndex: Map<string, number>;

  constructor(opts: Pick<DueQueueOptions, "priorities" | "defaultPriority">) {
    this.#priorities = [...new Set(opts.priorities)].sort((a, b) => b - a);
    this.#defaultPriority = opts.defaultPriority;
    this.ranks = ["m", ...this.#priorities.map(String)];
    this.#rankIndex = new Map(this.ranks.map((r, i) => [r, i]));
  }

  /** Manual rescans first, else the priority (an unlisted one: the next lower listed). */
  rankOf(doc: { manual?: boolean | undefined; priority?: number | undefined }): string {
    if (doc.manual === true) return "m";
    const p = doc.priority ?? this.#defaultPriority;
    return String(this.#priorities.find((q) => q <= p) ?? this.#priorities[this.#priorities.length - 1]!);
  }

  /** Rank, then (within a rank: manual rescans of every priority share one) priority, then due, then name. */
  compare = (a: DueItem, b: DueItem): number =>
    this.#rankIndex.get(a.rank)! - this.#rankIndex.get(b.rank)! ||
    (b.doc.priority ?? this.#defaultPriority) - (a.doc.priority ?? this.#defaultPriority) ||
    a.due - b.due ||
    (a.doc._id < b.doc._id ? -1 : a.doc._id > b.doc._id ? 1 : 0);
}

/** The index the indexed queue reads; the adapter creates it where the server uses it. */
export const DUE_INDEX = {
  keys: { region: 1, manual: -1, priority: -1, nextScanAt: 1 },
  name: "due_by_priority",
} as const;

/**
 * The due queue as a query of the domains: `{region, nextScanAt <= now}` sorted `{manual: -1,
 * priority: -1, nextScanAt: 1}`. With {@link DUE_INDEX} an index scan yields that order without a
 * sort stage, and the nextScanAt bound is checked inside the index per (manual, priority) prefix, so
 * the keys examined follow the batch and the few priorities, not the number of waiting domains.
 * The domain's own nextScanAt is the entry: push and remove have nothing to write.
 */
export class IndexedDueQueue implements DueQueue {
  readonly #domains: Collection<FrontierDoc>;
  readonly #order: DueOrder;

  constructor(domains: Collection<FrontierDoc>, opts: DueQueueOptions) {
    this.#domains = domains;
    this.#order = new DueOrder(opts);
  }

  get ranks(): readonly string[] {
    return this.#order.ranks;
  }

  rankOf(doc: { manual?: boolean | undefined; priority?: number | undefined }): string {
    return this.#order.rankOf(doc);
  }

  async push(): Promise<void> {}

  async due(region: string, limit: number, now: Date): Promise<DueBatch> {
    const docs =
      limit <= 0
        ? []
        : await this.#domains
            .find<DueDomain>({ region, nextScanAt: { $lte: now } }, { projection: DUE_PROJECTION })
            .sort({ manual: -1, priority: -1, nextScanAt: 1 })
            .limit(limit)
            .toArray();
    const items = docs.map((doc) => ({ doc, rank: this.#order.rankOf(doc), due: doc.nextScanAt!.getTime() }));
    return {
      items: items.sort(this.#order.compare),
      stats: { indexReads: 1, domainReads: 0, stale: 0 },
      remove: async () => {},
    };
  }

  async repair(): Promise<number> {
    return 0;
  }
}
