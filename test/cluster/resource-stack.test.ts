/**
 * The node's resource stack: closes last-opened first, gives each close a deadline, collects
 * failures instead of stopping at the first, closes once however often asked; and openRedis
 * logs an outage of a real Redis once, not once per reconnect.
 */
import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../../cluster/log.ts";
import { closeRedis, openRedis } from "../../cluster/redis.ts";
import { ResourceStack, type ClosingFailure } from "../../cluster/resource-stack.ts";
import { startRedis, stopAll } from "../harness/servers.ts";
import { eventually } from "../helpers/stack.ts";

test.after.always(stopAll);

test("closes in reverse order of opening; a failing or hanging close is recorded and the rest still close", async (t) => {
  const closed: string[] = [];
  const reported: ClosingFailure[] = [];
  const stack = new ResourceStack({ closeDeadlineMs: 50, onCloseError: (f) => reported.push(f) });
  const conn = stack.use("connection", { id: 1 }, (c) => void closed.push(`connection ${c.id}`));
  t.deepEqual(conn, { id: 1 }, "use() hands the resource back");
  stack.use("store", {}, () => {
    closed.push("store");
    throw new Error("store refused to close");
  });
  stack.use("hangs", {}, () => new Promise(() => undefined));
  stack.defer("metric", () => void closed.push("metric"));
  t.deepEqual(stack.names, ["connection", "store", "hangs", "metric"]);

  const failures = await stack.close();
  t.deepEqual(closed, ["metric", "store", "connection 1"]);
  t.deepEqual(
    failures.map((f) => [f.name, (f.error as Error).message]),
    [
      ["hangs", "closing hangs took over 50 ms"],
      ["store", "store refused to close"],
    ],
  );
  t.deepEqual(reported, failures);
  t.is(await stack.close(), failures, "a second close() is the first one");
  t.deepEqual(closed, ["metric", "store", "connection 1"], "nothing closed twice");
  t.throws(() => stack.use("late", {}, () => undefined), { message: /already closed/ });
});

test("openRedis logs an outage once and its end once, however many reconnects fail", async (t) => {
  const redis = await startRedis();
  const lines: Array<{ msg: string; purpose?: string }> = [];
  const log = createLogger(
    "info",
    {},
    { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string; purpose?: string }) },
  );
  const client = await openRedis("test", redis.url, log, { whileDown: "retried later" });
  t.teardown(() => closeRedis(client));
  t.is(await client.ping(), "PONG");
  await redis.kill();
  await sleep(1_500); // ioredis retries the connection several times meanwhile
  await redis.restart();
  await eventually("the client to reconnect", async () => ((await client.ping().catch(() => null)) ? true : undefined));
  const down = lines.filter((l) => l.msg.startsWith("redis unavailable"));
  t.is(down.length, 1, JSON.stringify(lines));
  t.is(down[0]?.msg, "redis unavailable; retried later");
  t.is(down[0]?.purpose, "test");
  t.is(lines.filter((l) => l.msg === "redis available again").length, 1);
});
