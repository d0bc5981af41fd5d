/**
 * Every subject, stream, consumer and bucket name in glyphscan is built here and nowhere else,
 * so that a rename or a new region touches one file.
 */

/** Region names travel inside subjects and stream names, so keep them to safe tokens. */
export const REGION_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;
/** Feed sources become one subject token each. */
export const SOURCE_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;

/** Pipeline stages; a dead letter names the stage it fell out of. */
export const STAGES = ["coordinator", "frontier", "scanner", "results"] as const;
export type Stage = (typeof STAGES)[number];

function token(value: string, pattern: RegExp, what: string): string {
  if (!pattern.test(value)) throw new Error(`invalid ${what} "${value}": must match ${pattern}`);
  return value;
}
const region = (r: string) => token(r, REGION_PATTERN, "region");
/** Stream names may not contain dashes in some tools, so regions are upper-cased with `_`. */
const streamToken = (r: string) => region(r).replaceAll("-", "_").toUpperCase();

export const subjects = {
  /** Feed messages (single URL or batch) from a named source. */
  feed: (source: string) => `feeds.${token(source, SOURCE_PATTERN, "source")}`,
  feedAll: "feeds.>",
  /** Normalised domains admitted for a region. */
  admit: (r: string) => `admit.${region(r)}`,
  admitAll: "admit.>",
  /** Scan jobs for a region's scanners. */
  jobs: (r: string) => `jobs.${region(r)}`,
  /** Scan results produced in a region. */
  results: (r: string) => `results.${region(r)}`,
  /** Compliance verdicts of each recorded scan, for downstream systems. */
  compliance: (r: string) => `compliance.${region(r)}`,
  complianceAll: "compliance.>",
  /** Dead letters, per stage. */
  deadLetter: (stage: Stage) => `dlq.${stage}`,
  deadLetterAll: "dlq.>",
  /** Server advisory fired when a consumer gives up on a message after max deliveries. */
  maxDeliveriesAdvisory: (stream: string, consumer: string) =>
    `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${consumer}`,
} as const;

export const streams = {
  feeds: "FEEDS",
  admit: "ADMIT",
  jobs: (r: string) => `JOBS_${streamToken(r)}`,
  results: (r: string) => `RESULTS_${streamToken(r)}`,
  /** Every region's results, sourced from each `RESULTS_<REGION>`; readable from every region. */
  resultsGlobal: "RESULTS",
  deadLetters: "DLQ",
  compliance: "COMPLIANCE",
} as const;

export const consumers = {
  coordinator: "coordinator",
  frontier: (r: string) => `frontier_${streamToken(r)}`,
  scanners: "scanners",
  resultsWriter: "results-writer",
  deadLetterWatch: "dead-letter-watch",
} as const;

export const buckets = {
  /** Live nodes, one key per node, kept alive by heartbeats (bucket max age = TTL). */
  nodes: "glyphscan_nodes",
  /** Leader leases (one key per role and region, e.g. the dispatcher of a region); bucket max age = lease TTL. */
  leaders: "glyphscan_leaders",
} as const;

/** The leader lease key of a role in a region. */
export const leaderKey = (role: string, r: string) => `${role}.${region(r)}`;

/** KV keys may not contain arbitrary characters; node ids are generated to fit. */
export const nodeKey = (nodeId: string) => `node.${nodeId}`;

/** Headers every glyphscan message carries. */
export const HEADERS = {
  schema: "Glyphscan-Schema",
  traceparent: "traceparent",
  tracestate: "tracestate",
  msgId: "Nats-Msg-Id",
  /** On a replayed dead letter: `DLQ:<seq>` of the dead letter it came from. */
  replayOf: "Glyphscan-Replay-Of",
} as const;

/** Idempotency keys come from content, so a replayed publish is dropped by the stream's window. */
export const msgIds = {
  feed: (source: string, contentHash: string) => `feed:${source}:${contentHash}`,
  admit: (region: string, domain: string, epoch: number) => `admit:${region}:${domain}:${epoch}`,
  job: (jobId: string) => `job:${jobId}`,
  result: (jobId: string) => `result:${jobId}`,
  compliance: (jobId: string) => `compliance:${jobId}`,
  /** The same scan's verdicts again, once its pending verdicts are decided (keyed by a hash of the new verdicts). */
  complianceRecheck: (jobId: string, verdictsHash: string) => `compliance:${jobId}:recheck:${verdictsHash}`,
  deadLetter: (stage: Stage, key: string) => `dlq:${stage}:${key}`,
  /** A replay of the dead letter stored at this DLQ sequence. */
  replay: (dlqSeq: number) => `replay:${dlqSeq}`,
} as const;

/** The variable token of each subject family, for low-cardinality names: `jobs.eu` → `jobs.{region}`. */
const SUBJECT_SLOTS: Readonly<Record<string, string>> = {
  feeds: "source",
  admit: "region",
  jobs: "region",
  results: "region",
  compliance: "region",
  dlq: "stage",
};

/** A subject as a template for span and metric names; unknown subjects come back unchanged. */
export function subjectTemplate(subject: string): string {
  const [head] = subject.split(".", 1);
  const slot = SUBJECT_SLOTS[head ?? ""];
  return slot ? `${head}.{${slot}}` : subject;
}
