/** Request shapes of the API, in zod: validated in the handlers and described in the OpenAPI document. */
import { z } from "zod";
import { REGION_PATTERN, SOURCE_PATTERN } from "../../protocol/mod.ts";

/** A host name as typed in a path: letters (any script), digits, dots and dashes. */
export const domainParam = z
  .string()
  .regex(/^[\p{L}\p{N}](?:[\p{L}\p{N}.-]{0,251}[\p{L}\p{N}])?$/u)
  .describe("A registrable domain or any host name under it, e.g. example.com or www.example.co.uk");

export const scansQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20).describe("Scans per page, 1 to 100"),
  cursor: z.string().min(1).optional().describe("Opaque cursor from the previous page's nextCursor"),
});

export const submissionBody = z.strictObject({
  urls: z.array(z.string().min(1).max(4096)).min(1).describe("URLs to scan; each is judged on its own"),
  source: z
    .string()
    .regex(SOURCE_PATTERN)
    .optional()
    .describe("Ignored: the source is the token's `source` claim (`api` without one), never the body's"),
  regionHint: z
    .string()
    .regex(REGION_PATTERN)
    .optional()
    .describe("Preferred region; the token's `regions` claim must name it (or the token has the admin scope)"),
});

export const errorBody = z.strictObject({
  error: z.string().describe("Machine-readable error"),
  message: z.string().describe("What went wrong, for people"),
});

export const submissionResult = z.strictObject({
  accepted: z.number().int(),
  rejected: z.number().int(),
  results: z.array(
    z.strictObject({
      url: z.string(),
      accepted: z.boolean(),
      domain: z.string().optional().describe("Registrable domain of an accepted URL"),
      reason: z.string().optional().describe("Why a URL was rejected (`code: explanation`)"),
    }),
  ),
});
