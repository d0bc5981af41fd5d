/**
 * Two regions on one NATS supercluster (clusters eu, us and a third, hub, holding the shared
 * streams and the majority): domains routed to each region are scanned there, every result is
 * readable from the global RESULTS stream through either region, and cutting eu off mid-run
 * (its server killed, then restarted on the same ports and store) loses nothing and scans
 * nothing twice: eu's queued work waits, new eu domains go to us after the grace period, and
 * routing returns to eu when it is back.
 */
import test from "ava";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { startNode } from "../../actors/compose.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import {
  connectNats,
  createLogger,
  listDeadLetters,
  listNodes,
  openRegistry,
  publishMessage,
  type ClusterNode,
  type NatsHandles,
} from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus, type CorpusSite } from "../../ops/demo/corpus.ts";
import { streams, subjects } from "../../protocol/mod.ts";
import {
  startMongo,
  startRedis,
  startSupercluster,
  stopAll,
  type ManagedServer,
  type Supercluster,
} from "../harness/servers.ts";
import { eventually, testConfig, uniqueName } from "../helpers/stack.ts";

let sc: Supercluster;
let redis: ManagedServer;
let mongo: ManagedServer;
let corpus: Corpus;
const nodes: ClusterNode[] = [];
const closers: Array<() => Promise<unknown>> = [];

test.before(async () => {
  [sc, redis, mongo, corpus] = await Promise.all([
    startSupercluster({ clusters: ["eu", "us", "hub"] }),
    startRedis(),
    startMongo(),
    startCorpus({ sites: 40 }),
  ]);
});

test.after.always(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  for (const close of closers) await close().catch(() => undefined);
  await corpus?.close();
  await stopAll();
});

const HEARTBEAT_MS = 300;
const GRACE_MS = 3_000;

/** Every node shares the stores, the Bloom filter and the region layout; each talks to its region's server. */
function nodeConfig(server: string, region: string, extra: Record<string, unknown>, shared: Record<string, unknown>) {
  return testConfig(
    { nats: server, redis: redis.url, mongo: mongo.url },
    {
      ...shared,
      region,
      regions: ["eu", "us"],
      nodeId: uniqueName(`node-${region}`),
      nats: { servers: [server], placement: "cluster", sharedPlacement: "hub" },
      actors: { ackWaitMs: 2_000, heartbeatMs: HEARTBEAT_MS, drainTimeoutMs: 10_000, backoffMs: [100, 200, 400] },
      ...extra,
    },
  );
}

/** Every message of the global results stream, read through a client of `url`: domain → job ids. */
async function globalResults(js: JetStreamClient): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const consumer = await js.consumers.get(streams.resultsGlobal);
  for (;;) {
    const batch = await consumer.fetch({ max_messages: 100, expires: 1_000 });
    let n = 0;
    for await (const m of batch) {
      n++;
      const r = m.json<{ domain: string; jobId: string }>();
      out.set(r.domain, [...(out.get(r.domain) ?? []), r.jobId]);
    }
    if (n === 0) return out;
  }
}

