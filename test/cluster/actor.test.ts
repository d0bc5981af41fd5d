/**
 * The actor runtime against a real nats-server: ack on success, nak with backoff on transient
 * errors, dead letters for poison and for the last delivery, heartbeats for long work, and a
 * handler that throws never stopping the actor.
 */
import test from "ava";
import { AckPolicy, RetentionPolicy, type JetStreamManager } from "@nats-io/jetstream";
import { headers, nanos } from "@nats-io/transport-node";
import {
  ActorRunner,
  PoisonError,
  TransientError,
  connectNats,
  createLogger,
  ensureTopology,
  listDeadLetters,
  publishMessage,
  type ActorDefinition,
  type NatsHandles,
} from "../../cluster/mod.ts";
import type { Admission, DeadLetter } from "../../protocol/mod.ts";
import { eventually, testConfig, uniqueName } from "../helpers/stack.ts";
import { startNats, stopAll } from "../harness/servers.ts";
import type { Config } from "../../config/mod.ts";

let nats: NatsHandles;
let config: Config;

test.before(async () => {
  const server = await startNats();
  config = testConfig(
    { nats: server.url, redis: "redis://unused", mongo: "mongodb://unused" },
    { actors: { ackWaitMs: 1_000, maxDeliver: 3, backoffMs: [50, 100], maxMessageBytes: 2_048 } },
  );
  nats = await connectNats(config, "actor-test");
  await ensureTopology(nats.jsm, config);
});
test.after.always(async () => {
  await nats?.nc.close();
  await stopAll();
});

async function testStream(jsm: JetStreamManager): Promise<{ stream: string; subject: string; consumer: string }> {
  const stream = uniqueName("T").toUpperCase();
  const subject = `t.${stream.toLowerCase()}`;
  await jsm.streams.add({ name: stream, subjects: [subject], retention: RetentionPolicy.Workqueue });
  await jsm.consumers.add(stream, {
    durable_name: "c",
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(config.actors.ackWaitMs),
    max_deliver: config.actors.maxDeliver,
  });
  return { stream, subject, consumer: "c" };
}

const admission = (domain: string): Admission => ({
  domain,
  seedUrl: `https://${domain}/`,
  source: "test",
  region: "local",
  admittedAt: new Date().toISOString(),
});

async function deadLettersFor(subject: string): Promise<DeadLetter[]> {
  return (await listDeadLetters(nats.jsm)).filter((d) => d.subject === subject);
}

test.serial("outcomes: ack, retry with backoff, poison, give up after max deliveries, survive throws", async (t) => {
  const { stream, subject, consumer } = await testStream(nats.jsm);
  const deliveries = new Map<string, number[]>();
  const done = new Set<string>();
  const def: ActorDefinition<"admission"> = {
    name: "test-actor",
    stage: "frontier",
    stream,
    consumer,
    accept: ["admission"],
    concurrency: 4,
    async handle(msg, ctx) {
      deliveries.set(msg.domain, [...(deliveries.get(msg.domain) ?? []), ctx.deliveryCount]);
      if (msg.domain === "flaky.test" && ctx.deliveryCount < 3) throw new TransientError("not yet");
      if (msg.domain === "poison.test") throw new PoisonError("cannot ever work", "poison");
      if (msg.domain === "broken.test") throw new Error("a bug");
      done.add(msg.domain);
    },
  };
  const runner = new ActorRunner(def, {
    js: nats.js,
    config,
    log: createLogger("silent", {}),
    onFatal: () => t.fail("not fatal"),
  });
  await runner.start();
  for (const d of ["ok.test", "flaky.test", "poison.test", "broken.test", "after.test"]) {
    await publishMessage(nats.js, { subject, schema: "admission", body: admission(d), msgId: d });
  }
  await eventually("flaky, ok and after handled", async () => (done.size === 3 ? true : undefined), 15_000);
  t.deepEqual([...done].sort(), ["after.test", "flaky.test", "ok.test"]);
  t.deepEqual(deliveries.get("flaky.test"), [1, 2, 3], "retried until it worked");
  t.deepEqual(deliveries.get("ok.test"), [1], "acked once, never redelivered");
  t.deepEqual(deliveries.get("poison.test"), [1], "poison is not retried");

  const dead = await eventually("two dead letters", async () => {
    const dl = await deadLettersFor(subject);
    return dl.length >= 2 ? dl : undefined;
  });
  const byCode = Object.fromEntries(dead.map((d) => [d.code, d]));
  t.regex(byCode["poison"]!.reason, /cannot ever work/);
  t.is(byCode["max-deliveries"]!.deliveries, 3);
  t.regex(byCode["max-deliveries"]!.reason, /gave up after 3 deliveries: Error: a bug/);
  const original = JSON.parse(Buffer.from(byCode["poison"]!.payloadBase64, "base64").toString()) as Admission;
  t.is(original.domain, "poison.test", "the dead letter keeps the original message");
  t.deepEqual(deliveries.get("broken.test"), [1, 2, 3]);
  const info = await nats.jsm.streams.info(stream);
  t.is(info.state.messages, 0, "every message is settled and gone from the work queue");
  await runner.stop();
  t.is(runner.state, "stopped");
});

