/**
 * Publishing a glyphscan message: validated against its schema, with the schema header,
 * a content-derived Nats-Msg-Id and W3C trace context.
 */
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { JetStreamClient, PubAck } from "@nats-io/jetstream";
import { HEADERS, schemaHeader, schemas, CURRENT_VERSION, type MessageOf, type SchemaName } from "../protocol/mod.ts";
import { childTraceparent } from "./trace-context.ts";
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
  return js.publish(out.subject, encodeBody(out.schema, out.body), {
    msgID: out.msgId,
    headers: messageHeaders(out.schema, out.parentTraceparent),
  });
}

/** Headers as a plain record, for dead letters and logs. */
export function headersRecord(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const key of h.keys()) out[key] = h.get(key);
  return out;
}
