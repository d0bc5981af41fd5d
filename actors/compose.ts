/**
 * Assembles a node from its config: which actors and services its roles need, and the stores
 * they use. Whoever opens a store here also registers its closing, in reverse order of need.
 */
import { Redis } from "ioredis";
import {
  ClusterNode,
  MaxDeliveriesWatcher,
  publishDeadLetter,
  connectNats,
  ensureTopology,
  errorMessage,
  someActor,
  type SomeActor,
  type Logger,
  type Service,
  type WatchedConsumer,
} from "../cluster/mod.ts";
import { observeDeadLetters, observeJobsPending } from "../cluster/metrics.ts";
import { RegionHealth, natsRegionCheck } from "../cluster/region-health.ts";
import type { Config } from "../config/mod.ts";
import { coordinatorActor, knownInCollection, type KnownDomains } from "./coordinator/coordinator-actor.ts";
import { SeenFilter } from "./coordinator/seen-filter.ts";
import { Dispatcher } from "./frontier/dispatcher.ts";
import { DomainStore } from "./frontier/domain-store.ts";
import { frontierActor } from "./frontier/frontier-actor.ts";
import { resultsActor } from "./results/results-actor.ts";
import { lazyCatalogue } from "./licensing/open-licence.ts";
import { LicenseRegistry } from "./licensing/registry.ts";
import { LicensingClient } from "./licensing/licensing-client.ts";
import { PendingRecheck } from "./licensing/pending-recheck.ts";
import type { FontUse } from "./licensing/verdict.ts";
import { BrowserPool } from "./scanner/browser-pool.ts";
import { FontParsePool, installFontParsePool } from "./scanner/font-parse-pool.ts";
import { hostResolverRules, scannerActor } from "./scanner/scanner-actor.ts";
import { openDatabase } from "./store/database.ts";

export async function startNode(config: Config, log: Logger): Promise<ClusterNode> {
  const nats = await connectNats(config, `glyphscan-${config.nodeId}`);
  const closers: Array<() => Promise<void>> = [];
  try {
    await ensureTopology(nats.jsm, config, {
      // Another region cut off must not keep this node from starting; its streams were set up before.
      onUnreachable: (what, err) => log.warn({ what, err: errorMessage(err) }, "region unreachable; left as it was"),
    });
    const roles = new Set(config.roles);
    const actors: SomeActor[] = [];
    const services: Service[] = [];

    if (roles.has("coordinator")) {
      // Fail fast while Redis is away: the message is retried later instead of hanging.
      const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 2, lazyConnect: true });
      // Without a listener ioredis prints every reconnect failure; log it once per outage instead.
      let redisDown = false;
      redis.on("error", (err: Error) => {
        if (!redisDown) log.warn({ err: err.message }, "redis unavailable; feed messages will be retried");
        redisDown = true;
      });
      redis.on("ready", () => {
        redisDown = false;
      });
      await redis.connect();
      closers.unshift(async () => void (await redis.quit().catch(() => redis.disconnect())));
      const seen = new SeenFilter(redis, {
        name: config.coordinator.seenFilterName,
        windowMs: config.coordinator.seenWindowMs,
        slices: config.coordinator.seenSlices,
        expectedPerWindow: config.coordinator.expectedDomainsPerWindow,
        falsePositiveRate: config.coordinator.falsePositiveRate,
      });
      // With fallbacks configured, new domains of a region down past its grace period go to its fallback.
      let health: RegionHealth | undefined;
      if (Object.keys(config.coordinator.fallbackRegions).length > 0) {
        health = new RegionHealth({
          regions: config.regions,
          graceMs: config.coordinator.regionGraceMs,
          probeMs: config.coordinator.regionProbeMs,
          check: natsRegionCheck(
            nats,
            config.actors.heartbeatMs,
            Math.min(Math.max(config.coordinator.regionProbeMs, 2_000), 5_000),
          ),
          log: log.child({ service: "region-health" }),
        });
        services.push(health);
      }
      // Sources where every domain counts confirm a Bloom "maybe seen" against MongoDB by key.
      let known: KnownDomains | undefined;
      if (config.coordinator.confirmSources.length > 0) {
        const db = await openDatabase(config);
        closers.push(() => db.close());
        known = knownInCollection(db.collections.domains);
      }
      actors.push(someActor(coordinatorActor(config, seen, health, known)));
    }
    if (roles.has("frontier") || roles.has("results")) {
      const db = await openDatabase(config);
      closers.push(() => db.close());
      // A domain parked after its last attempt leaves a dead letter with its history.
      const store = new DomainStore(db.collections, config.frontier, {
        deadLetter: (dl) => publishDeadLetter(nats.js, dl),
      });
      if (roles.has("frontier")) {
        actors.push(someActor(frontierActor(config.region, store)));
        services.push(
          new Dispatcher(config.region, store, nats.js, config.frontier, log, {
            jsm: nats.jsm,
            nodeId: config.nodeId!,
            heartbeatMs: config.actors.heartbeatMs,
          }),
        );
        const unobserve = [observeJobsPending(nats.jsm, config.region), observeDeadLetters(nats.jsm)];
        closers.unshift(async () => unobserve.forEach((stop) => stop()));
      }
      if (roles.has("results")) {
        const { serviceUrl, pendingRecheckIntervalMs, pendingRecheckBatch, ...service } = config.licensing;
        const client = serviceUrl ? new LicensingClient({ url: serviceUrl, ...service }) : null;
        const licensing = {
          registry: new LicenseRegistry(db.collections),
          catalogue: lazyCatalogue(),
          ...(client ? { external: (domain: string, uses: FontUse[]) => client.check(domain, uses) } : {}),
        };
        actors.push(
          someActor(
            resultsActor(config.region, db.collections, store, licensing, { leaseMs: config.frontier.leaseMs }),
          ),
        );
        // Pending verdicts wait for the licensing service; decided when it answers again, not at the next scan.
        if (client)
          services.push(
            new PendingRecheck(config.region, db.collections, licensing, nats.js, log, {
              intervalMs: pendingRecheckIntervalMs,
              batch: pendingRecheckBatch,
            }),
          );
      }
    }
    if (roles.has("scanner")) {
      const pool = await BrowserPool.launch({
        executablePath: config.scanner.chromiumPath,
        concurrency: config.scanner.concurrency,
        pageTimeoutMs: config.scanner.navigationTimeoutMs,
        hostResolverRules: hostResolverRules(config.scanner.hostMap),
        egress: {
          policy: { allowHosts: config.scanner.allowHosts, hostMap: config.scanner.hostMap },
          maxResponseBytes: config.scanner.maxResponseBytes,
        },
      });
      closers.unshift(() => pool.close());
      // Font files are parsed in worker threads with time and heap limits, never on this event loop.
      const fontParsing = new FontParsePool(config.scanner.fontParse);
      const uninstallFontParsing = installFontParsePool(fontParsing);
      closers.unshift(async () => {
        uninstallFontParsing();
        await fontParsing.close();
      });
      actors.push(someActor(scannerActor(config, pool)));
    }
    const watched: WatchedConsumer[] = actors.map((a) => ({ stream: a.stream, consumer: a.consumer, stage: a.stage }));
    services.push(new MaxDeliveriesWatcher(nats.nc, nats.js, nats.jsm, watched, log));

    const node = new ClusterNode({ config, nats, log, actors, services, closers });
    await node.start();
    return node;
  } catch (err) {
    for (const close of closers) await close().catch(() => undefined);
    await nats.nc.close();
    throw err;
  }
}
