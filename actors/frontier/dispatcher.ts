/**
 * The dispatcher: every tick, lease the region's due domains and publish them as scan jobs,
 * never more than the region may hold in flight. Leasing is an atomic claim per document, so
 * two dispatchers never hand out the same domain; a job that is never answered comes back
 * when its lease runs out.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Service, ServiceState } from "../../cluster/service.ts";
import { publishMessage } from "../../cluster/envelope.ts";
import { errorMessage } from "../../cluster/errors.ts";
import type { Logger } from "../../cluster/log.ts";
import { msgIds, subjects } from "../../protocol/mod.ts";
import type { DomainStore, FrontierPolicy } from "./domain-store.ts";

export class Dispatcher implements Service {
  readonly name: string;
  state: ServiceState = "starting";
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> = Promise.resolve();
  readonly #region: string;
  readonly #store: DomainStore;
  readonly #js: JetStreamClient;
  readonly #policy: FrontierPolicy;
  readonly #log: Logger;

  constructor(region: string, store: DomainStore, js: JetStreamClient, policy: FrontierPolicy, log: Logger) {
    this.#region = region;
    this.#store = store;
    this.#js = js;
    this.#policy = policy;
    this.#log = log.child({ service: "dispatcher", region });
    this.name = `dispatcher-${region}`;
  }

  async start(): Promise<void> {
    this.state = "running";
    const loop = () => {
      if (this.state !== "running") return;
      this.#tick = this.dispatchOnce()
        .then(() => undefined)
        .catch((err: unknown) => this.#log.warn({ err: errorMessage(err) }, "dispatch failed; retrying next tick"))
        .finally(() => {
          if (this.state === "running") this.#timer = setTimeout(loop, this.#policy.dispatchIntervalMs);
        });
    };
    loop();
  }

  /** One round: returns how many jobs were published. */
  async dispatchOnce(now = new Date()): Promise<number> {
    const room = this.#policy.maxJobsInFlight - (await this.#store.countInFlight(this.#region, now));
    const jobs = await this.#store.leaseDue(this.#region, Math.min(room, this.#policy.dispatchBatch), now);
    let published = 0;
    for (const { job, traceparent } of jobs) {
      try {
        await publishMessage(this.#js, {
          subject: subjects.jobs(this.#region),
          schema: "scan-job",
          body: job,
          msgId: msgIds.job(job.jobId),
          parentTraceparent: traceparent,
        });
        published++;
      } catch (err) {
        this.#log.warn({ domain: job.domain, err: errorMessage(err) }, "job not published; lease released");
        await this.#store.releaseLease(job.domain, job.leaseToken).catch(() => undefined);
      }
    }
    if (published > 0) this.#log.debug({ published }, "dispatched");
    return published;
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    clearTimeout(this.#timer);
    await this.#tick;
  }
}
