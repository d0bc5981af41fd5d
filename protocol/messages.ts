/**
 * Message schemas. Each message kind has a name and a version, carried in the
 * `Glyphscan-Schema` header as `<name>.v<version>`; readers accept every version they know,
 * so regions can upgrade one at a time. Validation happens where a message enters an actor.
 */
import { z } from "zod";
import { REGION_PATTERN, SOURCE_PATTERN, STAGES } from "./subjects.ts";

/** Upper bound of one URL, in characters (browsers cap near 2 MB; crawlers near 2–8 KB). */
export const MAX_URL_LENGTH = 4096;

const isoDate = z.iso.datetime({ offset: true });
const region = z.string().regex(REGION_PATTERN);
const source = z.string().regex(SOURCE_PATTERN);
const domain = z.string().min(1).max(253);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);

/** One URL from a feed. The URL is kept raw: judging it is the coordinator's job. */
export const feedSubmissionV1 = z.strictObject({
  url: z.string().min(1).max(MAX_URL_LENGTH),
  source,
  submittedAt: isoDate,
  /** Preferred region, when the feed knows better than routing rules. */
  regionHint: region.optional(),
});
export type FeedSubmission = z.infer<typeof feedSubmissionV1>;

/** Many URLs from one feed in one message; the coordinator judges each on its own. */
export const feedBatchV1 = z.strictObject({
  urls: z.array(z.string().max(MAX_URL_LENGTH)).min(1).max(1000),
  source,
  submittedAt: isoDate,
  regionHint: region.optional(),
});
export type FeedBatch = z.infer<typeof feedBatchV1>;

/** A registrable domain the coordinator admitted and routed to a region. */
export const admissionV1 = z.strictObject({
  domain,
  /** The first URL seen for the domain; its scheme and port say how to reach the site. */
  seedUrl: z.string().max(MAX_URL_LENGTH),
  source,
  region,
  admittedAt: isoDate,
  /** Set on a parked domain's dead letter: replaying it gives the domain its attempts back. */
  revive: z.boolean().optional(),
});
export type Admission = z.infer<typeof admissionV1>;

/** A unit of scanning work, leased to whichever scanner takes it. */
export const scanJobV1 = z.strictObject({
  jobId: z.string().min(1).max(300),
  domain,
  url: z.string().max(MAX_URL_LENGTH),
  region,
  attempt: z.number().int().min(1),
  /** Owner token of the frontier lease; a result is recorded against it. */
  leaseToken: z.string().min(1).max(100),
  leaseUntil: isoDate,
  dispatchedAt: isoDate,
});
export type ScanJob = z.infer<typeof scanJobV1>;

/** Names and licence fields read from a font file's name and OS/2 tables. */
export const fontMetadataV1 = z.strictObject({
  format: z.string(),
  family: z.string().nullable(),
  subfamily: z.string().nullable(),
  fullName: z.string().nullable(),
  postscriptName: z.string().nullable(),
  version: z.string().nullable(),
  manufacturer: z.string().nullable(),
  designer: z.string().nullable(),
  vendorId: z.string().nullable(),
  copyright: z.string().nullable(),
  trademark: z.string().nullable(),
  license: z.string().nullable(),
  licenseUrl: z.string().nullable(),
  /** OS/2 fsType embedding bits as the raw uint16. */
  fsType: z.number().int().nullable(),
  isVariable: z.boolean(),
});
export type FontMetadata = z.infer<typeof fontMetadataV1>;

/**
 * Scanner limits a font parse can hit: the per-file time limit (the parse worker was killed),
 * its heap limit, or a declared or decoded size over the cap (refused before decoding).
 */
export const PARSE_LIMITS = ["timeout", "memory", "oversized"] as const;
export type ParseLimit = (typeof PARSE_LIMITS)[number];

/** One font file the page fetched (by URL, or inline as a data: URI). */
export const fontFileV1 = z.strictObject({
  sha256,
  url: z.string(),
  bytes: z.number().int().min(0),
  contentType: z.string().nullable(),
  /** How it arrived: a font request, a script fetch/XHR recognised by magic bytes, or a data: URI. */
  via: z.enum(["font-request", "script-fetch", "data-uri"]),
  metadata: fontMetadataV1.nullable(),
  /** Why the file could not be parsed, when it could not. */
  parseError: z.string().nullable(),
  /** Set when parsing hit a scanner limit (parseError then starts with the same word). */
  parseLimit: z.enum(PARSE_LIMITS).optional(),
  /** Delivery service id (`google-fonts`, `adobe-fonts`, …, `self-hosted`); null for an unknown third-party host. */
  provider: z.string().max(64).nullable().default(null),
});
export type FontFile = z.infer<typeof fontFileV1>;

