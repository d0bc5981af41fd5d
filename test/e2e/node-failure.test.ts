/**
 * Nodes come and go: a scanner node killed while it holds jobs loses none of them (another
 * node finishes them), and a node told to stop with SIGTERM finishes its jobs and exits 0.
 */
import test, { type ExecutionContext } from "ava";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import {
  connectNats,
  createLogger,
  listNodes,
  openRegistry,
  publishMessage,
  type ClusterNode,
} from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { consumers, streams, subjects } from "../../protocol/mod.ts";
import { eventually, spawnGlyphscan, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
let corpus: Corpus;

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 6 })]);
});
test.after.always(async () => {
  await corpus?.close();
  await stack?.stop();
});

/** Coordinator, frontier and results in this process; scanners are separate processes. */
async function pipeline(t: ExecutionContext, region: string) {
  const base = { region, regions: [region], actors: { ackWaitMs: 2_000, heartbeatMs: 300 } };
  const control = stack.config({ ...base, roles: ["coordinator", "frontier", "results"] });
  const node = await startNode(control, createLogger(control.logLevel, {}));
  const nats = await connectNats(control, "test-control");
  const db = await openDatabase(control);
  // A long settle on the browser path keeps each scan in flight for seconds, so the node holds jobs when it is hit.
  const scannerConfig = (settleMs: number): Config =>
    stack.config({
      ...base,
      nodeId: uniqueName("scanner"),
      roles: ["scanner"],
      mongo: control.mongo,
      scanner: { concurrency: 3, settleMs, fastPath: false },
    });
  const submitAll = async () => {
    for (const site of corpus.sites) {
      await publishMessage(nats.js, {
        subject: subjects.feed("test"),
        schema: "feed-submission",
        body: { url: site.url, source: "test", submittedAt: new Date().toISOString(), regionHint: region },
        msgId: `${region}:${site.url}`,
      });
    }
  };
  const holding = async (nodeId: string, atLeast: number) => {
    const registry = await openRegistry(nats.js, control.actors.heartbeatMs);
    return eventually(
      `${nodeId} to hold scan jobs`,
      async () => {
        const me = (await listNodes(registry, control.actors.heartbeatMs)).find((n) => n.nodeId === nodeId);
        const held = me ? Object.values(me.inflight).reduce((a, b) => a + b, 0) : 0;
        if (held >= atLeast) return held;
        throw new Error(`holds ${held} (registered: ${me ? "yes" : "no"})`);
      },
      60_000,
    );
  };
  const allScanned = () =>
    eventually(
      "every site scanned",
      async () => {
        const n = await db.collections.domains.countDocuments({ region, latest: { $ne: null } });
        return n === corpus.sites.length ? true : undefined;
      },
      120_000,
    );
  const children: ChildProcess[] = [];
  const spawnScanner = async (config: Config) => {
    const child = await spawnGlyphscan(config, ["node", "--roles", "scanner"]);
    children.push(child);
    return child;
  };
  const nodes: ClusterNode[] = [node];
  const startScanner = async (config: Config) => {
    const n = await startNode(config, createLogger(config.logLevel, {}));
    nodes.push(n);
    return n;
  };
  // Runs even when an assertion fails, so no node outlives its servers.
  t.teardown(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.stop()));
    await nats.nc.close();
    await db.close();
  });
  return { control, nats, db, scannerConfig, submitAll, holding, allScanned, spawnScanner, startScanner };
}

const exited = (child: ChildProcess) => once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;

test.serial("a scanner node killed while holding jobs loses none: another node finishes them", async (t) => {
  const p = await pipeline(t, "kill");
  const doomedConfig = p.scannerConfig(4_000);
  const doomed = await p.spawnScanner(doomedConfig);
  await p.submitAll();
  const held = await p.holding(doomedConfig.nodeId!, 1);
  doomed.kill("SIGKILL");
  await exited(doomed);
  t.true(held > 0);

  const rescuerConfig = p.scannerConfig(150);
  await p.startScanner(rescuerConfig);
  await p.allScanned();
  const scans = await p.db.collections.scans.find({ region: "kill" }).toArray();
  t.is(new Set(scans.map((s) => s.domain)).size, corpus.sites.length, "every site has a scan");
  t.is(scans.length, corpus.sites.length, "no site was scanned twice");
  t.true(
    scans.filter((s) => s.scannerNode === rescuerConfig.nodeId).length >= held,
    "the jobs the dead node held were finished by the other",
  );
  t.true(scans.every((s) => s.status === "ok"));
});

test.serial("SIGTERM drains a scanner node: in-flight scans finish, nothing is redelivered, exit code 0", async (t) => {
  const p = await pipeline(t, "drain");
  const cfg = p.scannerConfig(2_500);
  const child = await p.spawnScanner(cfg);
  await p.submitAll();
  // Every worker busy, so none has a pull outstanding that SIGTERM would have to hand back.
  const held = await p.holding(cfg.nodeId!, 3);
  child.kill("SIGTERM");
  const [code] = await exited(child);
  t.is(code, 0, "exit code after draining");
  // The child published its results before exiting; they are recorded here a moment later.
  const finishedByChild = await eventually(
    `the ${held} jobs in flight at SIGTERM recorded as finished by the child`,
    async () => {
      const n = await p.db.collections.scans.countDocuments({ scannerNode: cfg.nodeId! });
      return n >= held ? n : undefined;
    },
    15_000,
  );
  t.true(finishedByChild >= held);
  const jobs = await p.nats.jsm.consumers.info(streams.jobs("drain"), consumers.scanners);
  t.is(jobs.num_redelivered, 0, "no job had to be redelivered");
  const registry = await openRegistry(p.nats.js, p.control.actors.heartbeatMs);
  t.false(
    (await listNodes(registry, p.control.actors.heartbeatMs)).some((n) => n.nodeId === cfg.nodeId),
    "left the registry",
  );

  // The rest is picked up by a new node.
  await p.startScanner(p.scannerConfig(150));
  await p.allScanned();
  t.is(await p.db.collections.scans.countDocuments({ region: "drain" }), corpus.sites.length);
});
