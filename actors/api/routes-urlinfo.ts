/**
 * GET /urlinfo/1/{host:port}/{path-and-query}: what is known about any URL. URLs are not stored one
 * by one; the answer comes from the URL's registrable domain (an `_id` lookup), and names the
 * SHA-256 of the normalised URL so callers can key their own caches by it.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Config } from "../../config/mod.ts";
import { normaliseSubmission } from "../coordinator/normalise-url.ts";
import { UNKNOWN_URLINFO } from "../store/lookup-view.ts";
import type { Lookups } from "./lookups.ts";
import { badRequest } from "./routes-domains.ts";

/** The URL without its fragment, with WHATWG normalisation (lower-case host, punycode, default port dropped). */
export function normalisedUrl(hostPort: string, pathAndQuery: string): URL | null {
  try {
    if (hostPort === "" || /[/?#@\\]/.test(hostPort)) return null;
    const url = new URL(`http://${hostPort}/${pathAndQuery}`);
    if (url.hostname === "") return null;
    url.hash = "";
    return url;
  } catch {
    return null;
  }
}

export function urlInfoRoutes(app: FastifyInstance, config: Config, lookups: Lookups): void {
  const prefix = "/urlinfo/1/";
  app.get("/urlinfo/1/*", async (req, reply) => {
    // The raw path keeps the query string and the percent-escapes the router would have decoded.
    const tail = (req.raw.url ?? "").slice(prefix.length);
    const cut = tail.search(/[/?]/);
    const hostPort = decodeURIComponent(cut < 0 ? tail : tail.slice(0, cut));
    const rest = cut < 0 ? "" : tail.slice(tail[cut] === "/" ? cut + 1 : cut);
    const url = normalisedUrl(hostPort, rest);
    if (!url) return badRequest(reply, "not a URL: /urlinfo/1/{host:port}/{path-and-query}");
    const n = normaliseSubmission(url.href, { allowHosts: config.coordinator.allowHosts });
    if (!n.ok) return badRequest(reply, `${n.code}: ${n.reason}`);
    const urlSha256 = createHash("sha256").update(url.href).digest("hex");
    const entry = await lookups.entry(n.domain);
    // The domain's fields come pre-serialised with its lookup (lookup-view.ts urlinfoFields).
    const head = `{"url":${JSON.stringify(url.href)},"urlSha256":"${urlSha256}","domain":${JSON.stringify(n.domain)},`;
    return reply.type("application/json; charset=utf-8").send(`${head}${entry?.urlinfo ?? UNKNOWN_URLINFO}}`);
  });
}
