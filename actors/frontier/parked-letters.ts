/**
 * Parked letters: the dead letter of a domain parked after its last attempt. Its payload is an
 * admission with `revive`, so `glyphscan dlq replay` gives the domain its attempts back (admission.ts);
 * it carries the attempt history. It is stored before the domain is parked: if storing fails the
 * caller's message is retried, and a retry that parks again sends the same letter.
 */
import { schemaHeader, subjects, HEADERS, type Admission, type DeadLetter } from "../../protocol/mod.ts";
import type { AttemptRecord, FrontierDoc } from "../store/documents.ts";
import type { Cause } from "./failures.ts";
import type { FrontierContext } from "./schedule.ts";

export type ParkCause = Pick<Cause, "httpStatus" | "reason"> & { cause: AttemptRecord["cause"] };

/** The letter of `doc`, parked for `cause` after `attempts` attempts. */
export function parkedLetter(
  doc: FrontierDoc,
  cause: ParkCause,
  attempts: number,
  history: readonly AttemptRecord[],
  finishedAt: string,
  now: Date,
): DeadLetter {
  const admission: Admission = {
    domain: doc._id,
    seedUrl: doc.seedUrl,
    source: doc.sources[0] ?? "dlq",
    region: doc.region,
    admittedAt: finishedAt,
    revive: true,
  };
  const status = cause.httpStatus === null ? "" : ` ${cause.httpStatus}`;
  return {
    stage: "frontier",
    code: "retries-exhausted",
    reason: `${cause.cause}${status} after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${cause.reason}`,
    subject: subjects.admit(doc.region),
    stream: null,
    streamSeq: null,
    deliveries: attempts,
    headers: {
      [HEADERS.schema]: schemaHeader("admission"),
      ...(doc.traceparent ? { [HEADERS.traceparent]: doc.traceparent } : {}),
    },
    payloadBase64: Buffer.from(JSON.stringify(admission)).toString("base64"),
    failedAt: now.toISOString(),
    history: history.map((h) => ({ ...h, at: h.at.toISOString() })),
  };
}

/** Stores the parked letter of `doc` (when the frontier has a dead-letter store). */
export async function sendParkedLetter(
  ctx: Pick<FrontierContext, "deadLetter">,
  doc: FrontierDoc,
  cause: ParkCause,
  attempts: number,
  history: readonly AttemptRecord[],
  finishedAt: string,
  now: Date,
): Promise<void> {
  if (!ctx.deadLetter) return;
  await ctx.deadLetter(parkedLetter(doc, cause, attempts, history, finishedAt, now));
}
