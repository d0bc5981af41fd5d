/**
 * JSON logs; one logger per node, children per actor. A line written inside a traced span
 * carries that span's `trace_id` and `span_id` (OpenTelemetry's log field names), so logs and
 * traces join up. With tracing off there is no active span; actors then bind the ids of the
 * message's traceparent header to the logger they hand the handler (`traceFieldsOf`).
 */
import { context, isSpanContextValid, trace } from "@opentelemetry/api";
import { pino, type Logger } from "pino";
import { parseTraceparent } from "./trace-context.ts";

export type { Logger };

/** The ids of the active span, as log fields (empty when no span is active). */
export function traceFields(): { trace_id?: string; span_id?: string; trace_flags?: string } {
  const sc = trace.getSpanContext(context.active());
  if (!sc || !isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: `0${(sc.traceFlags & 0xff).toString(16)}`.slice(-2) };
}

/**
 * Log fields for a message's W3C traceparent header, for when no SDK is running: the trace id,
 * and as span id the message's own (hand-made) span.
 */
export function traceFieldsOf(traceparent: string | undefined): { trace_id?: string; span_id?: string } {
  const tp = parseTraceparent(traceparent);
  return tp ? { trace_id: tp.traceId, span_id: tp.spanId } : {};
}

export function createLogger(
  level: string,
  bindings: Record<string, string>,
  destination?: pino.DestinationStream,
): Logger {
  const options = { level, base: bindings, timestamp: pino.stdTimeFunctions.isoTime, mixin: traceFields };
  return destination ? pino(options, destination) : pino(options);
}
