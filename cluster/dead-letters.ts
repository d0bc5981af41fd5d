/**
 * Dead letters: what an actor could not process, stored in the DLQ stream with the reason,
 * the original payload and headers. A message is only settled (term) after its dead letter is
 * stored; if storing fails the message is retried instead, so nothing is lost.
 */
import { createHash } from "node:crypto";
import { headers as natsHeaders, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import type { z } from "zod";
import {
  CURRENT_VERSION,
  HEADERS,
  msgIds,
  parseSchemaHeader,
  schemaHeader,
  schemas,
  subjects,
  streams,
  type DeadLetter,
  type SchemaName,
  type Stage,
} from "../protocol/mod.ts";
import { headersRecord, publishMessage } from "./envelope.ts";
import { childTraceparent } from "./trace-context.ts";
import type { Logger } from "./log.ts";
import type { Service } from "./service.ts";

export type DeadLetterCode = DeadLetter["code"];

export function deadLetterFromMsg(m: JsMsg, stage: Stage, code: DeadLetterCode, reason: string): DeadLetter {
  return {
    stage,
    code,
    reason,
    subject: m.subject,
    stream: m.info.stream,
    streamSeq: m.seq,
    deliveries: m.info.deliveryCount,
    headers: headersRecord(m.headers),
    payloadBase64: Buffer.from(m.data).toString("base64"),
    failedAt: new Date().toISOString(),
  };
}

/**
 * The idempotency key: one dead letter per stored message, or per distinct payload, reason and
 * trace (a replayed message carries a new span, so its failing again is a new dead letter).
 */
function deadLetterKey(dl: DeadLetter): string {
  const tail =
    dl.stream && dl.streamSeq !== null
      ? `${dl.stream}:${dl.streamSeq}:${dl.reason}`
      : `${dl.subject}:${dl.payloadBase64}:${dl.reason}:${dl.headers[HEADERS.traceparent] ?? ""}`;
  return createHash("sha256").update(tail).digest("hex").slice(0, 32);
}

export async function publishDeadLetter(js: JetStreamClient, dl: DeadLetter): Promise<void> {
  await publishMessage(js, {
    subject: subjects.deadLetter(dl.stage),
    schema: "dead-letter",
    body: dl,
    msgId: msgIds.deadLetter(dl.stage, deadLetterKey(dl)),
    parentTraceparent: dl.headers[HEADERS.traceparent],
  });
}

export interface WatchedConsumer {
  stream: string;
  consumer: string;
  stage: Stage;
}

/**
 * Messages a consumer gave up on without a handler settling them (the node died on each try)
 * are announced only by a server advisory; this turns each into a dead letter and removes the
 * original from its work-queue stream, where the server would otherwise keep it.
 */
export class MaxDeliveriesWatcher implements Service {
  readonly name = "max-deliveries-watcher";
  #subs: Subscription[] = [];
  readonly #start: () => Subscription[];
  constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    watched: readonly WatchedConsumer[],
    log: Logger,
  ) {
    this.#start = () => watchMaxDeliveries(nc, js, jsm, watched, log);
  }
  async start(): Promise<void> {
    this.#subs = this.#start();
  }
  async stop(): Promise<void> {
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
  }
}

function watchMaxDeliveries(
  nc: NatsConnection,
  js: JetStreamClient,
  jsm: JetStreamManager,
  watched: readonly WatchedConsumer[],
  log: Logger,
): Subscription[] {
  return watched.map((w) =>
    nc.subscribe(subjects.maxDeliveriesAdvisory(w.stream, w.consumer), {
      // One node of the cluster handles each advisory.
      queue: `glyphscan-dlq-${w.stream}`,
      callback: (err, msg) => {
        if (err) return;
        void (async () => {
          const advisory = msg.json<{ stream_seq: number; deliveries: number }>();
          const stored = await jsm.streams.getMessage(w.stream, { seq: advisory.stream_seq });
          if (!stored) return; // already handled by another node, or by the actor on its last try
          await publishDeadLetter(js, {
            stage: w.stage,
            code: "max-deliveries",
            reason: `no handler settled the message in ${advisory.deliveries} deliveries (node crashes or timeouts)`,
            subject: stored.subject,
            stream: w.stream,
            streamSeq: advisory.stream_seq,
            deliveries: advisory.deliveries,
            headers: headersRecord(stored.header),
            payloadBase64: Buffer.from(stored.data).toString("base64"),
            failedAt: new Date().toISOString(),
          });
          await jsm.streams.deleteMessage(w.stream, advisory.stream_seq, false);
        })().catch((e: unknown) =>
          log.error({ err: e, stream: w.stream }, "dead-lettering after max deliveries failed"),
        );
      },
    }),
  );
}

/** A dead letter as stored in the DLQ stream: its sequence there is what replay deletes. */
export interface StoredDeadLetter {
  seq: number;
  storedAt: Date;
  deadLetter: DeadLetter;
}

