/**
 * Redis is a cache: flushed or gone mid-run, the coordinator loses no domain and the frontier stores each
 * distinct domain once (keyed upserts), and `bloom rebuild` restores the filter from MongoDB.
 */
import test, { type ExecutionContext } from "ava";
import { Redis } from "ioredis";
import { startNode } from "../../actors/compose.ts";
import { seenFilterOptions, SeenFilter } from "../../actors/coordinator/seen-filter.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { rebuildSeenFilter } from "../../bin/commands/bloom.ts";
import { connectNats, createLogger, listDeadLetters, publishMessage } from "../../cluster/mod.ts";
import { subjects } from "../../protocol/mod.ts";
import { eventually, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

// Serial: the nodes of one test would otherwise consume the other test's feed (same NATS, same durables).
let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const BATCH = 100;

/** A coordinator + frontier node and helpers to feed it and read what the frontier stored. */
async function setup(t: ExecutionContext, overrides: Record<string, unknown> = {}) {
  const config = stack.config({ roles: ["coordinator", "frontier"], ...overrides });
  const node = await startNode(config, createLogger(config.logLevel, {}));
  const nats = await connectNats(config, "redis-flush");
  const db = await openDatabase(config);
  const redis = new Redis(config.redis.url, { maxRetriesPerRequest: null });
  redis.on("error", () => undefined);
  t.teardown(async () => {
    await node.stop();
    await nats.nc.close();
    redis.disconnect();
    await db.close();
  });
  const tag = uniqueName("f").toLowerCase().replace(/_/g, "-");
  let sent = 0;
  /** Publishes `hosts` as feed batches of 100 URLs. */
  const feed = async (hosts: string[]) => {
    for (let i = 0; i < hosts.length; i += BATCH) {
      await publishMessage(nats.js, {
        subject: subjects.feed("flush"),
        schema: "feed-batch",
        body: {
          urls: hosts.slice(i, i + BATCH).map((h) => `https://www.${h}/page?${i}`),
          source: "flush",
          submittedAt: new Date().toISOString(),
        },
        msgId: `${tag}-${++sent}`,
      });
    }
  };
  const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}-${tag}.test`);
  const stored = () => db.collections.domains.countDocuments({ _id: { $regex: `-${tag}\\.test$` } });
  return { config, nats, db, redis, feed, names, stored };
}

test.serial("FLUSHALL mid-run: every distinct domain reaches the frontier, each stored once", async (t) => {
  const { config, nats, db, redis, feed, names, stored } = await setup(t);
  const first = names("a", 600);
  const second = names("b", 600);
  const all = [...first, ...second];

  await feed(first);
  await eventually("part of the first domains stored", async () => ((await stored()) >= 100 ? true : undefined));
  // Mid-run: the coordinator is still working through the first domains and more keep coming.
  const feeding = feed([...first.slice(0, 300), ...second, ...first]);
  await redis.flushall();
  await feeding;
  await feed(second.slice(0, 300)); // repeats after the flush

  await eventually(
    "every distinct domain stored",
    async () => ((await stored()) === all.length ? true : undefined),
    180_000,
  );
  const docs = await db.collections.domains
    .find({ _id: { $in: all } }, { projection: { _id: 1, sources: 1, firstSeenAt: 1, lastSeenAt: 1 } })
    .toArray();
  t.deepEqual(docs.map((d) => d._id).sort(), [...all].sort(), "each distinct domain stored, none twice, none missing");
  t.true(
    docs.every((d) => d.sources.length === 1 && d.sources[0] === "flush"),
    "re-admissions only updated the stored domain",
  );
  t.deepEqual(await listDeadLetters(nats.jsm), [], "nothing dead-lettered");

  // Redis is a cache: flush again and rebuild the filter from MongoDB.
  const filter = new SeenFilter(redis, seenFilterOptions(config.coordinator));
  t.true((await filter.has(all)).every(Boolean), "after the run the filter has every domain");
  await redis.flushall();
  t.is((await filter.has(all)).filter(Boolean).length, 0);
  const summary = await rebuildSeenFilter(config);
  t.is(summary.read, all.length);
  t.true((await filter.has(all)).every(Boolean), "rebuilt: every domain seen again");
});

test.serial("Redis down: feed messages wait and are retried, none dead-lettered or lost", async (t) => {
  // Patience for an outage of a few seconds.
  const { nats, feed, names, stored } = await setup(t, { actors: { maxDeliver: 20, backoffMs: [300, 600, 1_000] } });
  const before = names("up", 200);
  const during = names("down", 500);
  await feed(before);
  await eventually("domains fed before the outage stored", async () => ((await stored()) === 200 ? true : undefined));
  await stack.redis.kill();
  await feed([...during, ...before]);
  await new Promise((r) => setTimeout(r, 2_000)); // the coordinator naks meanwhile
  t.is(await stored(), 200, "nothing admitted while the filter is away");
  // The harness runs Redis without persistence: it comes back empty, as after a flush.
  await stack.redis.restart();
  await eventually(
    "every domain stored after Redis is back",
    async () => ((await stored()) === 700 ? true : undefined),
    120_000,
  );
  t.deepEqual(await listDeadLetters(nats.jsm), []);
});
