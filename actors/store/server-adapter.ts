/**
 * What the MongoDB-wire server can do, in one place: the only file of the application that names
 * the server it runs on. Callers say what they need (a conditional update of one document, a due
 * queue) and get the implementation that is right for the server.
 *
 * MongoDB finds `{ _id, ...condition }` through the `_id` index and applies it atomically, and
 * serves the dispatcher's `{region, nextScanAt}` query from an index. FerretDB v1 (the embedded
 * default) does neither: any filter beyond `_id` reads the whole collection (859 ms per update at
 * 100k domains), and of 40 concurrent updates conditional on one value up to 27 applied (both in
 * `npm run bench:ingest`). There a conditional update reads the document by `_id`, checks the
 * condition itself and writes by `_id` alone, which guards as well as that server's filter would;
 * and the due queue is the `_id`-keyed time wheel.
 */
import type { Collection, Db, Filter, UpdateFilter } from "mongodb";
import type { DueWheelDoc, FrontierDoc } from "./documents.ts";
import { DUE_INDEX, IndexedDueQueue, type DueQueue, type DueQueueOptions } from "./due-queue.ts";
import { DueWheel } from "./due-wheel.ts";
import { matchesCondition } from "./match-condition.ts";

export interface ServerAdapter {
  /** For logs and the bench: `mongodb` or `ferretdb-v1`. */
  readonly server: "mongodb" | "ferretdb-v1";
  /** Whether a conditional update is applied atomically (two racing ones never both apply). */
  readonly atomicUpdates: boolean;
  /** Whether filters beyond `_id` are served from an index (else they read the whole collection). */
  readonly indexedFilters: boolean;
  /**
   * Applies `update` to document `id` of `col` if it matches `condition` (a filter of equality,
   * `$ne`, `$lt`, `$lte`, `$gt`, `$gte`, `$or`, `$and`, dotted paths); true when it did.
   */
  updateIf<T extends { _id: string }>(
    col: Collection<T>,
    id: string,
    condition: Filter<T>,
    update: UpdateFilter<T>,
  ): Promise<boolean>;
  /** The frontier's due queue over `domains`, kept where this server reads it cheaply. */
  dueQueue(
    c: { domains: Collection<FrontierDoc>; frontierDue: Collection<DueWheelDoc> },
    opts: DueQueueOptions,
  ): DueQueue;
  /** Creates the indexes this server uses (once, at open). */
  prepare(c: { domains: Collection<FrontierDoc> }): Promise<void>;
}

/** The conditional update as the server applies it: found by `_id`, the condition in the filter. */
async function updateInFilter<T extends { _id: string }>(
  col: Collection<T>,
  id: string,
  condition: Filter<T>,
  update: UpdateFilter<T>,
): Promise<boolean> {
  const filter = { ...condition, _id: id } as Filter<T>;
  return (await col.updateOne(filter, update)).matchedCount === 1;
}

/** Read by `_id`, check here, write by `_id`: for a server that would scan for the condition. */
async function readCheckWrite<T extends { _id: string }>(
  col: Collection<T>,
  id: string,
  condition: Filter<T>,
  update: UpdateFilter<T>,
): Promise<boolean> {
  const byId = { _id: id } as Filter<T>;
  const doc = await col.findOne(byId);
  if (!doc || !matchesCondition(doc, condition)) return false;
  return (await col.updateOne(byId, update)).matchedCount === 1;
}

/** MongoDB: atomic conditional updates and the indexed due query. */
export const mongoServer: ServerAdapter = {
  server: "mongodb",
  atomicUpdates: true,
  indexedFilters: true,
  updateIf: updateInFilter,
  dueQueue: (c, opts) => new IndexedDueQueue(c.domains, opts),
  async prepare(c) {
    await c.domains.createIndex(DUE_INDEX.keys, { name: DUE_INDEX.name });
  },
};

/** FerretDB v1: only `_id` is served from an index, and conditional updates are not atomic. */
export const ferretDbV1Server: ServerAdapter = {
  server: "ferretdb-v1",
  atomicUpdates: false,
  indexedFilters: false,
  updateIf: readCheckWrite,
  dueQueue: (c, opts) => new DueWheel(c.frontierDue, c.domains, opts),
  // An index it would not read costs a write on every domain change.
  async prepare() {},
};

/** The adapter of the server `db` is on: FerretDB says so in buildInfo; MongoDB has no such field. */
export async function serverAdapterOf(db: Db): Promise<ServerAdapter> {
  const info = await db.admin().command({ buildInfo: 1 });
  return typeof info["ferretdbVersion"] === "string" ? ferretDbV1Server : mongoServer;
}
