/**
 * Streams and durable consumers, created or updated at start. Durables are created up front
 * so that a region cut off from JetStream meta quorum can keep consuming.
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
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Config } from "../config/mod.ts";
import { consumers, streams, subjects } from "../protocol/mod.ts";

type StreamSpec = Partial<StreamConfig> & { name: string; subjects: string[] };

export function streamSpecs(config: Config): StreamSpec[] {
  const common = {
    storage: StorageType.File,
    num_replicas: config.nats.replicas,
    duplicate_window: nanos(config.nats.duplicateWindowMs),
  };
  const perRegion = config.regions.flatMap((r): StreamSpec[] => [
    // Work queue: a job leaves the stream when a scanner acks it.
    { ...common, name: streams.jobs(r), subjects: [subjects.jobs(r)], retention: RetentionPolicy.Workqueue },
    {
      ...common,
      name: streams.results(r),
      subjects: [subjects.results(r)],
      retention: RetentionPolicy.Limits,
      max_age: nanos(30 * 24 * 3600_000),
    },
  ]);
  return [
    { ...common, name: streams.feeds, subjects: [subjects.feedAll], retention: RetentionPolicy.Workqueue },
    { ...common, name: streams.admit, subjects: [subjects.admitAll], retention: RetentionPolicy.Workqueue },
    // Dead letters are as durable as the work: kept until replayed or purged by an operator.
    { ...common, name: streams.deadLetters, subjects: [subjects.deadLetterAll], retention: RetentionPolicy.Limits },
    // Compliance verdicts for downstream systems: kept 30 days, read by their own consumers.
    {
      ...common,
      name: streams.compliance,
      subjects: [subjects.complianceAll],
      retention: RetentionPolicy.Limits,
      max_age: nanos(30 * 24 * 3600_000),
    },
    ...perRegion,
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

function isNotFound(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamNotFound || err.code === JetStreamApiCodes.ConsumerNotFound)
  );
}

/** Creates what is missing and brings existing streams and consumers to the wanted config. */
export async function ensureTopology(jsm: JetStreamManager, config: Config): Promise<void> {
  for (const spec of streamSpecs(config)) {
    try {
      await jsm.streams.info(spec.name);
      await jsm.streams.update(spec.name, spec);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.streams.add(spec);
    }
  }
  const pending = (durable: string) => (durable === consumers.scanners ? 1_000 : 10_000);
  for (const spec of consumerSpecs(config, pending)) {
    try {
      await jsm.consumers.info(spec.stream, spec.config.durable_name);
      await jsm.consumers.update(spec.stream, spec.config.durable_name, spec.config);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.consumers.add(spec.stream, spec.config);
    }
  }
}
