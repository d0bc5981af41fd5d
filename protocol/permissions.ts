/**
 * Who may publish and subscribe to what on the bus, built from the same builders as the subjects
 * themselves, so a renamed subject, stream or consumer renames its permission too. Each role
 * gets the subjects it sends, the JetStream API calls its code makes (by stream and consumer),
 * and replies on its inbox; nothing else. `ops/nats-auth.ts` turns this into nats-server users.
 */
import { buckets, consumers, leaderKey, nodeKey, streams, subjects, type Stage } from "./subjects.ts";

/** The roles a node hosts (config `roles`). */
export const NODE_ROLES = ["coordinator", "frontier", "scanner", "results"] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

export type BusRole =
  | { kind: NodeRole; region: string }
  /** The HTTP API: publishes submissions on the feed subjects of `sources`. */
  | { kind: "api"; sources: readonly string[] }
  /** One feed source, publishing `feeds.<source>` only. */
  | { kind: "feed"; source: string }
  /** The CLI, admin work and topology set-up: everything. */
  | { kind: "operator" };

export interface SubjectRules {
  allow: string[];
  deny: string[];
}

export interface Permissions {
  publish: SubjectRules;
  subscribe: SubjectRules;
}

export interface PermissionOptions {
  /** Every region of the cluster (config `regions`). */
  regions: readonly string[];
  /**
   * Node ids whose registry key this user may write. Without them any `node.<id>` key: with
   * user/password auth the server has no per-connection templates, and scaled replicas share
   * one user, so a node cannot be told apart from its siblings.
   */
  nodeIds?: readonly string[] | undefined;
  /**
   * Nodes run `ensureTopology` at start (as they do today): they may then create and update
   * glyphscan's streams, consumers and buckets, but never delete or purge them. Without it only
   * the operator sets topology up.
   */
  topologyAtStart: boolean;
  /** Prefix of reply subjects (the client's `inboxPrefix`); nats.js uses `_INBOX`. */
  inboxPrefix?: string | undefined;
}

/** The dispatcher's lease role (actors/frontier/dispatcher.ts). */
export const DISPATCHER_LEASE = "dispatcher";

/** JetStream API and KV subjects, per stream, consumer, bucket and key. */
export const jsApi = {
  streamInfo: (stream: string) => `$JS.API.STREAM.INFO.${stream}`,
  streamCreate: (stream: string) => `$JS.API.STREAM.CREATE.${stream}`,
  streamUpdate: (stream: string) => `$JS.API.STREAM.UPDATE.${stream}`,
  msgGet: (stream: string) => `$JS.API.STREAM.MSG.GET.${stream}`,
  msgDelete: (stream: string) => `$JS.API.STREAM.MSG.DELETE.${stream}`,
  /** Direct get of the last message on `subject` (KV reads). */
  directGet: (stream: string, subject: string) => `$JS.API.DIRECT.GET.${stream}.${subject}`,
  consumerInfo: (stream: string, consumer: string) => `$JS.API.CONSUMER.INFO.${stream}.${consumer}`,
  /** Create or update a named consumer; the server appends the filter subject after its name. */
  consumerCreate: (stream: string, consumer: string) => [
    `$JS.API.CONSUMER.CREATE.${stream}.${consumer}`,
    `$JS.API.CONSUMER.CREATE.${stream}.${consumer}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.${consumer}`,
  ],
  next: (stream: string, consumer: string) => `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`,
  ack: (stream: string, consumer: string) => `$JS.ACK.${stream}.${consumer}.>`,
  /** Account info: `new Kvm(js).create` asks it before opening a bucket. */
  accountInfo: "$JS.API.INFO",
  kvStream: (bucket: string) => `KV_${bucket}`,
  kvKey: (bucket: string, key: string) => `$KV.${bucket}.${key}`,
} as const;

/** What no role but the operator may do, whatever its allow list grows into. */
const DESTRUCTIVE = [
  "$JS.API.STREAM.DELETE.>",
  "$JS.API.STREAM.PURGE.>",
  "$JS.API.CONSUMER.DELETE.>",
  "$JS.API.ACCOUNT.PURGE.>",
];

interface Grant {
  pub: string[];
  sub: string[];
}

const grant = (pub: string[] = [], sub: string[] = []): Grant => ({ pub, sub });

function merge(...grants: Grant[]): Grant {
  return grant(
    grants.flatMap((g) => g.pub),
    grants.flatMap((g) => g.sub),
  );
}

/** A durable an actor pulls: info, pull, ack, and the max-deliveries watcher of cluster/dead-letters.ts. */
function pulls(stream: string, consumer: string, stage: Stage): Grant {
  return grant(
    [
      jsApi.consumerInfo(stream, consumer),
      jsApi.next(stream, consumer),
      jsApi.ack(stream, consumer),
      jsApi.msgGet(stream),
      jsApi.msgDelete(stream),
      subjects.deadLetter(stage),
    ],
    [subjects.maxDeliveriesAdvisory(stream, consumer)],
  );
}

