/**
 * Per-client request limits (@fastify/rate-limit), one budget for lookups (GET) and a smaller one
 * for submissions and rescans (POST). The client is the verified token's `client_id` or `sub`,
 * else the caller's address. A client over its budget gets 429 with `Retry-After` (seconds) and
 * the API's usual JSON error body. Counts live in this process (a fixed window per client): with
 * several API processes behind a balancer each applies the limit on its own.
 */
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Config } from "../../config/mod.ts";
import type { ClientIdentifier } from "./auth.ts";

export type RateLimitKind = "lookups" | "submissions";

/** The rate-limit key of a request: `client:<id>` for a valid token, else `ip:<address>`. */
export async function clientKey(req: FastifyRequest, identify: ClientIdentifier): Promise<string> {
  const client = await identify(req.headers.authorization);
  return client === null ? `ip:${req.ip}` : `client:${client}`;
}

const seconds = (ms: number) => (ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`);

/**
 * Limits every route registered on `scope` afterwards (call it first, inside an encapsulated
 * plugin holding that kind's routes). A limit of 0 turns that kind's limit off.
 */
export async function limitRequests(
  scope: FastifyInstance,
  config: Config,
  kind: RateLimitKind,
  identify: ClientIdentifier,
): Promise<void> {
  const { windowMs } = config.api.rateLimit;
  const max = config.api.rateLimit[kind];
  if (max === 0) return;
  await scope.register(rateLimit, {
    max,
    timeWindow: windowMs,
    cache: 10_000,
    keyGenerator: (req) => clientKey(req, identify),
    errorResponseBuilder: (_req, ctx) =>
      Object.assign(new Error(`more than ${ctx.max} ${kind} requests in ${seconds(windowMs)}; retry in ${ctx.after}`), {
        statusCode: ctx.statusCode,
        code: "rate-limited",
      }),
  });
}
