/**
 * POST /v1/submissions: an authenticated batch of URLs onto the feed subject, through the same
 * path as `glyphscan submit`. Rejected URLs are published too, so the coordinator dead-letters each
 * with its reason; the answer tells the client which is which. The publishing function is passed
 * in (bin/commands/submit.ts `submitUrls`), as actors do not import the command line.
 */
import type { FastifyInstance } from "fastify";
import type { JetStreamClient } from "@nats-io/jetstream";
import type { Config } from "../../config/mod.ts";
import { SOURCE_PATTERN } from "../../protocol/mod.ts";
import { normaliseSubmission } from "../coordinator/normalise-url.ts";
import { DomainStore } from "../frontier/domain-store.ts";
import type { Database } from "../store/database.ts";
import { refreshLookupView } from "../store/lookup-view.ts";
import { registrableDomain } from "./routes-domains.ts";
import type { Authenticator } from "./auth.ts";
import { submissionBody } from "./schemas.ts";

export const SUBMIT_SCOPE = "submit";
/** May route submissions to any region. */
export const ADMIN_SCOPE = "admin";
/** The source of a token without a `source` claim. */
export const DEFAULT_SOURCE = "api";

/** The shape of `submitUrls` this route needs. */
export type SubmitFn = (
  js: JetStreamClient,
  config: Config,
  urls: string[],
  opts: { source: string; batchSize: number; regionHint?: string | undefined },
) => Promise<{ accepted: number; rejected: Array<{ url: string; reason: string }> }>;

export function submissionRoutes(
  app: FastifyInstance,
  config: Config,
  js: JetStreamClient,
  auth: Authenticator,
  submitUrls: SubmitFn,
): void {
  app.post("/v1/submissions", async (req, reply) => {
    const who = await auth(req.headers.authorization, SUBMIT_SCOPE);
    if (!who.ok) return reply.code(who.status).send({ error: who.error, message: who.message });
    const raw = req.body as { urls?: unknown } | null | undefined;
    if (Array.isArray(raw?.urls) && raw.urls.length > config.api.maxBatchUrls)
      return reply.code(413).send({
        error: "too-many-urls",
        message: `${raw.urls.length} URLs in one submission; at most ${config.api.maxBatchUrls}`,
      });
    const body = submissionBody.safeParse(raw);
    if (!body.success)
      return reply.code(422).send({
        error: "invalid-body",
        message: body.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; "),
      });
    // The source is the token's, never the body's: any submit token could otherwise claim the
    // highest-priority source (or a confirm source that skips the seen filter).
    const { urls, regionHint } = body.data;
    const source = who.claims.source ?? DEFAULT_SOURCE;
    if (!SOURCE_PATTERN.test(source))
      return reply
        .code(403)
        .send({ error: "forbidden", message: `the token's source ${JSON.stringify(source)} is not a source name` });
    if (regionHint && !who.claims.regions.includes(regionHint) && !who.scopes.includes(ADMIN_SCOPE))
      return reply
        .code(403)
        .send({ error: "forbidden", message: `the token may not route submissions to region ${regionHint}` });
    const summary = await submitUrls(js, config, urls, { source, regionHint, batchSize: config.api.maxBatchUrls });
    // submitUrls lists rejections in input order: pair them back up with the URLs.
    let next = 0;
    const results = urls.map((url) => {
      const r = summary.rejected[next];
      if (r && r.url === url) {
        next++;
        return { url, accepted: false, reason: r.reason };
      }
      const n = normaliseSubmission(url, { allowHosts: config.coordinator.allowHosts });
      return { url, accepted: true, ...(n.ok ? { domain: n.domain } : {}) };
    });
    req.log.info({ subject: who.subject, accepted: summary.accepted, rejected: summary.rejected.length }, "submission");
    return reply.code(202).send({ accepted: summary.accepted, rejected: summary.rejected.length, results });
  });
}

/**
 * POST /v1/domains/{domain}/rescan: makes a known domain due now, ahead of every priority (the
 * frontier's requestRescan); 409 while a live lease holds it, as its scan is already under way.
 */
export function rescanRoutes(
  app: FastifyInstance,
  config: Config,
  db: Database,
  auth: Authenticator,
  onChange: (domain: string) => void = () => undefined,
): void {
  const store = new DomainStore(db.collections, config.frontier);
  app.post<{ Params: { domain: string } }>("/v1/domains/:domain/rescan", async (req, reply) => {
    const who = await auth(req.headers.authorization, SUBMIT_SCOPE);
    if (!who.ok) return reply.code(who.status).send({ error: who.error, message: who.message });
    const id = registrableDomain(req.params.domain, config);
    if (!id)
      return reply.code(400).send({
        error: "bad-request",
        message: `${JSON.stringify(req.params.domain)} is not a domain that can be scanned`,
      });
    const outcome = await store.requestRescan(id);
    if (outcome === "unknown") return reply.code(404).send({ error: "not-found", message: `${id} is not known` });
    if (outcome === "leased")
      return reply.code(409).send({ error: "scan-in-progress", message: `${id} is being scanned now` });
    // The lookup shows the new next scan time at once (the view from MongoDB; then this process's cache).
    await refreshLookupView(db.collections, id);
    onChange(id);
    req.log.info({ subject: who.subject, domain: id }, "rescan requested");
    return reply.code(202).send({ domain: id, status: "requested" });
  });
}