/** A font face as the page declares it (CSS @font-face or the FontFace API). */
export const fontFaceV1 = z.strictObject({
  family: z.string(),
  weight: z.string(),
  style: z.string(),
  /** Whether the page loaded (used) the face, or only declared it. */
  used: z.boolean(),
  declaredIn: z.enum(["stylesheet", "font-face-api"]),
  /** Absolute src URLs from the rule; empty for faces built from bytes by script. */
  srcUrls: z.array(z.string()),
  /** SHA-256 of the file(s) fetched for this face. */
  fileSha256: z.array(sha256),
  /** Delivery service id of the face's src (else of the stylesheet that declared it); null when unknown. */
  provider: z.string().max(64).nullable().default(null),
  /**
   * PostScript names of the fonts Chromium rendered text with for this face (CDP
   * CSS.getPlatformFontsForNode): the real font behind the CSS family alias. Absent when unknown.
   */
  renderedAs: z.array(z.string().max(256)).max(50).optional(),
});
export type FontFace = z.infer<typeof fontFaceV1>;

export const FAILURE_KINDS = [
  "dns",
  "tls",
  "timeout",
  "http-status",
  "blocked-address",
  "redirect-loop",
  "too-large",
  "browser-crash",
  "navigation",
  "internal",
] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

/** What a scanner found on one site. */
export const scanReportV1 = z.strictObject({
  status: z.enum(["ok", "failed"]),
  failure: z.strictObject({ kind: z.enum(FAILURE_KINDS), message: z.string() }).nullable(),
  /** Which path answered: the browser, or the static HTTP fast path. */
  path: z.enum(["browser", "static"]),
  pages: z.array(
    z.strictObject({
      url: z.string(),
      finalUrl: z.string(),
      httpStatus: z.number().int().nullable(),
      /**
       * How the browser's settle ended before the inventory: `quiet` (nothing loading, no new
       * stylesheet or face for scanner.settleQuietMs) or `budget` (scanner.settleBudgetMs or the
       * navigation deadline), and its length in ms from DOMContentLoaded. Absent on the static path.
       */
      settle: z.strictObject({ ended: z.enum(["quiet", "budget"]), ms: z.number().int().min(0) }).optional(),
    }),
  ),
  faces: z.array(fontFaceV1),
  files: z.array(fontFileV1),
  /** Requests the scanner refused or cut (SSRF guard, size cap), with the reason; at most 100. */
  blocked: z
    .array(z.strictObject({ url: z.string().max(2_048), reason: z.string().max(500) }))
    .max(100)
    .optional(),
  /**
   * Fonts that rendered text on the scanned pages, as Chromium reports them (CDP
   * CSS.getPlatformFontsForNode over sampled text): system fallbacks too (`custom: false`).
   */
  renderedFonts: z
    .array(
      z.strictObject({
        family: z.string().max(256),
        postScriptName: z.string().max(256),
        custom: z.boolean(),
        glyphs: z.number().int().min(0),
      }),
    )
    .max(200)
    .optional(),
  /** The IP address the site resolved to (the SSRF check's), for per-IP politeness; absent when unresolved. */
  address: z.string().max(64).optional(),
  /**
   * Why the static fast path handed the landing page to the browser (scanner.fastPath): the
   * message, the triage or limit rule that fired, and the script it fired on. Absent when the fast
   * path answered or was off.
   */
  escalation: z
    .strictObject({
      reason: z.string().max(500),
      rule: z.string().max(64),
      script: z.string().max(2_048).optional(),
    })
    .optional(),
  startedAt: isoDate,
  finishedAt: isoDate,
});
export type ScanReport = z.infer<typeof scanReportV1>;

