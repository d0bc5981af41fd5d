/**
 * The dispatcher at scale: batch leasing without transactions, one leader per region with
 * failover, backpressure from live scanner capacity, and a leader killed mid-dispatch that loses
 * and doubles nothing.
 */
import test, { type ExecutionContext } from "ava";
import type { JsMsg } from "@nats-io/jetstream";
import type { ChildProcess } from "node:child_process";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { Dispatcher } from "../../actors/frontier/dispatcher.ts";
import { Leadership, currentLeader, openLeaders } from "../../actors/frontier/leadership.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { connectNats, createLogger, ensureTopology, openRegistry, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { consumers, streams, type ScanJob } from "../../protocol/mod.ts";
import { registerScanner } from "../helpers/frontier.ts";
import { eventually, spawnGlyphscan, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const log = createLogger("silent", {});

async function setup(t: ExecutionContext, overrides: Record<string, unknown> = {}) {
  const config = stack.config({ roles: ["frontier"], ...overrides });
  const nats = await connectNats(config, uniqueName("t"));
  t.teardown(() => nats.nc.close());
  await ensureTopology(nats.jsm, config);
  const db = await openDatabase(config);
  t.teardown(() => db.close());
  return { config, nats, db, store: new DomainStore(db.collections, config.frontier) };
}

async function admitMany(store: DomainStore, n: number, prefix: string, at = new Date()) {
  const batch = Array.from({ length: n }, (_, i) => ({
    admission: {
      domain: `${prefix}${String(i).padStart(5, "0")}.test`,
      seedUrl: `http://${prefix}${i}.test/`,
      source: "t",
      region: "local",
      admittedAt: at.toISOString(),
    },
    traceparent: undefined,
  }));
  for (let i = 0; i < batch.length; i += 1000) await store.admit(batch.slice(i, i + 1000), at);
}

/** A scanner as the registry sees it: `slots` pages at once in region local. */
async function fakeScanner(t: ExecutionContext, config: Config, nats: NatsHandles, slots: number) {
  const kv = await openRegistry(nats.js, config.actors.heartbeatMs);
  return registerScanner(t, kv, config.actors.heartbeatMs, { slots });
}

test.serial("batch leasing: claim rounds from two stores split the due domains, none twice, none missed", async (t) => {
  const { config, db, store } = await setup(t);
  const past = new Date(Date.now() - 60_000);
  await admitMany(store, 600, "b", past);
  const other = new DomainStore(db.collections, config.frontier);
  // Rounds alternate between two stores (two dispatchers over time, e.g. across a failover).
  // They are not run concurrently here: FerretDB v1 applies updateMany as read-then-write, not
  // per document atomically as MongoDB does, so concurrent claimers are kept apart by the
  // region's leader lease rather than by the database.
  const rounds = [];
  for (let i = 0; i < 6; i++) rounds.push(await (i % 2 ? store : other).leaseDue("local", 90));
  const again = await store.leaseDue("local", 600);
  const ids = [...rounds.flat(), ...again].map((j) => j.job.domain);
  t.is(new Set(ids).size, ids.length, "no domain leased twice");
  t.is(ids.length, 600, "every due domain leased");
  t.is(await store.countInFlight("local"), 600);
  t.deepEqual(await store.leaseDue("local", 10), [], "nothing due while leased");
  const job = rounds[0]![0]!.job;
  const doc = await store.get(job.domain);
  t.is(`${doc?._id}:${doc?.leaseToken}`, job.jobId, "the job id is domain:leaseToken");
  t.is(doc?.attempts, 1);
  t.is(job.attempt, 1);
});

test.serial("one leader per region; a standby takes over when the leader stops renewing", async (t) => {
  const { nats } = await setup(t);
  const ttl = 1_500;
  const a = new Leadership(nats.js, "dispatcher", "local", "a", ttl, log);
  const b = new Leadership(nats.js, "dispatcher", "local", "b", ttl, log);
  await a.start();
  await b.start();
  t.teardown(() => b.stop());
  t.true(a.held);
  t.false(b.held);
  const kv = await openLeaders(nats.js, ttl);
  t.is((await currentLeader(kv, "dispatcher", "local"))?.holder, "a");
  // Renewals keep the lead across several TTLs.
  await new Promise((r) => setTimeout(r, ttl * 2));
  t.true(a.held);
  t.false(b.held);
  // Graceful stop hands over at once.
  await a.stop();
  await eventually("b leading", async () => (b.held ? true : undefined), 5_000);
  t.is((await currentLeader(kv, "dispatcher", "local"))?.holder, "b");
});

test.serial("backpressure: jobs.<region> holds at most live scanner slots × jobsPerScannerSlot", async (t) => {
  const { config, nats, store } = await setup(t, { frontier: { jobsPerScannerSlot: 2, leaderTtlMs: 1_500 } });
  await nats.jsm.streams.purge(streams.jobs("local"));
  await admitMany(store, 300, "q", new Date(Date.now() - 1_000));
  const d = new Dispatcher("local", store, nats.js, config.frontier, log, {
    jsm: nats.jsm,
    nodeId: "bp",
    heartbeatMs: config.actors.heartbeatMs,
  });
  await d.start();
  t.teardown(() => d.stop());
  const queued = async () => {
    const c = await nats.jsm.consumers.info(streams.jobs("local"), consumers.scanners);
    return c.num_pending + c.num_ack_pending;
  };
  // No scanner alive: nothing is sent.
  await new Promise((r) => setTimeout(r, 500));
  t.is(await queued(), 0);
  await fakeScanner(t, config, nats, 3);
  await eventually("6 jobs queued", async () => ((await queued()) === 6 ? true : undefined), 10_000);
  await new Promise((r) => setTimeout(r, 600)); // several more ticks
  t.is(await queued(), 6, "no more than 3 slots × 2");
  await fakeScanner(t, config, nats, 5);
  await eventually("16 jobs queued", async () => ((await queued()) === 16 ? true : undefined), 10_000);
  await new Promise((r) => setTimeout(r, 600));
  t.is(await queued(), 16);
});

/**
 * Acts as the region's scanners: takes each job, counts it, answers it on its lease. A job is
 * counted once however often JetStream delivers its message (a slow answer past the ack wait is
 * redelivered): what must not happen is a second job, a second lease, for the domain.
 */
async function countingScanner(nats: NatsHandles, db: Database, counts: Map<string, number>) {
  const seen = new Set<string>();
  const consumer = await nats.js.consumers.get(streams.jobs("local"), consumers.scanners);
  const messages = await consumer.consume({ max_messages: 20 });
  void (async () => {
    for await (const m of messages) void answer(m);
  })();
  async function answer(m: JsMsg) {
    {
      const job = m.json<ScanJob>();
      if (!seen.has(job.jobId)) counts.set(job.domain, (counts.get(job.domain) ?? 0) + 1);
      seen.add(job.jobId);
      await new Promise((r) => setTimeout(r, 5));
      await db.collections.domains.updateOne(
        { _id: job.domain, leaseToken: job.leaseToken },
        {
          $set: {
            state: "scanned",
            nextScanAt: new Date(Date.now() + 86_400_000),
            leaseToken: null,
            leaseJobId: null,
            leaseUntil: null,
          },
          $inc: { scanCount: 1 },
        },
      );
      m.ack();
    }
  }
  return messages;
}

const exited = (p: ChildProcess) =>
  new Promise<void>((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once("exit", () => r())));

test.serial("a dispatcher killed mid-dispatch is replaced; every domain is scanned exactly once", async (t) => {
  const { config, nats, db, store } = await setup(t, {
    // A lease long enough that answers slowed by a busy FerretDB still land on it.
    frontier: { leaderTtlMs: 1_500, leaseMs: 30_000, dispatchBatch: 20, dispatchIntervalMs: 50, jobsPerScannerSlot: 2 },
  });
  await nats.jsm.streams.purge(streams.jobs("local"));
  const n = 150;
  await admitMany(store, n, "k", new Date(Date.now() - 1_000));
  await fakeScanner(t, config, nats, 10);
  const counts = new Map<string, number>();
  const messages = await countingScanner(nats, db, counts);
  t.teardown(async () => {
    await messages.close();
    await new Promise((r) => setTimeout(r, 100));
  });

  const kv = await openLeaders(nats.js, config.frontier.leaderTtlMs);
  const procs = [
    await spawnGlyphscan({ ...config, logLevel: "info", nodeId: "dispatcher-a" }, ["node", "--roles", "frontier"]),
    await spawnGlyphscan({ ...config, logLevel: "info", nodeId: "dispatcher-b" }, ["node", "--roles", "frontier"]),
  ];
  let stderr = "";
  for (const p of procs) p.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  for (const p of procs) p.stdout!.on("data", (d: Buffer) => (stderr += d.toString()));
  t.teardown(async () => {
    if (stderr) t.log(stderr.slice(-3000));
    for (const p of procs) p.kill("SIGKILL");
    await Promise.all(procs.map(exited));
  });
  const first = await eventually("a leader", async () => (await currentLeader(kv, "dispatcher", "local")) ?? undefined);
  await eventually("a third dispatched", async () => (counts.size >= n / 3 ? true : undefined));
  const leader = procs[first.holder === "dispatcher-a" ? 0 : 1]!;
  leader.kill("SIGKILL");
  await exited(leader);
  const killedAt = counts.size;
  t.true(killedAt < n, `killed mid-dispatch (${killedAt} of ${n} dispatched)`);
  const next = await eventually(
    "the standby leading",
    async () => {
      const l = await currentLeader(kv, "dispatcher", "local");
      return l && l.holder !== first.holder ? l : undefined;
    },
    15_000,
  );
  t.log(`killed ${first.holder} after ${killedAt} jobs; ${next.holder} took over`);
  await eventually("every domain scanned", async () => (counts.size === n ? true : undefined), 60_000);
  // A little longer: nothing should come twice, not even after leases would have run out.
  await new Promise((r) => setTimeout(r, config.frontier.leaseMs + 1_000));
  const twice = [...counts].filter(([, c]) => c !== 1);
  t.deepEqual(twice, [], "no job run twice");
  t.is(await db.collections.domains.countDocuments({ scanCount: 1 }), n, "every domain answered once");
});