/** Reading the node registry: stream info lists the keys, each is a direct get. */
function readsRegistry(): Grant {
  const stream = jsApi.kvStream(buckets.nodes);
  return grant([
    jsApi.accountInfo,
    jsApi.streamInfo(stream),
    jsApi.directGet(stream, jsApi.kvKey(buckets.nodes, nodeKey("*"))),
  ]);
}

/** Writing this node's own registry entry (heartbeats and leaving). */
function registers(opts: PermissionOptions): Grant {
  const ids = opts.nodeIds && opts.nodeIds.length > 0 ? opts.nodeIds : ["*"];
  return grant([
    jsApi.accountInfo,
    jsApi.streamInfo(jsApi.kvStream(buckets.nodes)),
    ...ids.map((id) => jsApi.kvKey(buckets.nodes, nodeKey(id))),
  ]);
}

/** Every stream and durable that cluster/topology.ts `ensureTopology` sets up. */
export function topologyNames(regions: readonly string[]): {
  streams: string[];
  consumers: Array<{ stream: string; consumer: string }>;
} {
  return {
    streams: [
      streams.feeds,
      streams.admit,
      streams.deadLetters,
      streams.compliance,
      ...regions.flatMap((r) => [streams.jobs(r), streams.results(r)]),
      streams.resultsGlobal,
      jsApi.kvStream(buckets.nodes),
      jsApi.kvStream(buckets.leaders),
    ],
    consumers: [
      { stream: streams.feeds, consumer: consumers.coordinator },
      ...regions.flatMap((r) => [
        { stream: streams.admit, consumer: consumers.frontier(r) },
        { stream: streams.jobs(r), consumer: consumers.scanners },
        { stream: streams.results(r), consumer: consumers.resultsWriter },
      ]),
    ],
  };
}

/** Create, update and inspect glyphscan's own topology by name: no delete, no purge, nothing else's. */
function setsUpTopology(regions: readonly string[]): Grant {
  const names = topologyNames(regions);
  return grant([
    ...names.streams.flatMap((s) => [jsApi.streamInfo(s), jsApi.streamCreate(s), jsApi.streamUpdate(s)]),
    ...names.consumers.flatMap(({ stream, consumer }) => [
      jsApi.consumerInfo(stream, consumer),
      ...jsApi.consumerCreate(stream, consumer),
    ]),
  ]);
}

function nodeGrant(role: NodeRole, region: string, opts: PermissionOptions): Grant {
  switch (role) {
    case "coordinator":
      return merge(
        pulls(streams.feeds, consumers.coordinator, "coordinator"),
        grant(opts.regions.map((r) => subjects.admit(r))),
        // Region health (coordinator.fallbackRegions): every region's job stream and scanners.
        grant(opts.regions.map((r) => jsApi.streamInfo(streams.jobs(r)))),
        readsRegistry(),
      );
    case "frontier": {
      const leases = jsApi.kvStream(buckets.leaders);
      const lease = jsApi.kvKey(buckets.leaders, leaderKey(DISPATCHER_LEASE, region));
      return merge(
        pulls(streams.admit, consumers.frontier(region), "frontier"),
        grant([
          subjects.jobs(region),
          jsApi.streamInfo(leases),
          lease,
          jsApi.directGet(leases, lease),
          // Backpressure and metrics: the region's job consumer, the dead-letter count.
          jsApi.consumerInfo(streams.jobs(region), consumers.scanners),
          jsApi.streamInfo(streams.jobs(region)),
          jsApi.streamInfo(streams.deadLetters),
        ]),
        readsRegistry(),
      );
    }
    case "scanner":
      return merge(pulls(streams.jobs(region), consumers.scanners, "scanner"), grant([subjects.results(region)]));
    case "results":
      return merge(
        pulls(streams.results(region), consumers.resultsWriter, "results"),
        // A domain parked after its last attempt leaves a frontier dead letter (the domain store's).
        grant([subjects.compliance(region), subjects.deadLetter("frontier")]),
      );
  }
}

function roleGrant(role: BusRole, opts: PermissionOptions): Grant {
  const inbox = `${opts.inboxPrefix ?? "_INBOX"}.>`;
  const replies = grant([], [inbox]);
  switch (role.kind) {
    case "operator":
      return grant([">"], [">"]);
    case "feed":
      return merge(replies, grant([subjects.feed(role.source)]));
    case "api":
      return merge(replies, grant(role.sources.map((s) => subjects.feed(s))));
    default:
      return merge(
        replies,
        nodeGrant(role.kind, role.region, opts),
        registers(opts),
        opts.topologyAtStart ? setsUpTopology(opts.regions) : grant(),
      );
  }
}

const unique = (xs: string[]) => [...new Set(xs)].sort();

/** The permissions of a user holding all of `roles` (a node with several roles gets their union). */
export function permissionsFor(roles: readonly BusRole[], opts: PermissionOptions): Permissions {
  if (roles.length === 0) throw new Error("a user needs at least one role");
  for (const r of opts.regions) subjects.jobs(r); // validates each region
  const all = merge(...roles.map((r) => roleGrant(r, opts)));
  const operator = roles.some((r) => r.kind === "operator");
  return {
    publish: { allow: unique(all.pub), deny: operator ? [] : [...DESTRUCTIVE] },
    subscribe: { allow: unique(all.sub), deny: [] },
  };
}
