/**
 * An actor: a typed handler bound to a durable JetStream pull consumer.
 *
 * Outcomes map onto JetStream: success → ack; TransientError (or any unexpected error) → nak
 * with backoff, until the last delivery, which becomes a dead letter; PoisonError or a message
 * that does not decode → dead letter at once. A handler that throws never takes the node down.
 * While a handler runs, the runtime sends `working()` so long scans are not redelivered.
 */
import type { Consumer, JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { HEADERS, decodeMessage, type MessageOf, type SchemaName, type Stage } from "../protocol/mod.ts";
import type { Config } from "../config/mod.ts";
import { PoisonError, classify, errorMessage } from "./errors.ts";
import { deadLetterFromMsg, publishDeadLetter } from "./dead-letters.ts";
import { publishMessage, type Outgoing } from "./envelope.ts";
import { traceFieldsOf, type Logger } from "./log.ts";
import type { Service, ServiceState } from "./service.ts";
import { instruments } from "./metrics.ts";
import { extractContext, tracingEnabled, withProcessSpan } from "./telemetry.ts";
import { activeTraceparent } from "./trace-context.ts";

export interface ActorContext {
  readonly subject: string;
  readonly deliveryCount: number;
  /** traceparent of the message being handled; pass it on to what this message causes. */
  readonly traceparent: string | undefined;
  readonly log: Logger;
  /** Publishes a follow-up message in the same trace. */
  publish<N extends SchemaName>(out: Omit<Outgoing<N>, "parentTraceparent">): Promise<void>;
  /**
   * Dead-letters one part of the message (say, one URL of a batch) while the rest goes on.
   * `payload` is what an operator would replay.
   */
  reject(reason: string, payload: unknown): Promise<void>;
}

export interface ActorDefinition<N extends SchemaName = SchemaName> {
  /** Name in logs and metrics. */
  name: string;
  stage: Stage;
  stream: string;
  consumer: string;
  /** Message kinds this actor reads; anything else is dead-lettered. */
  accept: readonly N[];
  /** Messages handled at once by this actor on this node. */
  concurrency: number;
  handle(message: MessageOf<N>, ctx: ActorContext): Promise<void>;
}

/** Any actor, whatever it reads; the runner only hands it messages of the kinds it accepts. */
export type SomeActor = ActorDefinition<SchemaName>;

/** Forgets the message type of a definition so actors of different kinds share one list. */
export function someActor<N extends SchemaName>(def: ActorDefinition<N>): SomeActor {
  return def as unknown as SomeActor;
}

export interface ActorDeps {
  js: JetStreamClient;
  config: Config;
  log: Logger;
  /** Called when a handler reports a FatalError: the node should stop. */
  onFatal(err: unknown): void;
}

export class ActorRunner<N extends SchemaName> implements Service {
  readonly name: string;
  state: ServiceState = "starting";
  #workers: Promise<void>[] = [];
  #stopped: Promise<void> | null = null;
  readonly #inflight = new Set<Promise<void>>();
  readonly #def: ActorDefinition<N>;
  readonly #deps: ActorDeps;
  readonly #log: Logger;

  constructor(def: ActorDefinition<N>, deps: ActorDeps) {
    this.#def = def;
    this.#deps = deps;
    this.name = def.name;
    this.#log = deps.log.child({ actor: def.name });
  }

  get inflight(): number {
    return this.#inflight.size;
  }

  async start(): Promise<void> {
    const consumer = await this.#deps.js.consumers.get(this.#def.stream, this.#def.consumer);
    this.state = "running";
    this.#workers = Array.from({ length: this.#def.concurrency }, () => this.#work(consumer));
  }

  /**
   * One worker pulls one message only when it is free. Pulling ahead would let messages wait
   * in a local buffer while their ack_wait runs out, and then be handled twice.
   */
  async #work(consumer: Consumer): Promise<void> {
    while (this.state === "running") {
      let m: JsMsg | null;
      try {
        m = await consumer.next({ expires: PULL_EXPIRES_MS });
      } catch (err) {
        this.#log.warn({ err: errorMessage(err) }, "pull failed; retrying");
        await sleep(PULL_RETRY_MS);
        continue;
      }
      if (!m) continue;
      if (this.state !== "running") {
        m.nak(); // arrived while stopping: hand it back at once rather than after ack_wait
        break;
      }
      const p = this.#process(m);
      this.#inflight.add(p);
      await p.finally(() => this.#inflight.delete(p));
    }
  }

  /** Handles one message inside a CONSUMER span continuing the trace in its headers (when tracing is on). */
  #process(m: JsMsg): Promise<void> {
    const attributes = {
      "messaging.consumer.group.name": this.#def.consumer,
      "messaging.message.id": `${this.#def.stream}:${m.seq}`,
      "messaging.message.body.size": m.data.length,
      "messaging.nats.delivery_count": m.info.deliveryCount,
      "glyphscan.actor": this.#def.name,
    };
    const creation = extractContext(m.headers, m.headers?.get(HEADERS.traceparent) || undefined);
    return withProcessSpan(m.subject, creation, attributes, () => this.#handleMessage(m));
  }

  async #handleMessage(m: JsMsg): Promise<void> {
    const { config } = this.#deps;
    const decoded = decodeMessage(
      this.#def.accept,
      m.headers?.get(HEADERS.schema),
      m.data,
      config.actors.maxMessageBytes,
    );
    if (!decoded.ok) {
      await this.#deadLetter(m, decoded.code, decoded.reason);
      return;
    }
    // Keep the lease on the message while the handler works; stops if the node dies.
    const beat = setInterval(() => m.working(), Math.max(200, Math.floor(config.actors.ackWaitMs / 3)));
    try {
      await this.#def.handle(decoded.value, this.#context(m));
      instruments().messages.add(1, { actor: this.#def.name, outcome: "ok" });
      await m.ackAck().catch((err: unknown) => {
        // The work is done and idempotent; a lost ack only means a harmless redelivery.
        this.#log.warn({ err: errorMessage(err), subject: m.subject, seq: m.seq }, "ack not confirmed");
      });
    } catch (err) {
      await this.#fail(m, err);
    } finally {
      clearInterval(beat);
    }
  }

  #context(m: JsMsg): ActorContext {
    // With tracing on, what this message causes descends from its process span.
    const traceparent = activeTraceparent() ?? (m.headers?.get(HEADERS.traceparent) || undefined);
    const js = this.#deps.js;
    const stage = this.#def.stage;
    return {
      async reject(reason, payload) {
        const dl = deadLetterFromMsg(m, stage, "rejected-input", reason);
        // The part, not the whole message, is what failed: store it as if it came alone.
        await publishDeadLetter(js, {
          ...dl,
          streamSeq: null,
          stream: null,
          payloadBase64: Buffer.from(JSON.stringify(payload)).toString("base64"),
        });
      },
      subject: m.subject,
      deliveryCount: m.info.deliveryCount,
      traceparent,
      // With the SDK on, the log mixin adds the active span's ids; without, the header's.
      log: tracingEnabled() ? this.#log : this.#log.child(traceFieldsOf(traceparent)),
      async publish(out) {
        await publishMessage(js, { ...out, parentTraceparent: traceparent });
      },
    };
  }

  async #fail(m: JsMsg, err: unknown): Promise<void> {
    const kind = classify(err);
    const { actors } = this.#deps.config;
    if (err instanceof PoisonError) {
      await this.#deadLetter(m, err.code, errorMessage(err));
      return;
    }
    if (kind === "fatal") {
      instruments().messages.add(1, { actor: this.#def.name, outcome: "fatal" });
      m.nak();
      this.#deps.onFatal(err);
      return;
    }
    const delivery = m.info.deliveryCount;
    if (delivery >= actors.maxDeliver) {
      await this.#deadLetter(m, "max-deliveries", `gave up after ${delivery} deliveries: ${errorMessage(err)}`);
      return;
    }
    const delay = actors.backoffMs[Math.min(delivery - 1, actors.backoffMs.length - 1)] ?? 1_000;
    this.#log.warn(
      { err: errorMessage(err), subject: m.subject, delivery, retryInMs: delay },
      "handler failed, will retry",
    );
    instruments().messages.add(1, { actor: this.#def.name, outcome: "retried" });
    m.nak(delay);
  }

  async #deadLetter(m: JsMsg, code: Parameters<typeof deadLetterFromMsg>[2], reason: string): Promise<void> {
    try {
      await publishDeadLetter(this.#deps.js, deadLetterFromMsg(m, this.#def.stage, code, reason));
      m.term(reason.slice(0, 200));
      instruments().messages.add(1, { actor: this.#def.name, outcome: "dead-lettered" });
      this.#log.info({ subject: m.subject, code, reason }, "dead-lettered");
    } catch (err) {
      // Never settle a message whose dead letter was not stored.
      this.#log.error({ err: errorMessage(err), subject: m.subject }, "dead letter not stored; will retry");
      m.nak(this.#deps.config.actors.backoffMs[0] ?? 1_000);
    }
  }

  /** Stops pulling, lets in-flight handlers finish (up to the deadline), then returns. */
  async stop(deadlineMs = this.#deps.config.actors.drainTimeoutMs): Promise<void> {
    if (this.state === "stopped" || this.state === "draining") return this.#stopped ?? undefined;
    this.state = "draining";
    this.#stopped = (async () => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), deadlineMs);
      });
      const outcome = await Promise.race([Promise.allSettled(this.#workers).then(() => "done" as const), late]);
      clearTimeout(timer);
      if (outcome === "late") {
        this.#log.warn(
          { inflight: this.#inflight.size },
          "drain deadline passed; unfinished messages will be redelivered",
        );
      }
      this.state = "stopped";
    })();
    return this.#stopped;
  }
}

const PULL_EXPIRES_MS = 2_000;
const PULL_RETRY_MS = 1_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
