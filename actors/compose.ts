/**
 * Assembles a node from its config: one wiring function per role (actors/wiring/) says what the
 * role starts; whatever they open goes on one resource stack, closed in reverse order of opening
 * when the node stops, or at once when the start fails.
 */
import {
  ClusterNode,
  MaxDeliveriesWatcher,
  connectNats,
  ensureTopology,
  errorMessage,
  type Logger,
  type WatchedConsumer,
} from "../cluster/mod.ts";
import { ResourceStack } from "../cluster/resource-stack.ts";
import type { Config } from "../config/mod.ts";
import { roleContext, type RoleContext, type RoleParts } from "./wiring/context.ts";
import { coordinatorRole } from "./wiring/coordinator.ts";
import { frontierRole } from "./wiring/frontier.ts";
import { resultsRole } from "./wiring/results.ts";
import { scannerRole } from "./wiring/scanner.ts";

/** Each role's wiring, in the order they are started. */
const ROLE_WIRING: ReadonlyArray<[role: Config["roles"][number], wire: (ctx: RoleContext) => Promise<RoleParts>]> = [
  ["coordinator", coordinatorRole],
  ["frontier", frontierRole],
  ["results", resultsRole],
  ["scanner", scannerRole],
];

/** Most time one resource may take to close when the node stops. */
const CLOSE_DEADLINE_MS = 10_000;

export async function startNode(config: Config, log: Logger): Promise<ClusterNode> {
  const stack = new ResourceStack({
    closeDeadlineMs: CLOSE_DEADLINE_MS,
    onCloseError: ({ name, error }) => log.warn({ resource: name, err: errorMessage(error) }, "closing failed"),
  });
  try {
    // Closed last: a node that started has drained it already (ClusterNode), then this is a no-op.
    const nats = stack.use("nats", await connectNats(config, `glyphscan-${config.nodeId}`), async (n) => {
      if (!n.nc.isClosed()) await n.nc.close();
    });
    await ensureTopology(nats.jsm, config, {
      // Another region cut off must not keep this node from starting; its streams were set up before.
      onUnreachable: (what, err) => log.warn({ what, err: errorMessage(err) }, "region unreachable; left as it was"),
    });
    const ctx = roleContext(config, log, nats, stack);
    const parts: RoleParts = { actors: [], services: [] };
    for (const [role, wire] of ROLE_WIRING) {
      if (!config.roles.includes(role)) continue;
      const { actors, services } = await wire(ctx);
      parts.actors.push(...actors);
      parts.services.push(...services);
    }
    const watched: WatchedConsumer[] = parts.actors.map((a) => ({
      stream: a.stream,
      consumer: a.consumer,
      stage: a.stage,
    }));
    parts.services.push(new MaxDeliveriesWatcher(nats.nc, nats.js, nats.jsm, watched, log));

    const closers = [async () => void (await stack.close())];
    const node = new ClusterNode({ config, nats, log, ...parts, closers });
    await node.start();
    return node;
  } catch (err) {
    await stack.close();
    throw err;
  }
}
