/**
 * Errors as values: each failure kind code branches on carries a code set where it is thrown,
 * and the readers match the code: the decoder's oversized and invalid messages, withTimeout's
 * timeout, MongoDB's duplicate key as the real server (FerretDB or mongod) reports it, and the
 * JetStream API's "not found" as nats-server reports it.
 */
import test from "ava";
import { MongoClient } from "mongodb";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  FatalError,
  InputError,
  PoisonError,
  TimeoutError,
  TransientError,
  classify,
  errorCode,
  hasCode,
  isDuplicateKey,
  isNotFound,
  withTimeout,
} from "../../cluster/mod.ts";
import { decodeMessage, schemaHeader } from "../../protocol/mod.ts";
import { startMongo, startNats, stopAll } from "../harness/servers.ts";
import { uniqueName } from "../helpers/stack.ts";

test.after.always(stopAll);

test("the decoder says oversized or invalid by code, whatever its reason reads", (t) => {
  const bytes = new TextEncoder().encode(JSON.stringify({ hello: "world" }));
  const codes = [
    decodeMessage(["scan-job"], schemaHeader("scan-job"), bytes, 4),
    decodeMessage(["scan-job"], undefined, bytes, 1024),
    decodeMessage(["scan-job"], schemaHeader("scan-job"), bytes, 1024),
    decodeMessage(["scan-job"], "scan-job.v99", bytes, 1024),
  ].map((d) => (d.ok ? "ok" : d.code));
  t.deepEqual(codes, ["oversized", "invalid-message", "invalid-message", "invalid-message"]);
});

test("withTimeout rejects with a transient TimeoutError coded timeout", async (t) => {
  const err = await t.throwsAsync(withTimeout(new Promise(() => undefined), 20, "the probe"), {
    instanceOf: TimeoutError,
  });
  t.is(err?.code, "timeout");
  t.is(err?.what, "the probe");
  t.true(hasCode(err, "timeout"));
  t.is(classify(err), "transient");
  t.is(await withTimeout(Promise.resolve(7), 1_000, "fast"), 7);
});

test("each class fixes its outcome; the code travels with it", (t) => {
  t.is(classify(new PoisonError("bad", "oversized")), "poison");
  t.is(errorCode(new PoisonError("bad", "oversized")), "oversized");
  t.is(errorCode(new PoisonError("bad")), "poison");
  t.is(classify(new FatalError("old server", "incompatible-server")), "fatal");
  t.is(classify(new TransientError("away", "unavailable")), "transient");
  t.is(errorCode(new InputError("no such flag")), "bad-input");
  t.is(classify(new Error("surprise")), "transient", "unknown errors are retried");
  t.is(errorCode(new Error("E11000 duplicate key error")), null, "message text means nothing");
  const cause = new Error("root");
  t.is(new TransientError("wrapped", "transient", { cause }).cause, cause);
});

test("a duplicate key from the real server is told by its code, single and bulk", async (t) => {
  const server = await startMongo();
  const client = new MongoClient(server.url, { serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  t.teardown(() => client.close());
  const c = client.db(uniqueName("errors")).collection<{ _id: string; n: number }>("docs");
  await c.insertOne({ _id: "a", n: 1 });

  const single = await c.insertOne({ _id: "a", n: 2 }).catch((err: unknown) => err);
  t.true(isDuplicateKey(single), String(single));
  t.is(errorCode(single), "duplicate-key");

  const bulk = await c
    .insertMany(
      [
        { _id: "a", n: 3 },
        { _id: "b", n: 3 },
      ],
      { ordered: false },
    )
    .catch((err: unknown) => err);
  t.true(isDuplicateKey(bulk), String(bulk));
  t.is(await c.countDocuments({ _id: "b" }), 1, "the other document of the bulk went in");

  const other = await c.updateOne({ _id: "a" }, { $inc: { n: "x" as unknown as number } }).catch((err: unknown) => err);
  t.truthy(other, "a failing update that is no duplicate");
  t.false(isDuplicateKey(other));
});

test("JetStream's stream-not-found is told by its API code", async (t) => {
  const server = await startNats();
  const nc = await connect({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  const err = await jsm.streams.info(uniqueName("NOPE")).catch((e: unknown) => e);
  t.true(isNotFound(err), String(err));
  t.false(isNotFound(new Error("stream not found")), "the same words without the code are not it");
});
