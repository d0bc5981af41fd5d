/**
 * Opening a Redis client for one purpose. Without an error listener ioredis prints every failed
 * reconnect; here an outage is logged once when it starts and once when it ends.
 */
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "./log.ts";

export interface OpenRedisOptions {
  /**
   * Tries per command before it fails (ioredis `maxRetriesPerRequest`). Small, so a caller fails
   * fast while Redis is away and retries later instead of hanging. Default 2.
   */
  maxRetriesPerRequest?: number;
  /** What the caller does meanwhile, for the outage's log line (e.g. "feed messages will be retried"). */
  whileDown?: string;
  /** Anything else ioredis takes. */
  redis?: RedisOptions;
}

/** A connected client; an outage later is logged once, with `purpose`, until it is ready again. */
export async function openRedis(purpose: string, url: string, log: Logger, options: OpenRedisOptions = {}) {
  const redis = new Redis(url, {
    ...options.redis,
    maxRetriesPerRequest: options.maxRetriesPerRequest ?? 2,
    lazyConnect: true,
    connectionName: `glyphscan-${purpose}`,
  });
  let down = false;
  redis.on("error", (err: Error) => {
    if (!down)
      log.warn({ purpose, err: err.message }, `redis unavailable${options.whileDown ? `; ${options.whileDown}` : ""}`);
    down = true;
  });
  redis.on("ready", () => {
    if (down) log.info({ purpose }, "redis available again");
    down = false;
  });
  await redis.connect();
  return redis;
}

/** Closes a client politely, or at once when it never connected or Redis does not answer. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === "wait" || redis.status === "end") return redis.disconnect();
  await redis.quit().catch(() => redis.disconnect());
}
