/**
 * Failures in the frontier: each failed scan is classified by cause, retried with a fully
 * jittered exponential backoff under its cause's policy, remembered in the domain's attempt
 * history, and after the last attempt the domain is parked and leaves a dead letter with that
 * history, which `glyphscan dlq list/replay` find by stage, reason and age (replay revives it).
 */
import test, { type ExecutionContext } from "ava";
import { startNode } from "../../actors/compose.ts";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { backoffDelay, classifyFailure, retryPolicy } from "../../actors/frontier/failures.ts";
import { summarise } from "../../actors/results/results-actor.ts";
import { openDatabase } from "../../actors/store/database.ts";
import {
  connectNats,
  createLogger,
  ensureTopology,
  findDeadLetters,
  publishDeadLetter,
  type StoredDeadLetter,
} from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import type { FailureKind, ScanJob, ScanResult } from "../../protocol/mod.ts";
import { scanResultFor } from "../helpers/frontier.ts";
import { eventually, spawnGlyphscan, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

const MIN = 60_000;
const HOUR = 60 * MIN;

function failedResult(job: ScanJob, kind: FailureKind, message: string, at: Date, httpStatus?: number): ScanResult {
  return scanResultFor(
    job,
    at,
    {
      status: "failed",
      failure: { kind, message },
      path: "browser",
      pages: httpStatus ? [{ url: job.url, finalUrl: job.url, httpStatus }] : [],
      address: "203.0.113.9",
    },
    "scanner-7",
  );
}

test("classification: each scanner failure kind maps to its cause class, HTTP with its code", (t) => {
  const c = (kind: FailureKind, message = "m", pages: Array<{ httpStatus: number | null }> = []) =>
    classifyFailure({
      failure: { kind, message },
      pages: pages.map((p) => ({ url: "u", finalUrl: "u", ...p })),
    });
  t.like(c("dns", "dns: ENOTFOUND for x.example"), { cause: "dns", kind: "dns" });
  t.like(c("tls", "net::ERR_CERT_DATE_INVALID"), { cause: "tls" });
  t.like(c("timeout"), { cause: "timeout" });
  t.like(c("browser-crash"), { cause: "browser-crash" });
  t.like(c("blocked-address", "x resolves to 10.0.0.1 (private)"), { cause: "ssrf-refused", kind: "blocked-address" });
  t.like(c("http-status", "landing page answered HTTP 503", [{ httpStatus: 503 }]), {
    cause: "http-status",
    httpStatus: 503,
  });
  t.like(c("http-status", "landing page answered HTTP 404"), { cause: "http-status", httpStatus: 404 });
  for (const kind of ["redirect-loop", "too-large", "navigation", "internal"] as const) {
    t.like(c(kind), { cause: "other", kind });
  }
});

test("retry policies: by HTTP code, code class, then cause; maxAttempts bounds all; full jitter within the cap", (t) => {
  const config = stack.config({
    frontier: {
      maxAttempts: 4,
      retryBaseMs: 1_000,
      retryMaxMs: 10_000,
      retryByCause: {
        "http-404": { maxAttempts: 1 },
        "http-5xx": { maxAttempts: 3, baseMs: 2_000 },
        dns: { maxAttempts: 9 },
      },
    },
  });
  const p = (cause: Parameters<typeof retryPolicy>[1]) => retryPolicy(config.frontier, cause);
  t.deepEqual(p({ cause: "http-status", httpStatus: 404 }), { maxAttempts: 1, baseMs: 1_000, maxMs: 10_000 });
  t.deepEqual(p({ cause: "http-status", httpStatus: 503 }), { maxAttempts: 3, baseMs: 2_000, maxMs: 10_000 });
  t.deepEqual(p({ cause: "http-status", httpStatus: 418 }), { maxAttempts: 2, baseMs: 3_600_000, maxMs: 10_000 });
  t.deepEqual(p({ cause: "http-status", httpStatus: 502 }).maxAttempts, 3, "5xx: configured");
  t.deepEqual(p({ cause: "ssrf-refused", httpStatus: null }).maxAttempts, 1, "built-in: parked at once");
  t.deepEqual(p({ cause: "other", httpStatus: null }), { maxAttempts: 4, baseMs: 1_000, maxMs: 10_000 });
  t.is(p({ cause: "dns", httpStatus: null }).maxAttempts, 4, "never more than frontier.maxAttempts");
  t.deepEqual(p({ cause: "timeout", httpStatus: null }), { maxAttempts: 4, baseMs: 1_000, maxMs: 10_000 });
  const policy = { maxAttempts: 9, baseMs: 1_000, maxMs: 10_000 };
  t.is(
    backoffDelay(policy, 3, () => 0),
    0,
    "full jitter starts at zero",
  );
  t.is(
    backoffDelay(policy, 3, () => 0.5),
    2_000,
    "half of base·2^(3-1)",
  );
  t.is(
    backoffDelay(policy, 10, () => 0.999_999),
    9_999,
    "capped at retryMaxMs",
  );
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(policy, 4)));
  t.true(spread.size > 40, "random delays, not one fixed value");
  t.true([...spread].every((d) => d >= 0 && d < 8_000));
});

