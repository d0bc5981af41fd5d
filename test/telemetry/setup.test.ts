/**
 * Telemetry set up from config: off by default (nothing started, hand-made W3C headers as
 * before), and with an OTLP endpoint configured, spans reach that endpoint over HTTP.
 */
import test from "ava";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { context, trace } from "@opentelemetry/api";
import {
  ActorRunner,
  connectNats,
  createLogger,
  ensureTopology,
  messageHeaders,
  parseTraceparent,
  publishMessage,
} from "../../cluster/mod.ts";
import { startTelemetry, tracingEnabled, withSpan } from "../../cluster/telemetry.ts";
import { loadConfig } from "../../config/mod.ts";
import { consumers, streams, subjects } from "../../protocol/mod.ts";
import { startNats, stopAll } from "../harness/servers.ts";
import { eventually, testConfig } from "../helpers/stack.ts";

test.serial("telemetry is off by default: no SDK, no spans, hand-made trace headers", async (t) => {
  const config = loadConfig({ env: {}, overrides: {} });
  t.is(config.telemetry.otlpEndpoint, undefined);
  t.is(config.telemetry.metricsPort, undefined);
  const telemetry = await startTelemetry(config);
  t.false(telemetry.tracing);
  t.false(telemetry.metrics);
  t.is(telemetry.metricsUrl, null);
  t.false(tracingEnabled());
  t.is(await withSpan("nothing", {}, async (span) => span), null, "no span is made");
  t.is(trace.getSpanContext(context.active()), undefined);

  const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const child = parseTraceparent(messageHeaders("scan-job", parent).get("traceparent"));
  t.is(child?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736", "the trace id is carried on by hand");
  t.not(child?.spanId, "00f067aa0ba902b7");

  const lines: string[] = [];
  const log = createLogger(
    "info",
    {},
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  );
  log.info("plain");
  t.false(lines[0]!.includes("trace_id"));
  await telemetry.shutdown();
});

test.serial("with tracing off, a handler's log lines carry the trace id of its message's header", async (t) => {
  const server = await startNats();
  t.teardown(stopAll);
  const config = testConfig({ nats: server.url, redis: "redis://unused", mongo: "mongodb://unused" });
  const nats = await connectNats(config, "log-test");
  t.teardown(() => nats.nc.close());
  await ensureTopology(nats.jsm, config);
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger(
    "info",
    {},
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    }),
  );
  const runner = new ActorRunner(
    {
      name: "log-probe",
      stage: "frontier",
      stream: streams.admit,
      consumer: consumers.frontier("local"),
      accept: ["admission"],
      concurrency: 1,
      async handle(admission, ctx) {
        ctx.log.info({ domain: admission.domain }, "handled");
      },
    },
    { js: nats.js, config, log, onFatal: () => undefined },
  );
  await runner.start();
  t.teardown(() => runner.stop());
  const traceId = "0af7651916cd43dd8448eb211c80319c";
  await publishMessage(nats.js, {
    subject: subjects.admit("local"),
    schema: "admission",
    msgId: "log-probe",
    parentTraceparent: `00-${traceId}-b7ad6b7169203331-01`,
    body: {
      domain: "probe.test",
      seedUrl: "http://probe.test/",
      source: "t",
      region: "local",
      admittedAt: new Date().toISOString(),
    },
  });
  const line = await eventually("the handler's log line", async () => lines.find((l) => l["msg"] === "handled"));
  t.is(line["trace_id"], traceId);
  t.regex(String(line["span_id"]), /^[0-9a-f]{16}$/);
  t.not(line["span_id"], "b7ad6b7169203331", "the message's own span, a child of the publisher's");
  t.is(line["actor"], "log-probe");
});

test.serial("with otlpEndpoint set, spans are exported over OTLP/HTTP with the service name", async (t) => {
  const received: Array<{ url: string; type: string; body: Buffer }> = [];
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ url: req.url ?? "", type: req.headers["content-type"] ?? "", body: Buffer.concat(chunks) });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  t.teardown(() => void server.close());

  const config = loadConfig({
    env: { GLYPHSCAN_TELEMETRY_OTLP_ENDPOINT: `http://127.0.0.1:${port}/v1/traces` },
    overrides: { telemetry: { serviceName: "glyphscan-test" } },
  });
  const telemetry = await startTelemetry(config);
  t.true(telemetry.tracing);
  t.false(telemetry.metrics, "no metrics endpoint unless a port is set");
  t.true(tracingEnabled());
  const traceId = await withSpan(
    "exported span",
    { "glyphscan.test": true },
    async (span) => span!.spanContext().traceId,
  );
  await telemetry.shutdown(); // flushes the batch processor
  t.false(tracingEnabled());

  const traces = received.filter((r) => r.url === "/v1/traces");
  t.true(traces.length >= 1, "the collector endpoint got a request");
  const body = traces.map((r) => r.body.toString("latin1")).join("");
  t.true(body.includes("exported span"), "the span name is in the export");
  t.true(body.includes("glyphscan-test"), "the service name is in the resource");
  // exporter-trace-otlp-http speaks OTLP/JSON: the span sits under resourceSpans → scopeSpans → spans.
  t.true(
    traces.every((r) => r.type.startsWith("application/json")),
    "OTLP/JSON",
  );
  type Otlp = { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string; traceId: string }> }> }> };
  const exported = traces.flatMap((r) =>
    (JSON.parse(r.body.toString()) as Otlp).resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)),
  );
  t.deepEqual(
    exported.map((s) => [s.name, s.traceId]),
    [["exported span", traceId]],
  );
});
