/**
 * The HTTP API (Fastify): domain lookups, scan history, authenticated submissions, health,
 * readiness and the OpenAPI document. `buildApi` wires routes onto open connections (tests
 * inject requests into it); `startApi` opens the connections and listens.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import { Redis } from "ioredis";
import { connectNats, createLogger, type Logger, type NatsHandles } from "../../cluster/mod.ts";
import { tracingEnabled, withHttpServerSpan } from "../../cluster/telemetry.ts";
import { instruments, observeLookupView } from "../../cluster/metrics.ts";
import type { Config } from "../../config/mod.ts";
import { openDatabase, type Database } from "../store/database.ts";
import { createAuthenticator, createClientIdentifier, type Authenticator } from "./auth.ts";
import { answerClientError } from "./client-errors.ts";
import { openApiDocument } from "./openapi.ts";
import { domainRoutes } from "./routes-domains.ts";
import { healthRoutes } from "./routes-health.ts";
import { Lookups } from "./lookups.ts";
import { limitRequests } from "./rate-limit.ts";
import { rescanRoutes, submissionRoutes, type SubmitFn } from "./routes-submissions.ts";
import { urlInfoRoutes } from "./routes-urlinfo.ts";

export interface ApiDeps {
  config: Config;
  db: Database;
  nats: NatsHandles;
  redis: Redis;
  submitUrls: SubmitFn;
  auth?: Authenticator;
  log?: Logger;
}

export function buildApi(deps: ApiDeps): FastifyInstance {
  const { config } = deps;
  const logger: FastifyBaseLogger = deps.log ?? createLogger("silent", {});
  const app = Fastify({
    loggerInstance: logger,
    // Room for maxBatchUrls URLs of the longest accepted length; larger bodies get 413 from Fastify.
    bodyLimit: Math.max(1 << 20, config.api.maxBatchUrls * 4_200),
    // Errors Node's HTTP parser raises before any route (headers over its 16 KiB, a malformed
    // request line) get the documented error body too, not Fastify's own shape.
    clientErrorHandler: answerClientError,
  });
  // Every route's handler runs in a SERVER span continuing the caller's traceparent, so what it
  // publishes (a submission's feed message) joins the caller's trace. Added before any route.
  app.addHook("onRoute", (route) => {
    const handler = route.handler;
    route.handler = function (this: FastifyInstance, req, reply) {
      if (!tracingEnabled()) return handler.call(this, req, reply);
      const path = req.url.split("?")[0] ?? req.url;
      const info = { method: req.method, route: route.url, path, headers: req.headers };
      return withHttpServerSpan(
        info,
        () => reply.statusCode,
        async () => handler.call(this, req, reply),
      );
    };
  });
  app.setErrorHandler((err: { statusCode?: number; code?: string; message: string }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) req.log.error({ err }, "request failed");
    return reply.code(status).send({
      error: status === 500 ? "internal" : (err.code ?? "bad-request"),
      message: status === 500 ? "internal error" : err.message,
    });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: "not-found", message: `no route ${req.method} ${req.url.split("?")[0]}` }),
  );
  // Metrics by route template (never the raw URL, so labels stay few) and status code.
  app.addHook("onResponse", (req, reply, done) => {
    const m = instruments();
    const attributes = { method: req.method, route: req.routeOptions.url ?? "unmatched", status: reply.statusCode };
    m.httpRequests.add(1, attributes);
    m.httpDuration.record(reply.elapsedTime / 1000, attributes);
    done();
  });
  const document = openApiDocument({ maxBatchUrls: config.api.maxBatchUrls });
  // Probes are never limited; lookups and writes each have their own per-client budget.
  healthRoutes(app, { nc: deps.nats.nc, redis: deps.redis, db: deps.db });
  const identify = createClientIdentifier(config);
  // Lookups: hot keys in process for at most api.lookupCacheTtlMs, then the Redis view, then MongoDB (lookups.ts).
  const lookups = new Lookups(deps.db, {
    ttlMs: config.api.lookupCacheTtlMs,
    maxEntries: config.api.lookupCacheEntries,
    useView: config.api.lookupView,
  });
  app.register(async (scope) => {
    await limitRequests(scope, config, "lookups", identify);
    scope.get("/openapi.json", () => document);
    domainRoutes(scope, config, deps.db, lookups);
    urlInfoRoutes(scope, config, lookups);
  });
  const auth = deps.auth ?? createAuthenticator(config);
  app.register(async (writes) => {
    await limitRequests(writes, config, "submissions", identify);
    submissionRoutes(writes, config, deps.nats.js, auth, deps.submitUrls);
    rescanRoutes(writes, config, deps.db, auth, (domain) => lookups.forget(domain));
  });
  return app;
}

export interface RunningApi {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** Opens MongoDB, NATS and Redis, and serves on config.api.host:port until closed. */
export async function startApi(config: Config, submitUrls: SubmitFn, log?: Logger): Promise<RunningApi> {
  const closers: Array<() => Promise<unknown>> = [];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  };
  try {
    const db = await openDatabase(config);
    closers.push(() => db.close());
    const nats = await connectNats(config, `glyphscan-api-${config.nodeId}`);
    closers.push(() => nats.nc.drain());
    // Readiness reports Redis when it is away; the API itself does not need it to answer.
    const redis = new Redis(config.redis.url, { maxRetriesPerRequest: 1, lazyConnect: true });
    let redisDown = false;
    redis.on("error", (err: Error) => {
      if (!redisDown) log?.warn({ err: err.message }, "redis unavailable");
      redisDown = true;
    });
    redis.on("ready", () => {
      redisDown = false;
    });
    await redis.connect();
    closers.push(() => redis.quit().catch(() => redis.disconnect()));
    const app = buildApi({ config, db, nats, redis, submitUrls, ...(log ? { log } : {}) });
    closers.push(() => app.close());
    const view = db.collections.lookupView;
    if (view) {
      const unobserve = observeLookupView(() => view.stats);
      closers.push(async () => unobserve());
    }
    const url = await app.listen({ host: config.api.host, port: config.api.port });
    return { app, url, close };
  } catch (err) {
    await close();
    throw err;
  }
}
