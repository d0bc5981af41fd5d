/**
 * glyphscan's metrics, made through the OpenTelemetry API and served by the Prometheus exporter
 * when telemetry starts one. With metrics off every instrument is the API's no-op.
 *
 * Prometheus names (the exporter appends `_total` to counters):
 *   glyphscan_messages_total{actor,outcome}        outcome: ok | retried | dead-lettered | fatal
 *   glyphscan_scans_total{region,outcome}          outcome: ok | the failure kind (dns, timeout, …);
 *                                                  a browser crash is counted, then retried
 *   glyphscan_scan_duration_seconds{region,outcome} histogram (_bucket, _sum, _count)
 *   glyphscan_fonts_found_total{region}            font files in scan reports
 *   glyphscan_jobs_dispatched_total{region}
 *   glyphscan_lease_expiries_total{region,where}   where: before-scan (job skipped, lease already out)
 *   glyphscan_seen_filter_total{result}            result: seen | new (Bloom hit rate = seen / all) |
 *                                                  confirm-override (maybe seen, not in MongoDB: admitted)
 *   glyphscan_jobs_pending{region,state}           gauge; state: waiting | in-flight (job consumer info)
 *   glyphscan_dead_letters{stage}                  gauge: dead letters stored in the DLQ stream, by stage
 *   glyphscan_verdicts_total{region,verdict}       licence verdicts given to the fonts of stored scans
 *   glyphscan_http_requests_total{method,route,status}  HTTP API requests; route is the template
 *                                                  (/v1/domains/:domain), "unmatched" when none matched
 *   glyphscan_http_request_duration_seconds{method,route,status}  histogram of the same requests
 */
import { metrics, type Counter, type Histogram } from "@opentelemetry/api";
import type { JetStreamManager } from "@nats-io/jetstream";
import { STAGES, consumers, streams, subjects } from "../protocol/mod.ts";
import { meterGeneration } from "./telemetry.ts";

export interface Instruments {
  messages: Counter;
  scans: Counter;
  scanDuration: Histogram;
  fonts: Counter;
  jobsDispatched: Counter;
  leaseExpiries: Counter;
  seen: Counter;
  verdicts: Counter;
  httpRequests: Counter;
  httpDuration: Histogram;
}

let cached: { generation: number; instruments: Instruments } | null = null;

const meter = () => metrics.getMeter("glyphscan");

/** The instruments of the current meter provider (no-ops while metrics are off). */
export function instruments(): Instruments {
  const generation = meterGeneration();
  if (cached?.generation === generation) return cached.instruments;
  const m = meter();
  const made: Instruments = {
    messages: m.createCounter("glyphscan.messages", { description: "Messages handled, by actor and outcome" }),
    scans: m.createCounter("glyphscan.scans", { description: "Scans finished, by outcome" }),
    scanDuration: m.createHistogram("glyphscan.scan.duration_seconds", {
      description: "Duration of one site scan",
      unit: "s",
      advice: { explicitBucketBoundaries: [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60] },
    }),
    fonts: m.createCounter("glyphscan.fonts.found", { description: "Font files found by scans" }),
    jobsDispatched: m.createCounter("glyphscan.jobs.dispatched", { description: "Scan jobs published" }),
    leaseExpiries: m.createCounter("glyphscan.lease.expiries", {
      description: "Jobs whose lease ran out: skipped before the scan, or results that came too late",
    }),
    seen: m.createCounter("glyphscan.seen_filter", { description: "Bloom filter lookups: seen or new" }),
    verdicts: m.createCounter("glyphscan.verdicts", { description: "Licence verdicts of scanned fonts, by kind" }),
    httpRequests: m.createCounter("glyphscan.http.requests", {
      description: "HTTP API requests, by method, route template and status code",
    }),
    httpDuration: m.createHistogram("glyphscan.http.request.duration_seconds", {
      description: "HTTP API request duration, from arrival to the last byte of the response",
      unit: "s",
      advice: { explicitBucketBoundaries: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] },
    }),
  };
  cached = { generation, instruments: made };
  return made;
}

/**
 * Observes the region's scan-job consumer on every scrape: messages waiting and in flight.
 * Returns the function that stops observing.
 */
export function observeJobsPending(jsm: JetStreamManager, region: string): () => void {
  const gauge = meter().createObservableGauge("glyphscan.jobs.pending", {
    description: "Scan jobs in the region's stream not yet acknowledged",
  });
  const callback = async (result: { observe(value: number, attributes: Record<string, string>): void }) => {
    try {
      const info = await jsm.consumers.info(streams.jobs(region), consumers.scanners);
      result.observe(info.num_pending, { region, state: "waiting" });
      result.observe(info.num_ack_pending, { region, state: "in-flight" });
    } catch {
      // NATS away or the node closing: this scrape simply has no value.
    }
  };
  gauge.addCallback(callback);
  return () => gauge.removeCallback(callback);
}

/**
 * Observes the dead-letter stream on every scrape: letters stored per stage, whichever path put
 * them there (an actor, or the max-deliveries watcher). Returns the function that stops observing.
 */
export function observeDeadLetters(jsm: JetStreamManager): () => void {
  const gauge = meter().createObservableGauge("glyphscan.dead_letters", {
    description: "Dead letters stored in the DLQ stream, by stage",
  });
  const callback = async (result: { observe(value: number, attributes: Record<string, string>): void }) => {
    try {
      const info = await jsm.streams.info(streams.deadLetters, { subjects_filter: subjects.deadLetterAll });
      const bySubject = info.state.subjects ?? {};
      for (const stage of STAGES) result.observe(bySubject[subjects.deadLetter(stage)] ?? 0, { stage });
    } catch {
      // NATS away or the node closing: this scrape simply has no value.
    }
  };
  gauge.addCallback(callback);
  return () => gauge.removeCallback(callback);
}

/**
 * Observes a process's lookup view reads and writes on every scrape, from its own counters (no cost
 * per request): `outcome` hit, miss (answered from MongoDB), unavailable (Redis away), write.
 * Returns the function that stops observing.
 */
export function observeLookupView(
  stats: () => { hits: number; misses: number; unavailable: number; writes: number },
): () => void {
  const counter = meter().createObservableCounter("glyphscan.lookup_view.operations", {
    description: "Lookup view operations of this process, by outcome (hit, miss, unavailable, write)",
  });
  const callback = (result: { observe(value: number, attributes: Record<string, string>): void }) => {
    const s = stats();
    result.observe(s.hits, { outcome: "hit" });
    result.observe(s.misses, { outcome: "miss" });
    result.observe(s.unavailable, { outcome: "unavailable" });
    result.observe(s.writes, { outcome: "write" });
  };
  counter.addCallback(callback);
  return () => counter.removeCallback(callback);
}
