/**
 * Connecting to NATS and checking that the server can do what glyphscan needs.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { Config } from "../config/mod.ts";
import { FatalError } from "./errors.ts";

/**
 * Oldest nats-server glyphscan supports. 2.10 brings `AckTerm` that removes a message from a
 * work-queue stream and stream metadata; older servers keep terminated messages forever.
 */
export const MIN_NATS_SERVER = "2.10.0";

export interface NatsHandles {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

function versionAtLeast(version: string, min: string): boolean {
  const a = version.split(/[.-]/).map((p) => Number.parseInt(p, 10));
  const b = min.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

export async function connectNats(config: Config, name: string): Promise<NatsHandles> {
  const nc = await connect({
    servers: [...config.nats.servers],
    name,
    ...(config.nats.user ? { user: config.nats.user, pass: config.nats.pass ?? "" } : {}),
    ...(config.nats.token ? { token: config.nats.token } : {}),
    // A node outlives server restarts: keep reconnecting rather than dying.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
  });
  const version = nc.info?.version ?? "0.0.0";
  if (!versionAtLeast(version, MIN_NATS_SERVER)) {
    await nc.close();
    throw new FatalError(`nats-server ${version} is too old: glyphscan needs ${MIN_NATS_SERVER} or newer`);
  }
  // checkAPI:false so a node can start while its region has lost JetStream meta quorum.
  const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 10_000 });
  const js = jetstream(nc, { timeout: 10_000 });
  return { nc, js, jsm };
}