/** A scan report tied to the job and lease it answers. */
export const scanResultV1 = z.strictObject({
  jobId: z.string().min(1),
  domain,
  region,
  leaseToken: z.string().min(1),
  attempt: z.number().int().min(1),
  scannerNode: z.string(),
  report: scanReportV1,
});
export type ScanResult = z.infer<typeof scanResultV1>;

export const VERDICT_KINDS = ["licensed", "open-licence", "unlicensed", "unknown", "pending"] as const;
const verdictCounts = z.strictObject(
  Object.fromEntries(VERDICT_KINDS.map((v) => [v, z.number().int().min(0)])) as Record<
    (typeof VERDICT_KINDS)[number],
    z.ZodNumber
  >,
);

/** The compliance verdicts of one recorded scan: per font file used on the domain, and what changed. */
export const complianceVerdictV1 = z.strictObject({
  jobId: z.string().min(1),
  domain,
  region,
  scannedAt: isoDate,
  counts: verdictCounts,
  fonts: z
    .array(
      z.strictObject({
        sha256,
        family: z.string().nullable(),
        verdict: z.enum(VERDICT_KINDS),
        /** Registry licence id, provider id, or open licence id (OFL-1.1, Apache-2.0, UFL-1.0, ITF-FFL). */
        licence: z.string().nullable(),
        provider: z.string().nullable(),
        reason: z.string(),
      }),
    )
    .max(1000),
  /** Fonts whose verdict differs from the previous scan of the domain (null: first scan). */
  changes: z
    .strictObject({
      sinceJobId: z.string(),
      added: z.array(sha256),
      removed: z.array(sha256),
      changed: z.array(z.strictObject({ sha256, from: z.enum(VERDICT_KINDS), to: z.enum(VERDICT_KINDS) })),
    })
    .nullable(),
});
export type ComplianceVerdict = z.infer<typeof complianceVerdictV1>;

/** A message an actor could not or would not process, with why. */
export const deadLetterV1 = z.strictObject({
  stage: z.enum(STAGES),
  reason: z.string(),
  /** Machine-readable reason class, for listing and replay filters. */
  code: z.enum(["invalid-message", "rejected-input", "max-deliveries", "poison", "oversized", "retries-exhausted"]),
  subject: z.string(),
  stream: z.string().nullable(),
  streamSeq: z.number().int().nullable(),
  deliveries: z.number().int().min(0),
  headers: z.record(z.string(), z.string()),
  /** Original payload, base64 so any bytes survive. */
  payloadBase64: z.string(),
  failedAt: isoDate,
  /** `retries-exhausted`: every scan attempt of the parked domain, oldest first (bounded). */
  history: z
    .array(
      z.strictObject({
        at: isoDate,
        attempt: z.number().int().min(0),
        jobId: z.string(),
        cause: z.string(),
        kind: z.string().nullable(),
        httpStatus: z.number().int().nullable(),
        reason: z.string().nullable(),
        node: z.string(),
      }),
    )
    .max(200)
    .optional(),
});
export type DeadLetter = z.infer<typeof deadLetterV1>;

/** Every message kind and the versions a reader accepts, newest last. */
export const schemas = {
  "feed-submission": { 1: feedSubmissionV1 },
  "feed-batch": { 1: feedBatchV1 },
  admission: { 1: admissionV1 },
  "scan-job": { 1: scanJobV1 },
  "scan-result": { 1: scanResultV1 },
  "dead-letter": { 1: deadLetterV1 },
  "compliance-verdict": { 1: complianceVerdictV1 },
} as const;
export type SchemaName = keyof typeof schemas;

/** The schema header value writers put on a message of this kind. */
export const CURRENT_VERSION: { [K in SchemaName]: number } = {
  "feed-submission": 1,
  "feed-batch": 1,
  admission: 1,
  "scan-job": 1,
  "scan-result": 1,
  "dead-letter": 1,
  "compliance-verdict": 1,
};

export function schemaHeader(name: SchemaName): string {
  return `${name}.v${CURRENT_VERSION[name]}`;
}

/** Parses `name.vN`; null when the header is absent or not of that shape. */
export function parseSchemaHeader(value: string | undefined): { name: string; version: number } | null {
  const m = value ? /^([a-z][a-z-]*)\.v(\d+)$/.exec(value) : null;
  return m ? { name: m[1]!, version: Number(m[2]) } : null;
}