test.serial("invalid, oversized and unknown-version messages become dead letters; the actor goes on", async (t) => {
  const { stream, subject, consumer } = await testStream(nats.jsm);
  const handled: string[] = [];
  const runner = new ActorRunner(
    {
      name: "strict",
      stage: "frontier",
      stream,
      consumer,
      accept: ["admission"],
      concurrency: 2,
      handle: async (m) => void handled.push(m.domain),
    } satisfies ActorDefinition<"admission">,
    { js: nats.js, config, log: createLogger("silent", {}), onFatal: () => t.fail("not fatal") },
  );
  await runner.start();
  const raw = async (data: string | Uint8Array, schema?: string) => {
    const h = headers();
    if (schema) h.set("Glyphscan-Schema", schema);
    await nats.js.publish(subject, data, { headers: h });
  };
  await raw("{not json", "admission.v1");
  await raw(JSON.stringify(admission("x.test")));
  await raw(JSON.stringify({ domain: 42 }), "admission.v1");
  await raw(JSON.stringify(admission("v9.test")), "admission.v9");
  await raw(JSON.stringify(admission("job.test")), "scan-job.v1");
  await raw(new Uint8Array([0xff, 0xfe, 0x00]), "admission.v1");
  await raw(
    JSON.stringify({ ...admission("big.test"), seedUrl: "https://big.test/" + "a".repeat(3_000) }),
    "admission.v1",
  );
  await publishMessage(nats.js, { subject, schema: "admission", body: admission("good.test"), msgId: "good" });

  const dead = await eventually("seven dead letters", async () => {
    const dl = await deadLettersFor(subject);
    return dl.length >= 7 ? dl : undefined;
  });
  t.deepEqual(handled, ["good.test"]);
  const reasons = dead.map((d) => `${d.code}: ${d.reason}`).join("\n");
  t.regex(reasons, /invalid-message: not UTF-8 JSON/);
  t.regex(reasons, /invalid-message: missing or malformed Glyphscan-Schema header/);
  t.regex(reasons, /invalid-message: invalid admission\.v1: .*domain/);
  t.regex(reasons, /invalid-message: unsupported version 9 of "admission"/);
  t.regex(reasons, /invalid-message: unexpected message kind "scan-job"/);
  t.regex(reasons, /oversized: \d+ bytes, limit 2048/);
  t.true(dead.every((d) => d.stage === "frontier" && d.deliveries === 1));
  await runner.stop();
});

test.serial("a handler that works longer than ack_wait keeps its message by heartbeats", async (t) => {
  const { stream, subject, consumer } = await testStream(nats.jsm);
  const deliveries: number[] = [];
  const runner = new ActorRunner(
    {
      name: "slow",
      stage: "scanner",
      stream,
      consumer,
      accept: ["admission"],
      concurrency: 1,
      async handle(_m, ctx) {
        deliveries.push(ctx.deliveryCount);
        await new Promise((r) => setTimeout(r, config.actors.ackWaitMs * 3));
      },
    } satisfies ActorDefinition<"admission">,
    { js: nats.js, config, log: createLogger("silent", {}), onFatal: () => undefined },
  );
  await runner.start();
  await publishMessage(nats.js, { subject, schema: "admission", body: admission("slow.test"), msgId: "slow" });
  await eventually(
    "the slow message acked",
    async () => ((await nats.jsm.streams.info(stream)).state.messages === 0 ? true : undefined),
    15_000,
  );
  t.deepEqual(deliveries, [1], "never redelivered while the handler worked");
  await runner.stop();
});

test.serial("stop() lets in-flight work finish, then stops pulling; twice is safe", async (t) => {
  const { stream, subject, consumer } = await testStream(nats.jsm);
  const finished: string[] = [];
  let started!: () => void;
  const inHandler = new Promise<void>((r) => (started = r));
  const runner = new ActorRunner(
    {
      name: "drain",
      stage: "scanner",
      stream,
      consumer,
      accept: ["admission"],
      concurrency: 1,
      async handle(m) {
        started();
        await new Promise((r) => setTimeout(r, 500));
        finished.push(m.domain);
      },
    } satisfies ActorDefinition<"admission">,
    { js: nats.js, config, log: createLogger("silent", {}), onFatal: () => undefined },
  );
  await runner.start();
  await publishMessage(nats.js, { subject, schema: "admission", body: admission("first.test"), msgId: "first" });
  await inHandler;
  await Promise.all([runner.stop(), runner.stop()]);
  t.deepEqual(finished, ["first.test"]);
  await publishMessage(nats.js, { subject, schema: "admission", body: admission("later.test"), msgId: "later" });
  await new Promise((r) => setTimeout(r, 300));
  t.deepEqual(finished, ["first.test"], "a stopped actor takes nothing new");
  t.is((await nats.jsm.streams.info(stream)).state.messages, 1, "the new message waits in the stream");
});
