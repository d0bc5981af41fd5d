/**
 * The node registry lists live nodes without leaving consumers behind: a dispatcher lists it
 * every tick, and each `kv.keys()` used to leave an ordered consumer on the bucket's stream until
 * the server's inactivity threshold, so two frontier nodes hit the 1,000-consumer limit in 53 s.
 */
import test from "ava";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { NodeRegistration, listNodes, openRegistry, type NodeEntry } from "../../cluster/registry.ts";
import { buckets } from "../../protocol/mod.ts";
import { startNats, type ManagedServer } from "../harness/servers.ts";

let nats: ManagedServer;
let nc: NatsConnection;
test.before(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});
test.after.always(async () => {
  await nc?.close();
  await nats?.stop();
});

const HEARTBEAT_MS = 1_000;
const entry = (nodeId: string, region: string): (() => NodeEntry) => {
  const startedAt = new Date().toISOString();
  return () => ({
    nodeId,
    region,
    roles: ["scanner"],
    host: "test",
    pid: process.pid,
    state: "running",
    startedAt,
    heartbeatAt: startedAt,
    inflight: {},
    scannerSlots: 2,
  });
};

test.serial("listing the registry every tick leaves no consumer on its stream", async (t) => {
  const js = jetstream(nc);
  const kv = await openRegistry(js, HEARTBEAT_MS);
  const a = new NodeRegistration(kv, entry("node-a", "eu"), HEARTBEAT_MS);
  const b = new NodeRegistration(kv, entry("node-b.with.dots", "us"), HEARTBEAT_MS);
  await a.start();
  await b.start();
  try {
    // Two dispatchers at one tick per 50 ms for a minute would list 2,400 times; 300 is enough
    // to see a per-call consumer (today's limit is reached at 1,000).
    for (let i = 0; i < 300; i++) {
      const nodes = await listNodes(kv, HEARTBEAT_MS);
      t.deepEqual(
        nodes.map((n) => n.nodeId),
        ["node-a", "node-b.with.dots"],
      );
    }
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(`KV_${buckets.nodes}`);
    t.is(info.state.consumer_count, 0, "consumers left on the registry stream");
  } finally {
    await a.leave();
    await b.leave();
  }
  t.deepEqual(await listNodes(kv, HEARTBEAT_MS), [], "nodes that left are not listed");
});

test.serial("a node whose heartbeat is older than three beats is not listed", async (t) => {
  const kv = await openRegistry(jetstream(nc), 60_000);
  const stale = new NodeRegistration(kv, entry("node-stale", "eu"), 60_000);
  await stale.beat();
  const now = Date.now();
  t.deepEqual(
    (await listNodes(kv, 60_000, now)).map((n) => n.nodeId),
    ["node-stale"],
  );
  t.deepEqual(await listNodes(kv, 60_000, now + 3 * 60_000 + 1), []);
  await stale.leave();
});
