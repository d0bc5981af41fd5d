/**
 * Only a lease holder writes a scan. Anyone who can publish on `results.<region>` could otherwise
 * store a forged scan (verdict `licensed`, dated 2099 so that no real result ever replaces it).
 * A result is accepted when it answers the domain's current lease (the token the frontier wrote
 * on the domain when it leased it, and the job id built from it) and is dated inside that lease,
 * or when it is a redelivery of a scan already stored for that job and lease. Anything else (a
 * forged token, a job of another domain, the late answer of a lease the frontier has since given
 * to another scanner) is refused with the reason.
 */
import type { ScanResult } from "../../protocol/mod.ts";
import type { DomainDoc, ScanDoc } from "../store/documents.ts";

/** Clocks of scanner and writer nodes may differ by this much. */
export const CLOCK_SKEW_MS = 60_000;

export type LeaseCheck = { accept: true; redelivery: boolean } | { accept: false; reason: string };

export interface LeaseFacts {
  /** The domain as stored now (null when unknown). */
  domain: Pick<DomainDoc, "leaseToken" | "leaseUntil"> | null;
  /** The scan already stored under the result's job id, if any. */
  stored: Pick<ScanDoc, "leaseToken" | "finishedAt" | "scannerNode"> | null;
  /** How long a lease lasts (`frontier.leaseMs`): a lease began this long before its end. */
  leaseMs: number;
  now: Date;
}

export function checkLease(result: ScanResult, facts: LeaseFacts): LeaseCheck {
  const { domain, stored, leaseMs, now } = facts;
  if (result.jobId !== `${result.domain}:${result.leaseToken}`)
    return { accept: false, reason: `job id ${result.jobId} was not issued for ${result.domain}'s lease` };
  const startedAt = Date.parse(result.report.startedAt);
  const finishedAt = Date.parse(result.report.finishedAt);
  if (!(startedAt <= finishedAt)) return { accept: false, reason: "the scan finished before it started" };
  if (finishedAt > now.getTime() + CLOCK_SKEW_MS)
    return { accept: false, reason: `the scan is dated ${result.report.finishedAt}, in the future` };
  if (stored) {
    const same =
      stored.leaseToken === result.leaseToken &&
      stored.scannerNode === result.scannerNode &&
      stored.finishedAt.getTime() === finishedAt;
    return same
      ? { accept: true, redelivery: true }
      : { accept: false, reason: `a different scan is already stored for job ${result.jobId}` };
  }
  if (!domain?.leaseToken || domain.leaseToken !== result.leaseToken)
    return { accept: false, reason: `${result.domain} holds no lease with this token (it ended or was never issued)` };
  const leaseStart = (domain.leaseUntil?.getTime() ?? now.getTime()) - leaseMs;
  if (startedAt < leaseStart - CLOCK_SKEW_MS)
    return { accept: false, reason: `the scan started at ${result.report.startedAt}, before its lease` };
  return { accept: true, redelivery: false };
}
