/**
 * Shapes of every stored document, the licensing ones included. This file imports nothing of ours
 * but protocol types (the bottom layer), so store, frontier and licensing code can all name them
 * without importing each other. Field names carry no dots (the MongoDB-wire servers we run on
 * refuse them in keys).
 */
import type { FailureKind, FontMetadata, ScanReport, VERDICT_KINDS } from "../../protocol/mod.ts";

/** A licence verdict, as the `compliance-verdict` message names it. */
export type Verdict = (typeof VERDICT_KINDS)[number];

export type VerdictCounts = Record<Verdict, number>;

export interface VerdictChanges {
  sinceJobId: string;
  added: string[];
  removed: string[];
  changed: Array<{ sha256: string; from: Verdict; to: Verdict }>;
}

/** Kept on the scan and, for the latest scan, on the domain. */
export interface ComplianceSummary {
  counts: VerdictCounts;
  /** Null on the domain's first assessed scan. */
  changes: VerdictChanges | null;
  assessedAt: Date;
}

/** The name fields a licence claim is read from, as FontMetadata names them (IDs 13, 14, 0). */
export type ClaimField = "license" | "licenseUrl" | "copyright";

export interface NameFieldEvidence {
  field: ClaimField;
  value: string;
}

export interface VerdictEvidence {
  /** The licence record relied on. */
  licenseId: string | null;
  licensee: string | null;
  /** Name fields the decision read (IDs 13, 14, 0). */
  nameFields: NameFieldEvidence[];
  provider: string | null;
  /** The open-font catalogue entry that matched the family. */
  catalogue: { id: string; licence: string } | null;
  externalReference: string | null;
  /** Licence records that name this font for the domain but do not cover this use, and why. */
  rejected: Array<{ licenseId: string; why: string }>;
}

export interface FontVerdict {
  sha256: string;
  /** The family the file names itself (name ID 16/1), else the first CSS family. */
  family: string | null;
  cssFamilies: string[];
  verdict: Verdict;
  /** The licence: a registry id, a provider, or an SPDX-style id of an open licence. */
  licence: string | null;
  reason: string;
  evidence: VerdictEvidence;
}

/** Why a scan failed, as the frontier schedules it (failures.ts maps reports to these). */
export type CauseClass =
  | "dns"
  | "tls"
  | "timeout"
  | "http-status"
  | "browser-crash"
  | "ssrf-refused"
  /** No result within the lease: the scanner (or its browser) died on the site every delivery. */
  | "lease-expired"
  | "other";

/** One entry of a domain's attempt history. */
export interface AttemptRecord {
  at: Date;
  attempt: number;
  jobId: string;
  /** `ok`, or the cause class of the failure. */
  cause: CauseClass | "ok";
  /** The scanner's own failure kind (finer than the class). */
  kind: FailureKind | null;
  httpStatus: number | null;
  reason: string | null;
  /** The scanner node that answered. */
  node: string;
}

/** Lifecycle of a domain in the frontier. */
export type DomainState = "queued" | "leased" | "scanned" | "retry" | "failed";

/** The latest scan of a domain, kept on the domain for fast lookups. */
export interface ScanSummary {
  jobId: string;
  status: ScanReport["status"];
  failureKind: FailureKind | null;
  failureMessage: string | null;
  finishedAt: Date;
  path: ScanReport["path"];
  usedFamilies: string[];
  declaredOnlyFamilies: string[];
  fileCount: number;
  /** Verdict counts of the scan and what changed since the previous one (absent before licensing). */
  compliance?: ComplianceSummary | null;
}

export interface DomainDoc {
  _id: string;
  region: string;
  state: DomainState;
  seedUrl: string;
  sources: string[];
  firstSeenAt: Date;
  lastSeenAt: Date;
  /** When the domain is next due; while leased, when the lease runs out. Null: parked. */
  nextScanAt: Date | null;
  /** Scan attempts since the last success. */
  attempts: number;
  leaseToken: string | null;
  leaseJobId: string | null;
  leaseUntil: Date | null;
  lastScanAt: Date | null;
  scanCount: number;
  latest: ScanSummary | null;
  /**
   * The newest scan with licence verdicts, which the next one's changes are computed against
   * (results-actor.ts); absent before the first.
   */
  assessed?: { jobId: string; finishedAt: Date } | null;
  /** W3C traceparent of the admission, so scans join the trace that found the domain. */
  traceparent: string | null;
}

