/**
 * The frontier's schedule on the real stack: priorities by source, a rescan interval per
 * priority, manual rescans that jump the queue, and adaptive revisits.
 */
import test, { type ExecutionContext } from "ava";
import type { DomainStore } from "../../actors/frontier/domain-store.ts";
import { summarise } from "../../actors/results/results-actor.ts";
import type { ScanJob, ScanResult } from "../../protocol/mod.ts";
import { frontierStore, scanResultFor } from "../helpers/frontier.ts";
import { spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const HOUR = 3600_000;

const setup = (t: ExecutionContext, frontier: Record<string, unknown> = {}) => frontierStore(stack, t, frontier);

async function admitMany(store: DomainStore, n: number, prefix: string, source: string, at: Date) {
  const batch = Array.from({ length: n }, (_, i) => ({
    admission: {
      domain: `${prefix}${String(i).padStart(4, "0")}.test`,
      seedUrl: `http://${prefix}${i}.test/`,
      source,
      region: "local",
      admittedAt: at.toISOString(),
    },
    traceparent: undefined,
  }));
  await store.admit(batch, at);
  return batch.map((b) => b.admission.domain);
}

/** A successful scan result for a leased job, with font files of these SHA-256 digests. */
function okResult(job: ScanJob, fileShas: string[], at: Date): ScanResult {
  return scanResultFor(job, at, {
    files: fileShas.map((sha256) => ({
      sha256,
      url: `${job.url}${sha256.slice(0, 8)}.woff2`,
      bytes: 100,
      contentType: "font/woff2",
      via: "font-request" as const,
      metadata: null,
      parseError: null,
      provider: null,
    })),
  });
}

/**
 * Leases what is due at `at` and answers the jobs of the given domains (each must be due) with a
 * scan of these font files; other leases are given back.
 */
async function scan(store: DomainStore, files: Record<string, string[]>, at: Date) {
  const jobs = await store.leaseDue("local", 1_000, at);
  const outcomes: Record<string, "current" | "stale"> = {};
  for (const { job } of jobs) {
    const shas = files[job.domain];
    if (!shas) {
      await store.releaseLease(job.domain, job.leaseToken, at);
      continue;
    }
    const result = okResult(job, shas, at);
    outcomes[job.domain] = await store.recordOutcome(result, summarise(result), at);
  }
  for (const domain of Object.keys(files)) {
    if (!outcomes[domain]) throw new Error(`${domain} was not due at ${at.toISOString()}`);
  }
  return outcomes;
}

const sorted = (xs: string[]) => [...xs].sort();

test("priorities: with more due domains than room, the high-priority source's domains go first", async (t) => {
  const { store } = await setup(t, { sourcePriority: { extension: 10, "common-crawl": 1 } });
  const now = new Date();
  // Common Crawl's domains have been due far longer; the extension's arrive just now.
  const crawl = await admitMany(store, 60, "cc", "common-crawl", new Date(now.getTime() - HOUR));
  const ext = await admitMany(store, 25, "ex", "extension", now);
  const plain = await admitMany(store, 10, "pl", "unlisted", new Date(now.getTime() - 2 * HOUR));

  const first = await store.leaseDue("local", 30, now);
  const domains = first.map((j) => j.job.domain);
  t.deepEqual(sorted(domains.slice(0, 25)), ext, "all 25 extension domains first");
  t.is(domains.slice(25).filter((d) => plain.includes(d)).length, 5, "then the default priority (5)");
  const second = (await store.leaseDue("local", 100, now)).map((j) => j.job.domain);
  t.deepEqual(sorted(second.slice(0, 5)), sorted(plain.filter((d) => !domains.includes(d))));
  t.deepEqual(sorted(second.slice(5)), crawl, "Common Crawl (1) last");
});

test("priorities: a domain takes the highest of its sources, and its rescan interval", async (t) => {
  const { store } = await setup(t, {
    sourcePriority: { extension: 10, "common-crawl": 1 },
    rescanIntervalMs: 7 * 24 * HOUR,
    rescanIntervalByPriority: { "10": 24 * HOUR },
  });
  const now = new Date();
  const [both] = await admitMany(store, 1, "both", "common-crawl", now);
  const [crawlOnly] = await admitMany(store, 1, "only", "common-crawl", now);
  await admitMany(store, 1, "both", "extension", now);
  // A later sighting from a lower source does not lower it.
  await admitMany(store, 1, "both", "common-crawl", now);
  const doc = (await store.get(both!)) as { priority?: number; sources: string[] } | null;
  t.is(doc?.priority, 10);
  t.deepEqual(doc?.sources.sort(), ["common-crawl", "extension"]);

  t.deepEqual(await scan(store, { [both!]: [], [crawlOnly!]: [] }, now), {
    [both!]: "current",
    [crawlOnly!]: "current",
  });
  t.is((await store.get(both!))?.nextScanAt?.getTime(), now.getTime() + 24 * HOUR, "priority 10: a day");
  t.is((await store.get(crawlOnly!))?.nextScanAt?.getTime(), now.getTime() + 7 * 24 * HOUR, "others: the default");
});

test("manual rescan: due now ahead of every priority, unless already leased", async (t) => {
  const { store } = await setup(t, { sourcePriority: { extension: 10, "common-crawl": 1 } });
  const t0 = new Date(Date.now() - HOUR);
  const [target] = await admitMany(store, 1, "target", "common-crawl", t0);
  t.deepEqual(await scan(store, { [target!]: ["a".repeat(64)] }, t0), { [target!]: "current" });
  const now = new Date();
  const ext = await admitMany(store, 20, "ex", "extension", new Date(now.getTime() - 1_000));
  t.true((await store.get(target!))!.nextScanAt!.getTime() > now.getTime(), "scanned: not due for a week");

  t.is(await store.requestRescan(target!, now), "requested");
  const first = await store.leaseDue("local", 5, now);
  t.is(first[0]?.job.domain, target, "the requested domain jumps the queue");
  t.true(first.slice(1).every((j) => ext.includes(j.job.domain)));

  // While its lease runs, a request changes nothing: the scan is already under way.
  const leased = await store.get(target!);
  t.is(await store.requestRescan(target!, now), "leased");
  t.deepEqual((await store.get(target!))?.nextScanAt, leased?.nextScanAt);
  t.is(await store.requestRescan("nowhere.test", now), "unknown");

  // The scan that answers it clears the request: the domain goes back to its place.
  const job = first[0]!.job;
  const result = okResult(job, ["a".repeat(64)], now);
  t.is(await store.recordOutcome(result, summarise(result), now), "current");
  const after = (await store.get(target!)) as { manual?: boolean; nextScanAt: Date | null } | null;
  t.is(after?.manual, false);
  t.true(after!.nextScanAt!.getTime() > now.getTime());
  const rest = await store.leaseDue("local", 100, now);
  t.deepEqual(sorted(rest.map((j) => j.job.domain)), sorted(ext.filter((d) => !first.some((j) => j.job.domain === d))));
});

test("manual rescan of a parked domain: due again with its attempts back", async (t) => {
  const { store } = await setup(t, { maxAttempts: 1 });
  const now = new Date();
  const [domain] = await admitMany(store, 1, "parked", "t", now);
  const [lease] = await store.leaseDue("local", 1, now);
  const failed: ScanResult = {
    ...okResult(lease!.job, [], now),
    report: { ...okResult(lease!.job, [], now).report, status: "failed", failure: { kind: "dns", message: "x" } },
  };
  await store.recordOutcome(failed, summarise(failed), now);
  t.like(await store.get(domain!), { state: "failed", nextScanAt: null, attempts: 1 });
  t.deepEqual(await store.leaseDue("local", 1, now), [], "parked: never due");
  t.is(await store.requestRescan(domain!, now), "requested");
  t.like(await store.get(domain!), { attempts: 0 });
  const [again] = await store.leaseDue("local", 1, now);
  t.is(again?.job.domain, domain);
  t.is(again?.job.attempt, 1);
});

test("adaptive revisit: changed fonts halve the interval, unchanged double it, within bounds", async (t) => {
  const { store } = await setup(t, { rescanIntervalMs: 2 * HOUR, minRescanMs: HOUR, maxRescanMs: 8 * HOUR });
  let at = new Date(Date.now() - 1_000);
  const [domain] = await admitMany(store, 1, "adapt", "t", at);
  const sha = (c: string) => c.repeat(64);
  // Font sets scan by scan; order and repeats of files do not count as a change.
  const scans: Array<[string[], number]> = [
    [[sha("a"), sha("b")], 2], // first scan: the base interval
    [[sha("b"), sha("a")], 4], // unchanged: doubled
    [[sha("a"), sha("b"), sha("a")], 8], // unchanged: doubled, at the bound
    [[sha("a"), sha("b")], 8], // unchanged: held at maxRescanMs
    [[sha("a")], 4], // a file gone: halved
    [[sha("a"), sha("c")], 2], // a file added: halved
    [[sha("d")], 1], // changed: halved, at the bound
    [[], 1], // no fonts any more: changed, held at minRescanMs
    [[], 2], // unchanged again: doubled
  ];
  const intervals: number[] = [];
  for (const [files] of scans) {
    await scan(store, { [domain!]: files }, at);
    const next = (await store.get(domain!))!.nextScanAt!;
    intervals.push((next.getTime() - at.getTime()) / HOUR);
    at = next;
  }
  t.deepEqual(
    intervals,
    scans.map(([, hours]) => hours),
  );
});

test("`glyphscan rescan <domain>` requests a rescan; an unknown domain exits 1", async (t) => {
  const { config, store } = await setup(t);
  const t0 = new Date(Date.now() - HOUR);
  const [domain] = await admitMany(store, 1, "cli", "t", t0);
  await scan(store, { [domain!]: [] }, t0);
  const run = async (arg: string) => {
    const child = await spawnGlyphscan(config, ["rescan", arg]);
    let out = "";
    child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    return { code, out };
  };
  const ok = await run(`https://www.${domain}/some/page`);
  t.is(ok.code, 0, ok.out);
  t.regex(ok.out, new RegExp(`${domain}: due now`));
  t.like(await store.get(domain!), { manual: true });
  t.true((await store.get(domain!))!.nextScanAt!.getTime() <= Date.now());
  const unknown = await run("never-seen.test");
  t.is(unknown.code, 1);
  t.regex(unknown.out, /not known/);
});
