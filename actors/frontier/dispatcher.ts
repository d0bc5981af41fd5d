/**
 * The dispatcher: every tick, lease the region's due domains in one batch and publish them as
 * scan jobs. With cluster options (as a node runs it) it dispatches only while it holds the
 * region's leader lease, and only as many jobs as the region's scanners can take: live scanner
 * slots (node registry) times `jobsPerScannerSlot`, minus what `jobs.<region>` already holds
 * (consumer pending + ack-pending), so the stream stays bounded however large the frontier is.
 * Leasing is a conditional claim per domain, so even two dispatchers never hand out the same
 * domain; a job that is never answered comes back when its lease runs out.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import type { Service, ServiceState } from "../../cluster/service.ts";
import { publishMessage } from "../../cluster/envelope.ts";
import { errorMessage } from "../../cluster/errors.ts";
import type { Logger } from "../../cluster/log.ts";
import { instruments } from "../../cluster/metrics.ts";
import { listNodes, openRegistry } from "../../cluster/registry.ts";
import { consumers, msgIds, streams, subjects } from "../../protocol/mod.ts";
import type { DomainStore, FrontierPolicy, LeasedJob } from "./domain-store.ts";
import { Leadership } from "./leadership.ts";

/** What a dispatcher inside a cluster node needs for leadership and backpressure. */
export interface DispatcherCluster {
  jsm: JetStreamManager;
  /** Holder name in the leader lease. */
  nodeId: string;
  /** Node registry heartbeat, to judge which scanners are live. */
  heartbeatMs: number;
}

/** Jobs published at once within a round. */
const PUBLISH_PARALLEL = 64;
/** Tries per job within a round, and the first pause between them (doubling). */
const PUBLISH_ATTEMPTS = 3;
const PUBLISH_RETRY_MS = 250;

export class Dispatcher implements Service {
  readonly name: string;
  state: ServiceState = "starting";
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<unknown> = Promise.resolve();
  #sweepTimer: NodeJS.Timeout | undefined;
  #sweep: Promise<unknown> = Promise.resolve();
  readonly #region: string;
  readonly #store: DomainStore;
  readonly #js: JetStreamClient;
  readonly #policy: FrontierPolicy;
  readonly #log: Logger;
  readonly #cluster: DispatcherCluster | undefined;
  readonly leadership: Leadership | undefined;
  #registry: KV | undefined;

  constructor(
    region: string,
    store: DomainStore,
    js: JetStreamClient,
    policy: FrontierPolicy,
    log: Logger,
    cluster?: DispatcherCluster,
  ) {
    this.#region = region;
    this.#store = store;
    this.#js = js;
    this.#policy = policy;
    this.#log = log.child({ service: "dispatcher", region });
    this.#cluster = cluster;
    this.leadership = cluster
      ? new Leadership(js, "dispatcher", region, cluster.nodeId, policy.leaderTtlMs, log)
      : undefined;
    this.name = `dispatcher-${region}`;
  }

