import test from "ava";
import { once } from "node:events";
import { Redis } from "ioredis";
import { bloomSizing, SeenFilter, type SeenFilterOptions } from "../../actors/coordinator/seen-filter.ts";
import { startRedis, stopAll, type ManagedServer } from "../harness/servers.ts";

let server: ManagedServer;
let redis: Redis;

test.before(async () => {
  server = await startRedis();
  redis = new Redis(server.url);
});

test.after.always(async () => {
  redis?.disconnect();
  await stopAll();
});

const MINUTE = 60_000;
/** A fixed start of a slice, so tests never straddle a boundary by accident. */
const T0 = 1_000 * MINUTE;

let filters = 0;
function filter(overrides: Partial<SeenFilterOptions> = {}, client: Redis = redis): SeenFilter {
  return new SeenFilter(client, {
    name: `t${++filters}`,
    windowMs: MINUTE,
    slices: 3,
    expectedPerWindow: 10_000,
    falsePositiveRate: 0.001,
    ...overrides,
  });
}

const domains = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}.example.com`);

test("sizing follows m = -n ln p / ln²2 per slice, with p split across slices", (t) => {
  t.deepEqual(bloomSizing(1_000_000, 0.001, 1), {
    bitsPerSlice: 14_377_588,
    hashes: 10,
    bytesPerSlice: 1_797_199,
    bitsPerDomain: 14.377588,
  });
  const one = bloomSizing(100_000, 0.01, 1);
  t.is(one.hashes, 7);
  t.true(Math.abs(one.bitsPerDomain - 9.585) < 0.01);
  // Seven slices at an overall 0.1 % need each slice at ~0.0143 %: ~18.4 bits per domain.
  const seven = filter({ slices: 7, expectedPerWindow: 1_000_000 }).sizing();
  t.true(seven.bitsPerDomain > 18.3 && seven.bitsPerDomain < 18.6, String(seven.bitsPerDomain));
  t.is(seven.hashes, 13);
});

test("rejects nonsense options", (t) => {
  t.throws(() => filter({ slices: 0 }), { instanceOf: RangeError });
  t.throws(() => filter({ windowMs: 1.5 }), { instanceOf: RangeError });
  t.throws(() => filter({ falsePositiveRate: 1 }), { instanceOf: RangeError });
  t.throws(() => filter({ name: "a}b" }), { instanceOf: RangeError });
  t.throws(() => filter({ expectedPerWindow: 2 ** 31, falsePositiveRate: 1e-9 }), { message: /2\^32/ });
});

test("new, then seen; has() does not record", async (t) => {
  const f = filter();
  t.deepEqual(await f.has(["a.com", "b.com"], T0), [false, false]);
  t.deepEqual(await f.testAndSet(["a.com"], T0), [false]);
  t.deepEqual(await f.testAndSet(["a.com", "b.com", "A.COM"], T0), [true, false, true]);
  t.deepEqual(await f.has(["a.com", "b.com", "c.com"], T0), [true, true, false]);
  t.deepEqual(await f.testAndSet([], T0), []);
});

test("10k batch with duplicates inside it: first occurrence new, later ones seen", async (t) => {
  const f = filter({ expectedPerWindow: 20_000 });
  const unique = domains("dup", 7_000);
  const batch = [...unique, ...unique.slice(0, 3_000)];
  const started = performance.now();
  const result = await f.testAndSet(batch, T0);
  const ms = performance.now() - started;
  t.log(`testAndSet: ${batch.length} domains in ${ms.toFixed(0)} ms (${Math.round(batch.length / (ms / 1000))}/s)`);
  t.is(result.length, 10_000);
  const firstFalse = result.slice(0, 7_000).filter((seen) => seen).length;
  t.true(firstFalse <= 2, `false positives among 7k new: ${firstFalse}`);
  t.true(
    result.slice(7_000).every((seen) => seen),
    "repeats within the batch are seen",
  );
});

test("a domain from an older live slice is seen; once the slices roll past it is new again", async (t) => {
  const f = filter({ slices: 3 });
  t.deepEqual(await f.testAndSet(["old.com"], T0), [false]);
  t.deepEqual(await f.testAndSet(["old.com"], T0 + MINUTE), [true]);
  t.deepEqual(await f.has(["old.com"], T0 + 2 * MINUTE + MINUTE - 1), [true]);
  // Seen in an older slice is not re-recorded, so the original admission sets the expiry.
  t.deepEqual(await f.testAndSet(["old.com"], T0 + 3 * MINUTE), [false]);
  t.deepEqual(await f.testAndSet(["old.com"], T0 + 3 * MINUTE + 1), [true]);
});

test("slices get a TTL of slices × windowMs and are allocated in full up front", async (t) => {
  const f = filter({ name: "ttl", slices: 4, windowMs: 10 * MINUTE });
  await f.testAndSet(["ttl.com"], T0);
  const key = f.keyAt(T0);
  t.is(key, "bloom:{ttl}:100");
  const pttl = await redis.pttl(key);
  t.true(pttl > 39 * MINUTE && pttl <= 40 * MINUTE, `pttl ${pttl}`);
  t.is(await redis.strlen(key), f.sizing().bytesPerSlice);
  // Reads never create slices.
  await f.has(["ttl.com"], T0 + 10 * MINUTE);
  t.is(await redis.exists(f.keyAt(T0 + 10 * MINUTE)), 0);
});

test("false-positive rate over 2 full slices is within 2x of the 1% target", async (t) => {
  const f = filter({ slices: 2, expectedPerWindow: 50_000, falsePositiveRate: 0.01 });
  const first = domains("in-a-", 50_000);
  const second = domains("in-b-", 50_000);
  const started = performance.now();
  await f.testAndSet(first, T0);
  await f.testAndSet(second, T0 + MINUTE);
  const ms = performance.now() - started;
  const now = T0 + MINUTE;
  t.true(
    (await f.has([...first, ...second], now)).every((seen) => seen),
    "no false negatives",
  );
  const fresh = await f.has(domains("fresh-", 100_000), now);
  const rate = fresh.filter((seen) => seen).length / fresh.length;
  const { bitsPerDomain, hashes } = f.sizing();
  t.log(`FP ${(rate * 100).toFixed(3)}% (target 1%), ${bitsPerDomain.toFixed(2)} bits/domain/slice, k=${hashes}`);
  t.log(`inserted 100k in ${ms.toFixed(0)} ms (${Math.round(100_000 / (ms / 1000))}/s)`);
  t.true(rate >= 0.005 && rate <= 0.02, `rate ${rate}`);
});

test("a Redis error is thrown to the caller", async (t) => {
  const f = filter();
  await redis.lpush(f.keyAt(T0), "not a bitmap");
  await t.throwsAsync(f.testAndSet(["x.com"], T0), { message: /WRONGTYPE/ });
});

test("works again after Redis restarts (new server, empty script cache)", async (t) => {
  const own = await startRedis();
  const client = new Redis(own.url, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
  t.teardown(async () => {
    client.disconnect();
    await own.stop();
  });
  await once(client, "ready");
  const f = filter({}, client);
  t.deepEqual(await f.testAndSet(["r.com"], T0), [false]);

  await own.kill();
  await t.throwsAsync(f.testAndSet(["r.com"], T0));

  await own.restart();
  if (client.status !== "ready") await once(client, "ready");
  // The harness runs Redis without persistence: the restarted server is empty.
  t.deepEqual(await f.testAndSet(["r.com", "r.com"], T0), [false, true]);
});

test("1M synthetic domains: false-positive rate within 2x of the target, in pipelined batches", async (t) => {
  // Two full slices of 500k each: the target holds for the union of all live slices.
  // Hour-long slices: the first slice's TTL (slices × windowMs from its creation) outlives the test.
  const f = filter({ windowMs: 60 * MINUTE, slices: 2, expectedPerWindow: 500_000, falsePositiveRate: 0.01 });
  const { bitsPerDomain, hashes, bytesPerSlice } = f.sizing();
  const start = 100 * 60 * MINUTE;
  const now = start + 60 * MINUTE;
  let started = performance.now();
  const first = await f.testAndSet(domains("m-a-", 500_000), start);
  const second = await f.testAndSet(domains("m-b-", 500_000), now);
  const insertMs = performance.now() - started;
  // While filling, a new domain collides less often than at the target (the slices are not full yet).
  const fillHits = [...first, ...second].filter(Boolean).length;
  t.true(fillHits < 0.01 * 1_000_000, `collisions while filling: ${fillHits}`);
  t.true(
    (await f.has([...domains("m-a-", 100_000), ...domains("m-b-", 100_000)], now)).every(Boolean),
    "no false negatives",
  );
  started = performance.now();
  const probes = await f.has(domains("m-probe-", 1_200_000), now);
  const probeMs = performance.now() - started;
  const rate = probes.filter(Boolean).length / probes.length;
  t.log(`bits per domain ${bitsPerDomain.toFixed(2)} per slice (k=${hashes}, ${bytesPerSlice} bytes per slice)`);
  t.log(`measured false-positive rate ${(rate * 100).toFixed(3)}% on 1.2M non-members (target 1%)`);
  t.log(`inserted 1M in ${(insertMs / 1000).toFixed(1)} s, probed 1.2M in ${(probeMs / 1000).toFixed(1)} s`);
  t.true(rate >= 0.005 && rate <= 0.02, `rate ${rate}`);
});

test("slices expire in Redis: a domain is new again once its slice's TTL ran out", async (t) => {
  // Real time here: 1 s slices, two live, so a slice lives 2 s.
  const f = filter({ windowMs: 1_000, slices: 2 });
  const start = Date.now();
  t.deepEqual(await f.testAndSet(["expiring.com"], start), [false]);
  const key = f.keyAt(start);
  t.true((await redis.pttl(key)) <= 2_000);
  // Redis itself removes the key.
  const deadline = Date.now() + 10_000;
  while ((await redis.exists(key)) === 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  t.is(await redis.exists(key), 0, "the slice expired");
  // Checked against the slice that held it (as if the clock had not moved): nothing is left there.
  t.deepEqual(await f.has(["expiring.com"], start), [false]);
  t.deepEqual(await f.testAndSet(["expiring.com"], Date.now()), [false]);
});

test("addAt writes into the slice of its time, which expires when it leaves the window; idempotent", async (t) => {
  const windowMs = 10 * MINUTE;
  const f = filter({ windowMs, slices: 3 });
  const now = Date.now();
  const older = now - windowMs; // the previous slice, still live
  t.deepEqual(await f.addAt(["a.com", "b.com"], older, now), [false, false]);
  t.deepEqual(await f.addAt(["a.com", "c.com"], older, now), [true, false]);
  t.deepEqual(await f.has(["a.com", "b.com", "c.com", "d.com"], now), [true, true, true, false]);
  const key = f.keyAt(older);
  t.is(await redis.exists(f.keyAt(now)), 0, "nothing written to the current slice");
  const slice = Math.floor(older / windowMs);
  const endOfLife = (slice + 3) * windowMs;
  t.is(await redis.call("PEXPIRETIME", key), endOfLife);
  // A slice that already left the window is not written; a time in the future counts as now.
  t.is(await f.addAt(["old.com"], now - 3 * windowMs, now), null);
  t.deepEqual(await f.has(["old.com"], now), [false]);
  t.deepEqual(await f.addAt(["future.com"], now + 5 * windowMs, now), [false]);
  t.is(await redis.exists(f.keyAt(now)), 1);
  t.deepEqual(await f.testAndSet(["future.com"], now), [true]);
});

test("stats: fill, estimated domains and false-positive rate of each live slice", async (t) => {
  const f = filter({ slices: 2, expectedPerWindow: 20_000, falsePositiveRate: 0.01 });
  await f.testAndSet(domains("st-", 20_000), T0 + MINUTE);
  const s = await f.stats(T0 + MINUTE);
  t.is(s.slices.length, 2);
  const [current, previous] = s.slices;
  t.true(current!.exists && !previous!.exists);
  t.true(Math.abs(current!.estimatedDomains - 20_000) < 400, `estimated ${current!.estimatedDomains}`);
  t.true(current!.fill > 0.45 && current!.fill < 0.55, `fill ${current!.fill}`);
  // One full slice of two: about the per-slice rate, half the target.
  t.true(
    s.estimatedFalsePositiveRate > 0.003 && s.estimatedFalsePositiveRate < 0.008,
    String(s.estimatedFalsePositiveRate),
  );
});
