/**
 * Malformed and oversized messages sent to every actor's subject become dead letters with a
 * reason, and every actor keeps working: a valid site sent afterwards is scanned.
 */
import test from "ava";
import { headers } from "@nats-io/transport-node";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, listDeadLetters, publishMessage } from "../../cluster/mod.ts";
import { startCorpus } from "../../ops/demo/corpus.ts";
import { subjects } from "../../protocol/mod.ts";
import { eventually, startStack } from "../helpers/stack.ts";

test("every actor dead-letters garbage with a reason and keeps working", async (t) => {
  const [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 1 })]);
  t.teardown(async () => {
    await corpus.close();
    await stack.stop();
  });
  const config = stack.config({ actors: { maxMessageBytes: 64 * 1024 } });
  const node = await startNode(config, createLogger(config.logLevel, {}));
  const nats = await connectNats(config, "hostile");
  const db = await openDatabase(config);
  t.teardown(async () => {
    await node.stop();
    await nats.nc.close();
    await db.close();
  });

  const targets = [
    { subject: subjects.feed("hostile"), stage: "coordinator", kind: "feed-submission.v1" },
    { subject: subjects.admit(config.region), stage: "frontier", kind: "admission.v1" },
    { subject: subjects.jobs(config.region), stage: "scanner", kind: "scan-job.v1" },
    { subject: subjects.results(config.region), stage: "results", kind: "scan-result.v1" },
  ] as const;
  const garbage: Array<{ name: string; data: string | Uint8Array; schema?: string }> = [
    { name: "not json", data: "}{" },
    { name: "no schema header", data: "{}" },
    { name: "wrong shape", data: JSON.stringify({ hello: "world", domain: ["x"] }) },
    { name: "binary", data: new Uint8Array([0, 159, 146, 150, 255]) },
    { name: "oversized", data: JSON.stringify({ pad: "x".repeat(200 * 1024) }) },
    { name: "future version", data: "{}", schema: "v99" },
  ];
  let sent = 0;
  for (const target of targets) {
    for (const g of garbage) {
      const h = headers();
      if (g.name !== "no schema header")
        h.set("Glyphscan-Schema", g.schema ? target.kind.replace("v1", g.schema) : target.kind);
      await nats.js.publish(target.subject, g.data, { headers: h });
      sent++;
    }
  }
  const dead = await eventually(
    `${sent} dead letters`,
    async () => {
      const dl = await listDeadLetters(nats.jsm);
      return dl.length >= sent ? dl : undefined;
    },
    60_000,
  );
  t.is(dead.length, sent);
  for (const target of targets) {
    const mine = dead.filter((d) => d.subject === target.subject);
    t.is(mine.length, garbage.length, `${target.subject}: one dead letter per bad message`);
    t.true(
      mine.every((d) => d.stage === target.stage && d.reason.length > 10),
      `${target.subject}: stage and reason`,
    );
    t.is(mine.filter((d) => d.code === "oversized").length, 1);
  }
  t.true(dead.some((d) => /unsupported version 99/.test(d.reason)));

  // Every actor still works: a real site goes all the way through.
  const site = corpus.sites[0]!;
  await publishMessage(nats.js, {
    subject: subjects.feed("hostile"),
    schema: "feed-submission",
    body: { url: site.url, source: "hostile", submittedAt: new Date().toISOString() },
    msgId: "after-garbage",
  });
  const domain = await eventually(
    "the valid site scanned after the garbage",
    async () => {
      const d = await db.collections.domains.findOne({ _id: site.domain });
      return d?.latest ? d : undefined;
    },
    60_000,
  );
  t.is(domain.latest?.status, "ok");
  t.deepEqual(domain.latest?.usedFamilies, [...site.expectedUsedFamilies].sort());
});
