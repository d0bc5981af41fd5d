/**
 * `glyphscan licenses import FILE`: licence records from CSV, JSON or JSON Lines into the
 * registry, with a progress bar, row-level errors by line and a summary. Re-importing the same
 * file changes nothing; a row whose content changed replaces the stored record with its id.
 */
import { readFile } from "node:fs/promises";
import cliProgress from "cli-progress";
import { InputError } from "../../cluster/errors.ts";
import type { Config } from "../../config/mod.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { formatOf, importLicenses, readRows, type ImportSummary } from "../../actors/licensing/import.ts";
import { LicenseRegistry } from "../../actors/licensing/registry.ts";

export async function importLicenseFile(
  config: Config,
  path: string,
  opts: { format?: string | undefined; progress?: NodeJS.WriteStream | undefined } = {},
): Promise<ImportSummary> {
  const text = await readFile(path, "utf8");
  const format = opts.format === "csv" || opts.format === "json" || opts.format === "jsonl" ? opts.format : null;
  if (opts.format && !format) throw new InputError(`unknown format "${opts.format}" (csv, json or jsonl)`);
  const rows = readRows(text, format ?? formatOf(path, text));
  const db = await openDatabase(config);
  const bar =
    opts.progress?.isTTY === true
      ? new cliProgress.SingleBar(
          { stream: opts.progress, format: "licenses [{bar}] {value}/{total} rows" },
          cliProgress.Presets.shades_classic,
        )
      : null;
  bar?.start(rows.length, 0);
  try {
    return await importLicenses(new LicenseRegistry(db.collections), rows, {
      onProgress: (done) => bar?.update(done),
    });
  } finally {
    bar?.stop();
    await db.close();
  }
}

export function formatImportSummary(s: ImportSummary, maxErrors = 50): string {
  const lines = [
    `read ${s.read} rows: ${s.inserted} inserted, ${s.updated} updated, ${s.unchanged} unchanged, ${s.errors.length} invalid`,
  ];
  for (const e of s.errors.slice(0, maxErrors)) lines.push(`  line ${e.line}${e.id ? ` (${e.id})` : ""}: ${e.message}`);
  if (s.errors.length > maxErrors) lines.push(`  … and ${s.errors.length - maxErrors} more`);
  return lines.join("\n");
}
