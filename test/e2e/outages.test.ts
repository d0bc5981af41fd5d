/**
 * Servers that go away lose nothing: with Redis down the coordinator retries feed messages
 * until it is back; with MongoDB down the frontier and results writer retry until it is back.
 */
import test from "ava";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, listDeadLetters, publishMessage } from "../../cluster/mod.ts";
import { startCorpus } from "../../ops/demo/corpus.ts";
import { subjects } from "../../protocol/mod.ts";
import { eventually, startStack } from "../helpers/stack.ts";

test("Redis and MongoDB going away mid-run delays sites but loses none", async (t) => {
  const [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 4 })]);
  t.teardown(async () => {
    await corpus.close();
    await stack.stop();
  });
  // Enough patience for an outage of a few seconds.
  const config = stack.config({ actors: { maxDeliver: 20, backoffMs: [300, 600, 1_000] } });
  const node = await startNode(config, createLogger(config.logLevel, {}));
  const nats = await connectNats(config, "outages");
  t.teardown(async () => {
    await node.stop();
    await nats.nc.close();
  });
  const submit = async (url: string) =>
    publishMessage(nats.js, {
      subject: subjects.feed("outage"),
      schema: "feed-submission",
      body: { url, source: "outage", submittedAt: new Date().toISOString() },
      msgId: url,
    });

  await stack.redis.kill();
  await submit(corpus.sites[0]!.url);
  await submit(corpus.sites[1]!.url);
  await new Promise((r) => setTimeout(r, 1_500)); // the coordinator retries meanwhile
  await stack.redis.restart();

  await stack.mongo.kill();
  await submit(corpus.sites[2]!.url);
  await submit(corpus.sites[3]!.url);
  await new Promise((r) => setTimeout(r, 1_500));
  await stack.mongo.restart();

  const db = await openDatabase(config);
  t.teardown(() => db.close());
  const domains = corpus.sites.map((s) => s.domain);
  await eventually(
    "all four sites scanned after the outages",
    async () =>
      (await db.collections.domains.countDocuments({ _id: { $in: domains }, latest: { $ne: null } })) === 4
        ? true
        : undefined,
    90_000,
  );
  t.is(await db.collections.scans.countDocuments({}), 4, "each site scanned once");
  t.deepEqual(await listDeadLetters(nats.jsm), [], "an outage is not a reason to dead-letter anything");
});
