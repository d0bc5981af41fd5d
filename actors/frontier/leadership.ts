/**
 * Leadership of one role in one region (the dispatcher), as a lease in the NATS KV bucket
 * `glyphscan_leaders`. The bucket's max age is the lease TTL, so a leader that stops renewing
 * loses its key on the server by itself. Taking the lease is `create` (only when the key is
 * absent); renewing is `update` at the revision we wrote last (compare-and-set), every third of
 * the TTL. A renewal that meets another revision means someone else leads: we stop at once.
 *
 * `held` is judged on our own clock from when the last successful write was sent: the server
 * cannot expire that entry earlier, so no standby can lead before `held` turns false here.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { errorMessage } from "../../cluster/errors.ts";
import type { Logger } from "../../cluster/log.ts";
import type { Service, ServiceState } from "../../cluster/service.ts";
import { buckets, leaderKey } from "../../protocol/mod.ts";

export interface LeaderValue {
  holder: string;
  since: string;
  renewedAt: string;
}

export class Leadership implements Service {
  readonly name: string;
  state: ServiceState = "starting";
  readonly #js: JetStreamClient;
  readonly #key: string;
  readonly #holder: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  #kv: KV | undefined;
  #revision: number | null = null;
  #validUntil = 0;
  #since = "";
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> = Promise.resolve();

  constructor(js: JetStreamClient, role: string, region: string, holder: string, ttlMs: number, log: Logger) {
    this.#js = js;
    this.#key = leaderKey(role, region);
    this.#holder = holder;
    this.#ttlMs = ttlMs;
    this.#log = log.child({ service: "leadership", key: this.#key });
    this.name = `leadership-${this.#key}`;
  }

  /** True while this process may act as leader; checked before every publish. */
  get held(): boolean {
    // A tenth of the TTL is kept back for the publish that starts just before the end.
    return this.#revision !== null && performance.now() < this.#validUntil - this.#ttlMs / 10;
  }

  async start(): Promise<void> {
    this.#kv = await openLeaders(this.#js, this.#ttlMs);
    this.state = "running";
    await this.renew();
    this.#timer = setInterval(
      () => {
        this.#round = this.#round.then(() => this.renew());
      },
      Math.max(100, Math.floor(this.#ttlMs / 3)),
    );
  }

  /** One round: renew the lease we hold, or try to take it. Never throws. */
  async renew(): Promise<void> {
    const kv = this.#kv;
    if (!kv || this.state !== "running") return;
    const sent = performance.now();
    const now = new Date().toISOString();
    const leading = this.#revision !== null;
    const value = JSON.stringify({
      holder: this.#holder,
      since: leading ? this.#since : now,
      renewedAt: now,
    } satisfies LeaderValue);
    try {
      this.#revision = leading ? await kv.update(this.#key, value, this.#revision!) : await kv.create(this.#key, value);
      this.#validUntil = sent + this.#ttlMs;
      if (!leading) {
        this.#since = now;
        this.#log.info({ holder: this.#holder }, "leading");
      }
    } catch (err) {
      if (leading && isWrongRevision(err)) {
        this.#revision = null;
        this.#validUntil = 0;
        this.#log.warn({ holder: this.#holder }, "lost the lead to another holder");
      } else if (leading) {
        // Unreachable server: keep the revision, `held` runs out by time if this lasts.
        this.#log.warn({ err: errorMessage(err) }, "lead not renewed");
      }
      // Not leading and create refused: someone else leads; try again next round.
    }
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    clearInterval(this.#timer);
    await this.#round;
    const revision = this.#revision;
    this.#revision = null;
    this.#validUntil = 0;
    // Hand over at once rather than after the TTL, but only the entry we wrote.
    if (revision !== null) await this.#kv?.delete(this.#key, { previousSeq: revision }).catch(() => undefined);
  }
}

export async function openLeaders(js: JetStreamClient, ttlMs: number): Promise<KV> {
  return new Kvm(js).create(buckets.leaders, { ttl: ttlMs, history: 1 });
}

/** Who holds a lease now, if anyone. */
export async function currentLeader(kv: KV, role: string, region: string): Promise<LeaderValue | null> {
  const e = await kv.get(leaderKey(role, region));
  return e && e.operation === "PUT" ? e.json<LeaderValue>() : null;
}

function isWrongRevision(err: unknown): boolean {
  return /wrong last sequence|key exists/i.test(errorMessage(err));
}
