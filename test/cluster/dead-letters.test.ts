/**
 * Dead letters list by stage, reason and age, and replay: the original payload goes back to its
 * subject, the dead letter leaves the DLQ, and a replay that fails again is a new dead letter.
 */
import test from "ava";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import {
  connectNats,
  createLogger,
  ensureTopology,
  findDeadLetters,
  publishDeadLetter,
  publishMessage,
  replayDeadLetters,
} from "../../cluster/mod.ts";
import { HEADERS, subjects, type DeadLetter, type Stage } from "../../protocol/mod.ts";
import { parseDuration } from "../../bin/commands/dlq.ts";
import { eventually, spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const letter = (stage: Stage, reason: string, failedAt: Date, n: number): DeadLetter => ({
  stage,
  code: "poison",
  reason,
  subject: `test.${stage}`,
  stream: "T",
  streamSeq: n,
  deliveries: 1,
  headers: {},
  payloadBase64: Buffer.from(`payload ${n}`).toString("base64"),
  failedAt: failedAt.toISOString(),
});

test.serial("dead letters list by stage, reason and age, in batches past one fetch", async (t) => {
  const config = stack.config();
  const nats = await connectNats(config, "dlq-list");
  t.teardown(() => nats.nc.close());
  await ensureTopology(nats.jsm, config);
  const now = Date.now();
  const hourAgo = new Date(now - 3_600_000);
  // 1,200 letters: more than two fetch batches.
  const pubs: Array<Promise<void>> = [];
  for (let i = 0; i < 1_200; i++) {
    const stage: Stage = i % 3 === 0 ? "scanner" : "coordinator";
    const reason = i % 2 === 0 ? "dns: NXDOMAIN" : "timeout: navigation";
    pubs.push(publishDeadLetter(nats.js, letter(stage, reason, i < 100 ? hourAgo : new Date(now), i)));
  }
  await Promise.all(pubs);
  const all = await findDeadLetters(nats.jsm);
  t.is(all.length, 1_200);
  t.true(
    all.every((s, i) => i === 0 || s.seq > all[i - 1]!.seq),
    "oldest first",
  );
  const scanner = await findDeadLetters(nats.jsm, { stage: "scanner" });
  t.is(scanner.length, 400);
  t.true(scanner.every((s) => s.deadLetter.stage === "scanner"));
  const dns = await findDeadLetters(nats.jsm, { stage: "scanner", reason: /^poison: dns/ });
  t.is(dns.length, 200, "every 6th letter is a scanner DNS failure");
  const old = await findDeadLetters(nats.jsm, { olderThanMs: parseDuration("30m") });
  t.is(old.length, 100);
  t.is((await findDeadLetters(nats.jsm, { reason: /dns/, limit: 7 })).length, 7);
  t.is(parseDuration("1h30m"), 5_400_000);
  t.throws(() => parseDuration("soon"));

  // The command line sees the same.
  const cli = await spawnGlyphscan(config, ["dlq", "list", "--stage", "scanner", "--older-than", "30m", "--json"]);
  let stdout = "";
  cli.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  const code = await new Promise<number | null>((r) => cli.on("exit", r));
  t.is(code, 0);
  const listed = JSON.parse(stdout) as Array<{ seq: number; deadLetter: DeadLetter }>;
  t.is(listed.length, 34, "scanner letters among the first 100 (i % 3 === 0)");
});

test.serial(
  "a rejected URL replays once its host is allowed; a replay that fails again is a new dead letter",
  async (t) => {
    // Coordinator and frontier only: no browser needed to see the domain reach the frontier.
    const narrow = stack.config({ roles: ["coordinator", "frontier"], coordinator: { allowHosts: [] } });
    const nats = await connectNats(narrow, "dlq-replay");
    t.teardown(() => nats.nc.close());
    let node = await startNode(narrow, createLogger(narrow.logLevel, {}));
    t.teardown(() => node.stop());

    const url = "http://replayed.test/start";
    await publishMessage(nats.js, {
      subject: subjects.feed("replay"),
      schema: "feed-batch",
      body: { urls: [url, "http://ok-but-also.test/"], source: "replay", submittedAt: new Date().toISOString() },
      msgId: "replay-batch-1",
    });
    const mine = async () =>
      (await findDeadLetters(nats.jsm, { stage: "coordinator", reason: /^rejected-input/ })).filter((s) =>
        Buffer.from(s.deadLetter.payloadBase64, "base64").toString().includes("replayed.test"),
      );
    const first = await eventually("the rejection", async () => ((await mine()).length > 0 ? mine() : undefined));
    t.is(first.length, 1);
    const firstTrace = first[0]!.deadLetter.headers[HEADERS.traceparent]!;

    // Still narrow: the replay fails again and becomes a new dead letter; the old one is gone.
    const again = await replayDeadLetters(nats.js, nats.jsm, first);
    t.deepEqual(
      again.map((o) => o.ok),
      [true],
    );
    const second = await eventually("the second rejection", async () => {
      const found = await mine();
      return found.length === 1 && found[0]!.seq !== first[0]!.seq ? found : undefined;
    });
    const secondTrace = second[0]!.deadLetter.headers[HEADERS.traceparent]!;
    t.is(secondTrace.split("-")[1], firstTrace.split("-")[1], "the replay continues the original trace");
    t.not(secondTrace, firstTrace, "under a new span");

    // Widen allowHosts and replay: the domain reaches the frontier and the DLQ is empty of it.
    await node.stop();
    const wide = { ...narrow, coordinator: { ...narrow.coordinator, allowHosts: ["*.test"] } };
    node = await startNode(wide, createLogger(wide.logLevel, {}));
    const replayed = await replayDeadLetters(nats.js, nats.jsm, second);
    t.true(replayed.every((o) => o.ok));
    const db = await openDatabase(wide);
    t.teardown(() => db.close());
    const doc = await eventually("the replayed domain in the frontier", () =>
      db.collections.domains.findOne({ _id: "replayed.test" }).then((d) => d ?? undefined),
    );
    t.is(doc.seedUrl, "http://replayed.test/");
    t.deepEqual(doc.sources, ["replay"]);
    t.is((await mine()).length, 0, "replayed dead letter removed, no new one");
  },
);