async function setup(t: ExecutionContext, frontier: Record<string, unknown>) {
  const config = stack.config({ roles: ["frontier"], frontier });
  const nats = await connectNats(config, uniqueName("failures"));
  t.teardown(() => nats.nc.close());
  await ensureTopology(nats.jsm, config);
  const db = await openDatabase(config);
  t.teardown(() => db.close());
  let jitter = 0.5;
  const store = new DomainStore(db.collections, config.frontier, {
    deadLetter: (dl) => publishDeadLetter(nats.js, dl),
    random: () => jitter,
  });
  return { config, nats, db, store, setJitter: (j: number) => (jitter = j) };
}

/** Admits one domain per name and fails every attempt of each with its failure, until parked. */
async function failUntilParked(
  store: DomainStore,
  failures: Record<string, { kind: FailureKind; message: string; httpStatus?: number }>,
  start: Date,
) {
  await store.admit(
    Object.keys(failures).map((domain) => ({
      admission: {
        domain,
        seedUrl: `http://${domain}/`,
        source: "feed",
        region: "local",
        admittedAt: start.toISOString(),
      },
      traceparent: undefined,
    })),
    start,
  );
  const delays: Record<string, number[]> = {};
  let at = start;
  for (let round = 0; round < 10; round++) {
    const jobs = await store.leaseDue("local", 100, at);
    let next = Number.POSITIVE_INFINITY;
    for (const { job } of jobs) {
      const f = failures[job.domain]!;
      const result = failedResult(job, f.kind, f.message, at, f.httpStatus);
      await store.recordOutcome(result, summarise(result), at);
      const doc = await store.get(job.domain);
      if (doc?.nextScanAt) {
        (delays[job.domain] ??= []).push(doc.nextScanAt.getTime() - at.getTime());
        next = Math.min(next, doc.nextScanAt.getTime());
      }
    }
    if (!Number.isFinite(next)) break;
    at = new Date(next);
  }
  return delays;
}

