import test from "ava";
import fs from "node:fs";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { Redis } from "ioredis";
import { MongoClient } from "mongodb";
import { startMongo, startNats, startRedis, stopAll, toolPaths, type ManagedServer } from "./servers.ts";

// Fetch (and, on a fresh machine, install) the tools once before the tests race for them.
test.before(async () => {
  await toolPaths();
});

test.after.always(async () => {
  await stopAll();
});

/** Starts a server and stops it when the test ends. */
async function own<T extends ManagedServer>(
  t: { teardown(fn: () => Promise<void>): void },
  server: Promise<T>,
): Promise<T> {
  const s = await server;
  t.teardown(() => s.stop());
  return s;
}

test("toolPaths reports every binary", async (t) => {
  const paths = await toolPaths();
  for (const key of ["NATS_SERVER", "REDIS_SERVER", "MONGO_SERVER", "CHROMIUM"]) {
    t.truthy(paths[key], key);
    t.true(fs.existsSync(paths[key] ?? ""), `${key}=${paths[key]} exists`);
  }
  t.regex(paths["MONGO_KIND"] ?? "", /^(ferretdb|mongod)$/);
});

test("NATS: JetStream file stream survives kill() and restart()", async (t) => {
  const nats = await own(t, startNats());
  t.regex(nats.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  t.not(nats.port, 4222);

  let nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "HARNESS", subjects: ["harness.>"], storage: StorageType.File });
  const ack = await jetstream(nc).publish("harness.one", "hello");
  t.is(ack.seq, 1);
  await nc.close();

  await nats.kill();
  await t.throwsAsync(connect({ servers: nats.url, reconnect: false, timeout: 500 }));
  await nats.restart();

  nc = await connect({ servers: nats.url });
  try {
    const jsm2 = await jetstreamManager(nc);
    const info = await jsm2.streams.info("HARNESS");
    t.is(info.config.storage, StorageType.File);
    t.is(info.state.messages, 1);
    const msg = await jsm2.streams.getMessage("HARNESS", { seq: 1 });
    t.is(msg?.subject, "harness.one");
    t.is(msg?.string(), "hello");
  } finally {
    await nc.close();
  }
});

test("NATS: jetstream:false and configText are honoured", async (t) => {
  const nats = await own(t, startNats({ jetstream: false, configText: "max_payload: 4096" }));
  const nc = await connect({ servers: nats.url });
  try {
    t.is(nc.info?.max_payload, 4096);
    t.falsy(nc.info?.jetstream);
  } finally {
    await nc.close();
  }
});

test("Redis: set/get, and restart() brings back a working (empty) server", async (t) => {
  const redis = await own(t, startRedis());
  t.regex(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
  t.not(redis.port, 6379);

  let client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  t.is(await client.set("k", "v"), "OK");
  t.is(await client.get("k"), "v");
  client.disconnect();

  await redis.restart();
  client = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  try {
    t.is(await client.ping(), "PONG");
    // No persistence by design (--save "" --appendonly no), as in the dev stack.
    t.is(await client.get("k"), null);
  } finally {
    client.disconnect();
  }
});

test("Mongo: insert/find survives kill() and restart()", async (t) => {
  const mongo = await own(t, startMongo());
  t.regex(mongo.url, /^mongodb:\/\/127\.0\.0\.1:\d+\/$/);

  let client = await MongoClient.connect(mongo.url, { serverSelectionTimeoutMS: 5000 });
  const docs = client.db("harness").collection<{ _id: string; n: number }>("docs");
  await docs.insertOne({ _id: "a", n: 42 });
  t.is((await docs.findOne({ n: 42 }))?.n, 42);
  await client.close();

  await mongo.kill();
  await mongo.restart();

  client = await MongoClient.connect(mongo.url, { serverSelectionTimeoutMS: 5000 });
  try {
    const found = await client.db("harness").collection("docs").find({}).toArray();
    t.deepEqual(found, [{ _id: "a", n: 42 }]);
  } finally {
    await client.close();
  }
});

test("two instances of each server run side by side", async (t) => {
  const servers = await Promise.all([startNats(), startNats(), startRedis(), startRedis(), startMongo(), startMongo()]);
  t.teardown(() => Promise.all(servers.map((s) => s.stop())).then(() => undefined));
  const ports = new Set(servers.map((s) => s.port));
  t.is(ports.size, servers.length, "all ports differ");
  const dirs = new Set(servers.map((s) => s.dir));
  t.is(dirs.size, servers.length, "all data dirs differ");

  const [n1, n2, r1, r2, m1, m2] = servers;
  for (const nats of [n1, n2]) {
    const nc = await connect({ servers: nats.url });
    t.is(nc.info?.port, nats.port);
    await nc.close();
  }
  // Writes to one Redis are not visible in the other.
  const [c1, c2] = [new Redis(r1.url), new Redis(r2.url)];
  try {
    await c1.set("who", "r1");
    t.is(await c2.get("who"), null);
  } finally {
    c1.disconnect();
    c2.disconnect();
  }
  for (const mongo of [m1, m2]) {
    const client = await MongoClient.connect(mongo.url, { serverSelectionTimeoutMS: 5000 });
    t.deepEqual(await client.db("admin").command({ ping: 1 }), { ok: 1 });
    await client.close();
  }
});

test("stop() removes the temp dir and the server cannot be restarted", async (t) => {
  const redis = await startRedis();
  t.true(fs.existsSync(redis.dir));
  await redis.stop();
  t.false(fs.existsSync(redis.dir));
  await redis.stop(); // idempotent
  await t.throwsAsync(redis.restart(), { message: /stopped/ });
});

test("a server that cannot start rejects with its name and log tail", async (t) => {
  const error = await t.throwsAsync(startNats({ configText: "listen: {{{ not a config" }));
  t.regex(error?.message ?? "", /^nats:\d+ exited \(code \d+\) before it was ready/);
  t.regex(error?.message ?? "", /nats\.conf/, "the log tail names the bad config file");
});
