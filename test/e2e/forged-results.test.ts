/**
 * Only the lease holder's result is stored. A client on the bus that publishes a scan result of
 * its own (an invented lease token, dated 2099 so that no later real result would replace it, or
 * the real job's token with other content) gets a dead letter with the reason, and the stored
 * scans, the domain's latest scan and its verdicts stay those of the real scan. A redelivery of
 * the real result is still accepted.
 */
import test from "ava";
import { DeliverPolicy } from "@nats-io/jetstream";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, listDeadLetters, publishMessage } from "../../cluster/mod.ts";
import { startCorpus } from "../../ops/demo/corpus.ts";
import { streams, subjects, type ScanResult } from "../../protocol/mod.ts";
import { eventually, startStack } from "../helpers/stack.ts";

test("forged scan results are refused with a reason; the real scan stays", async (t) => {
  const [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 2 })]);
  t.teardown(async () => {
    await corpus.close();
    await stack.stop();
  });
  const config = stack.config();
  const node = await startNode(config, createLogger(config.logLevel, {}));
  const nats = await connectNats(config, "forger");
  const db = await openDatabase(config);
  t.teardown(async () => {
    await node.stop();
    await nats.nc.close();
    await db.close();
  });

  const [site, other] = corpus.sites as [(typeof corpus.sites)[0], (typeof corpus.sites)[0]];
  await publishMessage(nats.js, {
    subject: subjects.feed("test"),
    schema: "feed-submission",
    body: { url: site.url, source: "test", submittedAt: new Date().toISOString() },
    msgId: "real-site",
  });
  const scanned = await eventually(
    "the real site scanned",
    async () => {
      const d = await db.collections.domains.findOne({ _id: site.domain });
      return d?.latest ? d : undefined;
    },
    60_000,
  );
  // The real result as the scanner published it.
  const oc = await nats.js.consumers.get(streams.results(config.region), { deliver_policy: DeliverPolicy.All });
  const real = (await oc.next({ expires: 5_000 }))!.json<ScanResult>();
  await oc.delete();
  t.is(real.domain, site.domain);

  const future = "2099-01-01T00:00:00.000Z";
  const forged = (r: ScanResult, name: string) => ({ ...r, scannerNode: `forger-${name}` });
  const attempts: Array<{ name: string; body: ScanResult }> = [
    {
      name: "invented token, dated 2099",
      body: forged(
        {
          ...real,
          jobId: `${site.domain}:forged-token`,
          leaseToken: "forged-token",
          report: { ...real.report, startedAt: future, finishedAt: future },
        },
        "a",
      ),
    },
    {
      name: "a domain that was never leased",
      body: forged({ ...real, domain: other.domain, jobId: `${other.domain}:${real.leaseToken}` }, "b"),
    },
    {
      name: "the real job and token with other content",
      body: forged({ ...real, report: { ...real.report, finishedAt: new Date().toISOString() } }, "c"),
    },
    {
      name: "a job id not built from the lease",
      body: forged({ ...real, jobId: `${other.domain}:${real.leaseToken}` }, "d"),
    },
  ];
  for (const { name, body } of attempts)
    await publishMessage(nats.js, {
      subject: subjects.results(config.region),
      schema: "scan-result",
      body,
      msgId: `forged-${name}`,
    });
  // A redelivery of the real result is accepted (no dead letter for it).
  await publishMessage(nats.js, {
    subject: subjects.results(config.region),
    schema: "scan-result",
    body: real,
    msgId: "real-again",
  });

  const dead = await eventually(
    "a dead letter per forged result",
    async () => {
      const dl = (await listDeadLetters(nats.jsm)).filter((d) => d.stage === "results");
      return dl.length >= attempts.length ? dl : undefined;
    },
    30_000,
  );
  t.is(dead.length, attempts.length, "only the forged results are refused");
  t.true(dead.every((d) => d.code === "rejected-input" && /scan result refused: /.test(d.reason)));
  t.true(dead.some((d) => /holds no lease with this token/.test(d.reason)));
  t.true(dead.some((d) => /in the future/.test(d.reason)));
  t.true(dead.some((d) => /a different scan is already stored/.test(d.reason)));
  t.true(dead.some((d) => /was not issued for/.test(d.reason)));

  const scans = await db.collections.scans.find({ domain: { $in: [site.domain, other.domain] } }).toArray();
  t.deepEqual(
    scans.map((s) => [s._id, s.scannerNode]),
    [[real.jobId, real.scannerNode]],
    "only the real scan is stored",
  );
  const after = await db.collections.domains.findOne({ _id: site.domain });
  t.is(after?.latest?.jobId, scanned.latest?.jobId);
  t.is(await db.collections.domains.countDocuments({ _id: other.domain }), 0);
});
