/**
 * The configuration schema: every field with its type, default and meaning, in one place.
 * Environment variable names are derived from the path (`scanner.concurrency` →
 * `GLYPHSCAN_SCANNER_CONCURRENCY`), so the table in the README is generated from this file.
 * Units are in names: `…Ms` milliseconds, `…Bytes` bytes.
 */
import { z } from "zod";
import { REGION_PATTERN } from "../protocol/mod.ts";

export const ROLES = ["coordinator", "frontier", "scanner", "results"] as const;
export type Role = (typeof ROLES)[number];

const region = z.string().regex(REGION_PATTERN, "a region is lower-case letters, digits and dashes");
const positiveInt = z.number().int().positive();
const hostPatterns = z.array(z.string().min(1));

export const configSchema = z.strictObject({
  nodeId: z
    .string()
    .regex(/^[\w-]{1,64}$/)
    .optional()
    .describe("Node identity in the registry; default: <hostname>-<pid>"),
  logLevel: z
    .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
    .default("info")
    .describe("Log level of the JSON logs"),
  region: region.default("local").describe("Region this node serves"),
  regions: z.array(region).min(1).default(["local"]).describe("Every region of the cluster"),
  roles: z
    .array(z.enum(ROLES))
    .min(1)
    .default([...ROLES])
    .describe("Actors this node hosts"),
  nats: z
    .strictObject({
      servers: z.array(z.string().min(1)).min(1).default(["nats://127.0.0.1:14222"]).describe("NATS server URLs"),
      user: z.string().optional().describe("NATS user (from the environment, never from the repo)"),
      pass: z.string().optional().describe("NATS password"),
      token: z.string().optional().describe("NATS token"),
      replicas: positiveInt.max(5).default(1).describe("JetStream replicas of each stream"),
      duplicateWindowMs: positiveInt.default(10 * 60_000).describe("Nats-Msg-Id dedupe window of each stream"),
      placement: z
        .enum(["none", "cluster", "tag"])
        .default("none")
        .describe(
          "Where each region's job and results streams live: none (wherever created: one server or cluster), cluster (the NATS cluster named after the region, in a supercluster), tag (servers tagged region:<name>)",
        ),
      sharedPlacement: z
        .string()
        .regex(/^[\w-]{1,64}$/)
        .optional()
        .describe(
          "With placement cluster or tag: the cluster (or region:<tag>) holding the shared streams (feeds, admissions, dead letters, compliance, global results) and KV buckets",
        ),
    })
    .prefault({}),
  redis: z
    .strictObject({
      url: z.string().min(1).default("redis://127.0.0.1:16379").describe("Redis URL (Bloom filters; a cache only)"),
    })
    .prefault({}),
  mongo: z
    .strictObject({
      url: z.string().min(1).default("mongodb://127.0.0.1:27017/").describe("MongoDB URL"),
      database: z.string().min(1).default("glyphscan").describe("Database name"),
    })
    .prefault({}),
  actors: z
    .strictObject({
      maxDeliver: positiveInt.max(100).default(5).describe("Deliveries before a message is dead-lettered"),
      ackWaitMs: positiveInt.default(60_000).describe("Time a handler has before redelivery, unless it heartbeats"),
      backoffMs: z
        .array(positiveInt)
        .default([1_000, 5_000, 30_000])
        .describe("Nak delays for transient failures, by attempt"),
      maxMessageBytes: positiveInt.default(256 * 1024).describe("Larger messages are dead-lettered unread"),
      heartbeatMs: positiveInt
        .default(5_000)
        .describe("Node registry heartbeat; the entry expires after 3 missed beats"),
      drainTimeoutMs: positiveInt.default(30_000).describe("Longest a draining node waits for in-flight work"),
    })
    .prefault({}),
  coordinator: z
    .strictObject({
      concurrency: positiveInt.default(8).describe("Feed messages handled at once"),
      allowHosts: hostPatterns
        .default([])
        .describe("Host patterns exempt from the reserved-name check (demo and tests only)"),
      seenFilterName: z
        .string()
        .regex(/^[a-z0-9_-]{1,40}$/)
        .default("domains")
        .describe("Name of the Bloom filter in Redis (separate names never share bits)"),
      seenWindowMs: positiveInt.default(24 * 3600_000).describe("Length of one Bloom slice"),
      seenSlices: positiveInt
        .max(64)
        .default(7)
        .describe("Live Bloom slices: a domain is dropped if seen within this many windows"),
      expectedDomainsPerWindow: positiveInt.default(1_000_000).describe("Bloom sizing: distinct domains per window"),
      falsePositiveRate: z
        .number()
        .gt(0)
        .lt(0.5)
        .default(0.001)
        .describe("Bloom target false-positive rate over all live slices"),
      confirmSources: z
        .array(z.string().min(1))
        .default([])
        .describe(
          "Feed sources where every domain counts: a Bloom 'maybe seen' is checked against MongoDB `domains` by key; a domain not there is admitted",
        ),
      tldRegions: z.record(z.string(), region).default({}).describe('Region per TLD, e.g. {"de":"eu"}'),
      fallbackRegions: z
        .record(z.string(), region)
        .default({})
        .describe('Region taking a down region\'s new domains, e.g. {"eu":"us"}; empty: no fallback, no health checks'),
      regionGraceMs: positiveInt
        .default(5 * 60_000)
        .describe("How long a region must be down (job stream unreachable or no live scanner) before fallback"),
      regionProbeMs: positiveInt.default(5_000).describe("How often the coordinator checks each region's health"),
    })
    .prefault({}),
  frontier: z
    .strictObject({
      dispatchIntervalMs: positiveInt.default(1_000).describe("How often due domains are dispatched"),
      dispatchBatch: positiveInt.default(200).describe("Most jobs dispatched per tick"),
      maxJobsInFlight: positiveInt.default(1_000).describe("Most unfinished jobs per region"),
      leaseMs: positiveInt.default(10 * 60_000).describe("A job not answered within its lease is dispatched again"),
      rescanIntervalMs: positiveInt.default(7 * 24 * 3600_000).describe("Time between scans of a domain"),
      maxAttempts: positiveInt.default(3).describe("Scan attempts before a domain is parked as failed"),
      retryBaseMs: positiveInt.default(60_000).describe("First retry delay after a failed scan; doubles per attempt"),
      leaderTtlMs: positiveInt
        .min(500)
        .default(6_000)
        .describe("Dispatcher leader lease in NATS KV; renewed every third of it, taken over when it runs out"),
      jobsPerScannerSlot: positiveInt
        .default(2)
        .describe("Jobs queued or running per live scanner slot in a region (backpressure on jobs.<region>)"),
      sourcePriority: z
        .record(z.string(), z.number().int())
        .default({})
        .describe('Dispatch priority per feed source, e.g. {"extension":10,"common-crawl":1}; higher goes first'),
      defaultPriority: z.number().int().default(5).describe("Priority of a source not in sourcePriority"),
      rescanIntervalByPriority: z
        .record(z.string(), positiveInt)
        .default({})
        .describe('Base rescan interval per priority, e.g. {"10":86400000}; others use rescanIntervalMs'),
      minRescanMs: positiveInt
        .optional()
        .describe("Shortest adaptive rescan interval (fonts keep changing); unset: a quarter of the base interval"),
      maxRescanMs: positiveInt
        .optional()
        .describe("Longest adaptive rescan interval (fonts stay the same); unset: four times the base interval"),
      retryMaxMs: positiveInt.default(6 * 3600_000).describe("Cap of a retry delay (before jitter)"),
      retryByCause: z
        .record(
          z.string(),
          z.strictObject({
            maxAttempts: positiveInt.optional(),
            baseMs: positiveInt.optional(),
            maxMs: positiveInt.optional(),
          }),
        )
        .default({})
        .describe(
          "Retry policy by cause (dns, tls, timeout, http-<code>, http-<n>xx, http-status, browser-crash, ssrf-refused, lease-expired, other): maxAttempts, baseMs, maxMs; over built-ins (dns, tls, http-4xx: 2 from 1 h; ssrf-refused: 1)",
        ),
      historyLimit: positiveInt
        .max(200)
        .default(20)
        .describe("Scan attempts kept on each domain (time, cause, reason, node)"),
      maxLeasesPerIp: positiveInt
        .default(2)
        .describe("Domains on one IP address scanned at once (the IP of their last scan)"),
      ipSpacingMs: z
        .number()
        .int()
        .min(0)
        .default(1_000)
        .describe("Least time between two scans starting on one IP address"),
      dueBucketMs: positiveInt
        .default(60_000)
        .describe("Time bucket of the due index (the dispatcher's time wheel, read by _id)"),
      dueSweepMs: positiveInt
        .default(3600_000)
        .describe("How often the leading dispatcher puts back due-index entries missing after a crash"),
    })
    .prefault({}),
  scanner: z
    .strictObject({
      chromiumPath: z.string().default("/usr/bin/chromium").describe("Chromium executable"),
      concurrency: positiveInt.max(32).default(2).describe("Pages rendered at once per node"),
      navigationTimeoutMs: positiveInt.default(30_000).describe("Budget of one page load"),
      settleMs: z.number().int().min(0).default(150).describe("Least wait after DOMContentLoaded before the inventory"),
      settleQuietMs: positiveInt
        .default(300)
        .describe("Quiet time (no font, CSS, script or fetch in flight, no new face or sheet) ending the settle"),
      settleBudgetMs: positiveInt
        .default(10_000)
        .describe("Longest settle after DOMContentLoaded, never past navigationTimeoutMs; then the inventory"),
      maxFontBytes: positiveInt.default(10 * 1024 * 1024).describe("Larger font responses are recorded unparsed"),
      fastPath: z
        .boolean()
        .default(true)
        .describe("Answer script-free pages from HTML and CSS over HTTP, without the browser"),
      allowHosts: hostPatterns
        .default([])
        .describe("Host patterns allowed to resolve to private addresses (tests and demo only)"),
      hostMap: z
        .record(z.string(), z.string())
        .default({})
        .describe('Static host → IP map, e.g. {"*.test":"127.0.0.1"} (tests and demo only)'),
      maxResponseBytes: positiveInt
        .default(32 * 1024 * 1024)
        .describe("Plain-http responses to the browser are cut past this size (egress proxy)"),
      extraPages: z
        .number()
        .int()
        .min(0)
        .max(10)
        .default(2)
        .describe("Same-site pages linked from the landing page that are scanned too"),
      fontParse: z
        .strictObject({
          workers: positiveInt.max(16).default(2).describe("Font parse worker threads per node (files parsed at once)"),
          timeoutMs: positiveInt
            .default(3_000)
            .describe("Longest one font file may parse; past it its worker is terminated (parseError timeout)"),
          maxHeapMb: positiveInt
            .min(16)
            .default(128)
            .describe("Heap limit of each font parse worker (parseError memory past it)"),
          maxDecodedBytes: positiveInt
            .default(32 * 1024 * 1024)
            .describe(
              "WOFF/WOFF2 fonts declaring or decoding to more are refused before decoding (parseError oversized)",
            ),
        })
        .prefault({}),
    })
    .prefault({}),
  telemetry: z
    .strictObject({
      otlpEndpoint: z
        .string()
        .url()
        .optional()
        .describe("OTLP/HTTP traces URL (…/v1/traces); tracing is off when unset"),
      metricsPort: z
        .number()
        .int()
        .min(0)
        .max(65_535)
        .optional()
        .describe("Port of the Prometheus /metrics endpoint; off when unset"),
      metricsHost: z.string().default("0.0.0.0").describe("Address the Prometheus endpoint listens on"),
      serviceName: z.string().min(1).default("glyphscan").describe("service.name of traces and metrics"),
    })
    .prefault({}),
  licensing: z
    .strictObject({
      serviceUrl: z
        .string()
        .url()
        .optional()
        .describe("External licensing service base URL (POST /v1/check); not asked when unset"),
      token: z.string().optional().describe("Bearer token of the licensing service (from the environment)"),
      timeoutMs: positiveInt.default(2_000).describe("Budget of one request to the licensing service"),
      retries: z.number().int().min(0).max(10).default(2).describe("Retries of a failed request, with backoff"),
      retryBaseMs: positiveInt.default(250).describe("First retry delay; doubles per retry"),
      breakerFailures: positiveInt.default(5).describe("Consecutive failed checks that open the circuit breaker"),
      breakerResetMs: positiveInt.default(30_000).describe("Open breaker pause before one trial request"),
      cacheTtlMs: positiveInt.default(3_600_000).describe("How long an answer is reused (unavailable: never)"),
      pendingRecheckIntervalMs: positiveInt
        .default(5 * 60_000)
        .describe("How often pending verdicts of the region are asked about again (needs serviceUrl)"),
      pendingRecheckBatch: positiveInt.default(200).describe("Most domains with pending verdicts re-checked per round"),
    })
    .prefault({}),
  api: z
    .strictObject({
      host: z.string().default("0.0.0.0").describe("Address the HTTP API listens on"),
      port: z.number().int().min(0).max(65_535).default(8080).describe("Port of the HTTP API (0: any free port)"),
      jwtIssuer: z.string().min(1).default("glyphscan").describe("Required `iss` of submission tokens"),
      jwtAudience: z.string().min(1).default("glyphscan-api").describe("Required `aud` of submission tokens"),
      jwtSecret: z
        .string()
        .min(32)
        .optional()
        .describe("HS256 secret verifying submission tokens (from the environment, never from the repo)"),
      jwksUrl: z.string().url().optional().describe("JWKS URL verifying submission tokens (instead of a secret)"),
      maxBatchUrls: positiveInt.default(1_000).describe("Most URLs in one POST /v1/submissions"),
      maxTokenLifetimeS: positiveInt
        .default(30 * 24 * 3600)
        .describe("Longest a submission token may live (exp - iat, or exp - now without iat); longer ones get 401"),
      lookupCacheTtlMs: z
        .number()
        .int()
        .min(0)
        .default(5_000)
        .describe("Longest a cached domain lookup is served before the store is read again; 0: no cache"),
      lookupCacheEntries: positiveInt.default(10_000).describe("Domain lookups cached in each API process (LRU)"),
      lookupView: z
        .boolean()
        .default(true)
        .describe("Keep every lookup's answer in Redis, written by the results writer (false: lookups read MongoDB)"),
      lookupViewTtlMs: positiveInt
        .default(3_600_000)
        .describe("Lookup view entries expire this long after written: the most that frontier-moved fields can lag"),
      rateLimit: z
        .strictObject({
          windowMs: positiveInt.default(60_000).describe("Window of the per-client API request limits"),
          lookups: z
            .number()
            .int()
            .min(0)
            .default(6_000)
            .describe("GET requests per client (token subject, else IP) per window; 0: unlimited"),
          submissions: z
            .number()
            .int()
            .min(0)
            .default(60)
            .describe("POST requests (submissions, rescans) per client per window; 0: unlimited"),
        })
        .prefault({}),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
