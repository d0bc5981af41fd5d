/**
 * One contract for both faces of the server adapter (actors/store/server-adapter.ts): the
 * conditional update and the due queue behave alike whichever implementation the server gets.
 * Both implementations run against the harness's server: on FerretDB v1 the MongoDB ones work too
 * (a filter beyond `_id` is served, only by reading the collection), so their code runs here at
 * small sizes; the atomicity test runs only where the server is atomic (`MONGO_KIND=mongod`).
 */
import test from "ava";
import { MongoClient, type Collection, type Db } from "mongodb";
import { collectionsOf, type Collections } from "../../actors/store/database.ts";
import type { FrontierDoc } from "../../actors/store/documents.ts";
import { IndexedDueQueue, type DueQueue, type DueQueueOptions } from "../../actors/store/due-queue.ts";
import { DueWheel } from "../../actors/store/due-wheel.ts";
import {
  ferretDbV1Server,
  mongoServer,
  serverAdapterOf,
  type ServerAdapter,
} from "../../actors/store/server-adapter.ts";
import { startMongo, toolPaths, type ManagedServer } from "../harness/servers.ts";
import { uniqueName } from "../helpers/stack.ts";

const MIN = 60_000;
const atomicServer = (await toolPaths())["MONGO_KIND"] === "mongod";

let mongo: ManagedServer;
let client: MongoClient;
test.before(async () => {
  mongo = await startMongo();
  client = new MongoClient(mongo.url);
  await client.connect();
});
test.after.always(async () => {
  await client?.close();
  await mongo?.stop();
});

/** A fresh database per test. */
function freshDb(): { db: Db; c: Collections } {
  const db = client.db(uniqueName("contract"));
  return { db, c: collectionsOf(db) };
}

const OPTS: DueQueueOptions = { bucketMs: MIN, priorities: [10, 5, 1], defaultPriority: 5 };
const queues: Array<[string, (c: Collections) => DueQueue]> = [
  ["indexed query", (c) => new IndexedDueQueue(c.domains, OPTS)],
  ["time wheel", (c) => new DueWheel(c.frontierDue, c.domains, OPTS)],
];
const updates: Array<[string, ServerAdapter]> = [
  ["condition in the filter", mongoServer],
  ["read, check, write", ferretDbV1Server],
];

test("the adapter is chosen by what the server says it is; the MongoDB one creates the due index", async (t) => {
  const { db, c } = freshDb();
  t.is((await serverAdapterOf(db)).server, atomicServer ? "mongodb" : "ferretdb-v1");
  await mongoServer.prepare(c);
  const indexes = await c.domains.indexes();
  t.truthy(indexes.find((i) => i.name === "due_by_priority"));
});

// ---------------------------------------------------------------------------------------------
// updateIf

const AT = new Date("2026-01-01T00:00:00Z");
const later = new Date(AT.getTime() + MIN);
const STORED = { _id: "d", state: "leased", leaseToken: "t1", lastScanAt: AT, latest: { jobId: "j1" }, assessed: null };
/** Condition, and whether STORED matches it. */
const CASES: Array<[string, Record<string, unknown>, boolean]> = [
  ["equal", { leaseToken: "t1" }, true],
  ["not equal", { leaseToken: "t2" }, false],
  ["null matches null", { assessed: null }, true],
  ["null matches a missing field", { leaseUntil: null }, true],
  ["null does not match a value", { leaseToken: null }, false],
  ["$ne", { state: { $ne: "leased" } }, false],
  ["$ne on a missing field", { parked: { $ne: true } }, true],
  ["$lt a later date", { lastScanAt: { $lt: later } }, true],
  ["$lt the same date", { lastScanAt: { $lt: AT } }, false],
  ["$lte the same date", { lastScanAt: { $lte: AT } }, true],
  ["$gt on a missing field", { leaseUntil: { $gt: AT } }, false],
  ["$or, one branch", { $or: [{ state: { $ne: "leased" } }, { leaseUntil: null }] }, true],
  ["$or, no branch", { $or: [{ lastScanAt: null }, { lastScanAt: { $lt: AT } }] }, false],
  ["dotted path", { "latest.jobId": "j1" }, true],
  ["dotted path, other value", { "latest.jobId": "j2" }, false],
  ["two fields", { state: "leased", leaseToken: "t1" }, true],
];

for (const [name, adapter] of updates) {
  test(`updateIf (${name}): applies exactly when the document matches, as the server's own filter says`, async (t) => {
    const { c } = freshDb();
    const col = c.domains as unknown as Collection<{ _id: string; [k: string]: unknown }>;
    for (const [what, condition, matches] of CASES) {
      await col.replaceOne({ _id: "d" }, STORED, { upsert: true });
      const server = (await col.countDocuments({ ...condition, _id: "d" })) === 1;
      t.is(server, matches, `${what}: the server's filter`);
      t.is(await adapter.updateIf(col, "d", condition, { $set: { touched: true } }), matches, what);
      t.is((await col.findOne({ _id: "d" }))?.["touched"] === true, matches, `${what}: written`);
    }
    t.false(await adapter.updateIf(col, "missing", {}, { $set: { touched: true } }), "no such document");
    t.is(await col.countDocuments({ _id: "missing" }), 0, "and none created");
  });
}

test("read, check, write refuses a condition it cannot evaluate instead of treating it as true", async (t) => {
  const { c } = freshDb();
  await c.domains.insertOne({ ...STORED } as never);
  await t.throwsAsync(
    ferretDbV1Server.updateIf(c.domains, "d", { state: { $in: ["leased"] } } as never, { $set: { state: "retry" } }),
    { message: /unsupported operator \$in/ },
  );
});

