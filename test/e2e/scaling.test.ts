/**
 * Scanner nodes join and leave a running region: a second `glyphscan node --roles scanner`
 * process raises the region's throughput, and SIGTERM drains a node mid-run without losing or
 * repeating a job. Every site answers after a fixed server-side delay and each node renders one
 * page at a time, so throughput is set by the number of scanner slots, not by CPU; the test
 * compares completions in equal windows with a wide margin, never an absolute speed.
 */
import test from "ava";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { connectNats, createLogger, listNodes, openRegistry, publishMessage } from "../../cluster/mod.ts";
import type { ClusterStatus } from "../../bin/commands/status.ts";
import type { Config } from "../../config/mod.ts";
import { consumers, streams, subjects } from "../../protocol/mod.ts";
import { eventually, spawnGlyphscan, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

/**
 * Server-side delay of every page. Long enough that two nodes' results (about two a second) stay
 * well within what the shared stores take on a busy two-core machine: measured, three results a
 * second already saturated the frontier's MongoDB and starved the scanners of jobs.
 */
const PAGE_DELAY_MS = 1_000;
/** Sites submitted: enough that the queue never runs dry before the last phase. */
const SITES = 100;
/** Length of each throughput window. */
const WINDOW_MS = 15_000;

let stack: TestStack;
let server: Server;
let port: number;

test.before(async () => {
  stack = await startStack();
  // One script-free page per host, answered after a fixed delay (the static path scans it, no browser).
  server = createServer((req, res) => {
    if (req.url !== "/") return void res.writeHead(404).end();
    setTimeout(() => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      res.end(`<!doctype html><html><head><title>${req.headers.host ?? ""}</title>
<style>body { font-family: Georgia, serif }</style></head><body><p>slow site</p></body></html>`);
    }, PAGE_DELAY_MS);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
});
test.after.always(async () => {
  server?.closeAllConnections();
  server?.close();
  await stack?.stop();
});

const exited = (child: ChildProcess) => once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;

test("a second scanner node raises throughput; SIGTERM on one mid-run loses and repeats nothing", async (t) => {
  const region = "scale";
  const base = { region, regions: [region], actors: { ackWaitMs: 5_000, heartbeatMs: 300 } };
  // A deeper job queue per scanner slot, so a slow dispatch round never leaves a scanner idle.
  const control = stack.config({
    ...base,
    roles: ["coordinator", "frontier", "results"],
    frontier: { jobsPerScannerSlot: 10 },
  });
  const node = await startNode(control, createLogger(control.logLevel, {}));
  const nats = await connectNats(control, "scaling-test");
  const db = await openDatabase(control);
  const registry = await openRegistry(nats.js, control.actors.heartbeatMs);
  const children: ChildProcess[] = [];
  t.teardown(async () => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    await node.stop();
    await nats.nc.close();
    await db.close();
  });

  const scannerConfig = (): Config =>
    stack.config({ ...base, nodeId: uniqueName("scanner"), roles: ["scanner"], mongo: control.mongo });
  const spawnScanner = async () => {
    const config = scannerConfig();
    // As an operator runs it: the concurrency from the command line.
    const child = await spawnGlyphscan(config, ["node", "--roles", "scanner", "--concurrency", "1"]);
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
    children.push(child);
    return { id: config.nodeId!, child, stderr: () => stderr };
  };
  const scansBy = (nodeId: string) => db.collections.scans.countDocuments({ scannerNode: nodeId });
  const warm = (nodeId: string, what: string) =>
    eventually(
      `${what} to finish its first scans`,
      async () => ((await scansBy(nodeId)) >= 3 ? true : undefined),
      90_000,
    );
  /** Scans that finished within [from, from + WINDOW_MS), by node; waits for the window to end. */
  const windowFrom = async (from: number) => {
    await eventually(
      "the window to pass",
      async () => (Date.now() >= from + WINDOW_MS + 500 ? true : undefined),
      WINDOW_MS + 5_000,
    );
    const scans = await db.collections.scans
      .find({ region, finishedAt: { $gte: new Date(from), $lt: new Date(from + WINDOW_MS) } })
      .toArray();
    const byNode = new Map<string, number>();
    for (const s of scans) byNode.set(s.scannerNode, (byNode.get(s.scannerNode) ?? 0) + 1);
    const meanMs = Math.round(scans.reduce((a, s) => a + s.durationMs, 0) / Math.max(1, scans.length));
    const paths = [...new Set(scans.map((s) => s.path))].join(",");
    const jobs = await nats.jsm.consumers.info(streams.jobs(region), consumers.scanners);
    return { total: scans.length, byNode, meanMs, paths, queued: jobs.num_pending };
  };

  const hosts = Array.from({ length: SITES }, (_, i) => `s${String(i).padStart(3, "0")}-${uniqueName("x")}.test`);
  for (let i = 0; i < hosts.length; i += 50) {
    await publishMessage(nats.js, {
      subject: subjects.feed("scale"),
      schema: "feed-batch",
      msgId: `scale:${i}`,
      body: {
        urls: hosts.slice(i, i + 50).map((h) => `http://${h}:${port}/`),
        source: "scale",
        submittedAt: new Date().toISOString(),
      },
    });
  }
  // Every site admitted before the first scanner joins: the frontier's intake must not be what limits the rate.
  await eventually(
    "every site admitted to the frontier",
    async () => ((await db.collections.domains.countDocuments({ region })) === SITES ? true : undefined),
    120_000,
  );
  const first = await spawnScanner();
  await warm(first.id, "the first node").catch((err: unknown) => {
    throw new Error(`${String(err)}; node stderr: ${first.stderr()}`);
  });
  const one = await windowFrom(Date.now());

  const second = await spawnScanner();
  await warm(second.id, "the second node").catch((err: unknown) => {
    throw new Error(`${String(err)}; node stderr: ${second.stderr()}`);
  });
  const two = await windowFrom(Date.now());
  t.log(
    `scans in ${WINDOW_MS} ms: one node ${one.total} (mean ${one.meanMs} ms, ${one.paths}),` +
      ` two nodes ${two.total} (mean ${two.meanMs} ms, ${two.paths}); jobs waiting after each: ${one.queued}, ${two.queued}`,
    [...two.byNode],
  );
  t.true(one.total >= 5, `the first node scanned in its window (${one.total})`);
  t.true(two.total > one.total * 1.4, `two nodes scan more than 1.4x one node: ${two.total} vs ${one.total}`);
  t.true((two.byNode.get(first.id) ?? 0) > 0 && (two.byNode.get(second.id) ?? 0) > 0, "both nodes scanned");

  // What an operator sees meanwhile: both scanner nodes and the control node in the region.
  const statusRun = await spawnGlyphscan({ ...control, nodeId: uniqueName("status") }, ["status", "--json"]);
  let out = "";
  statusRun.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  t.is((await exited(statusRun))[0], 0, "status exits 0");
  const status = JSON.parse(out) as ClusterStatus;
  const here = status.regions.find((r) => r.region === region);
  t.deepEqual(
    here?.nodes.map((n) => [n.nodeId, n.roles.join(","), n.scannerSlots ?? null]).sort(),
    [
      [control.nodeId, "coordinator,frontier,results", 0],
      [first.id, "scanner", 1],
      [second.id, "scanner", 1],
    ].sort(),
    "status lists the region's nodes with their roles and slots",
  );
  t.true((here?.scansPerMinute ?? 0) > 0, "status shows the region scanning");

  const done = await db.collections.scans.countDocuments({ region });
  t.true(done < SITES, `the queue still has work when a node is stopped (${done} of ${SITES} done)`);

  // SIGTERM mid-run: the node leaves the registry, finishes its page and exits 0.
  first.child.kill("SIGTERM");
  const [code, signal] = await exited(first.child);
  t.is(code, 0, `the drained node exits 0 (signal ${signal}; stderr: ${first.stderr()})`);
  t.false(
    (await listNodes(registry, control.actors.heartbeatMs)).some((n) => n.nodeId === first.id),
    "the drained node left the registry",
  );

  await eventually(
    "every site scanned by the remaining node",
    async () =>
      (await db.collections.domains.countDocuments({ region, latest: { $ne: null } })) === SITES ? true : undefined,
    180_000,
  );
  const scans = await db.collections.scans.find({ region }).toArray();
  const perDomain = new Map<string, number>();
  for (const s of scans) perDomain.set(s.domain, (perDomain.get(s.domain) ?? 0) + 1);
  t.deepEqual([...perDomain.keys()].sort(), [...hosts].sort(), "every site has a scan");
  t.deepEqual(
    [...perDomain].filter(([, n]) => n !== 1),
    [],
    "no site was scanned twice",
  );
  t.true(
    scans.every((s) => s.status === "ok"),
    "every scan succeeded",
  );
  const domains = await db.collections.domains.find({ region }).toArray();
  t.true(
    domains.every((d) => d.scanCount === 1),
    "each domain recorded one scan",
  );
  const results = await nats.jsm.streams.info(streams.results(region));
  t.is(results.state.messages, SITES, "one result message per site");

  second.child.kill("SIGTERM");
  t.is((await exited(second.child))[0], 0);
});
