/** Liveness (the process answers) and readiness (NATS, Redis and MongoDB answer within a second). */
import type { FastifyInstance } from "fastify";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Redis } from "ioredis";
import { withTimeout } from "../../cluster/async.ts";
import { TransientError } from "../../cluster/errors.ts";
import type { Database } from "../store/database.ts";

const CHECK_TIMEOUT_MS = 1_000;

export interface ReadinessDeps {
  nc: NatsConnection;
  redis: Redis;
  db: Database;
}

export function healthRoutes(app: FastifyInstance, deps: ReadinessDeps): void {
  app.get("/healthz", () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    const checks: Record<string, () => Promise<unknown>> = {
      nats: () =>
        deps.nc.isClosed() ? Promise.reject(new TransientError("connection closed", "unavailable")) : deps.nc.flush(),
      redis: () => deps.redis.ping(),
      mongo: () => deps.db.db.command({ ping: 1 }),
    };
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS, name);
          return [name, "up"] as const;
        } catch (err) {
          return [name, `down: ${err instanceof Error ? err.message : String(err)}`] as const;
        }
      }),
    );
    const down = results.filter(([, state]) => state !== "up").map(([name]) => name);
    return reply
      .code(down.length === 0 ? 200 : 503)
      .send({ status: down.length === 0 ? "ready" : "unavailable", down, checks: Object.fromEntries(results) });
  });
}
