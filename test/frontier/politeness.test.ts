/**
 * Politeness per registrable domain through the real coordinator and frontier: a domain is one
 * document holding at most one lease, so a feed that repeats one site 10k times (other pages,
 * subdomains, case variants) yields one domain and one job, however much room the scanners have.
 */
import test from "ava";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, openRegistry, publishMessage, type NatsHandles } from "../../cluster/mod.ts";
import { consumers, streams, subjects, type ScanJob } from "../../protocol/mod.ts";
import { registerScanner } from "../helpers/frontier.ts";
import { eventually, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

test("a feed repeating one site 10k times: one domain document, exactly one job", async (t) => {
  const config = stack.config({ roles: ["coordinator", "frontier"], frontier: { dispatchIntervalMs: 100 } });
  const node = await startNode(config, createLogger(config.logLevel, {}));
  t.teardown(() => node.stop());
  const nats: NatsHandles = await connectNats(config, "politeness");
  t.teardown(() => nats.nc.close());
  const db = await openDatabase(config);
  t.teardown(() => db.close());

  // Scanners with room for 40 jobs: capacity is not what holds the site to one.
  const registry = await openRegistry(nats.js, config.actors.heartbeatMs);
  await registerScanner(t, registry, config.actors.heartbeatMs, { slots: 20, nodeId: "scanner-politeness" });

  const variants = (i: number) =>
    [
      `http://polite.test/page/${i}`,
      `https://www.polite.test/?q=${i}`,
      `HTTP://Polite.TEST/x${i}`,
      `http://shop${i % 97}.polite.test:8080/p#${i}`,
    ][i % 4]!;
  const total = 10_000;
  for (let b = 0; b < total / 1000; b++) {
    await publishMessage(nats.js, {
      subject: subjects.feed("firehose"),
      schema: "feed-batch",
      body: {
        urls: Array.from({ length: 1000 }, (_, i) => variants(b * 1000 + i)),
        source: "firehose",
        submittedAt: new Date().toISOString(),
      },
      msgId: `polite:${b}`,
    });
  }

  const drained = async (stream: string, consumer: string, min: number) => {
    const c = await nats.jsm.consumers.info(stream, consumer);
    return c.delivered.stream_seq >= min && c.num_pending === 0 && c.num_ack_pending === 0;
  };
  await eventually(
    "the coordinator to have handled all 10 feed batches",
    async () => ((await drained(streams.feeds, consumers.coordinator, total / 1000)) ? true : undefined),
    60_000,
  );
  await eventually(
    "the frontier to have admitted everything it was sent",
    async () => ((await drained(streams.admit, consumers.frontier("local"), 1)) ? true : undefined),
    30_000,
  );
  const queued = async () => {
    const c = await nats.jsm.consumers.info(streams.jobs("local"), consumers.scanners);
    return c.num_pending + c.num_ack_pending;
  };
  await eventually("a job dispatched", async () => ((await queued()) >= 1 ? true : undefined), 10_000);
  // Many more dispatcher ticks (100 ms apart): the site must not get a second job.
  await new Promise((r) => setTimeout(r, 2_000));

  t.is(await db.collections.domains.countDocuments({}), 1, "one domain document");
  const doc = await db.collections.domains.findOne({ _id: "polite.test" });
  t.like(doc, { state: "leased", scanCount: 0, attempts: 1, sources: ["firehose"] });
  t.is(await queued(), 1, "exactly one job dispatched");
  const info = await nats.jsm.streams.info(streams.jobs("local"));
  t.is(info.state.messages, 1);
  const message = await nats.jsm.streams.getMessage(streams.jobs("local"), { seq: info.state.first_seq });
  const job = message?.json<ScanJob>();
  t.is(job?.domain, "polite.test");
  t.is(job?.leaseToken, doc?.leaseToken ?? "none");
  const admitted = await nats.jsm.consumers.info(streams.admit, consumers.frontier("local"));
  t.log(`${total} feed URLs → ${admitted.delivered.stream_seq} admission message(s) → 1 domain → 1 job`);

  // The seen filter absorbed the repeats above; politeness must not rest on it (Redis is a
  // cache). Admissions that slip past it (a flushed filter, another window) reach the frontier,
  // which still holds the site to its one document and its one lease.
  const repeats = 300;
  await Promise.all(
    Array.from({ length: repeats }, (_, i) =>
      publishMessage(nats.js, {
        subject: subjects.admit("local"),
        schema: "admission",
        msgId: `polite-admit:${i}`,
        body: {
          domain: "polite.test",
          seedUrl: `http://shop${i}.polite.test/`,
          source: "firehose",
          region: "local",
          admittedAt: new Date().toISOString(),
        },
      }),
    ),
  );
  await eventually(
    "the frontier to have taken the repeated admissions",
    async () =>
      (await drained(streams.admit, consumers.frontier("local"), admitted.delivered.stream_seq + repeats))
        ? true
        : undefined,
    30_000,
  );
  await new Promise((r) => setTimeout(r, 1_000)); // ten more dispatcher ticks
  t.is(await db.collections.domains.countDocuments({}), 1, "still one domain document");
  t.is(await queued(), 1, "still exactly one job");
  t.is((await db.collections.domains.findOne({ _id: "polite.test" }))?.leaseToken, doc?.leaseToken, "the same lease");
});