  async start(): Promise<void> {
    if (this.#cluster) {
      this.#registry = await openRegistry(this.#js, this.#cluster.heartbeatMs);
      await this.leadership!.start();
    }
    this.state = "running";
    const loop = () => {
      if (this.state !== "running") return;
      this.#tick = this.dispatchOnce()
        .catch((err: unknown) => this.#log.warn({ err: errorMessage(err) }, "dispatch failed; retrying next tick"))
        .finally(() => {
          if (this.state === "running") this.#timer = setTimeout(loop, this.#policy.dispatchIntervalMs);
        });
    };
    loop();
    // The slow sweep puts back due entries a crash left missing (DueQueue.repair, store/due-queue.ts).
    const sweep = () => {
      if (this.state !== "running") return;
      this.#sweep = (this.leading ? this.#store.repairDueIndex(this.#region) : Promise.resolve(0))
        .then((added) => {
          if (added > 0) this.#log.info({ added }, "due index: missing entries put back");
        })
        .catch((err: unknown) => this.#log.warn({ err: errorMessage(err) }, "due index sweep failed"))
        .finally(() => {
          if (this.state === "running") this.#sweepTimer = setTimeout(sweep, this.#policy.dueSweepMs);
        });
    };
    this.#sweepTimer = setTimeout(sweep, this.#policy.dueSweepMs);
  }

  /** May this dispatcher publish now? */
  get leading(): boolean {
    return this.leadership ? this.leadership.held : true;
  }

  /** Jobs the region can take now. */
  async room(now = new Date()): Promise<number> {
    if (!this.#cluster || !this.#registry) {
      return this.#policy.maxJobsInFlight - (await this.#store.countInFlight(this.#region, now));
    }
    const [jobs, nodes] = await Promise.all([
      this.#cluster.jsm.consumers.info(streams.jobs(this.#region), consumers.scanners),
      listNodes(this.#registry, this.#cluster.heartbeatMs, now.getTime()),
    ]);
    const slots = nodes
      .filter((n) => n.region === this.#region && n.state === "running" && n.roles.includes("scanner"))
      .reduce((sum, n) => sum + (n.scannerSlots ?? 1), 0);
    const queued = jobs.num_pending + jobs.num_ack_pending;
    return Math.min(this.#policy.maxJobsInFlight, slots * this.#policy.jobsPerScannerSlot) - queued;
  }

  /** One round: returns how many jobs were published. */
  async dispatchOnce(now = new Date()): Promise<number> {
    if (!this.leading) return 0;
    const room = Math.min(await this.room(now), this.#policy.dispatchBatch);
    if (room <= 0) return 0;
    const jobs = await this.#store.leaseDue(this.#region, room, now);
    let published = 0;
    for (let i = 0; i < jobs.length; i += PUBLISH_PARALLEL) {
      const chunk = jobs.slice(i, i + PUBLISH_PARALLEL);
      if (!this.leading) {
        // Lost the lead mid-round: hand back what we claimed but did not publish.
        this.#log.warn({ unpublished: jobs.length - i }, "lead lost; leases released");
        await this.#release(jobs.slice(i));
        break;
      }
      const failed = await this.#publish(chunk);
      published += chunk.length - failed.length;
      if (failed.length > 0) {
        // A publish that timed out may still have been stored. Releasing the lease would lease
        // the domain again under a new job id and scan it twice; keeping it means the stored copy
        // (if any) is answered on this lease, and an unstored job comes back when the lease ends.
        this.#log.warn({ failed: failed.length }, "jobs not confirmed by JetStream; leases kept until they run out");
      }
    }
    if (published > 0) {
      instruments().jobsDispatched.add(published, { region: this.#region });
      this.#log.debug({ published }, "dispatched");
    }
    return published;
  }

  /**
   * Publishes jobs, retrying the unconfirmed ones under the same Nats-Msg-Id, so a copy the
   * server stored before the ack was lost is dropped as a duplicate. Returns those never confirmed.
   */
  async #publish(jobs: readonly LeasedJob[]): Promise<LeasedJob[]> {
    let pending = [...jobs];
    for (let attempt = 0; pending.length > 0 && attempt < PUBLISH_ATTEMPTS; attempt++) {
      if (attempt > 0) await delay(PUBLISH_RETRY_MS * 2 ** (attempt - 1));
      const results = await Promise.allSettled(
        pending.map(({ job, traceparent }) =>
          publishMessage(this.#js, {
            subject: subjects.jobs(this.#region),
            schema: "scan-job",
            body: job,
            msgId: msgIds.job(job.jobId),
            parentTraceparent: traceparent,
          }),
        ),
      );
      const rejected = results.find((r) => r.status === "rejected");
      if (rejected) this.#log.debug({ attempt, err: errorMessage(rejected.reason) }, "job publish failed");
      pending = pending.filter((_, k) => results[k]!.status === "rejected");
    }
    return pending;
  }

  async #release(jobs: readonly LeasedJob[]): Promise<void> {
    await Promise.all(
      jobs.map(({ job }) => this.#store.releaseLease(job.domain, job.leaseToken).catch(() => undefined)),
    );
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    clearTimeout(this.#timer);
    clearTimeout(this.#sweepTimer);
    await Promise.all([this.#tick, this.#sweep]);
    await this.leadership?.stop();
  }
}
