import test from "ava";
import { decodeMessage, schemaHeader, subjects, streams, consumers, type ScanJob } from "../../protocol/mod.ts";
import { childTraceparent, parseTraceparent } from "../../cluster/trace-context.ts";

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const job: ScanJob = {
  jobId: "a.com:1",
  domain: "a.com",
  url: "https://a.com/",
  region: "eu",
  attempt: 1,
  leaseToken: "t",
  leaseUntil: "2026-11-25T10:00:00.000Z",
  dispatchedAt: "2026-11-25T09:50:00.000Z",
};

test("subjects and streams are region-aware and refuse unsafe tokens", (t) => {
  t.is(subjects.jobs("eu-west"), "jobs.eu-west");
  t.is(streams.jobs("eu-west"), "JOBS_EU_WEST");
  t.is(consumers.frontier("eu"), "frontier_EU");
  t.is(subjects.feed("common-crawl"), "feeds.common-crawl");
  t.throws(() => subjects.jobs("eu.>"), { message: /invalid region/ });
  t.throws(() => subjects.feed("a b"), { message: /invalid source/ });
});

test("a valid message decodes; every way of being wrong has its own reason", (t) => {
  const ok = decodeMessage(["scan-job"], schemaHeader("scan-job"), enc(job), 1024);
  t.true(ok.ok);
  if (ok.ok) t.is(ok.value.domain, "a.com");
  const reasons = [
    decodeMessage(["scan-job"], undefined, enc(job), 1024),
    decodeMessage(["scan-job"], "scan-job.v2", enc(job), 1024),
    decodeMessage(["scan-job"], "admission.v1", enc(job), 1024),
    decodeMessage(["scan-job"], "scan-job.v1", enc({ ...job, attempt: 0 }), 1024),
    decodeMessage(["scan-job"], "scan-job.v1", enc({ ...job, extra: 1 }), 1024),
    decodeMessage(["scan-job"], "scan-job.v1", enc(job), 10),
    decodeMessage(["scan-job"], "scan-job.v1", new Uint8Array([0xc3, 0x28]), 1024),
  ].map((d) => (d.ok ? "ok" : d.reason));
  t.regex(reasons[0]!, /missing or malformed Glyphscan-Schema/);
  t.regex(reasons[1]!, /unsupported version 2 of "scan-job" \(known: 1\)/);
  t.regex(reasons[2]!, /unexpected message kind "admission"/);
  t.regex(reasons[3]!, /invalid scan-job\.v1: .*attempt/);
  t.regex(reasons[4]!, /invalid scan-job\.v1: .*extra/);
  t.regex(reasons[5]!, /^oversized: \d+ bytes, limit 10$/);
  t.regex(reasons[6]!, /not UTF-8 JSON/);
});

test("trace context: a child keeps the trace id and gets a new span; garbage starts a new trace", (t) => {
  const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const child = parseTraceparent(childTraceparent(parent));
  t.is(child?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  t.not(child?.spanId, "00f067aa0ba902b7");
  for (const bad of [undefined, "", "00-0000-00-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"]) {
    const fresh = parseTraceparent(childTraceparent(bad));
    t.truthy(fresh);
    t.not(fresh?.traceId, "00000000000000000000000000000000");
  }
});
