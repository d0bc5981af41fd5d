/**
 * Why a scan failed, as the frontier schedules it: each failed outcome is mapped to a cause
 * class, each class has its own retry policy (how many attempts, the backoff base and cap), and
 * every retry waits a fully jittered exponential delay: uniform in [0, min(cap, base · 2^(n-1))].
 */
import type { Config } from "../../config/mod.ts";
import type { FailureKind, ScanReport } from "../../protocol/mod.ts";
import type { AttemptRecord, CauseClass } from "../store/documents.ts";

export type { AttemptRecord, CauseClass };

export const CAUSE_CLASSES = [
  "dns",
  "tls",
  "timeout",
  "http-status",
  "browser-crash",
  "ssrf-refused",
  /** No result within the lease: the scanner (or its browser) died on the site every delivery. */
  "lease-expired",
  "other",
] as const satisfies readonly CauseClass[];
// Every class of the stored type is listed (a class added there and not here fails to compile).
const everyClassListed: Exclude<CauseClass, (typeof CAUSE_CLASSES)[number]> extends never ? true : never = true;
void everyClassListed;

export interface Cause {
  cause: CauseClass;
  /** The landing page's HTTP status, for `http-status`. */
  httpStatus: number | null;
  /** The scanner's own failure kind (finer than the class: `redirect-loop`, `too-large`, …). */
  kind: FailureKind;
  reason: string;
}

/** Maps a failed scan report to its cause class. */
export function classifyFailure(report: Pick<ScanReport, "failure" | "pages">): Cause {
  const failure = report.failure ?? { kind: "internal" as const, message: "failed without a reason" };
  const reason = failure.message.slice(0, 500);
  const base = { kind: failure.kind, reason, httpStatus: null };
  switch (failure.kind) {
    case "dns":
    case "tls":
    case "timeout":
    case "browser-crash":
      return { ...base, cause: failure.kind };
    case "blocked-address":
      return { ...base, cause: "ssrf-refused" };
    case "http-status": {
      const fromPage = report.pages.find((p) => p.httpStatus !== null && p.httpStatus >= 400)?.httpStatus ?? null;
      const fromMessage = /HTTP (\d{3})/.exec(failure.message)?.[1];
      return { ...base, cause: "http-status", httpStatus: fromPage ?? (fromMessage ? Number(fromMessage) : null) };
    }
    default:
      return { ...base, cause: "other" };
  }
}

export type RetryPolicy = { maxAttempts: number; baseMs: number; maxMs: number };

/**
 * Built-in policies, under `frontier.retryByCause`: NXDOMAIN, a bad certificate or a 4xx page is
 * unlikely to change within minutes (two attempts, an hour apart at most); a site that resolves to
 * a refused address is parked at once. Timeouts, 5xx, crashes and the rest use the defaults.
 */
export const DEFAULT_RETRY_BY_CAUSE: Readonly<Record<string, Partial<RetryPolicy>>> = {
  dns: { maxAttempts: 2, baseMs: 3_600_000 },
  tls: { maxAttempts: 2, baseMs: 3_600_000 },
  "http-4xx": { maxAttempts: 2, baseMs: 3_600_000 },
  "ssrf-refused": { maxAttempts: 1 },
};

/**
 * The policy of a cause: `frontier.retryByCause` (over {@link DEFAULT_RETRY_BY_CAUSE}) looked up as `http-<code>`, `http-<n>xx`, then the
 * class name; what is not configured falls back to `frontier.maxAttempts` / `retryBaseMs` /
 * `retryMaxMs`. `frontier.maxAttempts` bounds every class.
 */
export function retryPolicy(policy: Config["frontier"], cause: Pick<Cause, "cause" | "httpStatus">): RetryPolicy {
  const keys =
    cause.cause === "http-status" && cause.httpStatus !== null
      ? [`http-${cause.httpStatus}`, `http-${Math.floor(cause.httpStatus / 100)}xx`, "http-status"]
      : [cause.cause];
  const table: Record<string, Partial<RetryPolicy> | undefined> = { ...DEFAULT_RETRY_BY_CAUSE, ...policy.retryByCause };
  const found = keys.map((k) => table[k]).find((p) => p !== undefined) ?? {};
  return {
    maxAttempts: Math.min(found.maxAttempts ?? policy.maxAttempts, policy.maxAttempts),
    baseMs: found.baseMs ?? policy.retryBaseMs,
    maxMs: found.maxMs ?? policy.retryMaxMs,
  };
}

/** Full jitter: uniform in [0, min(maxMs, baseMs · 2^(attempt-1))]. */
export function backoffDelay(p: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(p.maxMs, p.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}
