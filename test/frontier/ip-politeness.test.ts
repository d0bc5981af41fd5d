/**
 * Politeness per IP address: many registrable domains on one shared host (the address their last
 * scan resolved to) get at most `maxLeasesPerIp` live leases at once, started at least
 * `ipSpacingMs` apart; domains on other addresses are not held back by them.
 */
import test, { type ExecutionContext } from "ava";
import type { DomainStore } from "../../actors/frontier/domain-store.ts";
import { Dispatcher } from "../../actors/frontier/dispatcher.ts";
import { summarise } from "../../actors/results/results-actor.ts";
import { connectNats, createLogger, ensureTopology, openRegistry } from "../../cluster/mod.ts";
import { consumers, streams, type ScanJob, type ScanResult } from "../../protocol/mod.ts";
import { frontierStore, registerScanner, scanResultFor } from "../helpers/frontier.ts";
import { eventually, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const HOUR = 3600_000;
const SHARED = "198.51.100.7";
const OTHER = "198.51.100.8";

const setup = (t: ExecutionContext, frontier: Record<string, unknown>) =>
  frontierStore(stack, t, { rescanIntervalMs: HOUR, ...frontier });

function okResult(job: ScanJob, address: string, at: Date): ScanResult {
  return scanResultFor(job, at, { address });
}

/** Admits the domains and scans each once, so the frontier learns the address each is on. */
async function scannedOnce(store: DomainStore, addresses: Record<string, string>, at: Date) {
  await store.admit(
    Object.keys(addresses).map((domain) => ({
      admission: { domain, seedUrl: `http://${domain}/`, source: "t", region: "local", admittedAt: at.toISOString() },
      traceparent: undefined,
    })),
    at,
  );
  const jobs = await store.leaseDue("local", 100, at);
  for (const { job } of jobs) {
    const result = okResult(job, addresses[job.domain]!, at);
    await store.recordOutcome(result, summarise(result), at);
  }
  return jobs.length;
}

const names = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => `${prefix}${i}-${uniqueName("ip").toLowerCase().replace("_", "")}.test`);

test("at most maxLeasesPerIp live leases on one address; others wait for a lease to end", async (t) => {
  const { store } = await setup(t, { maxLeasesPerIp: 2, ipSpacingMs: 0 });
  const shared = names("shared", 6);
  const other = names("other", 2);
  const t0 = new Date(Date.now() - 3 * HOUR);
  const first = await scannedOnce(
    store,
    Object.fromEntries([
      ...shared.map((d): [string, string] => [d, SHARED]),
      ...other.map((d): [string, string] => [d, OTHER]),
    ]),
    t0,
  );
  t.is(first, 8, "first scans: no address known yet, nothing held back");

  const t1 = new Date(t0.getTime() + HOUR + 1_000); // every rescan due
  const round = await store.leaseDue("local", 100, t1);
  const leased = round.map((j) => j.job.domain);
  t.is(leased.filter((d) => shared.includes(d)).length, 2, "two of the six domains on the shared address");
  t.deepEqual(leased.filter((d) => other.includes(d)).sort(), [...other].sort(), "the other address is not held back");

  const t2 = new Date(t1.getTime() + 5_000);
  t.deepEqual(await store.leaseDue("local", 100, t2), [], "both slots of the shared address still held");

  // One scan answers: its slot is free, one more domain of the shared address goes.
  const done = round.find((j) => shared.includes(j.job.domain))!;
  const result = okResult(done.job, SHARED, t2);
  await store.recordOutcome(result, summarise(result), t2);
  const t3 = new Date(t2.getTime() + 5_000);
  const next = await store.leaseDue("local", 100, t3);
  t.is(next.length, 1);
  t.true(shared.includes(next[0]!.job.domain) && next[0]!.job.domain !== done.job.domain);

  // A lease that runs out frees its slot too.
  const late = new Date(t3.getTime() + 11 * 60_000);
  const afterExpiry = await store.leaseDue("local", 100, late);
  t.true(afterExpiry.filter((j) => shared.includes(j.job.domain)).length <= 2);
  t.true(afterExpiry.length >= 2, "expired leases make room again");
});

test("leases on one address start at least ipSpacingMs apart", async (t) => {
  const { store } = await setup(t, { maxLeasesPerIp: 10, ipSpacingMs: 10_000 });
  const shared = names("spaced", 5);
  const t0 = new Date(Date.now() - 3 * HOUR);
  await scannedOnce(store, Object.fromEntries(shared.map((d) => [d, SHARED])), t0);
  const t1 = new Date(t0.getTime() + HOUR + 1_000);
  const starts: number[] = [];
  for (let s = 0; s <= 45; s += 5) {
    const at = new Date(t1.getTime() + s * 1_000);
    const n = (await store.leaseDue("local", 100, at)).length;
    for (let i = 0; i < n; i++) starts.push(s);
  }
  t.deepEqual(starts, [0, 10, 20, 30, 40], "one lease per 10 s on the address, never two close together");
});

test.serial("the dispatcher never has more than maxLeasesPerIp jobs of one address out", async (t) => {
  const { config, db, store } = await setup(t, { maxLeasesPerIp: 3, ipSpacingMs: 0, leaseMs: 60_000 });
  const shared = names("disp", 20);
  const t0 = new Date(Date.now() - 2 * HOUR);
  await scannedOnce(store, Object.fromEntries(shared.map((d) => [d, SHARED])), t0);
  const nats = await connectNats(config, uniqueName("ip"));
  t.teardown(() => nats.nc.close());
  await ensureTopology(nats.jsm, config);
  await nats.jsm.streams.purge(streams.jobs("local"));
  // Scanners with room for 40 jobs: capacity is not what holds the address to three.
  const registry = await openRegistry(nats.js, config.actors.heartbeatMs);
  await registerScanner(t, registry, config.actors.heartbeatMs, { slots: 20 });
  const dispatcher = new Dispatcher("local", store, nats.js, config.frontier, createLogger("silent", {}), {
    jsm: nats.jsm,
    nodeId: uniqueName("d"),
    heartbeatMs: config.actors.heartbeatMs,
  });
  await dispatcher.start();
  t.teardown(() => dispatcher.stop());

  const consumer = await nats.js.consumers.get(streams.jobs("local"), consumers.scanners);
  const queued = async () => {
    const c = await nats.jsm.consumers.info(streams.jobs("local"), consumers.scanners);
    return c.num_pending + c.num_ack_pending;
  };
  const answered = new Set<string>();
  let most = 0;
  // Take the jobs one at a time and answer each, until every domain was scanned again.
  while (answered.size < shared.length) {
    await eventually("a job", async () => ((await queued()) > 0 ? true : undefined), 20_000);
    await new Promise((r) => setTimeout(r, 300)); // a few dispatcher rounds: room for more if allowed
    most = Math.max(most, await queued());
    const m = await consumer.next({ expires: 5_000 });
    if (!m) continue;
    const job = m.json<ScanJob>();
    answered.add(job.domain);
    const result = okResult(job, SHARED, new Date());
    await store.recordOutcome(result, summarise(result));
    m.ack();
  }
  t.is(most, 3, "never more than three jobs of the address out at once");
  t.is(await db.collections.domains.countDocuments({ _id: { $in: shared }, scanCount: 2 }), shared.length);
});
