/** The OpenAPI 3.1 document of the API, with request shapes generated from the same zod schemas the handlers use. */
import { z } from "zod";
import { domainParam, errorBody, scansQuery, submissionBody, submissionResult } from "./schemas.ts";

const json = (schema: z.ZodType, io: "input" | "output" = "output") => ({
  "application/json": { schema: z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) },
});
const error = (description: string) => ({ description, content: json(errorBody) });
const domainPath = {
  name: "domain",
  in: "path",
  required: true,
  schema: z.toJSONSchema(domainParam),
  description: domainParam.description,
};
const queryParams = Object.entries(z.toJSONSchema(scansQuery, { io: "input" }).properties ?? {}).map(
  ([name, schema]) => ({
    name,
    in: "query",
    required: false,
    schema,
    description: typeof schema === "object" ? schema.description : undefined,
  }),
);
const anyObject = { "application/json": { schema: { type: "object" } } };
const rateLimited = {
  description: "Over the client's request limit (per token client, else per address)",
  headers: {
    "Retry-After": { description: "Seconds until the window resets", schema: { type: "integer", minimum: 0 } },
    "X-RateLimit-Limit": { description: "Requests allowed per window", schema: { type: "integer" } },
  },
  content: json(errorBody),
};

export function openApiDocument(opts: { maxBatchUrls: number }): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: {
      title: "glyphscan API",
      version: "1",
      description: "Web fonts of every scanned domain, their licence verdicts, and authenticated URL submissions.",
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
    },
    paths: {
      "/v1/domains/{domain}": {
        get: {
          summary: "Latest scan of a domain: fonts (faces and files with metadata), verdicts, next scan time",
          parameters: [domainPath],
          responses: {
            "200": { description: "The domain and its latest scan (null before the first)", content: anyObject },
            "400": error("Not a domain that can be scanned"),
            "404": error("The domain is not known"),
            "429": rateLimited,
          },
        },
      },
      "/v1/domains/{domain}/scans": {
        get: {
          summary: "Scan history of a domain, newest first, paginated by an opaque cursor",
          parameters: [domainPath, ...queryParams],
          responses: {
            "200": {
              description: "One page of scans and the cursor of the next (null on the last)",
              content: anyObject,
            },
            "400": error("Bad domain, limit or cursor"),
            "404": error("The domain is not known"),
            "429": rateLimited,
          },
        },
      },
      "/urlinfo/1/{hostPort}/{pathAndQuery}": {
        get: {
          summary: "Any URL: is its registrable domain known, its scan status and verdict summary, the URL's SHA-256",
          parameters: [
            { name: "hostPort", in: "path", required: true, schema: { type: "string" }, description: "host[:port]" },
            {
              name: "pathAndQuery",
              in: "path",
              required: true,
              schema: { type: "string" },
              description: "The rest of the URL, query included",
            },
          ],
          responses: {
            "200": { description: "What is known (known: false when nothing)", content: anyObject },
            "400": error("Not a URL that could be scanned"),
            "429": rateLimited,
          },
        },
      },
      "/v1/domains/{domain}/rescan": {
        post: {
          summary: "Make a known domain due for scanning now, ahead of every priority",
          security: [{ bearer: ["submit"] }],
          parameters: [domainPath],
          responses: {
            "202": { description: "Requested", content: anyObject },
            "400": error("Not a domain that can be scanned"),
            "401": error("Token missing, forged, expired, or for another issuer or audience"),
            "403": error("Token lacks the `submit` scope"),
            "404": error("The domain is not known"),
            "409": error("A scan of the domain is under way"),
            "429": rateLimited,
          },
        },
      },
      "/v1/submissions": {
        post: {
          summary: `Submit up to ${opts.maxBatchUrls} URLs for scanning; each is accepted or rejected with a reason`,
          security: [{ bearer: ["submit"] }],
          requestBody: { required: true, content: json(submissionBody, "input") },
          responses: {
            "202": { description: "Published to the feed; per-URL outcome", content: json(submissionResult) },
            "401": error("Token missing, forged, expired, or for another issuer or audience"),
            "403": error("Token lacks the `submit` scope"),
            "413": error(`More than ${opts.maxBatchUrls} URLs`),
            "422": error("The body does not match the schema"),
            "429": rateLimited,
          },
        },
      },
      "/healthz": {
        get: { summary: "The process is up", responses: { "200": { description: "Up", content: anyObject } } },
      },
      "/readyz": {
        get: {
          summary: "NATS, Redis and MongoDB answer",
          responses: {
            "200": { description: "Ready", content: anyObject },
            "503": { description: "Names what is down", content: anyObject },
          },
        },
      },
      "/openapi.json": {
        get: {
          summary: "This document",
          responses: { "200": { description: "OpenAPI 3.1", content: anyObject }, "429": rateLimited },
        },
      },
    },
  };
}
