/**
 * Tracing, metrics and logs on the real pipeline: one domain submitted through NATS, scanned by
 * Chromium and stored, with the OpenTelemetry SDK recording spans into memory and serving
 * metrics on a Prometheus endpoint.
 */
import test from "ava";
import { Writable } from "node:stream";
import { SpanKind, type SpanContext } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { headers } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { buildApi } from "../../actors/api/server.ts";
import { submitUrls } from "../../bin/commands/submit.ts";
import { startNode } from "../../actors/compose.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { connectNats, createLogger, publishMessage, type ClusterNode, type NatsHandles } from "../../cluster/mod.ts";
import { startTelemetry, withSpan, type Telemetry } from "../../cluster/telemetry.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { subjects, type FeedSubmission } from "../../protocol/mod.ts";
import { freePort } from "../harness/servers.ts";
import { eventually, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
let corpus: Corpus;
let config: Config;
let node: ClusterNode;
let nats: NatsHandles;
let db: Database;
let telemetry: Telemetry;
let redis: Redis;
const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";
const spans = new InMemorySpanExporter();
const logLines: Array<Record<string, unknown>> = [];

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 4, tag: "otel" })]);
  config = stack.config({
    telemetry: { metricsPort: await freePort(), metricsHost: "127.0.0.1" },
    // The browser path, so the trace has its page span (the fast path answers script-free sites without one).
    scanner: { fastPath: false },
    // A failed scan is recorded once and the domain parked, so the failure counts are exact.
    frontier: { maxAttempts: 1 },
    api: { jwtSecret: SECRET },
  });
  telemetry = await startTelemetry(config, { spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n"))
        if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  node = await startNode(config, createLogger("info", { nodeId: config.nodeId! }, sink));
  nats = await connectNats(config, "telemetry-client");
  db = await openDatabase(config);
  redis = new Redis(stack.redis.url);
});

test.after.always(async () => {
  await node?.stop();
  await nats?.nc.close();
  await db?.close();
  redis?.disconnect();
  await telemetry?.shutdown();
  await corpus?.close();
  await stack?.stop();
});

const submission = (url: string): FeedSubmission => ({ url, source: "otel", submittedAt: new Date().toISOString() });
const scanned = (domain: string) =>
  eventually(
    `${domain} scanned`,
    async () => (await db.collections.domains.findOne({ _id: domain, latest: { $ne: null } })) ?? undefined,
    90_000,
  );
const same = (a: SpanContext | undefined, b: ReadableSpan) =>
  a?.spanId === b.spanContext().spanId && a.traceId === b.spanContext().traceId;

