import test from "ava";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../config/mod.ts";
import { configTable } from "../../ops/config-doc.ts";

test("defaults run the local stack", (t) => {
  const c = loadConfig({ env: {} });
  t.deepEqual(c.nats.servers, ["nats://127.0.0.1:14222"]);
  t.is(c.redis.url, "redis://127.0.0.1:16379");
  t.is(c.mongo.url, "mongodb://127.0.0.1:27017/");
  t.is(c.region, "local");
  t.deepEqual(c.roles, ["coordinator", "frontier", "scanner", "results"]);
  t.true(Object.isFrozen(c) && Object.isFrozen(c.scanner));
});

test("file < environment < overrides", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "cfg-"));
  const file = join(dir, "c.json");
  writeFileSync(
    file,
    JSON.stringify({ region: "eu", regions: ["eu", "us"], scanner: { concurrency: 3, settleMs: 10 } }),
  );
  const c = loadConfig({
    file,
    env: {
      GLYPHSCAN_SCANNER_CONCURRENCY: "5",
      GLYPHSCAN_ROLES: "scanner, frontier",
      GLYPHSCAN_SCANNER_HOST_MAP: '{"*.test":"127.0.0.1"}',
    },
    overrides: { scanner: { concurrency: 7 } },
  });
  t.is(c.region, "eu");
  t.is(c.scanner.settleMs, 10, "from the file");
  t.is(c.scanner.concurrency, 7, "overrides beat the environment");
  t.deepEqual(c.roles, ["scanner", "frontier"], "lists split on commas");
  t.deepEqual(c.scanner.hostMap, { "*.test": "127.0.0.1" });
  t.is(
    loadConfig({ file, env: { GLYPHSCAN_SCANNER_CONCURRENCY: "5" } }).scanner.concurrency,
    5,
    "environment beats the file",
  );
  t.is(loadConfig({ env: { GLYPHSCAN_CONFIG: file } }).region, "eu", "GLYPHSCAN_CONFIG names the file");
});

test("a bad value is refused with an error naming the key and its variable", (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ GLYPHSCAN_SCANNER_CONCURRENCY: "many" }, /scanner\.concurrency \(GLYPHSCAN_SCANNER_CONCURRENCY\)/],
    [{ GLYPHSCAN_ROLES: "scanner,chef" }, /roles\.1 .*|roles/],
    [{ GLYPHSCAN_REGION: "EU West" }, /region \(GLYPHSCAN_REGION\)/],
    [{ GLYPHSCAN_REGION: "mars" }, /region: "mars" is not one of regions/],
    [{ GLYPHSCAN_SCANNER_HOST_MAP: "{nope" }, /GLYPHSCAN_SCANNER_HOST_MAP: expected JSON object/],
    [{ GLYPHSCAN_COORDINATOR_FALSE_POSITIVE_RATE: "2" }, /coordinator\.falsePositiveRate/],
  ];
  for (const [env, message] of cases) {
    const err = t.throws(() => loadConfig({ env }), { instanceOf: ConfigError });
    t.regex(err?.message ?? "", message);
  }
  t.throws(() => loadConfig({ overrides: { scanner: { bogus: 1 } } }), { message: /bogus/ });
  t.throws(() => loadConfig({ file: "/nonexistent/glyphscan.json" }), {
    instanceOf: ConfigError,
    message: /nonexistent/,
  });
});

test("the README's config reference is generated from the schema and up to date", (t) => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const table = /<!-- config:start -->\n([\s\S]*?)\n<!-- config:end -->/.exec(readme)?.[1] ?? "";
  // Cell padding is the formatter's business; the cells are ours.
  const cells = (md: string) =>
    md
      .trim()
      .split("\n")
      .map((line) => line.split("|").map((c) => c.trim().replace(/^-+$/, "-")));
  t.deepEqual(cells(table), cells(configTable()), "run `npm run config:doc` and paste its output into the README");
});
