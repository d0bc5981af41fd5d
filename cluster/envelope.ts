/**
 * Publishing a glyphscan message: validated against its schema, with the schema header,
 * a content-derived Nats-Msg-Id and W3C trace context. With tracing on, each publish is a PRODUCER
 * span whose context rides in the headers; otherwise a child traceparent is made by hand.
 */
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { HEADERS, schemaHeader, schemas, CURRENT_VERSION, type MessageOf, type SchemaName } from "../protocol/mod.ts";
import { context } from "@opentelemetry/api";
import { activeTraceparent, childTraceparent, contextFromTraceparent } from "./trace-context.ts";
import { injectContext, tracingEnabled, withPublishSpan } from "./telemetry.ts";
import type { z } from "zod";

export interface Outgoing<N extends SchemaName> {
  subject: string;
  schema: N;
  body: MessageOf<N>;
  /** Idempotency key: same key within the stream's window is stored once. */
  msgId: string;
  /** traceparent of the message this one follows from; a new trace starts when absent. */
  parentTraceparent?: string | undefined;
}

export function messageHeaders(schema: SchemaName, parentTraceparent: string | undefined): MsgHdrs {
  const h = natsHeaders();
  h.set(HEADERS.schema, schemaHeader(schema));
  h.set(HEADERS.traceparent, childTraceparent(parentTraceparent));
  return h;
}

export function encodeBody<N extends SchemaName>(schema: N, body: MessageOf<N>): string {
  const versions = schemas[schema] as Record<number, z.ZodType>;
  // Validate on the way out too: a bad write is a bug here, not a poison message downstream.
  versions[CURRENT_VERSION[schema]].parse(body);
  return JSON.stringify(body);
}

export async function publishMessage<N extends SchemaName>(js: JetStreamClient, out: Outgoing<N>): Promise<PubAck> {
  const body = encodeBody(out.schema, out.body);
  if (!tracingEnabled()) {
    return js.publish(out.subject, body, {
      msgID: out.msgId,
      headers: messageHeaders(out.schema, out.parentTraceparent),
    });
  }
  // The explicit parent wins (the dispatcher continues a trace stored with the domain); else the active span.
  const active = context.active();
  const parent =
    out.parentTraceparent === undefined || activeTraceparent(active) === out.parentTraceparent
      ? active
      : contextFromTraceparent(out.parentTraceparent);
  const attributes = { "messaging.message.body.size": Buffer.byteLength(body), "messaging.nats.msg_id": out.msgId };
  return withPublishSpan(out.subject, parent, attributes, async (span) => {
    const headers = natsHeaders();
    headers.set(HEADERS.schema, schemaHeader(out.schema));
    injectContext(headers);
    const ack = await js.publish(out.subject, body, { msgID: out.msgId, headers });
    span.setAttribute("messaging.message.id", `${ack.stream}:${ack.seq}`);
    if (ack.duplicate) span.setAttribute("messaging.nats.duplicate", true);
    return ack;
  });
}

/** Headers as a plain record, for dead letters and logs. */
export function headersRecord(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const key of h.keys()) out[key] = h.get(key);
  return out;
}
