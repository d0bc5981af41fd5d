/**
 * `glyphscan status`: per region, the live nodes and their roles, the scan-job consumer's lag,
 * scans and failures over the last minute and the age of the oldest job not yet acknowledged;
 * then the dead letters by stage and every stream with its consumers.
 *
 * Everything is read from NATS: the node registry (KV), consumer and stream info, and the
 * region's results stream (a limits stream, so it keeps what the results writer has acked),
 * whose messages of the last minute are counted by time and read for their outcome.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { isNotFound, listNodes, type NodeEntry } from "../../cluster/mod.ts";
import { STAGES, consumers, streams, subjects, type Stage } from "../../protocol/mod.ts";

export interface StreamStatus {
  stream: string;
  messages: number;
  consumers: Array<{ name: string; pending: number; ackPending: number; redelivered: number }>;
}

export interface RegionStatus {
  region: string;
  nodes: Array<Pick<NodeEntry, "nodeId" | "roles" | "state" | "heartbeatAt" | "inflight" | "scannerSlots">>;
  /** The scanners' consumer on `jobs.<region>`: jobs not yet delivered, delivered but not acked, redelivered. */
  jobs: { pending: number; inFlight: number; redelivered: number; lag: number };
  /** The results writer's consumer on `results.<region>`. */
  results: { pending: number; inFlight: number };
  /** Scan results published in the last `windowSeconds`, and how many of them failed (by kind). */
  lastMinute: { windowSeconds: number; scans: number; failed: number; failures: Record<string, number> };
  scansPerMinute: number;
  /** The oldest job in `jobs.<region>` (waiting or in flight), null when the stream is empty. */
  oldestPendingJob: { dispatchedAt: string; ageSeconds: number } | null;
}

export interface ClusterStatus {
  at: string;
  regions: RegionStatus[];
  deadLetters: Record<Stage, number>;
  streams: StreamStatus[];
}

export interface StatusOptions {
  /** Regions to report besides those of live nodes (the config's `regions`). */
  regions: readonly string[];
  heartbeatMs: number;
  /** Window of the rates; default one minute. */
  windowMs?: number;
  /** Most result messages read for their outcome; beyond it failures are counted on a sample. */
  maxRead?: number;
  now?: Date;
}

export async function clusterStatus(
  nats: { js: JetStreamClient; jsm: JetStreamManager },
  registry: KV,
  opts: StatusOptions,
): Promise<ClusterStatus> {
  const now = opts.now ?? new Date();
  const nodes = await listNodes(registry, opts.heartbeatMs, now.getTime());
  const regionNames = [...new Set([...opts.regions, ...nodes.map((n) => n.region)])].sort();
  const regions = await Promise.all(regionNames.map((r) => regionStatus(nats, r, nodes, now, opts)));
  return {
    at: now.toISOString(),
    regions,
    deadLetters: await deadLetters(nats.jsm),
    streams: await allStreams(nats.jsm),
  };
}

async function regionStatus(
  nats: { js: JetStreamClient; jsm: JetStreamManager },
  region: string,
  nodes: NodeEntry[],
  now: Date,
  opts: StatusOptions,
): Promise<RegionStatus> {
  const { jsm } = nats;
  const windowMs = opts.windowMs ?? 60_000;
  const [jobsConsumer, jobsStream, resultsConsumer] = await Promise.all([
    jsm.consumers.info(streams.jobs(region), consumers.scanners).catch(orNull),
    jsm.streams.info(streams.jobs(region)).catch(orNull),
    jsm.consumers.info(streams.results(region), consumers.resultsWriter).catch(orNull),
  ]);
  const pending = jobsConsumer?.num_pending ?? 0;
  const inFlight = jobsConsumer?.num_ack_pending ?? 0;
  const oldest = jobsStream && jobsStream.state.messages > 0 ? Date.parse(jobsStream.state.first_ts) : null;
  const lastMinute = await recentResults(nats, region, new Date(now.getTime() - windowMs), opts.maxRead ?? 5_000);
  return {
    region,
    nodes: nodes
      .filter((n) => n.region === region)
      .map(({ nodeId, roles, state, heartbeatAt, inflight, scannerSlots }) => ({
        nodeId,
        roles,
        state,
        heartbeatAt,
        inflight,
        ...(scannerSlots === undefined ? {} : { scannerSlots }),
      })),
    jobs: { pending, inFlight, redelivered: jobsConsumer?.num_redelivered ?? 0, lag: pending + inFlight },
    results: { pending: resultsConsumer?.num_pending ?? 0, inFlight: resultsConsumer?.num_ack_pending ?? 0 },
    lastMinute: { windowSeconds: windowMs / 1000, ...lastMinute },
    scansPerMinute: Math.round((lastMinute.scans * 60_000 * 10) / windowMs) / 10,
    oldestPendingJob:
      oldest === null || Number.isNaN(oldest)
        ? null
        : {
            dispatchedAt: new Date(oldest).toISOString(),
            ageSeconds: Math.max(0, Math.round((now.getTime() - oldest) / 100) / 10),
          },
  };
}

const orNull = (err: unknown) => {
  if (isNotFound(err)) return null;
  throw err;
};

/**
 * Results of the region published since `since`: the first such message is found by binary
 * search over sequence numbers (message times only grow), the rest are read in order with an
 * ordered consumer for their status, at most `maxRead` of them.
 */
