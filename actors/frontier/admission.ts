/**
 * Admission: new domains are inserted as due now; a known domain only gains the source (and the
 * higher priority of its sources). A replayed parked letter (`revive`) gives a parked domain its
 * attempts back and makes it due.
 */
import { MongoBulkWriteError } from "mongodb";
import type { Admission } from "../../protocol/mod.ts";
import type { FrontierDoc } from "../store/documents.ts";
import type { FrontierContext } from "./schedule.ts";

export type AdmissionInput = { admission: Admission; traceparent: string | undefined };

/** Admission upserts per bulk write. */
const UPSERT_CHUNK = 100;

/** A source's dispatch priority from config. */
export function priorityOf(ctx: Pick<FrontierContext, "policy">, source: string): number {
  return ctx.policy.sourcePriority[source] ?? ctx.policy.defaultPriority;
}

/** The state of a domain never scanned nor leased: what admission writes, and what benches and tests seed. */
export const NEVER_SCANNED = {
  state: "queued",
  attempts: 0,
  leaseToken: null,
  leaseJobId: null,
  leaseUntil: null,
  lastScanAt: null,
  scanCount: 0,
  latest: null,
} as const;

/** The fields a new domain starts with. */
function newDomain(a: Admission, traceparent: string | null, now: Date) {
  return {
    ...NEVER_SCANNED,
    region: a.region,
    seedUrl: a.seedUrl,
    firstSeenAt: now,
    nextScanAt: now,
    // The first scan continues the trace of the feed message that brought the domain.
    traceparent,
  };
}

/** A parked domain named by a replayed letter is queued again, with its attempts back. */
async function revive(ctx: FrontierContext, admissions: readonly AdmissionInput[], now: Date): Promise<void> {
  for (const { admission: a } of admissions.filter(({ admission: a }) => a.revive === true)) {
    const projection = { region: 1, manual: 1, priority: 1, state: 1 };
    const doc = await ctx.domains.findOne({ _id: a.domain }, { projection });
    if (doc?.state !== "failed") continue;
    const update = { $set: { state: "queued" as const, attempts: 0, parkedAt: null } };
    await ctx.schedule.writeSchedule(doc, now, update, { state: "failed" });
  }
}

/**
 * Inserts the batch's domains at once, their due entries first; returns the ones MongoDB already
 * has (a duplicate key: seen before the caller's Bloom filter window), which take the upsert.
 */
async function insertFresh(ctx: FrontierContext, admissions: readonly AdmissionInput[], now: Date) {
  const docs = new Map<string, FrontierDoc>();
  for (const { admission: a, traceparent } of admissions) {
    const doc = docs.get(a.domain);
    if (doc) {
      if (!doc.sources.includes(a.source)) doc.sources.push(a.source);
      doc.priority = Math.max(doc.priority!, priorityOf(ctx, a.source));
      continue;
    }
    const fields = { ...newDomain(a, traceparent ?? null, now), sources: [a.source], lastSeenAt: now };
    docs.set(a.domain, { _id: a.domain, ...fields, priority: priorityOf(ctx, a.source) });
  }
  const known = new Set<string>();
  const moves = [...docs.values()].map((doc) => ({ doc, nextScanAt: now }));
  await ctx.schedule.moveMany(moves, async () => {
    try {
      await ctx.domains.insertMany([...docs.values()], { ordered: false });
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors: Array<{ code: number; index: number }> = [err.writeErrors].flat();
      if (errors.some((e) => e.code !== 11000)) throw err;
      const ids = [...docs.keys()];
      for (const e of errors) known.add(ids[e.index]!);
    }
  });
  return admissions.filter(({ admission: a }) => known.has(a.domain));
}

/** One bulk write of admission upserts: a new domain gets its first fields, a known one the source. */
function upsertChunk(ctx: FrontierContext, upserts: readonly AdmissionInput[], now: Date) {
  return ctx.domains.bulkWrite(
    upserts.map(({ admission: a, traceparent }) => ({
      updateOne: {
        filter: { _id: a.domain },
        update: {
          $setOnInsert: newDomain(a, traceparent ?? null, now),
          $addToSet: { sources: a.source },
          $set: { lastSeenAt: now },
          $max: { priority: priorityOf(ctx, a.source) },
        },
        upsert: true,
      },
    })),
    { ordered: false },
  );
}

/** Upserts in chunks, then pushes the due entries of the domains that turned out new. */
async function upsertAll(ctx: FrontierContext, upserts: readonly AdmissionInput[], now: Date): Promise<void> {
  // In chunks: a bulk upsert of 1,000 stalled the default stack's server in the ingest bench; 100 does not.
  const upserted: Array<{ k: number; id: unknown }> = [];
  for (let i = 0; i < upserts.length; i += UPSERT_CHUNK) {
    const result = await upsertChunk(ctx, upserts.slice(i, i + UPSERT_CHUNK), now);
    for (const [k, id] of Object.entries(result.upsertedIds)) upserted.push({ k: i + Number(k), id });
  }
  // Pushed after the upsert (only it tells which are new); a crash in between is the sweep's.
  const inserted = new Map<string, { _id: string; region: string; priority: number }>();
  for (const { k, id } of upserted) {
    const a = upserts[k]!.admission;
    inserted.set(String(id), { _id: String(id), region: a.region, priority: -Infinity });
  }
  // An upserted domain's priority is the highest of the batch's sources, as `$max` makes it.
  for (const { admission: a } of upserts) {
    const d = inserted.get(a.domain);
    if (d) d.priority = Math.max(d.priority, priorityOf(ctx, a.source));
  }
  await ctx.schedule.queue.push([...inserted.values()].map((d) => ctx.schedule.entry(d, now)));
}

/**
 * Admits a batch. With `fresh` (the caller's Bloom filter says these are new) they are inserted at
 * once, and only the ones already stored take the upsert; without it, every admission is an upsert.
 */
export async function admit(
  ctx: FrontierContext,
  admissions: readonly AdmissionInput[],
  now: Date,
  { fresh = false }: { fresh?: boolean } = {},
): Promise<void> {
  if (admissions.length === 0) return;
  await revive(ctx, admissions, now);
  const upserts = fresh ? await insertFresh(ctx, admissions, now) : admissions;
  if (upserts.length === 0) return;
  await upsertAll(ctx, upserts, now);
}
