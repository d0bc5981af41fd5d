/**
 * OpenTelemetry for a node: traces (OTLP/HTTP) and metrics (a Prometheus endpoint), set up from
 * the `telemetry` config section. Off by default: nothing is loaded, the API stays a no-op and
 * the plain W3C traceparent headers of trace-context.ts carry on as the only propagation.
 *
 * Messaging spans follow the OpenTelemetry messaging conventions: `publish {template}` PRODUCER
 * spans inject their context into the NATS headers; `process {template}` CONSUMER spans are
 * children of the producer span that created the message (one trace per domain) and link to it.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  metrics,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from "@opentelemetry/api";
import type { MsgHdrs } from "@nats-io/transport-node";
import type { SpanProcessor } from "@opentelemetry/sdk-trace";
import type { IMetricReader } from "@opentelemetry/sdk-metrics";
import type { Config } from "../config/mod.ts";
import { subjectTemplate } from "../protocol/mod.ts";
import { contextFromTraceparent } from "./trace-context.ts";

export interface TelemetryOptions {
  /** Extra span processors (tests pass an in-memory exporter); enables tracing. */
  spanProcessors?: SpanProcessor[];
  /** Extra metric readers; enables metrics. */
  metricReaders?: IMetricReader[];
}

export interface Telemetry {
  readonly tracing: boolean;
  readonly metrics: boolean;
  /** URL of the Prometheus endpoint, when metrics are served. */
  readonly metricsUrl: string | null;
  /** Flushes and stops exporters; the API goes back to no-op. */
  shutdown(): Promise<void>;
}

const OFF: Telemetry = { tracing: false, metrics: false, metricsUrl: null, shutdown: async () => undefined };

let tracingOn = false;
let metricsGeneration = 0;

/** True while an SDK with span processors is registered: spans record and headers come from spans. */
export function tracingEnabled(): boolean {
  return tracingOn;
}

/** Bumped whenever the meter provider changes, so instruments made from the old one are dropped. */
export function meterGeneration(): number {
  return metricsGeneration;
}

/**
 * Starts the SDK when the config (or `opts`) asks for traces or metrics; otherwise returns a
 * handle that does nothing, having loaded nothing.
 */
export async function startTelemetry(config: Config, opts: TelemetryOptions = {}): Promise<Telemetry> {
  const { telemetry } = config;
  const spanProcessors = [...(opts.spanProcessors ?? [])];
  const metricReaders = [...(opts.metricReaders ?? [])];
  if (telemetry.otlpEndpoint) {
    const [{ OTLPTraceExporter }, { BatchSpanProcessor }] = await Promise.all([
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/sdk-trace"),
    ]);
    spanProcessors.push(new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: telemetry.otlpEndpoint }) }));
  }
  let metricsUrl: string | null = null;
  if (telemetry.metricsPort !== undefined) {
    const { PrometheusExporter } = await import("@opentelemetry/exporter-prometheus");
    const exporter = new PrometheusExporter({
      host: telemetry.metricsHost,
      port: telemetry.metricsPort,
      preventServerStart: true,
    });
    await exporter.startServer();
    metricReaders.push(exporter);
    const host = telemetry.metricsHost === "0.0.0.0" ? "127.0.0.1" : telemetry.metricsHost;
    metricsUrl = `http://${host}:${telemetry.metricsPort}/metrics`;
  }
  if (spanProcessors.length === 0 && metricReaders.length === 0) return OFF;

  const { startNodeSdk } = await import("@opentelemetry/sdk-node");
  const sdk = startNodeSdk({
    // Explicit lists: never fall back to OTEL_* environment defaults (which would export to localhost:4318).
    spanProcessors,
    metricReaders,
    logRecordProcessors: [],
    resourceAttributes: {
      "service.name": telemetry.serviceName,
      ...(config.nodeId ? { "service.instance.id": config.nodeId } : {}),
      "cloud.region": config.region,
    },
  });
  tracingOn = spanProcessors.length > 0;
  metricsGeneration++;
  let stopped: Promise<void> | null = null;
  return {
    tracing: tracingOn,
    metrics: metricReaders.length > 0,
    metricsUrl,
    shutdown() {
      stopped ??= (async () => {
        try {
          await sdk.shutdown();
        } finally {
          tracingOn = false;
          metricsGeneration++;
          trace.disable();
          propagation.disable();
          context.disable();
          metrics.disable();
        }
      })();
      return stopped;
    },
  };
}

export const tracer = () => trace.getTracer("glyphscan");

const setter: TextMapSetter<MsgHdrs> = { set: (h, k, v) => h.set(k, v) };
const getter: TextMapGetter<MsgHdrs | undefined> = {
  get: (h, k) => h?.get(k) || undefined,
  keys: (h) => (h ? [...h.keys()] : []),
};

