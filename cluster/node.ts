/**
 * A node: one process hosting the actors and services its roles need. It registers in the
 * node registry, and on SIGTERM drains in ordered phases: leave the registry, stop pulling and
 * finish in-flight work, flush NATS, close stores.
 */
import { hostname } from "node:os";
import type { Config } from "../config/mod.ts";
import { ActorRunner, type SomeActor } from "./actor.ts";
import { errorMessage } from "./errors.ts";
import type { NatsHandles } from "./nats.ts";
import { NodeRegistration, openRegistry } from "./registry.ts";
import type { Service, ServiceState } from "./service.ts";
import type { Logger } from "./log.ts";
import type { SchemaName } from "../protocol/mod.ts";

export interface NodeParts {
  config: Config;
  nats: NatsHandles;
  log: Logger;
  actors: SomeActor[];
  /** Started after the actors, stopped before them (e.g. the dispatcher loop). */
  services?: Service[];
  /** Run last on stop, in order (e.g. close the browser, Redis, MongoDB). */
  closers?: Array<() => Promise<void>>;
}

export class ClusterNode {
  state: ServiceState = "starting";
  readonly runners: ActorRunner<SchemaName>[];
  readonly #parts: NodeParts;
  #registration: NodeRegistration | null = null;
  #stopping: Promise<void> | null = null;
  readonly #startedAt = new Date().toISOString();
  #fatal: unknown = null;

  constructor(parts: NodeParts) {
    this.#parts = parts;
    this.runners = parts.actors.map(
      (def) =>
        new ActorRunner(def, {
          js: parts.nats.js,
          config: parts.config,
          log: parts.log,
          onFatal: (err) => {
            this.#fatal = err;
            parts.log.fatal({ err: errorMessage(err) }, "fatal error; stopping node");
            void this.stop();
          },
        }),
    );
  }

  get failure(): unknown {
    return this.#fatal;
  }

  async start(): Promise<void> {
    const { config, nats } = this.#parts;
    const kv = await openRegistry(nats.js, config.actors.heartbeatMs);
    for (const r of this.runners) await r.start();
    for (const s of this.#parts.services ?? []) await s.start();
    this.#registration = new NodeRegistration(
      kv,
      () => ({
        nodeId: config.nodeId!,
        region: config.region,
        roles: [...config.roles],
        host: hostname(),
        pid: process.pid,
        state: this.state,
        startedAt: this.#startedAt,
        heartbeatAt: new Date().toISOString(),
        inflight: Object.fromEntries(this.runners.map((r) => [r.name, r.inflight])),
        scannerSlots: config.roles.includes("scanner") ? config.scanner.concurrency : 0,
      }),
      config.actors.heartbeatMs,
      (err) => this.#parts.log.warn({ err: errorMessage(err) }, "heartbeat failed; next beat retries"),
    );
    this.state = "running";
    await this.#registration.start();
    this.#parts.log.info({ nodeId: config.nodeId, region: config.region, roles: config.roles }, "node running");
  }

  /** Drains and stops; safe to call more than once. */
  stop(): Promise<void> {
    this.#stopping ??= this.#drain();
    return this.#stopping;
  }

  async #drain(): Promise<void> {
    const { log, nats } = this.#parts;
    this.state = "draining";
    const phase = async (name: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        log.warn({ phase: name, err: errorMessage(err) }, "shutdown phase failed");
      }
    };
    await phase("leave registry", async () => this.#registration?.leave());
    await phase("stop services", () => Promise.all((this.#parts.services ?? []).map((s) => s.stop())));
    await phase("drain actors", () => Promise.all(this.runners.map((r) => r.stop())));
    await phase("flush nats", () => nats.nc.drain());
    for (const close of this.#parts.closers ?? []) await phase("close store", close);
    this.state = this.#fatal ? "failed" : "stopped";
    log.info({ state: this.state }, "node stopped");
  }

  /** Drain on SIGTERM/SIGINT, then exit 0 (1 after a fatal error). */
  handleSignals(exit: (code: number) => void = (code) => process.exit(code)): void {
    const onSignal = (signal: string) => {
      this.#parts.log.info({ signal }, "draining");
      void this.stop().then(() => exit(this.#fatal ? 1 : 0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
}
