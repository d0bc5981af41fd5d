/**
 * Streams and durable consumers, created or updated at start. Durables are created up front
 * so that a region cut off from JetStream meta quorum can keep consuming.
 *
 * Regions (README "Regions"): with `nats.placement` set, each region's job and results streams
 * are placed in that region's NATS cluster (or on servers tagged `region:<name>`) of a
 * supercluster, and the shared streams and KV buckets in `nats.sharedPlacement`. The global
 * `RESULTS` stream sources every region's results stream, so any region reads every result.
 * With the default `none` everything lives wherever it is created, as on one plain server.
 */
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type Placement,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import type { Config } from "../config/mod.ts";
import { buckets, consumers, streams, subjects } from "../protocol/mod.ts";

/** A stream's wanted config; `region` names the region it belongs to (none: shared). */
export type StreamSpec = Partial<StreamConfig> & { name: string; subjects: string[]; region?: string };

/**
 * Where a stream of `where` (a region, or the shared location) is placed: the cluster of that
 * name, servers tagged `region:<where>`, or nowhere in particular.
 */
export function placementFor(config: Config, where: string | undefined): Placement | undefined {
  if (where === undefined || config.nats.placement === "none") return undefined;
  return config.nats.placement === "cluster"
    ? { cluster: where, tags: [] }
    : { cluster: "", tags: [`region:${where}`] };
}

const placed = (placement: Placement | undefined) => (placement ? { placement } : {});

export function streamSpecs(config: Config): StreamSpec[] {
  const common = {
    storage: StorageType.File,
    num_replicas: config.nats.replicas,
    duplicate_window: nanos(config.nats.duplicateWindowMs),
  };
  const shared = { ...common, ...placed(placementFor(config, config.nats.sharedPlacement)) };
  const perRegion = config.regions.flatMap((r): StreamSpec[] => [
    // Work queue: a job leaves the stream when a scanner acks it.
    {
      ...common,
      ...placed(placementFor(config, r)),
      region: r,
      name: streams.jobs(r),
      subjects: [subjects.jobs(r)],
      retention: RetentionPolicy.Workqueue,
    },
    {
      ...common,
      ...placed(placementFor(config, r)),
      region: r,
      name: streams.results(r),
      subjects: [subjects.results(r)],
      retention: RetentionPolicy.Limits,
      max_age: nanos(30 * 24 * 3600_000),
    },
  ]);
  return [
    { ...shared, name: streams.feeds, subjects: [subjects.feedAll], retention: RetentionPolicy.Workqueue },
    { ...shared, name: streams.admit, subjects: [subjects.admitAll], retention: RetentionPolicy.Workqueue },
    // Dead letters are as durable as the work: kept until replayed or purged by an operator.
    { ...shared, name: streams.deadLetters, subjects: [subjects.deadLetterAll], retention: RetentionPolicy.Limits },
    // Compliance verdicts for downstream systems: kept 30 days, read by their own consumers.
    {
      ...shared,
      name: streams.compliance,
      subjects: [subjects.complianceAll],
      retention: RetentionPolicy.Limits,
      max_age: nanos(30 * 24 * 3600_000),
    },
    ...perRegion,
    // Every region's results in one stream of its own (no subjects): sourcing survives a cut-off
    // region and resumes where it stopped when the region returns.
    {
      ...shared,
      name: streams.resultsGlobal,
      subjects: [],
      sources: config.regions.map((r) => ({ name: streams.results(r) })),
      retention: RetentionPolicy.Limits,
      max_age: nanos(30 * 24 * 3600_000),
    },
  ];
}

export interface ConsumerSpec {
  stream: string;
  config: Partial<ConsumerConfig> & { durable_name: string };
}

export function consumerSpecs(config: Config, maxAckPending: (durable: string) => number): ConsumerSpec[] {
  const base = (durable: string, filter: string): ConsumerSpec["config"] => ({
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: filter,
    ack_wait: nanos(config.actors.ackWaitMs),
    max_deliver: config.actors.maxDeliver,
    max_ack_pending: maxAckPending(durable),
  });
  return [
    { stream: streams.feeds, config: base(consumers.coordinator, subjects.feedAll) },
    ...config.regions.flatMap((r) => [
      { stream: streams.admit, config: base(consumers.frontier(r), subjects.admit(r)) },
      { stream: streams.jobs(r), config: base(consumers.scanners, subjects.jobs(r)) },
      { stream: streams.results(r), config: base(consumers.resultsWriter, subjects.results(r)) },
    ]),
  ];
}

/** The JetStream API's "no such stream" or "no such consumer", by its error code. */
export function isNotFound(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound)
  );
}

/** Options of {@link ensureTopology}. */
export interface EnsureOptions {
  /**
   * Called for a stream or consumer of another region that could not be set up because that
   * region does not answer (cut off); it was set up when it was last reachable. Without it such
   * an error is thrown like any other.
   */
  onUnreachable?: (what: string, err: unknown) => void;
}

/** Creates what is missing and brings existing streams and consumers to the wanted config. */
export async function ensureTopology(jsm: JetStreamManager, config: Config, opts: EnsureOptions = {}): Promise<void> {
  // A node of one region must start while another region is cut off.
  const tolerate = async (region: string | undefined, what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      if (region === undefined || region === config.region || !opts.onUnreachable) throw err;
      opts.onUnreachable(what, err);
    }
  };
  await ensureBuckets(jsm, config);
  for (const { region, ...spec } of streamSpecs(config)) {
    await tolerate(region, `stream ${spec.name}`, async () => {
      try {
        const current = await jsm.streams.info(spec.name);
        // The server treats any difference in placement, even [] against no tags, as a move.
        const placement = samePlacement(current.config.placement, spec.placement)
          ? current.config.placement
          : spec.placement;
        await jsm.streams.update(spec.name, { ...spec, ...placed(placement) });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await jsm.streams.add(spec);
      }
    });
  }
  const regionOf = new Map(streamSpecs(config).map((s) => [s.name, s.region]));
  const pending = (durable: string) => (durable === consumers.scanners ? 1_000 : 10_000);
  for (const spec of consumerSpecs(config, pending)) {
    await tolerate(regionOf.get(spec.stream), `consumer ${spec.stream}/${spec.config.durable_name}`, async () => {
      try {
        await jsm.consumers.info(spec.stream, spec.config.durable_name);
        await jsm.consumers.update(spec.stream, spec.config.durable_name, spec.config);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await jsm.consumers.add(spec.stream, spec.config);
      }
    });
  }
}

function samePlacement(a: Placement | undefined, b: Placement | undefined): boolean {
  const tags = (p: Placement | undefined) => [...(p?.tags ?? [])].sort().join(",");
  return (a?.cluster ?? "") === (b?.cluster ?? "") && tags(a) === tags(b);
}

/**
 * With a shared placement, the KV buckets (node registry, leader leases) are created there up
 * front, with the options their users open them with; otherwise the first node to open one would
 * put it in its own region, and cutting that region off would stop every region's dispatcher.
 */
async function ensureBuckets(jsm: JetStreamManager, config: Config): Promise<void> {
  const placement = placementFor(config, config.nats.sharedPlacement);
  if (!placement) return;
  const kvm = new Kvm(jsm.jetstream());
  await kvm.create(buckets.nodes, { ttl: config.actors.heartbeatMs * 3, history: 1, placement });
  await kvm.create(buckets.leaders, { ttl: config.frontier.leaderTtlMs, history: 1, placement });
}