export interface DeadLetterFilter {
  stage?: Stage | undefined;
  /** Matched against `code: reason`. */
  reason?: RegExp | undefined;
  /** Only dead letters that failed at least this long ago. */
  olderThanMs?: number | undefined;
  /** Most dead letters returned (after filtering). */
  limit?: number | undefined;
}

const LIST_BATCH = 512;

/**
 * Dead letters matching `filter`, oldest first. One ordered consumer reads the stream in
 * batches (filtered by stage on the server), so a large DLQ costs a few round trips, not one
 * request per sequence.
 */
export async function findDeadLetters(
  jsm: JetStreamManager,
  filter: DeadLetterFilter = {},
  now = Date.now(),
): Promise<StoredDeadLetter[]> {
  const info = await jsm.streams.info(streams.deadLetters).catch(() => null);
  if (!info || info.state.messages === 0) return [];
  const limit = filter.limit ?? Number.POSITIVE_INFINITY;
  const cutoff = filter.olderThanMs === undefined ? Number.POSITIVE_INFINITY : now - filter.olderThanMs;
  const consumer = await jsm.jetstream().consumers.get(streams.deadLetters, {
    filter_subjects: [filter.stage ? subjects.deadLetter(filter.stage) : subjects.deadLetterAll],
    deliver_policy: DeliverPolicy.All,
  });
  const lastSeq = info.state.last_seq;
  const out: StoredDeadLetter[] = [];
  let done = false;
  while (!done && out.length < limit) {
    const batch = await consumer.fetch({ max_messages: LIST_BATCH, expires: 1_000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      const dl = m.json<DeadLetter>();
      const keep =
        Date.parse(dl.failedAt) <= cutoff && (!filter.reason || filter.reason.test(`${dl.code}: ${dl.reason}`));
      if (keep && out.length < limit) {
        out.push({ seq: m.seq, storedAt: new Date(Math.floor(m.info.timestampNanos / 1e6)), deadLetter: dl });
      }
      // Stop at what was there when we started: dead letters written meanwhile wait for the next run.
      if (m.info.pending === 0 || m.seq >= lastSeq) done = true;
    }
    if (got === 0) done = true;
  }
  await consumer.delete().catch(() => undefined);
  return out;
}

/** Lists dead letters, oldest first. */
export async function listDeadLetters(jsm: JetStreamManager, limit = 1000): Promise<DeadLetter[]> {
  return (await findDeadLetters(jsm, { limit })).map((s) => s.deadLetter);
}

/**
 * The schema a dead letter's payload is: the one its header names if the payload fits it,
 * else the first current schema it fits (a rejected part of a batch keeps the batch's headers),
 * else the header's as is (the message will fail again, and say why).
 */
function replaySchema(dl: DeadLetter, payload: Buffer): string | undefined {
  const named = dl.headers[HEADERS.schema];
  let body: unknown;
  try {
    body = JSON.parse(payload.toString("utf8"));
  } catch {
    return named;
  }
  const fits = (name: SchemaName, version: number) =>
    (schemas[name] as Record<number, z.ZodType>)[version]?.safeParse(body).success === true;
  const parsed = parseSchemaHeader(named);
  if (parsed && parsed.name in schemas && fits(parsed.name as SchemaName, parsed.version)) return named;
  for (const name of Object.keys(schemas) as SchemaName[]) {
    if (name !== "dead-letter" && fits(name, CURRENT_VERSION[name])) return schemaHeader(name);
  }
  return named;
}

export interface ReplayOutcome {
  seq: number;
  subject: string;
  ok: boolean;
  error?: string;
}

/**
 * Republishes each dead letter's original payload and headers to its original subject, as a
 * child of its trace, then deletes it from the DLQ. The publish id is derived from the DLQ
 * sequence, so a replay interrupted between publish and delete and run again publishes once.
 * A replayed message that fails again becomes a new dead letter.
 */
export async function replayDeadLetters(
  js: JetStreamClient,
  jsm: JetStreamManager,
  letters: readonly StoredDeadLetter[],
): Promise<ReplayOutcome[]> {
  const out: ReplayOutcome[] = [];
  for (const { seq, deadLetter: dl } of letters) {
    try {
      const payload = Buffer.from(dl.payloadBase64, "base64");
      const h = natsHeaders();
      for (const [k, v] of Object.entries(dl.headers)) {
        // Server-interpreted headers (Nats-Msg-Id, Nats-Expected-*) belong to the first publish only.
        if (k.toLowerCase().startsWith("nats-") || k === HEADERS.traceparent) continue;
        h.set(k, v);
      }
      const schema = replaySchema(dl, payload);
      if (schema) h.set(HEADERS.schema, schema);
      h.set(HEADERS.traceparent, childTraceparent(dl.headers[HEADERS.traceparent]));
      h.set(HEADERS.replayOf, `${streams.deadLetters}:${seq}`);
      await js.publish(dl.subject, payload, { headers: h, msgID: msgIds.replay(seq) });
      await jsm.streams.deleteMessage(streams.deadLetters, seq, false);
      out.push({ seq, subject: dl.subject, ok: true });
    } catch (err) {
      out.push({ seq, subject: dl.subject, ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}
