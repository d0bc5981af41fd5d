/** `glyphscan status`: streams, consumer lag and live nodes. */
import type { JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { listNodes, type NodeEntry } from "../../cluster/mod.ts";

export interface StreamStatus {
  stream: string;
  messages: number;
  consumers: Array<{ name: string; pending: number; ackPending: number; redelivered: number }>;
}

export async function clusterStatus(
  jsm: JetStreamManager,
  registry: KV,
  heartbeatMs: number,
): Promise<{ streams: StreamStatus[]; nodes: NodeEntry[] }> {
  const streams: StreamStatus[] = [];
  for await (const s of jsm.streams.list()) {
    if (s.config.name.startsWith("KV_")) continue;
    const consumers: StreamStatus["consumers"] = [];
    for await (const c of jsm.consumers.list(s.config.name)) {
      consumers.push({
        name: c.name,
        pending: c.num_pending,
        ackPending: c.num_ack_pending,
        redelivered: c.num_redelivered,
      });
    }
    streams.push({ stream: s.config.name, messages: s.state.messages, consumers });
  }
  streams.sort((a, b) => a.stream.localeCompare(b.stream));
  return { streams, nodes: await listNodes(registry, heartbeatMs) };
}

export function formatStatus(s: Awaited<ReturnType<typeof clusterStatus>>): string {
  const lines = ["streams:"];
  for (const st of s.streams) {
    lines.push(`  ${st.stream.padEnd(16)} ${String(st.messages).padStart(8)} msgs`);
    for (const c of st.consumers) {
      lines.push(
        `    ${c.name.padEnd(20)} pending ${c.pending}, in flight ${c.ackPending}, redelivered ${c.redelivered}`,
      );
    }
  }
  lines.push(`nodes (${s.nodes.length}):`);
  for (const n of s.nodes) {
    const busy = Object.entries(n.inflight)
      .map(([a, k]) => `${a}=${k}`)
      .join(" ");
    lines.push(
      `  ${n.nodeId.padEnd(24)} ${n.region.padEnd(8)} ${n.state.padEnd(9)} ${n.roles.join(",")}  in flight: ${busy}  beat ${n.heartbeatAt}`,
    );
  }
  return lines.join("\n");
}