export interface ScanDoc {
  _id: string; // job id: a redelivered result overwrites, never duplicates
  domain: string;
  region: string;
  attempt: number;
  scannerNode: string;
  leaseToken: string;
  /** False when the result arrived after its lease had been given to another job. */
  onCurrentLease: boolean;
  status: ScanReport["status"];
  failure: ScanReport["failure"];
  path: ScanReport["path"];
  pages: ScanReport["pages"];
  faces: ScanReport["faces"];
  files: Array<Omit<ScanReport["files"][number], "metadata"> & { family: string | null }>;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
  recordedAt: Date;
  /** Requests the scanner refused or cut (SSRF guard, size cap), with the reason (absent on older scans). */
  blocked?: NonNullable<ScanReport["blocked"]>;
  /** Fonts that rendered text on the pages, as Chromium reports them (absent on older scans). */
  renderedFonts?: NonNullable<ScanReport["renderedFonts"]>;
  /** Licence verdict of each font file used, with evidence (absent on scans recorded before licensing). */
  verdicts?: FontVerdict[];
  compliance?: ComplianceSummary | null;
}

/** The font catalogue: one document per distinct file, parsed once. */
export interface FontDoc {
  _id: string; // sha256
  bytes: number;
  metadata: FontMetadata | null;
  parseError: string | null;
  firstSeenAt: Date;
  lastSeenAt: Date;
  firstUrl: string;
}

/** A licence from the registry (`glyphscan licenses import`), keyed by the licence's own stable id. */
export interface LicenseDoc {
  _id: string;
  licensee: string;
  /** Registrable domains the licence covers (and their subdomains). */
  domains: string[];
  family: string;
  /** Family and foundry without case, spaces or punctuation, for matching. */
  familyKey: string;
  foundry: string | null;
  foundryKey: string | null;
  /** When set, only these files are licensed. */
  sha256: string[];
  type: "web" | "app" | "desktop";
  /** Limits as sold; recorded as evidence, not enforced (page views are not observed). */
  pageViews: number | null;
  maxDomains: number | null;
  validFrom: Date | null;
  validTo: Date | null;
  /** SHA-256 of the normalised record: a re-import with the same hash changes nothing. */
  contentHash: string;
  importedAt: Date;
  updatedAt: Date;
}

/**
 * Which licences name a domain, keyed by the domain: lookups by `_id` are the only ones every server
 * answers without scanning the collection, so the registry keeps this index itself.
 */
export interface LicenseDomainDoc {
  _id: string;
  licenseIds: string[];
}

/**
 * The frontier's own fields on a domain document. Dispatch order: manual rescans first, then
 * highest `priority` (the highest of the domain's sources'), then soonest due.
 */
export type FrontierDoc = DomainDoc & {
  priority?: number;
  /** A manual rescan is pending: set by requestRescan, cleared by the scan that answers it. */
  manual?: boolean;
  /** SHA-256 of the sorted set of font file digests of the last successful scan. */
  fontsKey?: string;
  /** The adaptive interval that scheduled the next scan after the last successful one. */
  rescanMs?: number;
  /** The IP address of the last scan (per-IP politeness); null or absent before one is known. */
  ip?: string | null;
  /** The last `historyLimit` scan attempts, oldest first. */
  history?: AttemptRecord[];
  /** When the domain was parked after its last attempt (null while it is scheduled). */
  parkedAt?: Date | null;
};

/** The frontier's leases on one IP address (`_id`: `<region>|<ip>`), for per-IP politeness. */
export interface HostDoc {
  _id: string;
  /** Domains leased on this address and when each lease runs out. */
  leases: Array<{ d: string; until: Date }>;
  /** When the last lease on this address started. */
  lastAt: Date | null;
}

/**
 * A document of the `_id`-keyed due queue (store/due-wheel.ts): either an entry page of one
 * bucket, or a rank's cursor.
 */
export interface DueWheelDoc {
  _id: string;
  /** Entry page: `"<dueMs>|<domain>"` strings due in the page's bucket (emptied once used). */
  dueEntries?: string[];
  /** Cursor: the oldest bucket of the rank that may still hold entries. */
  oldestBucket?: number;
}

/**
 * A page of a domain's scan index (scan-index.ts): `_id` `<domain>|<n>`, scans in finish order.
 */
export interface ScanIndexDoc {
  _id: string;
  /** Scans of this page: job id and finish time, oldest first. */
  e: Array<{ j: string; f: Date }>;
  /** Page 0 only: the number of the last page. */
  last?: number;
  /** Page 0 only: whether every scan of the domain is listed. */
  complete?: boolean;
}
