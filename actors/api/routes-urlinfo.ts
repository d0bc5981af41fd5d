/**
 * GET /urlinfo/1/{host:port}/{path-and-query}: what is known about any URL. URLs are not stored one
 * by one; the answer comes from the URL's registrable domain (an `_id` lookup), and names the
 * SHA-256 of the normalised URL so callers can key their own caches by it.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance } from "fastify";
import type { Config } from "../../config/mod.ts";
import { normaliseSubmission } from "../coordinator/normalise-url.ts";
import type { Database } from "../store/database.ts";
import type { DomainDoc } from "../store/documents.ts";
import type { LookupCache } from "./lookup-cache.ts";
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

export function urlInfoRoutes(
  app: FastifyInstance,
  config: Config,
  db: Database,
  cache: LookupCache<DomainDoc | null>,
): void {
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
    const d = await cache.get(n.domain, () => db.collections.domains.findOne({ _id: n.domain }));
    return {
      url: url.href,
      urlSha256,
      domain: n.domain,
      known: d !== null,
      state: d?.state ?? null,
      lastScanAt: d?.lastScanAt ?? null,
      nextScanAt: d?.nextScanAt ?? null,
      status: d?.latest?.status ?? null,
      usedFamilies: d?.latest?.usedFamilies ?? [],
      compliance: d?.latest?.compliance?.counts ?? null,
    };
  });
}
