/**
 * One seeded fuzz run of the font parser: real fonts, mutated by plan (font-mutate.ts), each
 * parsed through the worker pool the scanner uses. What it counts is what froze nodes before:
 * a case the pool never answered or answered past its time limit (a hang), a case whose worker
 * died of something other than the limits (a crash), main-thread stalls, and peak RSS.
 */
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { FontParsePool } from "../../actors/scanner/font-parse-pool.ts";
import { applyMutation, mutationPlans, type Mutation } from "./font-mutate.ts";

export type FuzzOptions = {
  seed: number;
  cases: number;
  pool: FontParsePool;
  files: string[];
  /** Cases parsed at once (the pool queues the rest); default the pool's worker count. */
  parallel?: number;
};

export type FuzzCase = { index: number; file: string; mutation: Mutation; ms: number; outcome: string };

export type FuzzSummary = {
  seed: number;
  cases: number;
  files: number;
  parsed: number;
  parseErrors: number;
  /** parseLimit counts: timeout, memory, oversized. */
  limits: Record<string, number>;
  /** Workers that died of something else than a limit, or a parse that threw. */
  crashes: number;
  /** Answers that came later than the time limit plus a grace period, or never. */
  hangs: number;
  maxParseMs: number;
  maxRssMb: number;
  /** Longest the main event loop was blocked during the run. */
  maxLoopDelayMs: number;
  wallMs: number;
  /** The crashes and hangs, to replay from seed and index. */
  failures: FuzzCase[];
};

/** Later than this past the time limit counts as a hang: the limit did not hold. */
const HANG_GRACE_MS = 2_000;

export async function runFontFuzz(opts: FuzzOptions): Promise<FuzzSummary> {
  const { pool } = opts;
  const cache = new Map<string, Buffer>();
  const read = (path: string): Buffer => cache.get(path) ?? cache.set(path, readFileSync(path)).get(path)!;
  const plans = mutationPlans(opts.seed, opts.cases);
  const summary: FuzzSummary = {
    seed: opts.seed,
    cases: 0,
    files: opts.files.length,
    parsed: 0,
    parseErrors: 0,
    limits: {},
    crashes: 0,
    hangs: 0,
    maxParseMs: 0,
    maxRssMb: 0,
    maxLoopDelayMs: 0,
    wallMs: 0,
    failures: [],
  };
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const rss = setInterval(() => sampleRss(summary), 50);
  const started = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let index = next++; index < plans.length; index = next++) {
      const mutation = plans[index]!;
      const file = opts.files[mutation.file % opts.files.length]!;
      await runCase(pool, summary, { index, file, mutation }, applyMutation(read(file), mutation));
    }
  };
  try {
    await Promise.all(Array.from({ length: opts.parallel ?? pool.limits.workers }, worker));
  } finally {
    clearInterval(rss);
    loop.disable();
  }
  sampleRss(summary);
  summary.wallMs = Math.round(performance.now() - started);
  summary.maxLoopDelayMs = Math.round(loop.max / 1e6);
  return summary;
}

async function runCase(
  pool: FontParsePool,
  summary: FuzzSummary,
  c: Omit<FuzzCase, "ms" | "outcome">,
  bytes: Uint8Array,
): Promise<void> {
  const t0 = performance.now();
  let outcome: string;
  try {
    const result = await pool.parse(bytes);
    outcome = result.parseLimit ?? (result.parseError === null ? "parsed" : "parse-error");
    if (result.parseError?.startsWith("internal:")) outcome = "crash";
  } catch {
    outcome = "crash";
  }
  const ms = performance.now() - t0;
  summary.cases++;
  summary.maxParseMs = Math.max(summary.maxParseMs, Math.round(ms));
  if (outcome === "parsed") summary.parsed++;
  else if (outcome === "parse-error") summary.parseErrors++;
  else if (outcome !== "crash") summary.limits[outcome] = (summary.limits[outcome] ?? 0) + 1;
  const hung = ms > pool.limits.timeoutMs + HANG_GRACE_MS;
  if (outcome === "crash") summary.crashes++;
  if (hung) summary.hangs++;
  if ((outcome === "crash" || hung) && summary.failures.length < 50) {
    summary.failures.push({ ...c, ms: Math.round(ms), outcome });
  }
}

function sampleRss(summary: FuzzSummary): void {
  summary.maxRssMb = Math.max(summary.maxRssMb, Math.round(process.memoryUsage.rss() / (1024 * 1024)));
}