/** Writes the active span's W3C context into NATS headers (replacing any traceparent there). */
export function injectContext(h: MsgHdrs, ctx: Context = context.active()): void {
  propagation.inject(ctx, h, setter);
}

/** The creation context a message carries in its headers. */
export function extractContext(h: MsgHdrs | undefined, fallbackTraceparent?: string): Context {
  const extracted = propagation.extract(context.active(), h, getter);
  if (trace.getSpanContext(extracted)) return extracted;
  return contextFromTraceparent(fallbackTraceparent);
}

export function messagingAttributes(
  operation: "publish" | "process",
  subject: string,
  extra: Attributes = {},
): Attributes {
  return {
    "messaging.system": "nats",
    "messaging.operation.type": operation,
    "messaging.operation.name": operation,
    "messaging.destination.name": subject,
    "messaging.destination.template": subjectTemplate(subject),
    ...extra,
  };
}

/**
 * Runs `fn` in a CONSUMER `process` span for a received message: a child of the producer span
 * (the creation context) with a link to it as well. Without tracing, just runs `fn`.
 */
export async function withProcessSpan<T>(
  subject: string,
  creation: Context,
  attributes: Attributes,
  fn: (span: Span | null) => Promise<T>,
): Promise<T> {
  if (!tracingOn) return fn(null);
  const creator = trace.getSpanContext(creation);
  const links: Link[] = creator ? [{ context: creator }] : [];
  return tracer().startActiveSpan(
    `process ${subjectTemplate(subject)}`,
    { kind: SpanKind.CONSUMER, links, attributes: messagingAttributes("process", subject, attributes) },
    creation,
    (span) => endWith(span, fn),
  );
}

/** An INTERNAL child span of the active one around `fn`; just `fn` when tracing is off. */
export async function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span | null) => Promise<T>,
  parent: Context = context.active(),
): Promise<T> {
  if (!tracingOn) return fn(null);
  return tracer().startActiveSpan(name, { kind: SpanKind.INTERNAL, attributes }, parent, (span) => endWith(span, fn));
}

/** An INTERNAL child span of the active one around synchronous work (font parsing); just `fn` when off. */
export function withSyncSpan<T>(name: string, attributes: Attributes, fn: (span: Span | null) => T): T {
  if (!tracingOn) return fn(null);
  return tracer().startActiveSpan(name, { kind: SpanKind.INTERNAL, attributes }, (span) => {
    try {
      return fn(span);
    } catch (err) {
      markFailed(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

type HttpHeaders = Record<string, string | string[] | undefined>;
const httpGetter: TextMapGetter<HttpHeaders> = {
  get: (h, k) => {
    const v = h[k.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  },
  keys: (h) => Object.keys(h),
};

/** The caller's W3C context from HTTP request headers (ROOT when it sent none). */
export function extractHttpContext(h: HttpHeaders): Context {
  return propagation.extract(ROOT_CONTEXT, h, httpGetter);
}

/**
 * Runs an HTTP request's handler in a SERVER span named `{method} {route}` (HTTP semantic
 * conventions), the child of the caller's `traceparent` when it sent one; whatever the handler
 * publishes continues that trace. `status` reads the response code once the handler is done.
 */
export async function withHttpServerSpan<T>(
  req: { method: string; route: string; path: string; headers: HttpHeaders },
  status: () => number,
  fn: () => Promise<T>,
): Promise<T> {
  if (!tracingOn) return fn();
  const attributes: Attributes = {
    "http.request.method": req.method,
    "http.route": req.route,
    "url.path": req.path,
  };
  return tracer().startActiveSpan(
    `${req.method} ${req.route}`,
    { kind: SpanKind.SERVER, attributes },
    extractHttpContext(req.headers),
    async (span) => {
      try {
        const out = await fn();
        const code = status();
        span.setAttribute("http.response.status_code", code);
        if (code >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        return out;
      } catch (err) {
        markFailed(span, err);
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** Runs `fn` in a PRODUCER `publish` span under `parent`. */
export async function withPublishSpan<T>(
  subject: string,
  parent: Context,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(
    `publish ${subjectTemplate(subject)}`,
    { kind: SpanKind.PRODUCER, attributes: messagingAttributes("publish", subject, attributes) },
    parent,
    (span) => endWith(span, fn),
  );
}

/** Records a span's failure the way the OpenTelemetry conventions ask (status and error.type). */
function markFailed(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.setAttribute("error.type", err instanceof Error ? err.name : "Error");
}

async function endWith<T>(span: Span, fn: (span: Span) => Promise<T>): Promise<T> {
  try {
    return await fn(span);
  } catch (err) {
    markFailed(span, err);
    throw err;
  } finally {
    span.end();
  }
}
