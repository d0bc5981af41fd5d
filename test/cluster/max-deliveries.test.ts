/**
 * A message no handler ever settles (its node dies on every try) is only announced by the
 * server's max-deliveries advisory; the watcher must turn it into a dead letter and remove it
 * from the work queue, where the server would otherwise keep it.
 */
import test from "ava";
import { AckPolicy, RetentionPolicy } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import {
  MaxDeliveriesWatcher,
  connectNats,
  createLogger,
  ensureTopology,
  listDeadLetters,
  publishMessage,
} from "../../cluster/mod.ts";
import { startNats, stopAll } from "../harness/servers.ts";
import { eventually, testConfig } from "../helpers/stack.ts";

test.after.always(stopAll);

test("a message that exhausts its deliveries unsettled becomes a dead letter and leaves the stream", async (t) => {
  const server = await startNats();
  const config = testConfig({ nats: server.url, redis: "redis://unused", mongo: "mongodb://unused" });
  const nats = await connectNats(config, "max-deliveries");
  t.teardown(() => nats.nc.close());
  await ensureTopology(nats.jsm, config);
  await nats.jsm.streams.add({ name: "WQ", subjects: ["wq"], retention: RetentionPolicy.Workqueue });
  await nats.jsm.consumers.add("WQ", {
    durable_name: "w",
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(300),
    max_deliver: 2,
  });
  const watcher = new MaxDeliveriesWatcher(
    nats.nc,
    nats.js,
    nats.jsm,
    [{ stream: "WQ", consumer: "w", stage: "scanner" }],
    createLogger("silent", {}),
  );
  await watcher.start();
  t.teardown(() => watcher.stop());

  await publishMessage(nats.js, {
    subject: "wq",
    schema: "admission",
    msgId: "doomed",
    body: {
      domain: "doomed.test",
      seedUrl: "https://doomed.test/",
      source: "t",
      region: "local",
      admittedAt: new Date().toISOString(),
    },
  });
  // Two deliveries that nobody acks: what a node crashing mid-handler looks like to the server.
  const consumer = await nats.js.consumers.get("WQ", "w");
  for (let i = 0; i < 2; i++) t.truthy(await consumer.next({ expires: 3_000 }), `delivery ${i + 1}`);
  // The server gives up (and says so) when it would deliver a third time to a waiting puller.
  t.is(await consumer.next({ expires: 2_000 }), null, "no third delivery");

  const dead = await eventually("the dead letter", async () =>
    (await listDeadLetters(nats.jsm)).find((d) => d.stream === "WQ"),
  );
  t.is(dead.code, "max-deliveries");
  t.is(dead.deliveries, 2);
  t.is(dead.stage, "scanner");
  t.regex(Buffer.from(dead.payloadBase64, "base64").toString(), /doomed\.test/);
  t.is(dead.headers["Glyphscan-Schema"], "admission.v1", "original headers kept");
  await eventually("the message removed from the work queue", async () =>
    (await nats.jsm.streams.info("WQ")).state.messages === 0 ? true : undefined,
  );
  t.pass();
});
