/**
 * The periodic-work helper on real timers: ticks never overlap even when one outlasts the
 * interval, `stop()` waits for the tick under way, a tick that throws does not end the loop,
 * and the first tick runs at once or after an interval as asked.
 */
import test from "ava";
import { setTimeout as sleep } from "node:timers/promises";
import { Periodic } from "../../cluster/periodic.ts";

/** Resolves once `check()` holds, or rejects naming what it waited for. */
async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

test("slow ticks never overlap: each starts an interval after the previous one ended", async (t) => {
  let active = 0;
  let most = 0;
  const spans: Array<[number, number]> = [];
  const loop = new Periodic({
    intervalMs: 10,
    first: "now",
    onError: (err) => t.fail(String(err)),
    tick: async () => {
      active++;
      most = Math.max(most, active);
      const start = Date.now();
      await sleep(40); // four intervals long
      spans.push([start, Date.now()]);
      active--;
    },
  });
  await loop.start();
  t.is(spans.length, 1, "start() with first: now waits for the first tick");
  await until("four ticks", () => spans.length >= 4);
  await loop.stop();
  t.is(most, 1, "at most one tick at a time");
  for (let i = 1; i < spans.length; i++) {
    t.true(
      spans[i]![0] >= spans[i - 1]![1] + 9,
      `tick ${i} started ${spans[i]![0] - spans[i - 1]![1]} ms after the last ended`,
    );
  }
});

test("stop() waits for the tick under way, and no tick starts after it", async (t) => {
  let started = 0;
  let finished = 0;
  const loop = new Periodic({
    intervalMs: 5,
    onError: (err) => t.fail(String(err)),
    tick: async () => {
      started++;
      await sleep(60);
      finished++;
    },
  });
  await loop.start();
  await until("a tick under way", () => started === 1);
  await loop.stop();
  t.is(finished, 1, "stop() resolved only after the tick ended");
  t.false(loop.running);
  await sleep(40);
  t.is(started, 1, "nothing ran after stop()");
  await loop.stop(); // twice is fine
});

test("a tick that throws is reported and the loop goes on", async (t) => {
  const errors: unknown[] = [];
  let ticks = 0;
  const loop = new Periodic({
    intervalMs: 5,
    first: "now",
    onError: (err) => {
      errors.push(err);
      throw new Error("the callback failing too must not end the loop");
    },
    tick: async () => {
      ticks++;
      if (ticks <= 2) throw new Error(`tick ${ticks} failed`);
    },
  });
  await loop.start();
  await until("a tick after the failures", () => ticks >= 4);
  await loop.stop();
  t.deepEqual(
    errors.map((e) => (e as Error).message),
    ["tick 1 failed", "tick 2 failed"],
  );
});

test("the first tick waits an interval unless asked to run now", async (t) => {
  let ticks = 0;
  const loop = new Periodic({ intervalMs: 80, onError: () => undefined, tick: async () => void ticks++ });
  await loop.start();
  await sleep(30);
  t.is(ticks, 0, "no tick before the first interval");
  await until("the first tick", () => ticks === 1);
  await loop.stop();
});

test("jitter moves each wait within ±jitter of the interval", (t) => {
  const values = [0, 0.5, 0.999];
  const loop = new Periodic({
    intervalMs: 1_000,
    jitter: 0.2,
    random: () => values.shift()!,
    onError: () => undefined,
    tick: async () => undefined,
  });
  t.deepEqual([loop.delayMs(), loop.delayMs(), loop.delayMs()], [800, 1_000, 1_200]);
  t.throws(() => new Periodic({ intervalMs: 0, onError: () => undefined, tick: async () => undefined }), {
    instanceOf: RangeError,
  });
});