async function recentResults(
  nats: { js: JetStreamClient; jsm: JetStreamManager },
  region: string,
  since: Date,
  maxRead: number,
): Promise<{ scans: number; failed: number; failures: Record<string, number> }> {
  const none = { scans: 0, failed: 0, failures: {} };
  const info = await nats.jsm.streams.info(streams.results(region)).catch(orNull);
  if (!info || info.state.messages === 0) return none;
  const { first_seq: first, last_seq: last } = info.state;
  const timeOf = async (seq: number) => {
    const m = await nats.jsm.streams.getMessage(streams.results(region), { seq }).catch(() => null);
    return m ? m.time.getTime() : null;
  };
  // Smallest seq in [first, last] whose time is at or after `since`; last + 1 when none.
  let lo = first;
  let hi = last + 1;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const t = await timeOf(mid);
    // A missing message (deleted) counts as old: the window then starts after it.
    if (t !== null && t >= since.getTime()) hi = mid;
    else lo = mid + 1;
  }
  const scans = last - lo + 1;
  if (scans <= 0) return none;
  const toRead = Math.min(scans, maxRead);
  const failures: Record<string, number> = {};
  let failed = 0;
  let read = 0;
  const oc = await nats.js.consumers.get(streams.results(region), {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: lo,
  });
  try {
    const messages = await oc.fetch({ max_messages: toRead, expires: 5_000 });
    for await (const m of messages) {
      read++;
      const body = m.json<{ report?: { status?: string; failure?: { kind?: string } | null } }>();
      if (body.report?.status === "failed") {
        failed++;
        const kind = body.report.failure?.kind ?? "unknown";
        failures[kind] = (failures[kind] ?? 0) + 1;
      }
      if (read >= toRead || m.seq >= last) break;
    }
  } finally {
    await oc.delete().catch(() => undefined);
  }
  if (read < scans && read > 0) {
    // A busy region: scale the sample up to the window.
    const scale = scans / read;
    failed = Math.round(failed * scale);
    for (const k of Object.keys(failures)) failures[k] = Math.round(failures[k]! * scale);
  }
  return { scans, failed, failures };
}

async function deadLetters(jsm: JetStreamManager): Promise<Record<Stage, number>> {
  const out = Object.fromEntries(STAGES.map((s) => [s, 0])) as Record<Stage, number>;
  const info = await jsm.streams.info(streams.deadLetters, { subjects_filter: subjects.deadLetterAll }).catch(orNull);
  const bySubject = info?.state.subjects ?? {};
  for (const stage of STAGES) out[stage] = bySubject[subjects.deadLetter(stage)] ?? 0;
  return out;
}

async function allStreams(jsm: JetStreamManager): Promise<StreamStatus[]> {
  const out: StreamStatus[] = [];
  for await (const s of jsm.streams.list()) {
    if (s.config.name.startsWith("KV_")) continue;
    const cs: StreamStatus["consumers"] = [];
    for await (const c of jsm.consumers.list(s.config.name)) {
      cs.push({ name: c.name, pending: c.num_pending, ackPending: c.num_ack_pending, redelivered: c.num_redelivered });
    }
    out.push({ stream: s.config.name, messages: s.state.messages, consumers: cs });
  }
  return out.sort((a, b) => a.stream.localeCompare(b.stream));
}

const age = (seconds: number) =>
  seconds < 120
    ? `${Math.round(seconds)}s`
    : seconds < 7_200
      ? `${Math.round(seconds / 60)}m`
      : `${Math.round(seconds / 3600)}h`;

export function formatStatus(s: ClusterStatus): string {
  const lines: string[] = [];
  for (const r of s.regions) {
    const failures = Object.entries(r.lastMinute.failures)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ");
    lines.push(`region ${r.region}`);
    lines.push(`  nodes (${r.nodes.length}):`);
    for (const n of r.nodes) {
      const busy = Object.entries(n.inflight)
        .map(([a, k]) => `${a}=${k}`)
        .join(" ");
      const slots = n.scannerSlots === undefined ? "" : `  slots ${n.scannerSlots}`;
      lines.push(
        `    ${n.nodeId.padEnd(24)} ${n.state.padEnd(9)} ${n.roles.join(",")}${slots}  in flight: ${busy || "-"}`,
      );
    }
    lines.push(
      `  jobs: lag ${r.jobs.lag} (waiting ${r.jobs.pending}, in flight ${r.jobs.inFlight}), redelivered ${r.jobs.redelivered}`,
    );
    lines.push(`  results waiting to be stored: ${r.results.pending + r.results.inFlight}`);
    lines.push(
      `  scans/min: ${r.scansPerMinute}  failures (last ${r.lastMinute.windowSeconds}s): ${r.lastMinute.failed}${failures ? ` (${failures})` : ""}`,
    );
    lines.push(
      `  oldest pending job: ${r.oldestPendingJob ? `${age(r.oldestPendingJob.ageSeconds)} old (dispatched ${r.oldestPendingJob.dispatchedAt})` : "none"}`,
    );
  }
  lines.push(`dead letters: ${STAGES.map((st) => `${st} ${s.deadLetters[st]}`).join(", ")}`, "streams:");
  for (const st of s.streams) {
    lines.push(`  ${st.stream.padEnd(16)} ${String(st.messages).padStart(8)} msgs`);
    for (const c of st.consumers) {
      lines.push(
        `    ${c.name.padEnd(20)} pending ${c.pending}, in flight ${c.ackPending}, redelivered ${c.redelivered}`,
      );
    }
  }
  return lines.join("\n");
}
