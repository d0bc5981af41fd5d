/**
 * `coordinator.confirmSources`: for feeds where every domain counts, a Bloom "maybe seen" is checked
 * against MongoDB by key. A false positive is forced by setting a domain's bits in the filter without
 * the domain ever being admitted (exactly what a collision looks like to the coordinator).
 */
import test from "ava";
import { Redis } from "ioredis";
import { startNode } from "../../actors/compose.ts";
import { knownInCollection } from "../../actors/coordinator/coordinator-actor.ts";
import { seenFilterOptions, SeenFilter } from "../../actors/coordinator/seen-filter.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, listDeadLetters, publishMessage } from "../../cluster/mod.ts";
import { consumers, streams, subjects } from "../../protocol/mod.ts";
import { eventually, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

test("a false positive is dropped for a normal source and admitted for a confirm source", async (t) => {
  const config = stack.config({
    roles: ["coordinator", "frontier"],
    coordinator: { confirmSources: ["critical"] },
  });
  const node = await startNode(config, createLogger(config.logLevel, {}));
  const nats = await connectNats(config, "confirm-test");
  const redis = new Redis(config.redis.url);
  const db = await openDatabase(config);
  t.teardown(async () => {
    await node.stop();
    await nats.nc.close();
    redis.disconnect();
    await db.close();
  });
  const filter = new SeenFilter(redis, seenFilterOptions(config.coordinator));
  const tag = uniqueName("c").toLowerCase().replace(/_/g, "-");
  const name = (s: string) => `${s}-${tag}.test`;
  let batch = 0;
  const feed = async (source: string, hosts: string[]) =>
    publishMessage(nats.js, {
      subject: subjects.feed(source),
      schema: "feed-batch",
      body: { urls: hosts.map((h) => `https://${h}/`), source, submittedAt: new Date().toISOString() },
      msgId: `confirm-${tag}-${++batch}`,
    });
  const stored = async (domain: string) => (await db.collections.domains.countDocuments({ _id: domain })) === 1;
  /** Waits for `sentinel` to be stored and the frontier to have nothing left to do. */
  const settled = (sentinel: string) =>
    eventually(`${sentinel} admitted and the frontier idle`, async () => {
      if (!(await stored(sentinel))) return undefined;
      const c = await nats.jsm.consumers.info(streams.admit, consumers.frontier(config.region));
      const f = await nats.jsm.consumers.info(streams.feeds, consumers.coordinator);
      return c.num_pending + c.num_ack_pending + f.num_pending + f.num_ack_pending === 0 ? true : undefined;
    });

  // A domain admitted for real: stored in MongoDB and in the filter.
  await feed("bulk", [name("known")]);
  await settled(name("known"));
  const knownBefore = await db.collections.domains.findOne({ _id: name("known") });

  // Bits set, never admitted: the filter says "maybe seen".
  await filter.testAndSet([name("ghost-a"), name("ghost-b")]);
  t.deepEqual(await filter.has([name("ghost-a"), name("ghost-b")]), [true, true]);

  await feed("bulk", [name("ghost-a"), name("fresh-1")]);
  await settled(name("fresh-1"));
  t.false(await stored(name("ghost-a")), "a normal source trusts the filter and drops the domain");

  await feed("critical", [name("ghost-b"), name("ghost-a"), name("known"), name("fresh-2")]);
  await settled(name("fresh-2"));
  t.true(await stored(name("ghost-b")), "a confirm source admits a maybe-seen domain MongoDB does not have");
  t.true(await stored(name("ghost-a")), "the domain the normal source dropped is admitted by the confirm source");
  const knownAfter = await db.collections.domains.findOne({ _id: name("known") });
  t.deepEqual(
    knownAfter?.lastSeenAt,
    knownBefore?.lastSeenAt,
    "a domain MongoDB has is still dropped, not re-admitted",
  );
  t.deepEqual((await db.collections.domains.findOne({ _id: name("ghost-b") }))?.sources, ["critical"]);
  t.deepEqual(await listDeadLetters(nats.jsm), []);
});

test("knownInCollection finds exactly the stored domains among many, by _id point reads", async (t) => {
  const config = stack.config();
  const db = await openDatabase(config);
  t.teardown(() => db.close());
  const ids = Array.from({ length: 2_500 }, (_, i) => `k${i}.test`);
  await db.db.collection<{ _id: string }>("domains").insertMany(ids.map((_id) => ({ _id })));
  const known = knownInCollection(db.collections.domains);
  const asked = [...ids.filter((_, i) => i % 2 === 0), ...Array.from({ length: 800 }, (_, i) => `absent${i}.test`)];
  const found = await known(asked);
  t.is(found.size, 1_250);
  t.true(ids.filter((_, i) => i % 2 === 0).every((id) => found.has(id)));
  t.deepEqual(await known([]), new Set());
});
