/**
 * `glyphscan status` run as its own process against a running node: per region the live nodes
 * and their roles, the scan-job lag, scans and failures of the last minute and the oldest job
 * still waiting; `--json` for machines, text for people.
 */
import test from "ava";
import { once } from "node:events";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, publishMessage } from "../../cluster/mod.ts";
import type { ClusterStatus } from "../../bin/commands/status.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { subjects } from "../../protocol/mod.ts";
import { eventually, spawnGlyphscan, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
let corpus: Corpus;

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 3, tag: "status" })]);
});
test.after.always(async () => {
  await corpus?.close();
  await stack?.stop();
});

async function runStatus(config: Config, args: string[]): Promise<string> {
  const child = await spawnGlyphscan({ ...config, nodeId: uniqueName("status") }, ["status", ...args]);
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
  const [code] = (await once(child, "exit")) as [number];
  if (code !== 0) throw new Error(`status exited ${code}: ${err}`);
  return out;
}

test("status shows each region's nodes, lag, scans per minute, failures and oldest pending job", async (t) => {
  // "idle" has no scanner: jobs put there wait, and show as lag with an age.
  const config = stack.config({ regions: ["local", "idle"], frontier: { maxAttempts: 1 } });
  const node = await startNode(config, createLogger(config.logLevel, {}));
  const nats = await connectNats(config, "status-test");
  const db = await openDatabase(config);
  t.teardown(async () => {
    await node.stop();
    await nats.nc.close();
    await db.close();
  });

  const urls = [...corpus.sites.map((s) => s.url), "http://refused.test:1/"];
  await publishMessage(nats.js, {
    subject: subjects.feed("status"),
    schema: "feed-batch",
    msgId: "status:batch",
    body: { urls, source: "status", submittedAt: new Date().toISOString(), regionHint: "local" },
  });
  await eventually(
    "every submitted domain scanned",
    async () => {
      const docs = await db.collections.domains.find({}).toArray();
      if (docs.length === 4 && docs.every((d) => d.latest)) return true;
      throw new Error(`domains: ${docs.map((d) => `${d._id} ${d.state}${d.latest ? " scanned" : ""}`).join(", ")}`);
    },
    90_000,
  );

  const queuedFrom = Date.now();
  for (const n of [1, 2]) {
    await publishMessage(nats.js, {
      subject: subjects.jobs("idle"),
      schema: "scan-job",
      msgId: `status:idle:${n}`,
      body: {
        jobId: `idle-${n}`,
        domain: `idle${n}.test`,
        url: `http://idle${n}.test/`,
        region: "idle",
        attempt: 1,
        leaseToken: "t",
        leaseUntil: new Date(Date.now() + 600_000).toISOString(),
        dispatchedAt: new Date().toISOString(),
      },
    });
  }
  const queuedTo = Date.now();

  const status = JSON.parse(await runStatus(config, ["--json"])) as ClusterStatus;
  t.deepEqual(
    status.regions.map((r) => r.region),
    ["idle", "local"],
  );
  const local = status.regions.find((r) => r.region === "local")!;
  const idle = status.regions.find((r) => r.region === "idle")!;

  t.deepEqual(
    local.nodes.map((n) => [n.nodeId, [...n.roles].sort(), n.state]),
    [[config.nodeId, [...config.roles].sort(), "running"]],
    "the running node, with its roles",
  );
  t.deepEqual(idle.nodes, [], "no node in the idle region");

  const scans = await db.collections.scans.find({}).toArray();
  const failed = scans.filter((s) => s.status === "failed");
  t.is(scans.length, 4);
  t.is(failed.length, 1, "refused.test failed");
  t.is(local.lastMinute.scans, 4, "every scan of this test finished within the last minute");
  t.is(local.scansPerMinute, 4);
  t.is(local.lastMinute.failed, 1);
  t.deepEqual(local.lastMinute.failures, { [failed[0]!.failure!.kind]: 1 });
  t.like(local.jobs, { pending: 0, inFlight: 0, lag: 0 });
  t.is(local.oldestPendingJob, null, "nothing waits in the local region");
  t.like(local.results, { pending: 0, inFlight: 0 });

  t.like(idle.jobs, { pending: 2, inFlight: 0, lag: 2 });
  t.is(idle.lastMinute.scans, 0);
  const oldest = idle.oldestPendingJob!;
  t.truthy(oldest, "the idle region's oldest job");
  const at = Date.parse(oldest.dispatchedAt);
  t.true(at >= queuedFrom - 1_000 && at <= queuedTo + 1_000, `oldest job stored at ${oldest.dispatchedAt}`);
  t.true(oldest.ageSeconds >= 0 && oldest.ageSeconds < 60);
  t.like(status.deadLetters, { coordinator: 0, scanner: 0 });

  const text = await runStatus(config, []);
  t.regex(text, /^region idle\n {2}nodes \(0\):/m);
  t.regex(text, new RegExp(`^ {4}${config.nodeId!}\\s+running\\s+\\S*scanner`, "m"));
  t.regex(text, /jobs: lag 2 \(waiting 2, in flight 0\)/);
  t.regex(text, /scans\/min: 4 {2}failures \(last 60s\): 1 \(\S+ 1\)/);
  t.regex(text, /oldest pending job: \d+s old/);
  t.regex(text, /oldest pending job: none/);
});
