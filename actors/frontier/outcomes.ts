/**
 * Outcomes and what they schedule. A result on the current lease schedules the next scan: an
 * adaptive rescan after a success, a retry with backoff by cause after a failure, or parks the
 * domain (with a parked letter) after the cause's last attempt. A result of an expired lease is
 * still kept as the latest scan when it is newer (a stale result), but schedules nothing. A lease
 * that ran out without a result is an outcome too (`lease-expired`).
 */
import { createHash } from "node:crypto";
import type { ScanResult } from "../../protocol/mod.ts";
import type { AttemptRecord, FrontierDoc, ScanSummary } from "../store/documents.ts";
import { backoffDelay, classifyFailure, retryPolicy, type Cause } from "./failures.ts";
import { sendParkedLetter } from "./parked-letters.ts";
import { releaseIp } from "./politeness.ts";
import type { FrontierContext, FrontierPolicy } from "./schedule.ts";

/** One digest for a scan's set of font files: order and repeats do not matter. */
export function fontsKeyOf(result: ScanResult): string {
  const shas = [...new Set(result.report.files.map((f) => f.sha256))].sort();
  return createHash("sha256").update(shas.join("\n")).digest("hex");
}

/** The base time between scans for a domain of this priority. */
export function rescanIntervalFor(policy: FrontierPolicy, priority: number | undefined): number {
  return (
    (priority === undefined ? undefined : policy.rescanIntervalByPriority[String(priority)]) ?? policy.rescanIntervalMs
  );
}

/**
 * The interval to the next scan after a successful one: the priority's base interval for a first
 * scan; half the last interval when the set of font files changed, double when it did not;
 * always within [minRescanMs, maxRescanMs] (unset: a quarter and four times the base).
 */
export function adaptiveInterval(policy: FrontierPolicy, doc: FrontierDoc, fontsKey: string): number {
  const base = rescanIntervalFor(policy, doc.priority);
  const min = policy.minRescanMs ?? base / 4;
  const max = policy.maxRescanMs ?? base * 4;
  const last = doc.rescanMs ?? base;
  const next = doc.fontsKey === undefined ? base : doc.fontsKey === fontsKey ? last * 2 : last / 2;
  return Math.round(Math.min(max, Math.max(min, next)));
}

/** What an outcome on the current lease schedules. */
interface Next {
  cause: Cause | null;
  attempts: number;
  parked: boolean;
  fontsKey: string | undefined;
  rescanMs: number | undefined;
  nextScanAt: Date | null;
}

function nextAfter(ctx: FrontierContext, current: FrontierDoc, result: ScanResult, now: Date): Next {
  const ok = result.report.status === "ok";
  const cause = ok ? null : classifyFailure(result.report);
  const retry = cause ? retryPolicy(ctx.policy, cause) : null;
  const attempts = ok ? 0 : current.attempts;
  const parked = retry !== null && attempts >= retry.maxAttempts;
  const fontsKey = ok ? fontsKeyOf(result) : current.fontsKey;
  const rescanMs = ok && fontsKey ? adaptiveInterval(ctx.policy, current, fontsKey) : current.rescanMs;
  const nextScanAt =
    ok && rescanMs
      ? new Date(now.getTime() + rescanMs)
      : parked || !retry
        ? null
        : new Date(now.getTime() + backoffDelay(retry, attempts, ctx.random));
  return { cause, attempts, parked, fontsKey, rescanMs, nextScanAt };
}

/** A scan with verdicts becomes the domain's assessed scan when it is the newest one. */
const assessedBy = (result: ScanResult, summary: ScanSummary) => ({
  newer: (d: FrontierDoc | null): boolean =>
    summary.compliance != null && !(d?.assessed && d.assessed.finishedAt >= summary.finishedAt),
  fields(d: FrontierDoc | null) {
    return this.newer(d) ? { assessed: { jobId: result.jobId, finishedAt: summary.finishedAt } } : {};
  },
});

