/**
 * Region health, as the coordinator sees it: a region is down while its job stream does not answer
 * (its NATS cluster is cut off or gone) or no scanner of the region heartbeats in the node registry.
 * A region counts as down for routing only once it has been down for the whole grace period, so a
 * short blip moves nothing; the first healthy probe brings it back at once.
 */
import { jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { streams } from "../protocol/mod.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./log.ts";
import { Periodic } from "./periodic.ts";
import { listNodes, openRegistry } from "./registry.ts";
import type { Service, ServiceState } from "./service.ts";

/** Why a region is unhealthy now, or null when it is healthy. */
export type RegionCheck = (region: string) => Promise<string | null>;

export interface RegionStatus {
  region: string;
  /** Since when (ms since epoch) every probe failed; null while healthy. */
  downSince: number | null;
  /** The last failure reason, while down. */
  reason: string | null;
  /** Down for at least the grace period: new domains go to the fallback. */
  fallback: boolean;
}

export interface RegionHealthOptions {
  regions: readonly string[];
  graceMs: number;
  probeMs: number;
  check: RegionCheck;
  log: Logger;
}

export class RegionHealth implements Service {
  readonly name = "region-health";
  state: ServiceState = "starting";
  readonly #opts: RegionHealthOptions;
  readonly #down = new Map<string, { since: number; reason: string; announced: boolean }>();
  readonly #loop: Periodic;

  constructor(opts: RegionHealthOptions) {
    this.#opts = opts;
    // The first probe runs before start() returns, so routing knows the regions from the first message.
    this.#loop = new Periodic({
      intervalMs: opts.probeMs,
      first: "now",
      tick: () => this.probe(),
      onError: (err) => opts.log.warn({ err: errorMessage(err) }, "region probe failed"),
    });
  }

  /** Records one probe result; returns the region's status after it. */
  observe(region: string, problem: string | null, now = Date.now()): RegionStatus {
    const log = this.#opts.log;
    const prev = this.#down.get(region);
    if (problem === null) {
      if (prev) {
        this.#down.delete(region);
        log.info({ region, downMs: now - prev.since }, "region healthy again; routing returns to it");
      }
    } else if (!prev) {
      this.#down.set(region, { since: now, reason: problem, announced: false });
      log.warn({ region, reason: problem, graceMs: this.#opts.graceMs }, "region unhealthy");
    } else {
      prev.reason = problem;
    }
    const status = this.status(region, now);
    const entry = this.#down.get(region);
    if (status.fallback && entry && !entry.announced) {
      entry.announced = true;
      log.warn({ region, reason: entry.reason }, "region down past its grace period; new domains go to its fallback");
    }
    return status;
  }

  status(region: string, now = Date.now()): RegionStatus {
    const d = this.#down.get(region);
    return {
      region,
      downSince: d?.since ?? null,
      reason: d?.reason ?? null,
      fallback: d !== undefined && now - d.since >= this.#opts.graceMs,
    };
  }

  /** True when new domains of `region` should go elsewhere. */
  isDown(region: string, now = Date.now()): boolean {
    return this.status(region, now).fallback;
  }

  /** Probes every region once, in parallel. */
  async probe(): Promise<RegionStatus[]> {
    return Promise.all(
      this.#opts.regions.map(async (region) => {
        let problem: string | null;
        try {
          problem = await this.#opts.check(region);
        } catch (err) {
          problem = `probe failed: ${errorMessage(err)}`;
        }
        return this.observe(region, problem);
      }),
    );
  }

  async start(): Promise<void> {
    this.state = "running";
    await this.#loop.start();
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    await this.#loop.stop();
  }
}

/**
 * The check a node runs: the region's job stream must answer with a leader within `timeoutMs`,
 * and at least one scanner of the region must be live in the node registry.
 */
export function natsRegionCheck(
  nats: { nc: NatsConnection; js: JetStreamClient },
  heartbeatMs: number,
  timeoutMs: number,
): RegionCheck {
  let jsm: Promise<JetStreamManager> | undefined;
  let registry: Promise<KV> | undefined;
  return async (region) => {
    jsm ??= jetstreamManager(nats.nc, { checkAPI: false, timeout: timeoutMs });
    try {
      const info = await (await jsm).streams.info(streams.jobs(region));
      if (info.cluster && !info.cluster.leader) return `job stream ${streams.jobs(region)} has no leader`;
    } catch (err) {
      return `job stream ${streams.jobs(region)} unreachable: ${errorMessage(err)}`;
    }
    registry ??= openRegistry(nats.js, heartbeatMs).catch((err: unknown) => {
      registry = undefined;
      throw err;
    });
    const nodes = await listNodes(await registry, heartbeatMs);
    const live = nodes.some((n) => n.region === region && n.state === "running" && n.roles.includes("scanner"));
    return live ? null : "no live scanner in the node registry";
  };
}
