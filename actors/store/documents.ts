/** Shapes of the stored documents. Field names carry no dots (FerretDB v1 refuses them). */
import type { FailureKind, FontMetadata, ScanReport } from "../../protocol/mod.ts";
import type { ComplianceSummary } from "../licensing/compliance.ts";
import type { FontVerdict } from "../licensing/verdict.ts";

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
 * Which licences name a domain, keyed by the domain: lookups by `_id` are the only ones FerretDB v1
 * answers without scanning the collection, so the registry keeps this index itself.
 */
export interface LicenseDomainDoc {
  _id: string;
  licenseIds: string[];
}
