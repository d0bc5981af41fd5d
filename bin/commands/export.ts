/**
 * `glyphscan export`: compliance results as CSV or JSON Lines, one row per font file per domain
 * (the domain's latest assessed scan), to a file or stdout. Streamed: rows are written as they are
 * read, with backpressure, so memory stays flat however large the export; a reader that goes away
 * (`| head`) ends the export quietly. A progress bar on stderr when it is a terminal, and always a
 * summary line on stderr.
 */
import { createWriteStream } from "node:fs";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import cliProgress from "cli-progress";
import { InputError } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { VERDICT_KINDS } from "../../protocol/mod.ts";
import { openDatabase } from "../../actors/store/database.ts";
import {
  EXPORT_COLUMNS,
  countExportDomains,
  exportRows,
  isVerdict,
  type ExportFilter,
  type ExportProgress,
  type ExportRow,
} from "../../actors/store/export.ts";
import type { Verdict } from "../../actors/licensing/verdict.ts";

export type ExportFormat = "csv" | "jsonl";

export interface ExportFlags {
  format?: string | undefined;
  out?: string | undefined;
  verdict?: string[] | undefined;
  region?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
}

export interface ExportRequest {
  format: ExportFormat;
  out: string | null;
  filter: ExportFilter;
}

const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](?<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(?<zone>Z|[+-]\d{2}:?\d{2})?)?$/i;

/** An ISO 8601 date (midnight UTC) or date-time (UTC unless it names an offset). */
export function parseIsoDate(flag: string, value: string): Date {
  const v = value.trim().toUpperCase().replace(" ", "T");
  const m = ISO.exec(v);
  if (m) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const text =
      m.groups?.["time"] === undefined
        ? `${m[1]}-${m[2]}-${m[3]}T00:00:00Z`
        : m.groups["zone"] === undefined
          ? `${v}Z`
          : v;
    const date = new Date(text);
    // A day that does not exist (2026-02-30) is refused, not rolled over into the next month.
    const day = new Date(Date.UTC(y, mo - 1, d));
    const real = day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d;
    if (real && !Number.isNaN(date.getTime())) return date;
  }
  throw new InputError(`--${flag}: "${value}" is not an ISO 8601 date (2026-06-01 or 2026-06-01T12:00:00Z)`);
}

/** Repeated and comma-separated `--verdict` values, checked. */
export function parseVerdicts(values: readonly string[]): Verdict[] {
  const out = new Set<Verdict>();
  for (const v of values.flatMap((x) => x.split(",")).map((x) => x.trim().toLowerCase())) {
    if (v === "") continue;
    if (!isVerdict(v)) throw new InputError(`--verdict: unknown verdict "${v}" (one of ${VERDICT_KINDS.join(", ")})`);
    out.add(v);
  }
  return [...out];
}

export function parseExportFlags(flags: ExportFlags): ExportRequest {
  const format = (flags.format ?? "csv").toLowerCase();
  if (format !== "csv" && format !== "jsonl") throw new InputError(`--format: "${flags.format}" is not csv or jsonl`);
  const since = flags.since === undefined ? undefined : parseIsoDate("since", flags.since);
  const until = flags.until === undefined ? undefined : parseIsoDate("until", flags.until);
  if (since && until && since >= until) throw new InputError("--since must be before --until");
  if (flags.region !== undefined && !/^[a-z][a-z0-9-]{0,31}$/.test(flags.region))
    throw new InputError(`--region: "${flags.region}" is not a region name`);
  if (flags.out === "") throw new InputError("--out: a file name is needed");
  return {
    format,
    out: flags.out === undefined || flags.out === "-" ? null : flags.out,
    filter: { verdicts: parseVerdicts(flags.verdict ?? []), region: flags.region, since, until },
  };
}

/**
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF, or edge spaces; quotes
 * doubled. Null is empty. Text a spreadsheet would run as a formula (= + - @ tab CR first; font names
 * and name-table fields come from arbitrary websites) is prefixed with `'`.
 */
export function csvField(value: string | null | undefined): string {
  if (value === null || value === undefined) return "";
  const s = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export const csvLine = (fields: ReadonlyArray<string | null | undefined>) => `${fields.map(csvField).join(",")}\r\n`;

export function formatRow(row: ExportRow, format: ExportFormat): string {
  if (format === "jsonl") return `${JSON.stringify(row)}\n`;
  return csvLine(EXPORT_COLUMNS.map((k) => row[k]));
}

export interface ExportSummary {
  rows: number;
  domains: number;
  /** Domains read, with a wanted row or not. */
  domainsRead: number;
  /** The reader went away before the end (EPIPE). */
  closedEarly: boolean;
}

const isBrokenPipe = (err: unknown) =>
  (err as { code?: string } | null)?.code === "EPIPE" ||
  (err as { code?: string } | null)?.code === "ERR_STREAM_DESTROYED";

export async function runExport(
  config: Config,
  request: ExportRequest,
  io: { stdout: Writable; stderr: NodeJS.WriteStream },
): Promise<ExportSummary> {
  const db = await openDatabase(config);
  const summary: ExportSummary = { rows: 0, domains: 0, domainsRead: 0, closedEarly: false };
  const progress: ExportProgress = { domains: 0 };
  const bar = io.stderr.isTTY
    ? new cliProgress.SingleBar(
        { stream: io.stderr, format: "export [{bar}] {value}/{total} domains | {rows} rows", fps: 5 },
        cliProgress.Presets.shades_classic,
      )
    : null;
  const out = request.out ? createWriteStream(request.out) : io.stdout;
  // After a broken pipe stdout may report the error again; it is handled once, below.
  const ignore = () => undefined;
  if (!request.out) io.stdout.on("error", ignore);
  try {
    if (bar) bar.start(await countExportDomains(db.collections, request.filter), 0, { rows: 0 });
    const lines = async function* () {
      if (request.format === "csv") yield csvLine(EXPORT_COLUMNS);
      let last: string | null = null;
      for await (const row of exportRows(db.collections, request.filter, progress)) {
        yield formatRow(row, request.format);
        // Counted once handed to the stream: a line refused by a closed pipe ends the loop before this.
        summary.rows++;
        if (row.domain !== last) summary.domains++;
        last = row.domain;
        bar?.update(progress.domains, { rows: summary.rows });
      }
    };
    try {
      await pipeline(Readable.from(lines(), { objectMode: false, highWaterMark: 64 * 1024 }), out, {
        end: request.out !== null,
      });
    } catch (err) {
      if (request.out || !isBrokenPipe(err)) throw err;
      summary.closedEarly = true;
    }
  } finally {
    summary.domainsRead = progress.domains;
    bar?.update(progress.domains, { rows: summary.rows });
    bar?.stop();
    await db.close();
  }
  return summary;
}

export function formatExportSummary(s: ExportSummary, request: ExportRequest): string {
  const where = request.out ?? "stdout";
  return (
    `exported ${s.rows} rows for ${s.domains} domains (${request.format}) to ${where}` +
    (s.closedEarly ? "; the output was closed early" : "")
  );
}
