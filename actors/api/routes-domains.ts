/** Read routes: a domain's latest scan with its fonts and verdicts, and its scan history. */
import type { FastifyInstance, FastifyReply } from "fastify";
import type { Config } from "../../config/mod.ts";
import { normaliseSubmission } from "../coordinator/normalise-url.ts";
import type { Database } from "../store/database.ts";
import type { ScanDoc } from "../store/documents.ts";
import { scanSummary } from "../store/lookup-view.ts";
import { scanHistory } from "../store/scan-index.ts";
import type { Lookups } from "./lookups.ts";
import { domainParam, scansQuery } from "./schemas.ts";

/** The registrable domain of a path parameter, or null when it is not a host name we would scan. */
export function registrableDomain(raw: string, config: Config): string | null {
  if (!domainParam.safeParse(raw).success) return null;
  const n = normaliseSubmission(`http://${raw}/`, { allowHosts: config.coordinator.allowHosts });
  return n.ok ? n.domain : null;
}

export const badRequest = (reply: FastifyReply, message: string) =>
  reply.code(400).send({ error: "bad-request", message });

const notFound = (reply: FastifyReply, domain: string) =>
  reply.code(404).send({ error: "not-found", message: `${domain} is not known` });

/** Pages run newest first on (finishedAt, _id); the cursor is the last row's pair, opaque to clients. */
const encodeCursor = (s: ScanDoc) => Buffer.from(JSON.stringify([s.finishedAt.getTime(), s._id])).toString("base64url");

function decodeCursor(raw: string): { at: Date; id: string } | null {
  try {
    const v: unknown = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
    if (Array.isArray(v) && v.length === 2 && Number.isSafeInteger(v[0]) && typeof v[1] === "string")
      return { at: new Date(v[0] as number), id: v[1] };
  } catch {
    // falls through: not a cursor of ours
  }
  return null;
}

export function domainRoutes(app: FastifyInstance, config: Config, db: Database, lookups: Lookups): void {
  const { domains } = db.collections;

  app.get<{ Params: { domain: string } }>("/v1/domains/:domain", async (req, reply) => {
    const id = registrableDomain(req.params.domain, config);
    if (!id) return badRequest(reply, `${JSON.stringify(req.params.domain)} is not a domain that can be scanned`);
    const entry = await lookups.entry(id);
    if (!entry) return notFound(reply, id);
    // Pre-serialised (lookup-view.ts): sent as it is.
    return reply.type("application/json; charset=utf-8").send(entry.domain);
  });

  app.get<{ Params: { domain: string }; Querystring: Record<string, string> }>(
    "/v1/domains/:domain/scans",
    async (req, reply) => {
      const id = registrableDomain(req.params.domain, config);
      if (!id) return badRequest(reply, `${JSON.stringify(req.params.domain)} is not a domain that can be scanned`);
      const q = scansQuery.safeParse(req.query);
      if (!q.success)
        return badRequest(reply, q.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "));
      const after = q.data.cursor === undefined ? null : decodeCursor(q.data.cursor);
      if (q.data.cursor !== undefined && !after) return badRequest(reply, "cursor: not a cursor from this API");
      const d = await domains.findOne({ _id: id }, { projection: { _id: 1 } });
      if (!d) return notFound(reply, id);
      const rows = await scanHistory(db.collections, id, q.data.limit + 1, after);
      const page = rows.slice(0, q.data.limit);
      const last = page.at(-1);
      return {
        domain: id,
        scans: page.map(scanSummary),
        nextCursor: rows.length > q.data.limit && last ? encodeCursor(last) : null,
      };
    },
  );
}
