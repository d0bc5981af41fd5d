/**
 * W3C trace context on NATS headers. Every hop continues the trace it received (a new span id
 * under the same trace id) or starts one, so a domain can be followed from feed to result.
 * When the OpenTelemetry SDK is set up, its propagator takes over the same headers.
 */
import { randomBytes } from "node:crypto";
import { ROOT_CONTEXT, context, isSpanContextValid, trace, type Context } from "@opentelemetry/api";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export interface TraceParent {
  traceId: string;
  spanId: string;
  flags: string;
}

export function parseTraceparent(value: string | undefined): TraceParent | null {
  const m = value ? TRACEPARENT.exec(value.trim()) : null;
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return null;
  return { traceId: m[1]!, spanId: m[2]!, flags: m[3]! };
}

export function formatTraceparent(tp: TraceParent): string {
  return `00-${tp.traceId}-${tp.spanId}-${tp.flags}`;
}

/** A child of `parent` (same trace, new span), or the root of a new sampled trace. */
export function childTraceparent(parent: string | undefined): string {
  const p = parseTraceparent(parent);
  return formatTraceparent({
    traceId: p?.traceId ?? randomBytes(16).toString("hex"),
    spanId: randomBytes(8).toString("hex"),
    flags: p?.flags ?? "01",
  });
}

/** An OpenTelemetry context whose parent is the remote span named by `traceparent` (ROOT when absent). */
export function contextFromTraceparent(value: string | undefined): Context {
  const p = parseTraceparent(value);
  if (!p) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: p.traceId,
    spanId: p.spanId,
    traceFlags: Number.parseInt(p.flags, 16),
    isRemote: true,
  });
}

/** The traceparent of the active span, when one is recording (i.e. the SDK is running). */
export function activeTraceparent(ctx: Context = context.active()): string | undefined {
  const sc = trace.getSpanContext(ctx);
  if (!sc || !isSpanContextValid(sc)) return undefined;
  return formatTraceparent({
    traceId: sc.traceId,
    spanId: sc.spanId,
    flags: (sc.traceFlags & 0xff).toString(16).padStart(2, "0"),
  });
}