/** Applies an outcome on the domain's current lease; false when the lease changed meanwhile. */
async function applyCurrent(
  ctx: FrontierContext,
  current: FrontierDoc,
  result: ScanResult,
  summary: ScanSummary,
  now: Date,
): Promise<boolean> {
  const ok = result.report.status === "ok";
  const next = nextAfter(ctx, current, result, now);
  const { cause } = next;
  const entry: AttemptRecord = {
    ...{ at: summary.finishedAt, attempt: result.attempt, jobId: result.jobId, cause: cause?.cause ?? "ok" },
    ...{ kind: cause?.kind ?? null, httpStatus: cause?.httpStatus ?? null, reason: cause?.reason ?? null },
    node: result.scannerNode,
  };
  const history = [...(current.history ?? []), entry].slice(-ctx.policy.historyLimit);
  if (next.parked && cause) {
    await sendParkedLetter(ctx, current, cause, next.attempts, history, result.report.finishedAt, now);
  }
  await releaseIp(ctx, current.region, current._id, current.ip);
  // A manual request stays pending through retries, until a scan answers it or parks.
  const manual = !ok && !next.parked && current.manual === true;
  const $set = {
    ...(next.fontsKey === undefined ? {} : { fontsKey: next.fontsKey }),
    ...(next.rescanMs === undefined ? {} : { rescanMs: next.rescanMs }),
    manual,
    state: ok ? ("scanned" as const) : next.parked ? ("failed" as const) : ("retry" as const),
    attempts: next.attempts,
    history,
    parkedAt: next.parked ? now : null,
    ip: result.report.address ?? current.ip ?? null,
    ...{ leaseToken: null, leaseJobId: null, leaseUntil: null },
    lastScanAt: summary.finishedAt,
    latest: summary,
    ...assessedBy(result, summary).fields(current),
  };
  const update = { $set, $inc: { scanCount: 1 } };
  return ctx.schedule.writeSchedule({ ...current, manual }, next.nextScanAt, update, {
    leaseToken: result.leaseToken,
  });
}

/** A stale result newer than what the domain shows becomes its latest scan (or its assessed one). */
async function applyStale(ctx: FrontierContext, seen: FrontierDoc, result: ScanResult, summary: ScanSummary) {
  const assessed = assessedBy(result, summary);
  const { server } = ctx.stores;
  if (!seen.lastScanAt || seen.lastScanAt < summary.finishedAt) {
    await server.updateIf(
      ctx.domains,
      result.domain,
      { $or: [{ lastScanAt: null }, { lastScanAt: { $lt: summary.finishedAt } }] },
      { $set: { lastScanAt: summary.finishedAt, latest: summary, ...assessed.fields(seen) }, $inc: { scanCount: 1 } },
    );
  } else if (assessed.newer(seen)) {
    await server.updateIf(
      ctx.domains,
      result.domain,
      { $or: [{ assessed: null }, { "assessed.finishedAt": { $lt: summary.finishedAt } }] },
      { $set: assessed.fields(seen) },
    );
  }
}

/** Applies a scan outcome: `current` when it answered the domain's lease, else `stale`. */
export async function recordOutcome(
  ctx: FrontierContext,
  result: ScanResult,
  summary: ScanSummary,
  now: Date,
): Promise<"current" | "stale"> {
  const doc = await ctx.domains.findOne({ _id: result.domain });
  const current = doc?.leaseToken === result.leaseToken ? doc : null;
  if (current && (await applyCurrent(ctx, current, result, summary, now))) return "current";
  const seen = current ? await ctx.domains.findOne({ _id: result.domain }) : doc;
  if (seen) await applyStale(ctx, seen, result, summary);
  return "stale";
}

/**
 * Due domains still `leased` had no result within their lease (the scanner, or its browser, died
 * on them every time): each such attempt goes into the history as `lease-expired`, and after the
 * cause's last attempt the domain is parked with a parked letter instead of being leased again.
 * Returns the parked ones.
 */
export async function recordExpiredLeases(
  ctx: FrontierContext,
  due: ReadonlyArray<Partial<FrontierDoc>>,
  now: Date,
): Promise<Set<string>> {
  const parked = new Set<string>();
  const policy = retryPolicy(ctx.policy, { cause: "lease-expired", httpStatus: null });
  for (const d of due) {
    if (d.state !== "leased" || !d._id || !d.leaseToken) continue;
    const doc = await ctx.domains.findOne({ _id: d._id });
    if (!doc || doc.leaseToken !== d.leaseToken) continue;
    const reason = "no result within the lease";
    const entry: AttemptRecord = {
      ...{ at: doc.leaseUntil ?? now, attempt: doc.attempts, jobId: `${doc._id}:${d.leaseToken}` },
      ...{ cause: "lease-expired", kind: null, httpStatus: null, reason, node: "" },
    };
    const history = [...(doc.history ?? []), entry].slice(-ctx.policy.historyLimit);
    if (doc.attempts < policy.maxAttempts) {
      // By `_id` only: the round's leader read the token just now.
      await ctx.domains.updateOne({ _id: doc._id }, { $set: { history } });
      continue;
    }
    const cause = { cause: "lease-expired" as const, httpStatus: null, reason };
    await sendParkedLetter(ctx, doc, cause, doc.attempts, history, entry.at.toISOString(), now);
    const $set = { history, state: "failed" as const, parkedAt: now, manual: false };
    const unleased = { leaseToken: null, leaseJobId: null, leaseUntil: null };
    if (await ctx.schedule.writeSchedule(doc, null, { $set: { ...$set, ...unleased } })) parked.add(doc._id);
  }
  return parked;
}
