/**
 * Reading licence files: CSV (a header row naming the fields), a JSON array of objects, or JSON
 * Lines. Every row keeps the line it started on, so a validation error points at the file.
 */
import { parse as parseCsv } from "csv-parse/sync";
import { InputError } from "../../cluster/errors.ts";
import { describeIssues, licenseInputSchema, toLicenseDoc } from "./license-record.ts";
import type { LicenseRegistry } from "./registry.ts";
import type { LicenseDoc } from "../store/documents.ts";

export type LicenseFormat = "csv" | "json" | "jsonl";

export interface RawRow {
  line: number;
  data: unknown;
}

export interface RowError {
  line: number;
  id: string | null;
  message: string;
}

export interface ImportSummary {
  read: number;
  inserted: number;
  updated: number;
  unchanged: number;
  errors: RowError[];
}

export function formatOf(path: string, text: string): LicenseFormat {
  if (/\.jsonl$|\.ndjson$/i.test(path)) return "jsonl";
  if (/\.json$/i.test(path)) return "json";
  if (/\.csv$/i.test(path)) return "csv";
  const first = text.trimStart()[0];
  return first === "[" ? "json" : first === "{" ? "jsonl" : "csv";
}

/** Rows of a licence file; a file that cannot be read as a whole throws with the line. */
export function readRows(text: string, format: LicenseFormat): RawRow[] {
  if (format === "csv") {
    const records = parseCsv<{ record: Record<string, string>; info: { lines: number } }>(text, {
      columns: (header: string[]) => header.map((h) => h.trim()),
      skip_empty_lines: true,
      trim: true,
      info: true,
      comment: "#",
      bom: true,
      // A short or long row is one bad row, reported with its line, not the end of the file.
      relax_column_count: true,
    });
    // `info.lines` is the line the record ends on; a record spans lines only inside quotes.
    return records.map(({ record, info }) => ({ line: info.lines, data: record }));
  }
  if (format === "jsonl") {
    return text.split("\n").flatMap((raw, i): RawRow[] => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return [];
      try {
        return [{ line: i + 1, data: JSON.parse(line) as unknown }];
      } catch (err) {
        return [{ line: i + 1, data: new SyntaxError(err instanceof Error ? err.message : String(err)) }];
      }
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch (err) {
    throw new InputError(`not valid JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const items: unknown[] | null = Array.isArray(parsed)
    ? parsed
    : typeof parsed === "object" && parsed !== null && Array.isArray((parsed as { licenses?: unknown }).licenses)
      ? (parsed as { licenses: unknown[] }).licenses
      : null;
  if (!items) throw new InputError('JSON must be an array of licences or {"licenses": [...]}');
  const lines = elementLines(text);
  return items.map((data, i) => ({ line: lines[i] ?? 1, data }));
}

/** The line on which each element of the licence array starts (the array at depth 1 or 2). */
function elementLines(text: string): number[] {
  const out: number[] = [];
  let depth = 0;
  let line = 1;
  let inString = false;
  let arrayDepth = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\n") line++;
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    if (c === "[" && arrayDepth === -1) {
      arrayDepth = depth + 1;
      depth++;
      continue;
    }
    if (c === "{" || c === "[") {
      if (depth === arrayDepth) out.push(line);
      depth++;
    } else if (c === "}" || c === "]") depth--;
  }
  return out;
}

export interface ValidatedRows {
  docs: Array<{ line: number; doc: Omit<LicenseDoc, "importedAt" | "updatedAt"> }>;
  errors: RowError[];
}

/** Validates rows; a second row with an id already seen in the file is an error, not an overwrite. */
export function validateRows(rows: RawRow[]): ValidatedRows {
  const out: ValidatedRows = { docs: [], errors: [] };
  const seen = new Map<string, number>();
  for (const { line, data } of rows) {
    const id =
      typeof data === "object" && data !== null && typeof (data as { id?: unknown }).id === "string"
        ? (data as { id: string }).id.trim()
        : null;
    if (data instanceof SyntaxError) {
      out.errors.push({ line, id: null, message: `not valid JSON: ${data.message}` });
      continue;
    }
    const parsed = licenseInputSchema.safeParse(data);
    if (!parsed.success) {
      out.errors.push({ line, id, message: describeIssues(parsed.error) });
      continue;
    }
    const first = seen.get(parsed.data.id);
    if (first !== undefined) {
      out.errors.push({ line, id, message: `id ${parsed.data.id} already given on line ${first}` });
      continue;
    }
    seen.set(parsed.data.id, line);
    out.docs.push({ line, doc: toLicenseDoc(parsed.data) });
  }
  return out;
}

export interface ImportOptions {
  batchSize?: number;
  /** Called after each batch with the rows handled so far and the total. */
  onProgress?: (done: number, total: number) => void;
  now?: Date;
}

/** Validates and stores a licence file's rows; invalid rows are reported and skipped. */
export async function importLicenses(
  registry: LicenseRegistry,
  rows: RawRow[],
  opts: ImportOptions = {},
): Promise<ImportSummary> {
  const { docs, errors } = validateRows(rows);
  const summary: ImportSummary = { read: rows.length, inserted: 0, updated: 0, unchanged: 0, errors };
  const batchSize = opts.batchSize ?? 500;
  opts.onProgress?.(errors.length, rows.length);
  for (let i = 0; i < docs.length; i += batchSize) {
    const batch = docs.slice(i, i + batchSize);
    const outcomes = await registry.upsertMany(
      batch.map((b) => b.doc),
      opts.now,
    );
    for (const o of outcomes) summary[o]++;
    opts.onProgress?.(errors.length + i + batch.length, rows.length);
  }
  summary.errors.sort((a, b) => a.line - b.line);
  return summary;
}
