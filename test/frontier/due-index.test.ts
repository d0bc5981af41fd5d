/**
 * The time wheel (actors/store/due-wheel.ts), the due queue read by `_id` alone: what the dispatcher
 * reads instead of a query over every domain where the server serves nothing else from an index.
 * The store is given the wheel whatever the server is. Order, moves of nextScanAt, expired leases, crashes between the index write and the
 * domain write, and a cost per round that does not grow with the frontier.
 */
import test, { type ExecutionContext } from "ava";
import { DueWheel } from "../../actors/store/due-wheel.ts";
import { ferretDbV1Server } from "../../actors/store/server-adapter.ts";
import type { DomainStore } from "../../actors/frontier/domain-store.ts";
import { summarise } from "../../actors/results/results-actor.ts";
import { frontierStore, scanResultFor } from "../helpers/frontier.ts";
import { startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const MIN = 60_000;
const HOUR = 60 * MIN;
const setup = (t: ExecutionContext, frontier: Record<string, unknown> = {}) =>
  frontierStore(stack, t, frontier, { server: ferretDbV1Server });

const admission = (domain: string, source: string, at: Date) => ({
  admission: { domain, seedUrl: `http://${domain}/`, source, region: "local", admittedAt: at.toISOString() },
  traceparent: undefined,
});

async function admit(store: DomainStore, domains: string[], source: string, at: Date, fresh = false) {
  for (let i = 0; i < domains.length; i += 1000) {
    await store.admit(
      domains.slice(i, i + 1000).map((d) => admission(d, source, at)),
      at,
      { fresh },
    );
  }
  return domains;
}

const names = (prefix: string, n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => `${prefix}${String(from + i).padStart(6, "0")}.test`);
const leased = async (store: DomainStore, at: Date, limit = 1000) =>
  (await store.leaseDue("local", limit, at)).map((j) => j.job.domain);

test("due domains come out by rank: manual rescans first, then priority highest first, then soonest", async (t) => {
  const { store } = await setup(t, { sourcePriority: { ext: 10, cc: 1 } });
  const now = new Date();
  const cc = await admit(store, names("cc", 5), "cc", new Date(now.getTime() - 2 * HOUR));
  const plain = await admit(store, names("pl", 5), "other", new Date(now.getTime() - HOUR), true);
  const ext = await admit(store, names("ex", 5), "ext", new Date(now.getTime() - MIN));
  // A rescan of a Common Crawl domain goes ahead of everything.
  t.is(await store.requestRescan(cc[3]!, now), "requested");
  const order = await leased(store, now);
  t.deepEqual(order, [cc[3]!, ...ext, ...plain, ...cc.filter((d) => d !== cc[3])]);
  t.deepEqual(await leased(store, now), [], "each once");
});

test("a domain whose nextScanAt moves is dispatched at its new time, not at its old", async (t) => {
  const { store } = await setup(t, { leaseMs: 10 * MIN, retryBaseMs: 5 * MIN, rescanIntervalMs: 24 * HOUR });
  const t0 = new Date(Date.now() - 3 * HOUR);
  const [a, b, c] = await admit(store, names("mv", 3), "t", t0, true);
  /** Leases what is due at `at` and answers each job with a successful scan. */
  const scanDue = async (at: Date) => {
    const jobs = await store.leaseDue("local", 10, at);
    for (const { job } of jobs) {
      const ok = scanResultFor(job, at);
      t.is(await store.recordOutcome(ok, summarise(ok), at), "current");
    }
    return jobs.map((j) => j.job.domain).sort();
  };
  const jobs = await store.leaseDue("local", 10, t0);
  t.is(jobs.length, 3);
  const job = (d: string) => jobs.find((j) => j.job.domain === d)!.job;
  // a: scanned, next scan in a day. b: failed (timeout), retried with backoff. c: lease given back.
  const ok = scanResultFor(job(a!), t0);
  t.is(await store.recordOutcome(ok, summarise(ok), t0), "current");
  const failed = scanResultFor(job(b!), t0, { status: "failed", failure: { kind: "timeout", message: "slow" } });
  t.is(await store.recordOutcome(failed, summarise(failed), t0), "current");
  await store.releaseLease(c!, job(c!).leaseToken, t0);
  const retryAt = (await store.get(b!))!.nextScanAt!;
  t.true(retryAt.getTime() > t0.getTime() && retryAt.getTime() <= t0.getTime() + 5 * MIN);

  t.deepEqual(await scanDue(t0), [c!], "c is due again at its release; nothing else is");
  t.deepEqual(await scanDue(new Date(retryAt.getTime() - 1)), [], "b: not before its retry");
  t.deepEqual(await scanDue(retryAt), [b!], "b: at its retry");
  // At the first leases' end (their old due time in the index): nothing comes back.
  t.deepEqual(await scanDue(new Date(t0.getTime() + 10 * MIN + 1)), []);
  t.deepEqual(await scanDue(new Date(t0.getTime() + 2 * HOUR)), []);
  const asked = new Date(t0.getTime() + 2 * HOUR);
  t.is(await store.requestRescan(a!, asked), "requested");
  t.deepEqual(await scanDue(asked), [a!], "a rescan makes a due at once");
  // A day after their scans b and c are due; a is not, its scan a day after t0 was moved by the rescan.
  t.deepEqual(await scanDue(new Date(t0.getTime() + 25 * HOUR)), [b!, c!].sort());
});

test("a lease that runs out brings its domain back, once", async (t) => {
  const { store } = await setup(t, { leaseMs: 5 * MIN });
  const t0 = new Date(Date.now() - HOUR);
  const [d] = await admit(store, names("ls", 1), "t", t0, true);
  const [first] = await store.leaseDue("local", 10, t0);
  t.is(first?.job.attempt, 1);
  t.deepEqual(await leased(store, new Date(t0.getTime() + 5 * MIN - 1)), [], "not while the lease runs");
  const expired = new Date(t0.getTime() + 5 * MIN);
  const again = await store.leaseDue("local", 10, expired);
  t.deepEqual(
    again.map((j) => [j.job.domain, j.job.attempt]),
    [[d!, 2]],
  );
  t.deepEqual(await leased(store, expired), []);
});

test("a crash between the index write and the domain write: no domain twice, none lost", async (t) => {
  const { store, db, config } = await setup(t, { leaseMs: HOUR });
  const t0 = new Date(Date.now() - 2 * HOUR);
  const [staleOne, lost, kept] = await admit(store, names("cr", 3), "t", t0, true);
  const index = new DueWheel(db.collections.frontierDue, db.collections.domains, {
    bucketMs: config.frontier.dueBucketMs,
    priorities: [config.frontier.defaultPriority],
    defaultPriority: config.frontier.defaultPriority,
  });
  const rank = index.rankOf({});
  // Missing: `lost` keeps its domain document but loses its entry (the upsert path's crash window);
  // `direct.test` is written to `domains` directly, without one.
  await db.collections.frontierDue.deleteMany({});
  await index.push([
    { region: "local", rank, domain: staleOne!, due: t0 },
    { region: "local", rank, domain: kept!, due: t0 },
  ]);
  await db.collections.domains.insertOne({
    ...(await db.collections.domains.findOne({ _id: lost! }))!,
    _id: "direct.test",
  });
  // Stale: the entry of a move of staleOne (to t0 + 10 min) was written, the domain write never happened.
  const moved = new Date(t0.getTime() + 10 * MIN);
  await index.push([{ region: "local", rank, domain: staleOne!, due: moved }]);

  // staleOne is due at its true time, once; its stale entry at `moved` dispatches nothing.
  const first = await leased(store, new Date(t0.getTime() + MIN));
  t.deepEqual(first.sort(), [kept!, staleOne!].sort());
  t.deepEqual(await leased(store, new Date(moved.getTime() + MIN)), [], "the stale entry is skipped");
  t.true(store.lastRound.stale >= 1, "and dropped");
  // The sweep puts back the missing entries; the domains then come out once.
  t.is(await store.repairDueIndex("local"), 2);
  t.is(await store.repairDueIndex("local"), 0, "nothing missing any more");
  const late = new Date(t0.getTime() + 20 * MIN);
  t.deepEqual((await leased(store, late)).sort(), ["direct.test", lost!].sort());
  t.deepEqual(await leased(store, late), []);
});

test("the due-index cost of a round is bounded by the batch, not the frontier (10k vs 100k domains)", async (t) => {
  t.timeout(10 * 60_000);
  const now = new Date();
  const rounds = async (size: number) => {
    const { store } = await setup(t);
    // The frontier: domains waiting for their rescans, spread over the next day.
    for (let i = 0; i < size; i += 10_000) {
      const at = new Date(now.getTime() + HOUR + (i / 10_000) * 2 * HOUR);
      await admit(store, names("f", Math.min(10_000, size - i), i), "t", at, true);
    }
    // The same due domains in both: 300 due over the last 10 minutes.
    for (let k = 0; k < 10; k++)
      await admit(store, names(`due${k}-`, 30), "t", new Date(now.getTime() - k * MIN), true);
    const reads: number[] = [];
    for (let r = 0; r < 3; r++) {
      t.is((await store.leaseDue("local", 100, now)).length, 100);
      reads.push(store.lastRound.indexReads + store.lastRound.domainReads);
    }
    return reads;
  };
  const small = await rounds(10_000);
  const large = await rounds(100_000);
  t.log(`point reads per round: 10k ${small.join(", ")}; 100k ${large.join(", ")}`);
  for (let r = 0; r < small.length; r++) t.true(large[r]! <= small[r]! + 2, `round ${r}: ${large[r]} vs ${small[r]}`);
  t.true(Math.max(...large) < 250, "about the batch of 100");
});

test("admissions at once (the frontier actor runs 16): every domain indexed, each dispatched once", async (t) => {
  const { store } = await setup(t);
  const now = new Date();
  const domains = names("cc", 64);
  // Racing upserts of the same index documents: FerretDB fails the loser with a duplicate key.
  await Promise.all(domains.map((d) => store.admit([admission(d, "t", now)], now, { fresh: true })));
  t.deepEqual((await leased(store, now)).sort(), domains);
  t.deepEqual(await leased(store, now), []);
});

test("a round between an entry and its domain write (the entry goes first) keeps the entry", async (t) => {
  const { store, db, config } = await setup(t);
  const now = new Date();
  const index = new DueWheel(db.collections.frontierDue, db.collections.domains, {
    bucketMs: config.frontier.dueBucketMs,
    priorities: [config.frontier.defaultPriority],
    defaultPriority: config.frontier.defaultPriority,
  });
  const [template] = await admit(store, names("tp", 1), "t", new Date(now.getTime() + HOUR), true);
  await index.push([{ region: "local", rank: index.rankOf({}), domain: "inflight.test", due: now }]);
  t.deepEqual(await leased(store, now), [], "no domain document yet");
  await db.collections.domains.insertOne({
    ...(await db.collections.domains.findOne({ _id: template! }))!,
    _id: "inflight.test",
    nextScanAt: now,
  });
  t.deepEqual(await leased(store, now), ["inflight.test"]);
});
