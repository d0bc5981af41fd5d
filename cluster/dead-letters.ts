/**
 * Dead letters: what an actor could not process, stored in the DLQ stream with the reason,
 * the original payload and headers. A message is only settled (term) after its dead letter is
 * stored; if storing fails the message is retried instead, so nothing is lost.
 */
import { createHash } from "node:crypto";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import { HEADERS, msgIds, subjects, streams, type DeadLetter, type Stage } from "../protocol/mod.ts";
import { headersRecord, publishMessage } from "./envelope.ts";
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

/** The idempotency key: one dead letter per stored message, or per distinct payload and reason. */
function deadLetterKey(dl: DeadLetter): string {
  const tail =
    dl.stream && dl.streamSeq !== null
      ? `${dl.stream}:${dl.streamSeq}:${dl.reason}`
      : `${dl.subject}:${dl.payloadBase64}:${dl.reason}`;
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

/** Lists dead letters, oldest first. */
export async function listDeadLetters(jsm: JetStreamManager, limit = 1000): Promise<DeadLetter[]> {
  const info = await jsm.streams.info(streams.deadLetters).catch(() => null);
  if (!info || info.state.messages === 0) return [];
  const out: DeadLetter[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && out.length < limit; seq++) {
    const m = await jsm.streams.getMessage(streams.deadLetters, { seq }).catch(() => null);
    if (m) out.push(m.json<DeadLetter>());
  }
  return out;
}