test.serial(
  "retries by cause with jittered backoff; parked after the last attempt with a dead letter and history",
  async (t) => {
    const { config, nats, store } = await setup(t, {
      maxAttempts: 4,
      retryBaseMs: MIN,
      retryMaxMs: 3 * MIN,
      retryByCause: { dns: { maxAttempts: 2, baseMs: HOUR, maxMs: 4 * HOUR }, "ssrf-refused": { maxAttempts: 1 } },
    });
    const tag = uniqueName("f").toLowerCase().replace("_", "");
    const dns = `nx-${tag}.test`;
    const ssrf = `ssrf-${tag}.test`;
    const busy = `busy-${tag}.test`;
    // Parked three hours ago, so the age filter can tell these from the one parked now.
    const start = new Date(Date.now() - 3 * HOUR - 10 * MIN);
    const delays = await failUntilParked(
      store,
      {
        [dns]: { kind: "dns", message: `dns: ENOTFOUND for ${dns}` },
        [ssrf]: { kind: "blocked-address", message: `${ssrf} resolves to 10.1.2.3 (private)` },
      },
      start,
    );
    // DNS: 2 attempts; the retry waited half (jitter 0.5) of base 1 h.
    t.deepEqual(delays[dns], [30 * MIN]);
    t.is(delays[ssrf], undefined, "an SSRF refusal is parked at once, never retried");
    const busyDelays = await failUntilParked(
      store,
      { [busy]: { kind: "http-status", message: "landing page answered HTTP 503", httpStatus: 503 } },
      new Date(),
    );
    // 503 falls back to the defaults: 4 attempts, base 1 min doubling, capped at 3 min, jitter 0.5.
    t.deepEqual(busyDelays[busy], [0.5 * MIN, 1 * MIN, 1.5 * MIN]);

    for (const [domain, attempts, cause] of [
      [dns, 2, "dns"],
      [ssrf, 1, "ssrf-refused"],
      [busy, 4, "http-status"],
    ] as const) {
      const doc = await store.get(domain);
      t.like(doc, { state: "failed", nextScanAt: null, attempts }, domain);
      const history = (doc as { history?: Array<Record<string, unknown>> }).history ?? [];
      t.is(history.length, attempts, `${domain}: one history entry per attempt`);
      t.true(history.every((h) => h["cause"] === cause && h["node"] === "scanner-7" && h["at"] instanceof Date));
      t.deepEqual(
        history.map((h) => h["attempt"]),
        Array.from({ length: attempts }, (_, i) => i + 1),
      );
    }
    t.is(((await store.get(busy)) as { history?: Array<{ httpStatus: number }> }).history?.[0]?.httpStatus, 503);

    const letters = await eventually("three frontier dead letters", async () => {
      const found = (await findDeadLetters(nats.jsm, { stage: "frontier" })).filter((l) =>
        [dns, ssrf, busy].some((d) => l.deadLetter.reason.length > 0 && payloadDomain(l) === d),
      );
      return found.length === 3 ? found : undefined;
    });
    const byDomain = new Map(letters.map((l) => [payloadDomain(l), l.deadLetter]));
    t.like(byDomain.get(dns), { stage: "frontier", code: "retries-exhausted", subject: "admit.local", deliveries: 2 });
    t.regex(byDomain.get(dns)!.reason, /^dns after 2 attempts: dns: ENOTFOUND/);
    t.regex(byDomain.get(busy)!.reason, /^http-status 503 after 4 attempts/);
    t.is(byDomain.get(busy)!.history?.length, 4, "the letter carries the full history");
    t.like(byDomain.get(busy)!.history?.[3], { attempt: 4, cause: "http-status", httpStatus: 503, node: "scanner-7" });

    // Filters of `glyphscan dlq list`: stage, `code: reason` regex, age.
    const list = async (args: string[]) => {
      const child = await spawnGlyphscan(config, ["dlq", "list", "--json", ...args]);
      let out = "";
      let err = "";
      child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      t.is(code, 0, err);
      return (JSON.parse(out) as StoredDeadLetter[]).map(payloadDomain).filter((d) => d.includes(tag));
    };
    t.deepEqual((await list(["--stage", "frontier"])).sort(), [busy, dns, ssrf].sort());
    t.deepEqual(await list(["--stage", "frontier", "--reason", "^retries-exhausted: dns"]), [dns]);
    t.deepEqual((await list(["--stage", "frontier", "--older-than", "2h"])).sort(), [dns, ssrf].sort());
    t.deepEqual(await list(["--stage", "scanner"]), [], "another stage: none of these");

    // `glyphscan dlq replay --reason ssrf`: the frontier revives the parked domain with its attempts back.
    const node = await startNode(config, createLogger(config.logLevel, {}));
    t.teardown(() => node.stop());
    const replay = await spawnGlyphscan(config, [
      "dlq",
      "replay",
      "--stage",
      "frontier",
      "--reason",
      `ssrf-refused.*${ssrf}`,
    ]);
    let replayOut = "";
    replay.stdout?.on("data", (d: Buffer) => (replayOut += d.toString()));
    t.is(await new Promise<number | null>((resolve) => replay.on("exit", resolve)), 0);
    t.regex(replayOut, /replayed 1 of 1 dead letters/);
    const revived = await eventually("the replayed domain revived", async () => {
      const doc = await store.get(ssrf);
      return doc && doc.state !== "failed" ? doc : undefined;
    });
    t.is((revived as { parkedAt?: Date | null }).parkedAt, null);
    t.true(revived.attempts <= 1, "attempts given back (the dispatcher may already hold it)");
    t.like(await store.get(dns), { state: "failed" }, "letters not replayed stay parked");
    t.deepEqual(await list(["--stage", "frontier", "--reason", "ssrf"]), [], "a replayed letter leaves the DLQ");
  },
);

function payloadDomain(l: StoredDeadLetter): string {
  try {
    return (JSON.parse(Buffer.from(l.deadLetter.payloadBase64, "base64").toString("utf8")) as { domain: string })
      .domain;
  } catch {
    return "";
  }
}