if (atomicServer) {
  test("updateIf on an atomic server: of 40 racing updates conditional on one value, one applies", async (t) => {
    const { db, c } = freshDb();
    const adapter = await serverAdapterOf(db);
    t.true(adapter.atomicUpdates);
    await c.domains.insertOne({ _id: "cas", v: 0 } as never);
    const col = c.domains as unknown as Collection<{ _id: string; v: number }>;
    const applied = await Promise.all(
      Array.from({ length: 40 }, (_, i) => adapter.updateIf(col, "cas", { v: 0 }, { $set: { v: i + 1 } })),
    );
    t.is(applied.filter(Boolean).length, 1);
  });
}

// ---------------------------------------------------------------------------------------------
// DueQueue

type Spec = { id: string; due: Date; priority?: number; manual?: boolean; region?: string };

/** Writes domains as the frontier does: each due entry first, then the domain. */
async function schedule(queue: DueQueue, c: Collections, specs: Spec[]) {
  for (const s of specs) {
    const region = s.region ?? "r";
    const doc = { _id: s.id, region, priority: s.priority ?? 5, manual: s.manual ?? false };
    await queue.push([{ region, rank: queue.rankOf(doc), domain: s.id, due: s.due }]);
    await (c.domains as unknown as Collection<Partial<FrontierDoc>>).updateOne(
      { _id: s.id },
      { $set: { ...doc, nextScanAt: s.due, state: "queued" } },
      { upsert: true },
    );
  }
}

const ids = (batch: { items: Array<{ doc: { _id: string } }> }) => batch.items.map((i) => i.doc._id);

for (const [name, make] of queues) {
  test(`DueQueue (${name}): due in rank order (manual, then priority), then soonest; limit and region kept`, async (t) => {
    const { c } = freshDb();
    const queue = make(c);
    const now = new Date();
    const ago = (m: number) => new Date(now.getTime() - m * MIN);
    await schedule(queue, c, [
      { id: "low-old", due: ago(50), priority: 1 },
      { id: "mid-old", due: ago(40) },
      { id: "mid-new", due: ago(2) },
      { id: "high", due: ago(1), priority: 10 },
      { id: "manual-low", due: ago(1), priority: 1, manual: true },
      { id: "future", due: new Date(now.getTime() + 10 * MIN), priority: 10 },
      { id: "elsewhere", due: ago(30), region: "other" },
    ]);
    const all = await queue.due("r", 100, now);
    t.deepEqual(ids(all), ["manual-low", "high", "mid-old", "mid-new", "low-old"]);
    t.deepEqual(
      all.items.map((i) => i.rank),
      ["m", "10", "5", "5", "1"],
    );
    t.deepEqual(ids(await queue.due("r", 3, now)), ["manual-low", "high", "mid-old"], "the first of the order");
    t.deepEqual(ids(await queue.due("other", 100, now)), ["elsewhere"]);
  });

  test(`DueQueue (${name}): handled domains, moved on and removed, come back at their new time only`, async (t) => {
    const { c } = freshDb();
    const queue = make(c);
    const now = new Date();
    const due = new Date(now.getTime() - 5 * MIN);
    await schedule(queue, c, [
      { id: "a", due },
      { id: "b", due },
    ]);
    const first = await queue.due("r", 10, now);
    t.deepEqual(ids(first).sort(), ["a", "b"]);
    const next = new Date(now.getTime() + 30 * MIN);
    await schedule(queue, c, [
      { id: "a", due: next },
      { id: "b", due: next },
    ]);
    await first.remove(first.items);
    t.deepEqual(ids(await queue.due("r", 10, now)), [], "not again at the old time");
    const then = await queue.due("r", 10, new Date(next.getTime() + 1));
    t.deepEqual(ids(then).sort(), ["a", "b"], "at the new one");
  });

  test(`DueQueue (${name}): an entry its domain does not bear out is never due`, async (t) => {
    const { c } = freshDb();
    const queue = make(c);
    const now = new Date();
    const old = new Date(now.getTime() - 30 * MIN);
    await schedule(queue, c, [{ id: "moved", due: old }]);
    // A move whose domain write never happened, and an entry for no domain at all.
    const rank = queue.rankOf({});
    await queue.push([
      { region: "r", rank, domain: "moved", due: new Date(now.getTime() - 20 * MIN) },
      { region: "r", rank, domain: "ghost", due: old },
    ]);
    const batch = await queue.due("r", 10, now);
    t.deepEqual(ids(batch), ["moved"], "once, at the domain's own time");
    t.is(batch.items[0]!.due, old.getTime());
    await schedule(queue, c, [{ id: "moved", due: new Date(now.getTime() + HOUR) }]);
    await batch.remove(batch.items);
    t.deepEqual(ids(await queue.due("r", 10, now)), [], "stale entries dispatch nothing");
  });

  test(`DueQueue (${name}): after repair, a domain written without its entry is due`, async (t) => {
    const { c } = freshDb();
    const queue = make(c);
    const now = new Date();
    const due = new Date(now.getTime() - 10 * MIN);
    await c.domains.insertOne({ _id: "direct", region: "r", priority: 5, nextScanAt: due, state: "queued" } as never);
    const added = await queue.repair("r");
    t.true(added === 0 || added === 1);
    t.deepEqual(ids(await queue.due("r", 10, now)), ["direct"]);
    t.is(await queue.repair("r"), 0, "nothing missing any more");
  });
}

const HOUR = 60 * MIN;