test("domains are scanned in their region, results are global, and an eu outage loses and repeats nothing", async (t) => {
  const shared = {
    mongo: { url: mongo.url, database: uniqueName("regions") },
    coordinator: {
      allowHosts: ["*.test"],
      seenFilterName: uniqueName("seen").toLowerCase(),
      fallbackRegions: { eu: "us", us: "eu" },
      regionGraceMs: GRACE_MS,
      regionProbeMs: 300,
    },
  };
  // The coordinator lives next to the shared streams; it may run in any region.
  const control = nodeConfig(sc.urls.hub!, "us", { roles: ["coordinator"] }, shared);
  // eu renders every page in the browser and lingers, so it holds jobs when it is cut off.
  const eu = nodeConfig(
    sc.urls.eu!,
    "eu",
    { roles: ["frontier", "results", "scanner"], scanner: { concurrency: 2, fastPath: false, settleMs: 600 } },
    shared,
  );
  const us = nodeConfig(sc.urls.us!, "us", { roles: ["frontier", "results", "scanner"] }, shared);
  const start = async (config: Config) => {
    const node = await startNode(config, createLogger(config.logLevel, {}));
    nodes.push(node);
    return node;
  };
  // Whichever node starts first lays out the topology (streams in their clusters, KV buckets in hub).
  // The coordinator starts last: a region without a live scanner counts as down, even at startup.
  await start(eu);
  await start(us);
  await start(control);

  const client: NatsHandles = await connectNats(control, "regions-test");
  closers.push(() => client.nc.close());
  const db: Database = await openDatabase(control);
  closers.push(() => db.close());
  const registry = await openRegistry(client.js, HEARTBEAT_MS);
  // The coordinator's routing decisions, as published: domain → region.
  const routed = new Map<string, string>();
  const admissions = client.nc.subscribe(subjects.admitAll, {
    callback: (_err, m) => {
      const a = m.json<{ domain: string; region: string }>();
      routed.set(a.domain, a.region);
    },
  });
  closers.unshift(async () => admissions.unsubscribe());

  // Each region's job and results streams live in that region's cluster; the shared ones in hub.
  for (const [stream, cluster] of [
    [streams.jobs("eu"), "eu"],
    [streams.results("eu"), "eu"],
    [streams.jobs("us"), "us"],
    [streams.results("us"), "us"],
    [streams.feeds, "hub"],
    [streams.resultsGlobal, "hub"],
  ] as const) {
    t.is((await client.jsm.streams.info(stream)).cluster?.name, cluster, `${stream} placed in ${cluster}`);
  }

  const t0 = Date.now();
  const phase = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const sites = [...corpus.sites];
  const take = (n: number) => sites.splice(0, n);
  const fed = new Map<string, CorpusSite>();
  const feed = async (site: CorpusSite, hint: string) => {
    fed.set(site.domain, site);
    await publishMessage(client.js, {
      subject: subjects.feed("regions"),
      schema: "feed-submission",
      body: { url: site.url, source: "regions", submittedAt: new Date().toISOString(), regionHint: hint },
      msgId: `regions:${site.url}`,
    });
  };
  const regionOf = async (domain: string) => (await db.collections.domains.findOne({ _id: domain }))?.region;
  const scanned = (domains: string[], what: string, timeoutMs = 90_000) =>
    eventually(
      what,
      async () => {
        const n = await db.collections.domains.countDocuments({ _id: { $in: domains }, latest: { $ne: null } });
        return n === domains.length ? true : undefined;
      },
      timeoutMs,
    );

  // 1. Both regions up: hinted domains land and are scanned in their region.
  const firstEu = take(3);
  const firstUs = take(3);
  for (const s of firstEu) await feed(s, "eu");
  for (const s of firstUs) await feed(s, "us");
  await scanned(
    [...firstEu, ...firstUs].map((s) => s.domain),
    "the first sites scanned in both regions",
  );

  phase("phase 1 done");
  // 2. eu cut off mid-run, while its scanner holds jobs and more wait in its queue.
  const midEu = take(4);
  const midUs = take(2);
  for (const s of midEu) await feed(s, "eu");
  for (const s of midUs) await feed(s, "us");
  // Every eu job stored in its stream (so the cut cannot fall between a job's publish and its ack)
  // and some of them in the scanner's hands.
  await eventually(
    "the mid-run eu jobs to be in JOBS_EU",
    async () =>
      (await client.jsm.streams.info(streams.jobs("eu"))).state.last_seq >= firstEu.length + midEu.length
        ? true
        : undefined,
    60_000,
  );
  await eventually(
    "the eu scanner to hold jobs",
    async () => {
      const me = (await listNodes(registry, HEARTBEAT_MS)).find((n) => n.nodeId === eu.nodeId);
      return (me?.inflight["scanner-eu"] ?? 0) > 0 ? true : undefined;
    },
    60_000,
  );
  await sc.servers.eu!.kill();

  phase("eu killed");
  // 3. While eu is down, new eu domains first wait for it; once its grace period is over they go to us.
  const waiting: string[] = [];
  let fallenBack: string | undefined;
  let lastProbe = 0;
  await eventually(
    "new eu domains to be routed to us",
    async () => {
      if (Date.now() - lastProbe >= 1_000 && sites.length > 12) {
        lastProbe = Date.now();
        const [probe] = take(1);
        waiting.push(probe!.domain);
        await feed(probe!, "eu");
      }
      fallenBack = waiting.find((d) => routed.get(d) === "us");
      return fallenBack;
    },
    45_000,
  );
  const routedToEuWhileDown = waiting.slice(0, waiting.indexOf(fallenBack!));
  t.true(routedToEuWhileDown.length > 0, "domains fed within the grace period stayed with eu");
  for (const d of routedToEuWhileDown) {
    t.is(routed.get(d), "eu", `${d} routed to eu within the grace period`);
    t.is(await regionOf(d), undefined, `${d} waits for eu, not admitted elsewhere`);
  }
  const duringEu = take(2);
  const duringUs = take(1);
  for (const s of duringEu) await feed(s, "eu");
  for (const s of duringUs) await feed(s, "us");
  const fallbackDomains = [...waiting.slice(waiting.indexOf(fallenBack!)), ...duringEu.map((s) => s.domain)];
  // us goes on working meanwhile, including eu's new domains.
  await scanned([...fallbackDomains, ...duringUs.map((s) => s.domain), ...midUs.map((s) => s.domain)], "us scans");
  for (const d of fallbackDomains) t.is(await regionOf(d), "us", `${d} went to the fallback`);

  phase("fallback seen and us scanned");
  // 4. eu comes back: its waiting work resumes and new eu domains go to eu again.
  await sc.servers.eu!.restart();
  const afterReturn: string[] = [];
  lastProbe = 0;
  await eventually(
    "routing to return to eu",
    async () => {
      if (Date.now() - lastProbe >= 1_000 && sites.length > 0) {
        lastProbe = Date.now();
        const [probe] = take(1);
        afterReturn.push(probe!.domain);
        await feed(probe!, "eu");
      }
      return afterReturn.some((d) => routed.get(d) === "eu") ? true : undefined;
    },
    45_000,
  );

  phase("routing returned to eu");
  // 5. Everything fed is scanned once, in the region it was routed to.
  const all = [...fed.keys()];
  try {
    await scanned(all, "every fed site scanned");
  } catch (err) {
    const pending = await db.collections.domains.find({ _id: { $in: all }, latest: null }).toArray();
    t.log("admitted, not scanned:", JSON.stringify(pending.map((p) => ({ ...p, traceparent: undefined }))));
    for (const [stream, durable] of [
      [streams.jobs("eu"), "scanners"],
      [streams.admit, "frontier_EU"],
      [streams.results("eu"), "results-writer"],
    ] as const) {
      const ci = await client.jsm.consumers.info(stream, durable).catch((e: unknown) => String(e));
      t.log(
        stream,
        durable,
        typeof ci === "string"
          ? ci
          : JSON.stringify({ p: ci.num_pending, a: ci.num_ack_pending, r: ci.num_redelivered, w: ci.num_waiting }),
      );
    }
    t.log(JSON.stringify(await listNodes(registry, HEARTBEAT_MS)));
    throw err;
  }
  for (const d of [...firstEu, ...midEu].map((s) => s.domain).concat(routedToEuWhileDown)) {
    t.is(await regionOf(d), "eu", `${d} scanned in eu`);
  }
  for (const d of [...firstUs, ...midUs, ...duringUs].map((s) => s.domain)) t.is(await regionOf(d), "us");
  const nodeOf: Record<string, string> = { eu: eu.nodeId!, us: us.nodeId! };
  for (const domain of all) {
    const scans = await db.collections.scans.find({ domain }).toArray();
    t.is(
      scans.length,
      1,
      `${domain}: one scan ${JSON.stringify(scans.map((x) => [x._id, x.scannerNode, x.attempt, x.status, x.failure, x.startedAt, x.recordedAt]))}`,
    );
    const [scan] = scans;
    const region = await regionOf(domain);
    t.is(scan?.status, "ok", `${domain}: ${scan?.failure?.message ?? ""}`);
    t.is(scan?.region, region, `${domain} scanned in its region`);
    t.is(scan?.scannerNode, nodeOf[region!], `${domain} scanned by the ${region} node`);
  }
  t.is(await db.collections.domains.countDocuments({}), all.length, "nothing else admitted");

  phase("all scanned");
  // 6. Every result, exactly once, in the global stream, read through eu and through us.
  for (const region of ["eu", "us"] as const) {
    const nc = await connect({ servers: sc.urls[region]! });
    closers.push(() => nc.close());
    const js = jetstream(nc);
    const results = await eventually(
      `every result in the global stream, read in ${region}`,
      async () => {
        const r = await globalResults(js);
        return all.every((d) => r.has(d)) ? r : undefined;
      },
      90_000,
    );
    t.deepEqual([...results.keys()].sort(), [...all].sort(), `${region}: results of exactly the fed domains`);
    for (const [domain, jobIds] of results) t.is(jobIds.length, 1, `${region}: ${domain} has one result`);
  }
  phase("global results read");
  t.deepEqual(await listDeadLetters(client.jsm), [], "the outage dead-lettered nothing");
});
