/**
 * `npm run fuzz -- [--cases N] [--seed S] [--json FILE]`: a seeded mutation fuzz of the font
 * parser over every real font in node_modules (and /usr/share/fonts), through the worker pool
 * with the scanner's default limits. Prints the summary; exits 1 on any crash or hang.
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { configSchema } from "../../config/schema.ts";
import { FontParsePool } from "../../actors/scanner/font-parse-pool.ts";
import { realFontFiles } from "./font-forge.ts";
import { runFontFuzz } from "./fuzz-run.ts";

const { values } = parseArgs({
  options: {
    cases: { type: "string", default: "5000" },
    seed: { type: "string", default: "20261204" },
    json: { type: "string" },
  },
});
const limits = configSchema.shape.scanner.parse(undefined).fontParse;
const pool = new FontParsePool(limits);
try {
  const files = realFontFiles();
  const summary = await runFontFuzz({ seed: Number(values.seed), cases: Number(values.cases), pool, files });
  const report = { ...summary, poolLimits: limits, node: process.version };
  const text = JSON.stringify(report, null, 2);
  if (values.json) writeFileSync(values.json, `${text}\n`);
  process.stdout.write(`${text}\n`);
  process.exitCode = summary.crashes + summary.hangs > 0 ? 1 : 0;
} finally {
  await pool.close();
}
