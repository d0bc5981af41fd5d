/**
 * What every role's wiring gets: the node's config, log and NATS handles, the resource stack
 * that closes what a role opens, and the stores several roles share, each opened once per node
 * on first use (a node with the frontier and results roles holds one MongoDB client, not two).
 */
import { publishDeadLetter, type Logger, type NatsHandles, type Service, type SomeActor } from "../../cluster/mod.ts";
import type { ResourceStack } from "../../cluster/resource-stack.ts";
import type { Config } from "../../config/mod.ts";
import { DomainStore } from "../frontier/domain-store.ts";
import { closeRedis } from "../../cluster/redis.ts";
import { openDatabase, type Database } from "../store/database.ts";
import { lookupViewRedis } from "../store/lookup-view.ts";

/** What a role starts: its actors (on pull consumers) and its services (loops, watchers). */
export interface RoleParts {
  actors: SomeActor[];
  services: Service[];
}

export interface RoleContext {
  config: Config;
  log: Logger;
  nats: NatsHandles;
  /** Whatever a role opens goes here, and is closed in reverse order when the node stops. */
  stack: ResourceStack;
  /** The node's MongoDB, opened on first use. */
  database(): Promise<Database>;
  /** The frontier's store of domains over that database, built on first use. */
  domainStore(): Promise<DomainStore>;
}

/** Memoises an async opener: every caller gets the first call's promise. */
function once<T>(open: () => Promise<T>): () => Promise<T> {
  let opened: Promise<T> | undefined;
  return () => (opened ??= open());
}

export function roleContext(config: Config, log: Logger, nats: NatsHandles, stack: ResourceStack): RoleContext {
  const database = once(async () => {
    // The lookup view's client belongs to the node: opened before the database, so closed after it.
    const lookupRedis = config.api.lookupView
      ? stack.use("redis (lookup view)", lookupViewRedis(config), closeRedis)
      : undefined;
    const db = await openDatabase(config, lookupRedis ? { lookupRedis } : {});
    return stack.use("mongodb", db, (d) => d.close());
  });
  const domainStore = once(async () => {
    const db = await database();
    // A domain parked after its last attempt leaves a dead letter with its history.
    return new DomainStore(db.collections, config.frontier, { deadLetter: (dl) => publishDeadLetter(nats.js, dl) });
  });
  return { config, log, nats, stack, database, domainStore };
}