test.serial("one trace follows a domain from feed to stored result, with messaging spans", async (t) => {
  const site = corpus.sites[0]!;
  await publishMessage(nats.js, {
    subject: subjects.feed("otel"),
    schema: "feed-submission",
    body: submission(site.url),
    msgId: `otel:${site.url}`,
  });
  await scanned(site.domain);
  const root = await eventually("the feed publish span", async () =>
    spans
      .getFinishedSpans()
      .find(
        (s) =>
          s.name === "publish feeds.{source}" && s.attributes["messaging.destination.name"] === subjects.feed("otel"),
      ),
  );
  t.is(root.kind, SpanKind.PRODUCER);
  t.is(root.parentSpanContext, undefined, "the feed publish starts the trace");
  const traceId = root.spanContext().traceId;
  const inTrace = () => spans.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  await eventually("the results process span", async () =>
    inTrace().some((s) => s.name === "process results.{region}") ? true : undefined,
  );
  const trace = inTrace();
  const one = (name: string) => {
    const found = trace.filter((s) => s.name === name);
    t.is(found.length, 1, `exactly one "${name}" span in the trace (spans: ${trace.map((s) => s.name).join(", ")})`);
    return found[0]!;
  };
  // The chain: each process span is the child of the publish that created its message (and links
  // to it); each publish is the child of the span that caused it.
  const chain: Array<[string, SpanKind, string, string]> = [
    ["process feeds.{source}", SpanKind.CONSUMER, "publish feeds.{source}", "coordinator"],
    ["publish admit.{region}", SpanKind.PRODUCER, "process feeds.{source}", ""],
    ["process admit.{region}", SpanKind.CONSUMER, "publish admit.{region}", "frontier_LOCAL"],
    ["publish jobs.{region}", SpanKind.PRODUCER, "process admit.{region}", ""],
    ["process jobs.{region}", SpanKind.CONSUMER, "publish jobs.{region}", "scanners"],
    ["scan site", SpanKind.INTERNAL, "process jobs.{region}", ""],
    ["render page", SpanKind.INTERNAL, "scan site", ""],
    ["load page", SpanKind.INTERNAL, "render page", ""],
    ["extract fonts", SpanKind.INTERNAL, "render page", ""],
    ["parse fonts", SpanKind.INTERNAL, "extract fonts", ""],
    ["publish results.{region}", SpanKind.PRODUCER, "process jobs.{region}", ""],
    ["process results.{region}", SpanKind.CONSUMER, "publish results.{region}", "results-writer"],
    ["check licences", SpanKind.INTERNAL, "process results.{region}", ""],
    ["store scan", SpanKind.INTERNAL, "process results.{region}", ""],
    ["publish compliance.{region}", SpanKind.PRODUCER, "process results.{region}", ""],
  ];
  for (const [name, kind, parentName, group] of chain) {
    const span = one(name);
    const parent = one(parentName);
    t.is(span.kind, kind, `${name} kind`);
    t.true(same(span.parentSpanContext, parent), `${name} is a child of ${parentName}`);
    if (kind === SpanKind.CONSUMER) {
      t.is(span.links.length, 1, `${name} links to its message's creation context`);
      t.true(same(span.links[0]?.context, parent), `${name} link points at ${parentName}`);
      t.like(span.attributes, {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.consumer.group.name": group,
        "messaging.nats.delivery_count": 1,
      });
      t.regex(String(span.attributes["messaging.message.id"]), /^[A-Z_]+:\d+$/);
    }
    if (kind === SpanKind.PRODUCER) {
      t.like(span.attributes, { "messaging.system": "nats", "messaging.operation.type": "publish" });
      t.regex(String(span.attributes["messaging.message.id"]), /^[A-Z_]+:\d+$/);
      t.true(Number(span.attributes["messaging.message.body.size"]) > 0);
    }
    t.true(span.endTime[0] > 0, `${name} ended`);
  }
  t.is(one("publish jobs.{region}").attributes["messaging.destination.name"], subjects.jobs("local"));
  t.like(one("scan site").attributes, { "glyphscan.domain": site.domain, "glyphscan.scan.status": "ok" });
  const stored = await db.collections.scans.findOne({ domain: site.domain });
  t.is(one("scan site").attributes["glyphscan.fonts.files"], stored?.files.length);
  t.is(one("parse fonts").attributes["glyphscan.fonts.files"], stored?.files.length);
  t.is(one("store scan").attributes["glyphscan.job.id"], stored?._id);
  // Hops run in order: the load ends before extraction starts, parsing ends inside extraction,
  // licences are checked before the scan is stored. (The SDK takes a span's start from Date.now()
  // and its end from the monotonic clock, so "before" allows a few milliseconds.)
  const ms = (t: [number, number]) => t[0] * 1e3 + t[1] / 1e6;
  const before = (a: ReadableSpan, b: ReadableSpan) => ms(a.endTime) <= ms(b.startTime) + 5;
  t.true(before(one("load page"), one("extract fonts")), "the page loads before its fonts are extracted");
  t.true(ms(one("parse fonts").endTime) <= ms(one("extract fonts").endTime) + 5, "parsing is part of extraction");
  t.true(before(one("check licences"), one("store scan")), "licences are checked before the scan is stored");

  // The stored trace context on the domain is the frontier's process span, and the W3C header
  // on the stored job message is the job publish span.
  const doc = await db.collections.domains.findOne({ _id: site.domain });
  const admit = one("process admit.{region}").spanContext();
  t.is(doc?.traceparent, `00-${admit.traceId}-${admit.spanId}-01`);

  // Logs written inside spans carry their ids.
  const recorded = logLines.find((l) => l["msg"] === "scan recorded" && l["domain"] === site.domain);
  const resultsSpan = one("process results.{region}").spanContext();
  t.like(recorded, { trace_id: traceId, span_id: resultsSpan.spanId });
});

test.serial("an incoming W3C traceparent from outside is continued by the SDK", async (t) => {
  const site = corpus.sites[1]!;
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const h = headers();
  h.set("Glyphscan-Schema", "feed-submission.v1");
  h.set("traceparent", `00-${traceId}-00f067aa0ba902b7-01`);
  await nats.js.publish(subjects.feed("otel"), JSON.stringify(submission(site.url)), { headers: h });
  await scanned(site.domain);
  const spanOf = (name: string) =>
    eventually(name, async () =>
      spans.getFinishedSpans().find((s) => s.name === name && s.spanContext().traceId === traceId),
    );
  const consumer = await spanOf("process feeds.{source}");
  t.is(consumer.parentSpanContext?.spanId, "00f067aa0ba902b7");
  t.true(consumer.parentSpanContext?.isRemote);
  await spanOf("process results.{region}");
});

