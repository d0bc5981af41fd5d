/**
 * The HTTP API (Fastify): domain lookups, scan history, authenticated submissions, health,
 * readiness and the OpenAPI document. `buildApi` wires routes onto open connections (tests
 * inject requests into it); `startApi` opens the connections and listens.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Redis } from "ioredis";
import { connectNats, createLogger, errorMessage, type Logger, type NatsHandles } from "../../cluster/mod.ts";
import { closeRedis, openRedis } from "../../cluster/redis.ts";
import { ResourceStack } from "../../cluster/resource-stack.ts";
import { tracingEnabled, withHttpServerSpan } from "../../cluster/telemetry.ts";
import { instruments, observeLookupView } from "../../cluster/metrics.ts";
import type { Config } from "../../config/mod.ts";
import { openDatabase, type Database } from "../store/database.ts";
import { lookupViewRedis } from "../store/lookup-view.ts";
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

/** Most time one connection may take to close when the API stops. */
const CLOSE_DEADLINE_MS = 10_000;

export interface RunningApi {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** Opens MongoDB, NATS and Redis, and serves on config.api.host:port until closed. */
export async function startApi(config: Config, submitUrls: SubmitFn, log?: Logger): Promise<RunningApi> {
  const logger = log ?? createLogger("silent", {});
  const stack = new ResourceStack({
    closeDeadlineMs: CLOSE_DEADLINE_MS,
    onCloseError: ({ name, error }) => logger.warn({ resource: name, err: errorMessage(error) }, "closing failed"),
  });
  const close = async () => void (await stack.close());
  try {
    const lookupRedis = config.api.lookupView
      ? stack.use("redis (lookup view)", lookupViewRedis(config), closeRedis)
      : undefined;
    const db = stack.use("mongodb", await openDatabase(config, lookupRedis ? { lookupRedis } : {}), (d) => d.close());
    const nats = stack.use("nats", await connectNats(config, `glyphscan-api-${config.nodeId}`), (n) => n.nc.drain());
    // Readiness reports Redis when it is away; the API itself does not need it to answer.
    const redis = stack.use(
      "redis (readiness)",
      await openRedis("api", config.redis.url, logger, { maxRetriesPerRequest: 1 }),
      closeRedis,
    );
    const app = stack.use("http server", buildApi({ config, db, nats, redis, submitUrls, log: logger }), (a) =>
      a.close(),
    );
    const view = db.collections.lookupView;
    if (view)
      stack.defer(
        "lookup-view metric",
        observeLookupView(() => view.stats),
      );
    const url = await app.listen({ host: config.api.host, port: config.api.port });
    return { app, url, close };
  } catch (err) {
    await close();
    throw err;
  }
}
