/**
 * A seeded mutation fuzz of the font parser, small enough for every test run: real fonts from
 * node_modules (and /usr/share/fonts), bit flips, truncations, corrupted table lengths and
 * offsets, duplicated and zeroed chunks, and re-compressed table damage, each parsed through the
 * worker pool the scanner uses. The same harness runs thousands of cases in `npm run fuzz`.
 */
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import test from "ava";
import { FontParsePool } from "../../actors/scanner/font-parse-pool.ts";
import { realFontFiles } from "../../ops/fuzz/font-forge.ts";
import { runFontFuzz } from "../../ops/fuzz/fuzz-run.ts";

const CASES = 300;

test("300 mutated real fonts: every case answered within its limit, no worker crash, the pool still parses", async (t) => {
  const all = realFontFiles();
  const formats = new Set(all.map((f) => extname(f).toLowerCase()));
  for (const format of [".woff2", ".woff", ".ttf"]) t.true(formats.has(format), `a real ${format} font to mutate`);
  const pool = new FontParsePool({ workers: 2, timeoutMs: 3_000, maxHeapMb: 128, maxDecodedBytes: 32 << 20 });
  t.teardown(() => pool.close());
  const summary = await runFontFuzz({ seed: 20_261_204, cases: CASES, pool, files: all });
  t.log(JSON.stringify({ ...summary, failures: summary.failures.length }));
  t.is(summary.cases, CASES, "every case was answered");
  const limited = Object.values(summary.limits).reduce((a, b) => a + b, 0);
  t.is(summary.parsed + summary.parseErrors + limited + summary.crashes, CASES);
  t.is(summary.crashes, 0, `crashes: ${JSON.stringify(summary.failures)}`);
  t.is(summary.hangs, 0, `hangs: ${JSON.stringify(summary.failures)}`);
  t.true(summary.parsed > 0 && summary.parseErrors > 0, "the mutations reach both outcomes");
  t.true(summary.maxParseMs < 3_000 + 2_000, `slowest case ${summary.maxParseMs} ms`);
  const roboto = all.find((f) => f.endsWith("roboto-latin-400-normal.woff2"))!;
  t.like(await pool.parse(readFileSync(roboto)), { parseError: null, metadata: { postscriptName: "Roboto-Regular" } });
});
