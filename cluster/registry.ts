/**
 * The node registry: one KV entry per live node, refreshed by heartbeats. The bucket's max age
 * is three heartbeats, so a node that dies disappears by itself; readers also judge staleness
 * from `heartbeatAt`, because servers before 2.11 expire entries without telling watchers.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { Bucket, Kvm, type KV } from "@nats-io/kv";
import { buckets, nodeKey } from "../protocol/mod.ts";
import { Periodic } from "./periodic.ts";
import type { ServiceState } from "./service.ts";

export interface NodeEntry {
  nodeId: string;
  region: string;
  roles: string[];
  host: string;
  pid: number;
  state: ServiceState;
  startedAt: string;
  heartbeatAt: string;
  /** Actor name → messages in flight. */
  inflight: Record<string, number>;
  /** Pages this node renders at once (scanner role), for the dispatcher's backpressure. */
  scannerSlots?: number;
}

export async function openRegistry(js: JetStreamClient, heartbeatMs: number): Promise<KV> {
  return new Kvm(js).create(buckets.nodes, { ttl: heartbeatMs * 3, history: 1 });
}

export class NodeRegistration {
  readonly #kv: KV;
  readonly #entry: () => NodeEntry;
  readonly #beats: Periodic;

  /** `onError` hears of each heartbeat that failed; the next one is tried a beat later. */
  constructor(kv: KV, entry: () => NodeEntry, heartbeatMs: number, onError: (err: unknown) => void = () => undefined) {
    this.#kv = kv;
    this.#entry = entry;
    this.#beats = new Periodic({ intervalMs: heartbeatMs, tick: () => this.beat(), onError });
  }

  /** Registers now (a failure here fails the start), then heartbeats every `heartbeatMs`. */
  async start(): Promise<void> {
    await this.beat();
    await this.#beats.start();
  }

  async beat(): Promise<void> {
    const entry = this.#entry();
    await this.#kv.put(nodeKey(entry.nodeId), JSON.stringify({ ...entry, heartbeatAt: new Date().toISOString() }));
  }

  /** Stops heartbeating (after the beat under way, so it cannot re-register the node) and deletes the entry. */
  async leave(): Promise<void> {
    await this.#beats.stop();
    await this.#kv.delete(nodeKey(this.#entry().nodeId)).catch(() => undefined);
  }
}

/**
 * Live nodes: entries whose last heartbeat is within three beats.
 *
 * Reads without a consumer: `kv.keys()` creates an ordered consumer per call that lingers until
 * the server's inactivity threshold, so a dispatcher listing every tick held hundreds and two of
 * them hit the stream's consumer limit within a minute. The stream's own subject list (one stream
 * info request) names the keys, and each entry is a direct get.
 */
export async function listNodes(kv: KV, heartbeatMs: number, now = Date.now()): Promise<NodeEntry[]> {
  if (!(kv instanceof Bucket)) throw new TypeError("the node registry must be a JetStream KV bucket");
  const info = await kv.jsm.streams.info(kv.stream, { subjects_filter: kv.subjectForKey("node.>") });
  const keys = Object.keys(info.state.subjects ?? {}).map((subject) => kv.decodeKey(subject.slice(kv.prefixLen)));
  const entries = await Promise.all(keys.map((key) => kv.get(key)));
  const out: NodeEntry[] = [];
  for (const e of entries) {
    if (!e || e.operation !== "PUT") continue;
    const entry = e.json<NodeEntry>();
    if (now - Date.parse(entry.heartbeatAt) <= heartbeatMs * 3) out.push(entry);
  }
  return out.sort((a, b) => a.nodeId.localeCompare(b.nodeId));
}
