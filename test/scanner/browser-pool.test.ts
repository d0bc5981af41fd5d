/**
 * The pool survives Chromium dying and even failing to come back: runs reject (never hang, never
 * an unhandled rejection, which ava would report), and a later run relaunches the browser.
 */
import { mkdtemp, rm, symlink, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "ava";
import type { Page } from "puppeteer-core";
import { BrowserCrashError, BrowserPool } from "../../actors/scanner/browser-pool.ts";

let dir: string;
let chromium: string;
let pool: BrowserPool;
const page = "data:text/html,<title>pool test</title>";
const title = (p: Page, url: string) => p.goto(url).then(() => p.title());

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "glyphscan-pool-"));
  chromium = join(dir, "chromium");
  await symlink("/usr/bin/chromium", chromium);
  pool = await BrowserPool.launch({ executablePath: chromium, concurrency: 2, pageTimeoutMs: 10_000 });
});

test.after.always(async () => {
  await pool?.close();
  await rm(dir, { recursive: true, force: true });
});

test.serial("runs tasks on fresh pages", async (t) => {
  t.deepEqual(await Promise.all([pool.run(page, title), pool.run(page, title)]), ["pool test", "pool test"]);
});

test.serial("task errors reach the caller unchanged", async (t) => {
  await t.throwsAsync(
    pool.run(page, async () => {
      throw new RangeError("mine");
    }),
    { instanceOf: RangeError, message: "mine" },
  );
});

test.serial("when Chromium dies and cannot be relaunched, runs reject and a later run recovers", async (t) => {
  await unlink(chromium); // the next launch fails
  const killed = pool.run(page, async (p, url) => {
    await p.goto(url);
    p.browser().process()?.kill("SIGKILL");
    await p.goto(url);
    return "survived";
  });
  await t.throwsAsync(killed, { instanceOf: BrowserCrashError });

  const started = Date.now();
  await t.throwsAsync(pool.run(page, title), { instanceOf: BrowserCrashError, message: /browser unavailable/ });
  t.true(Date.now() - started < 15_000, "fails fast rather than waiting for the job timeout");

  await symlink("/usr/bin/chromium", chromium);
  t.is(await pool.run(page, title), "pool test");
});

test.serial("close is idempotent and later runs are refused", async (t) => {
  await Promise.all([pool.close(), pool.close()]);
  await pool.close();
  await t.throwsAsync(pool.run(page, title), { message: /closed/ });
});
