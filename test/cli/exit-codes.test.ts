/**
 * The command line's exit codes, decided by the error's class, not its text: a wrong flag value
 * or input (InputError) or setting (ConfigError) is a usage error, exit 2; a failure while
 * running (here a file that is not there) is exit 1. Both say what went wrong in one line.
 */
import test from "ava";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

function glyphscan(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["bin/glyphscan.ts", ...args], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...env },
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.once("exit", (code) => resolve({ code, stderr }));
  });
}

test("a bad input is a usage error (2); a failure while running is 1", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "glyphscan-exit-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "licenses.txt");
  writeFileSync(file, "id,family\n");

  const badFormat = await glyphscan(["licenses", "import", file, "--format", "xml"]);
  t.is(badFormat.code, 2, badFormat.stderr);
  t.is(badFormat.stderr.trim(), 'glyphscan: unknown format "xml" (csv, json or jsonl)');

  const badSetting = await glyphscan(["licenses", "import", file], { GLYPHSCAN_ACTORS_MAX_DELIVER: "many" });
  t.is(badSetting.code, 2, badSetting.stderr);
  t.regex(badSetting.stderr, /^glyphscan: invalid configuration:\s+actors.maxDeliver \(GLYPHSCAN_ACTORS_MAX_DELIVER\)/);

  const missing = await glyphscan(["licenses", "import", path.join(dir, "absent.csv")]);
  t.is(missing.code, 1, missing.stderr);
  t.regex(missing.stderr, /^glyphscan: Error: ENOENT/);
});