test.serial(
  "an HTTP submission joins the caller's trace: SERVER span, feed publish, on to the stored scan",
  async (t) => {
    const site = corpus.sites[3]!;
    const app = buildApi({ config, db, nats, redis, submitUrls });
    t.teardown(() => app.close());
    const token = await new SignJWT({ scope: "submit" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer(config.api.jwtIssuer)
      .setAudience(config.api.jwtAudience)
      .setSubject("otel-client")
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode(SECRET));
    const traceId = "5cf92f3577b34da6a3ce929d0e0e4737";
    const callerSpan = "10f067aa0ba902b8";
    const res = await app.inject({
      method: "POST",
      url: "/v1/submissions",
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${callerSpan}-01` },
      payload: { urls: [site.url], source: "otel" },
    });
    t.is(res.statusCode, 202, res.body);
    await scanned(site.domain);
    const inTrace = (name: string) =>
      eventually(`"${name}" in the caller's trace`, async () =>
        spans.getFinishedSpans().find((s) => s.name === name && s.spanContext().traceId === traceId),
      );
    const server = await inTrace("POST /v1/submissions");
    t.is(server.kind, SpanKind.SERVER);
    t.is(server.parentSpanContext?.spanId, callerSpan, "the request span is the child of the caller's span");
    t.true(server.parentSpanContext?.isRemote);
    t.like(server.attributes, {
      "http.request.method": "POST",
      "http.route": "/v1/submissions",
      "http.response.status_code": 202,
    });
    const publish = await inTrace("publish feeds.{source}");
    t.true(same(publish.parentSpanContext, server), "the feed message is published inside the request span");
    const consumer = await inTrace("process feeds.{source}");
    t.true(same(consumer.parentSpanContext, publish));
    const stored = await inTrace("store scan");
    const doc = await db.collections.scans.findOne({ domain: site.domain });
    t.is(stored.attributes["glyphscan.job.id"], doc?._id, "the same trace reaches the stored scan of this domain");
    // A request without traceparent starts its own trace.
    const before = new Set(spans.getFinishedSpans().map((s) => s.spanContext().spanId));
    t.is((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    const health = await eventually("the health request span", async () =>
      spans.getFinishedSpans().find((s) => s.name === "GET /healthz" && !before.has(s.spanContext().spanId)),
    );
    t.is(health.parentSpanContext, undefined);
  },
);

test.serial("logs carry the trace and span ids of the active span only", async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const log = createLogger("info", { nodeId: "x" }, sink);
  log.info("outside");
  const ids = await withSpan("a span", {}, async (span) => {
    log.child({ actor: "a" }).info("inside");
    return span!.spanContext();
  });
  t.is(lines.length, 2);
  t.false("trace_id" in lines[0]!, "no ids outside a span");
  t.like(lines[1], { msg: "inside", actor: "a", trace_id: ids.traceId, span_id: ids.spanId, trace_flags: "01" });
});

test.serial("the Prometheus endpoint counts what the run did", async (t) => {
  // A third site, a duplicate of the first, a site that refuses connections (a failed scan), a
  // URL the coordinator rejects and a message that does not decode.
  const site = corpus.sites[2]!;
  await publishMessage(nats.js, {
    subject: subjects.feed("otel"),
    schema: "feed-batch",
    body: {
      urls: [site.url, corpus.sites[0]!.url, "http://refused.test:1/", "not a url"],
      source: "otel",
      submittedAt: new Date().toISOString(),
    },
    msgId: "otel:batch",
  });
  const bad = headers();
  bad.set("Glyphscan-Schema", "feed-submission.v1");
  await nats.js.publish(subjects.feed("otel"), JSON.stringify({ nope: true }), { headers: bad });
  // A job whose lease ran out before a scanner took it: skipped, counted as a lease expiry.
  const past = new Date(Date.now() - 60_000).toISOString();
  await publishMessage(nats.js, {
    subject: subjects.jobs("local"),
    schema: "scan-job",
    msgId: "otel:expired",
    body: {
      jobId: "expired-job",
      domain: "expired.test",
      url: "http://expired.test/",
      region: "local",
      attempt: 1,
      leaseToken: "gone",
      leaseUntil: past,
      dispatchedAt: past,
    },
  });
  await scanned(site.domain);
  await scanned("refused.test");

  // Every domain submitted in this file: four sites (one through the HTTP API) and refused.test.
  const scans = await db.collections.scans.find({}).toArray();
  t.is(scans.length, 5);
  const fonts = scans.reduce((n, s) => n + s.files.length, 0);
  t.true(fonts > 0);
  const outcomes = new Map<string, number>();
  for (const s of scans) outcomes.set(s.failure?.kind ?? "ok", (outcomes.get(s.failure?.kind ?? "ok") ?? 0) + 1);
  t.is(outcomes.get("ok"), 4);
  const failures = [...outcomes].filter(([k]) => k !== "ok");
  t.is(failures.length, 1, "refused.test failed, with one failure kind");
  const [failureKind] = failures[0]!;
  const verdicts = new Map<string, number>();
  for (const s of scans) for (const v of s.verdicts ?? []) verdicts.set(v.verdict, (verdicts.get(v.verdict) ?? 0) + 1);
  t.true(verdicts.size > 0, "the ok scans have verdicts");
  const expected: Array<[string, number]> = [
    // Two feed-submissions, the API's batch and this batch; the undecodable message.
    ['glyphscan_messages_total{actor="coordinator",outcome="ok"}', 4],
    ['glyphscan_messages_total{actor="coordinator",outcome="dead-lettered"}', 1],
    ['glyphscan_messages_total{actor="frontier-local",outcome="ok"}', 5],
    ['glyphscan_messages_total{actor="scanner-local",outcome="ok"}', 6],
    ['glyphscan_messages_total{actor="results-local",outcome="ok"}', 5],
    ['glyphscan_seen_filter_total{result="new"}', 5],
    ['glyphscan_seen_filter_total{result="seen"}', 1],
    ['glyphscan_jobs_dispatched_total{region="local"}', 5],
    ['glyphscan_lease_expiries_total{region="local",where="before-scan"}', 1],
    ['glyphscan_scans_total{region="local",outcome="ok"}', 4],
    ['glyphscan_scan_duration_seconds_count{region="local",outcome="ok"}', 4],
    [`glyphscan_scans_total{region="local",outcome="${failureKind}"}`, 1],
    [`glyphscan_scan_duration_seconds_count{region="local",outcome="${failureKind}"}`, 1],
    ['glyphscan_fonts_found_total{region="local"}', fonts],
    ...[...verdicts].map(([v, n]): [string, number] => [`glyphscan_verdicts_total{region="local",verdict="${v}"}`, n]),
    ['glyphscan_jobs_pending{region="local",state="waiting"}', 0],
    ['glyphscan_jobs_pending{region="local",state="in-flight"}', 0],
    // "not a url" (rejected by the coordinator) and the message that did not decode.
    ['glyphscan_dead_letters{stage="coordinator"}', 2],
    ['glyphscan_dead_letters{stage="scanner"}', 0],
  ];
  const url = telemetry.metricsUrl!;
  const samples = await eventually(
    "the counters to settle",
    async () => {
      const parsed = parseSamples(await (await fetch(url)).text());
      return expected.every(([k, v]) => parsed.get(k) === v) ? parsed : undefined;
    },
    20_000,
  ).catch(async () => parseSamples(await (await fetch(url)).text()));
  for (const [key, value] of expected) t.is(samples.get(key), value, key);
  t.false(
    [...samples.keys()].some((k) => k.includes('outcome="retried"')),
    "nothing was retried",
  );
  t.is(
    [...samples.keys()].filter((k) => k.startsWith("glyphscan_verdicts_total")).length,
    verdicts.size,
    "no verdict kind counted that no scan has",
  );
  const sum = samples.get('glyphscan_scan_duration_seconds_sum{region="local",outcome="ok"}') ?? 0;
  const stored = scans.filter((x) => x.status === "ok").reduce((s, x) => s + x.durationMs / 1000, 0);
  t.true(Math.abs(sum - stored) < 0.01, `duration sum ${sum} matches the stored scans ${stored}`);
});

/** Prometheus text format → `name{labels}` (labels in exposition order, without otel_scope_*) → value. */
function parseSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/i.exec(line);
    if (!m) continue;
    const labels = (m[2] ?? "")
      .split(/,(?=[a-z_]\w*=")/i)
      .filter((l) => l && !l.startsWith("otel_scope_"))
      .join(",");
    out.set(labels ? `${m[1]}{${labels}}` : m[1]!, Number(m[3]));
  }
  return out;
}