test.serial("a success resets attempts and is kept in the bounded history", async (t) => {
  const { store } = await setup(t, { maxAttempts: 5, retryBaseMs: 1_000, historyLimit: 3 });
  const domain = `flaky-${uniqueName("h").toLowerCase().replace("_", "")}.test`;
  let at = new Date(Date.now() - HOUR);
  await store.admit(
    [
      {
        admission: {
          domain,
          seedUrl: `http://${domain}/`,
          source: "feed",
          region: "local",
          admittedAt: at.toISOString(),
        },
        traceparent: undefined,
      },
    ],
    at,
  );
  const outcomes: Array<FailureKind | "ok"> = ["timeout", "timeout", "ok", "tls"];
  for (const outcome of outcomes) {
    const [lease] = await store.leaseDue("local", 1, at);
    t.truthy(lease, `due for ${outcome}`);
    const failed = failedResult(lease!.job, outcome === "ok" ? "internal" : outcome, `${outcome}!`, at);
    const result: ScanResult =
      outcome === "ok" ? { ...failed, report: { ...failed.report, status: "ok", failure: null } } : failed;
    await store.recordOutcome(result, summarise(result), at);
    at = new Date((await store.get(domain))!.nextScanAt!.getTime());
  }
  const doc = (await store.get(domain)) as unknown as {
    history: Array<{ cause: string }>;
    attempts: number;
    ip: string;
  };
  t.deepEqual(
    doc.history.map((h) => h.cause),
    ["timeout", "ok", "tls"],
    "the last historyLimit attempts",
  );
  t.is(doc.attempts, 1, "counted since the success");
  t.is(doc.ip, "203.0.113.9", "the address the scanner resolved");
});

export type { Config };

test("the scanner's outcomes carry what the frontier needs: the address, and failures that classify", async (t) => {
  const { createServer } = await import("node:http");
  const { scanSite } = await import("../../actors/scanner/scan-site.ts");
  const server = createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><html><head><title>x</title></head><body><p>plain</p></body></html>");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  // The static path answers these pages, so no browser is started; one that asked for it would fail.
  const noBrowser = {
    pageTimeoutMs: 5_000,
    run: () => Promise.reject(new Error("the browser was not expected here")),
    refusalFor: () => null,
  } as unknown as Parameters<typeof scanSite>[0];
  const opts = {
    allowHosts: ["*.test"],
    hostMap: { "*.test": "127.0.0.1" },
    maxFontBytes: 1_000_000,
    navigationTimeoutMs: 5_000,
    settleMs: 0,
    fastPath: true,
  };
  const ok = await scanSite(noBrowser, { url: `http://addr.test:${port}/` }, opts);
  t.is(ok.status, "ok", ok.failure?.message);
  t.is(ok.address, "127.0.0.1", "the address the SSRF check resolved");
  const refused = await scanSite(noBrowser, { url: `http://127.0.0.1:${port}/` }, { ...opts, allowHosts: [] });
  t.like(classifyFailure(refused), { cause: "ssrf-refused" });
  const nx = await scanSite(noBrowser, { url: "http://no-such-host.invalid/" }, { ...opts, hostMap: {} });
  t.like(classifyFailure(nx), { cause: "dns" });
});

test.serial(
  "a domain whose scans never answer (lease after lease runs out) is parked with a dead letter",
  async (t) => {
    const { nats, store } = await setup(t, { maxAttempts: 2, leaseMs: 1_000 });
    const domain = `crashy-${uniqueName("l").toLowerCase().replace("_", "")}.test`;
    const t0 = new Date(Date.now() - HOUR);
    await store.admit(
      [
        {
          admission: {
            domain,
            seedUrl: `http://${domain}/`,
            source: "feed",
            region: "local",
            admittedAt: t0.toISOString(),
          },
          traceparent: undefined,
        },
      ],
      t0,
    );
    const leased = async (at: Date) => (await store.leaseDue("local", 10, at)).filter((j) => j.job.domain === domain);
    t.is((await leased(t0)).length, 1, "first attempt");
    t.is((await leased(new Date(t0.getTime() + 500))).length, 0, "not while its lease runs");
    const second = await leased(new Date(t0.getTime() + 2_000));
    t.is(second[0]?.job.attempt, 2, "the lease ran out: a second attempt");
    t.deepEqual(await leased(new Date(t0.getTime() + 4_000)), [], "the second ran out too: parked");
    const doc = (await store.get(domain)) as unknown as {
      state: string;
      history: Array<{ cause: string; attempt: number }>;
    };
    t.is(doc.state, "failed");
    t.deepEqual(
      doc.history.map((h) => [h.cause, h.attempt]),
      [
        ["lease-expired", 1],
        ["lease-expired", 2],
      ],
    );
    const letter = await eventually("its dead letter", async () =>
      (await findDeadLetters(nats.jsm, { stage: "frontier", reason: /lease-expired/ })).find(
        (l) => payloadDomain(l) === domain,
      ),
    );
    t.regex(letter.deadLetter.reason, /^lease-expired after 2 attempts/);
    t.is(letter.deadLetter.history?.length, 2);
  },
);
