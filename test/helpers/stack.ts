/**
 * A private stack for one test file: NATS, Redis and a MongoDB-wire server on free ports, and
 * configs pointing at them with names unique to each test, so tests never share state.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, type Config } from "../../config/mod.ts";
import { startMongo, startNats, startRedis, stopAll, type ManagedServer } from "../harness/servers.ts";

export interface TestStack {
  nats: ManagedServer;
  redis: ManagedServer;
  mongo: ManagedServer;
  /** A config for this stack; every call gets its own database, Bloom filter and node id. */
  config(overrides?: Record<string, unknown>): Config;
  stop(): Promise<void>;
}

export const uniqueName = (prefix: string) => `${prefix}_${randomBytes(4).toString("hex")}`;

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] =
      typeof v === "object" &&
      v !== null &&
      !Array.isArray(v) &&
      typeof prev === "object" &&
      prev !== null &&
      !Array.isArray(prev)
        ? merge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** Fast timings so redelivery and leases show within a test's patience. */
export function testConfig(
  urls: { nats: string; redis: string; mongo: string },
  overrides: Record<string, unknown> = {},
): Config {
  const base = {
    nodeId: uniqueName("node"),
    logLevel: process.env["GLYPHSCAN_TEST_LOG_LEVEL"] ?? "silent",
    nats: { servers: [urls.nats] },
    redis: { url: urls.redis },
    mongo: { url: urls.mongo, database: uniqueName("test") },
    actors: { ackWaitMs: 2_000, heartbeatMs: 500, drainTimeoutMs: 10_000, backoffMs: [100, 200, 400] },
    coordinator: { allowHosts: ["*.test"], seenFilterName: uniqueName("seen").toLowerCase() },
    frontier: { dispatchIntervalMs: 100, retryBaseMs: 500 },
    scanner: { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" }, navigationTimeoutMs: 15_000 },
  };
  return loadConfig({ env: {}, overrides: merge(base, overrides) });
}

export async function startStack(): Promise<TestStack> {
  const [nats, redis, mongo] = await Promise.all([startNats(), startRedis(), startMongo()]);
  return {
    nats,
    redis,
    mongo,
    config: (overrides = {}) => testConfig({ nats: nats.url, redis: redis.url, mongo: mongo.url }, overrides),
    stop: stopAll,
  };
}

/** Polls `check` until it returns a value other than undefined; the error names what was awaited. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? ` (last error: ${last.message})` : ""}`,
  );
}

/** Runs `glyphscan <args>` as its own process with `config` written to a file, like an operator would. */
export async function spawnGlyphscan(config: Config, args: string[]): Promise<ChildProcess> {
  const dir = await mkdtemp(join(tmpdir(), "glyphscan-node-"));
  const file = join(dir, "config.json");
  await writeFile(file, JSON.stringify(config));
  return spawn(process.execPath, ["bin/glyphscan.ts", "--config", file, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
}
