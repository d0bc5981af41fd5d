/**
 * Pending verdicts, decided once the licensing service answers again. A verdict is `pending` when
 * nothing but the external licensing service could decide it and the service could not answer;
 * without this, it would stay pending until the domain's next scan (a week by default). Every
 * `licensing.pendingRecheckIntervalMs` this service finds the region's domains whose latest scan
 * has pending verdicts, asks the service again about those fonts only (the verdict engine decides
 * them with the registry and catalogue as on the normal path), stores the decided verdicts and the
 * compliance summary on the scan and the domain, and publishes a `compliance-verdict` event for the
 * scan on `compliance.<region>`, like the results writer does.
 *
 * Safe with several results nodes in a region: a scan is updated only if its assessment is still
 * the one that was read (`compliance.assessedAt`); where the server does not make that update atomic
 * (two such updates may both go through), both nodes wrote the same verdicts and publish
 * the event under the same id, derived from them, so the stream keeps one.
 * While the service is still down a round stops at the first domain it cannot decide; the next
 * round starts after that domain (by id), so a domain the service always fails on delays no other.
 */
import { createHash } from "node:crypto";
import type { JetStreamClient } from "@nats-io/jetstream";
import { publishMessage } from "../../cluster/envelope.ts";
import { errorMessage } from "../../cluster/errors.ts";
import type { Logger } from "../../cluster/log.ts";
import { Periodic } from "../../cluster/periodic.ts";
import type { Service, ServiceState } from "../../cluster/service.ts";
import { msgIds, subjects, type ComplianceVerdict, type FontFile, type ScanResult } from "../../protocol/mod.ts";
import type { Stores } from "../store/database.ts";
import type { ScanDoc } from "../store/documents.ts";
import { refreshLookupView } from "../store/lookup-view.ts";
import {
  assessScan,
  complianceEvent,
  countVerdicts,
  diffVerdicts,
  type ComplianceSummary,
  type LicensingDeps,
} from "./compliance.ts";
import type { FontVerdict } from "./verdict.ts";

export interface PendingRecheckOptions {
  intervalMs: number;
  /** Most domains re-checked per round. */
  batch: number;
}

/** What a re-check of one domain's latest scan came to. */
export type RecheckOutcome =
  | {
      kind: "decided";
      jobId: string;
      verdicts: FontVerdict[];
      summary: ComplianceSummary;
      event: ComplianceVerdict;
      /** Derived from the decided verdicts: whoever decides the same scan alike publishes the same id. */
      msgId: string;
    }
  /** The service still could not answer: nothing written. */
  | { kind: "still-pending"; jobId: string }
  /** Nothing to do: the scan changed meanwhile (a newer scan, another node won) or has no pending verdict. */
  | { kind: "skipped"; jobId: string; why: string };

export interface RecheckRound {
  /** Domains looked at. */
  checked: number;
  decided: number;
  published: number;
  /** The round stopped early because the service still could not answer. */
  serviceDown: boolean;
}

const PENDING = "pending";

/** The scan as the report the verdict engine reads, with only the files named in `only` (metadata from the catalogue). */
async function reportOf(c: Stores, scan: ScanDoc, only: ReadonlySet<string>): Promise<ScanResult> {
  const files: FontFile[] = [];
  const seen = new Set<string>();
  for (const stored of scan.files) {
    const { family, ...file } = stored;
    void family; // the scan's copy of the name; the catalogue has the metadata
    if (!only.has(file.sha256) || seen.has(file.sha256)) continue;
    seen.add(file.sha256);
    // By `_id`, one at a time: the one lookup every server we run on answers without scanning; few files are pending.
    const font = await c.fonts.findOne({ _id: file.sha256 }, { projection: { metadata: 1 } });
    files.push({ ...file, metadata: font?.metadata ?? null });
  }
  return {
    jobId: scan._id,
    domain: scan.domain,
    region: scan.region,
    leaseToken: scan.leaseToken,
    attempt: scan.attempt,
    scannerNode: scan.scannerNode,
    report: {
      status: scan.status,
      failure: scan.failure,
      path: scan.path,
      pages: scan.pages,
      faces: scan.faces.filter((f) => f.fileSha256.some((s) => only.has(s))),
      files,
      startedAt: scan.startedAt.toISOString(),
      finishedAt: scan.finishedAt.toISOString(),
    },
  };
}

/**
 * Re-decides the pending verdicts of one scan. On a decision, writes the scan (only if its
 * assessment is unchanged since it was read) and the domain's latest summary (only if this scan is
 * still its latest), and returns the event to publish.
 */
export async function recheckScan(
  c: Stores,
  licensing: LicensingDeps,
  jobId: string,
  now = new Date(),
): Promise<RecheckOutcome> {
  const scan = await c.scans.findOne({ _id: jobId });
  if (!scan?.verdicts || !scan.compliance) return { kind: "skipped", jobId, why: "scan not assessed" };
  const assessedAt = scan.compliance.assessedAt;
  const pending = new Set(scan.verdicts.filter((v) => v.verdict === PENDING).map((v) => v.sha256));
  if (pending.size === 0) {
    // The domain still counts pending verdicts the scan no longer has (a crash between the two writes): repair it.
    await setLatestCompliance(c, scan.domain, jobId, scan.compliance);
    return { kind: "skipped", jobId, why: "no pending verdict" };
  }
  const result = await reportOf(c, scan, pending);
  const fresh = new Map((await assessScan(licensing, result, now)).map((v) => [v.sha256, v]));
  const verdicts = scan.verdicts.map((v) => (v.verdict === PENDING ? (fresh.get(v.sha256) ?? v) : v));
  if (verdicts.every((v, i) => v.verdict === scan.verdicts![i]!.verdict)) return { kind: "still-pending", jobId };

  // What changed is still measured against the domain's previous assessed scan, as on the normal path.
  const since = scan.compliance.changes?.sinceJobId;
  const previous = since ? await c.scans.findOne({ _id: since }, { projection: { verdicts: 1 } }) : null;
  const changes = previous
    ? diffVerdicts({ jobId: previous._id, verdicts: previous.verdicts ?? [] }, verdicts)
    : scan.compliance.changes;
  const summary: ComplianceSummary = { counts: countVerdicts(verdicts), changes, assessedAt: now };
  const written = await c.server.updateIf(
    c.scans,
    jobId,
    { "compliance.assessedAt": assessedAt },
    { $set: { verdicts, compliance: summary } },
  );
  if (!written) return { kind: "skipped", jobId, why: "assessed again meanwhile" };
  await setLatestCompliance(c, scan.domain, jobId, summary);
  // Lookups show the decided verdicts now, not when the view entry expires (a Redis outage: then).
  await refreshLookupView(c, scan.domain);
  const hash = createHash("sha256")
    .update(JSON.stringify(verdicts.map((v) => [v.sha256, v.verdict, v.licence, v.reason])))
    .digest("hex")
    .slice(0, 32);
  const event = complianceEvent(result, verdicts, summary);
  return { kind: "decided", jobId, verdicts, summary, event, msgId: msgIds.complianceRecheck(jobId, hash) };
}

/** The domain's latest summary gets the scan's compliance, only while that scan is still its latest. */
async function setLatestCompliance(c: Stores, domain: string, jobId: string, compliance: ComplianceSummary) {
  await c.server.updateIf(c.domains, domain, { "latest.jobId": jobId }, { $set: { "latest.compliance": compliance } });
}

export class PendingRecheck implements Service {
  readonly name: string;
  state: ServiceState = "starting";
  readonly #region: string;
  readonly #c: Stores;
  readonly #licensing: LicensingDeps;
  readonly #js: JetStreamClient;
  readonly #log: Logger;
  readonly #o: PendingRecheckOptions;
  readonly #rounds: Periodic;
  /** The last domain a round looked at: the next round goes on after it. */
  #after: string | null = null;
  /** Events stored but not yet published (NATS away): published first in the next round. */
  readonly #unpublished: Array<{ event: ComplianceVerdict; msgId: string }> = [];

  constructor(
    region: string,
    collections: Stores,
    licensing: LicensingDeps,
    js: JetStreamClient,
    log: Logger,
    options: PendingRecheckOptions,
  ) {
    this.#region = region;
    this.#c = collections;
    this.#licensing = licensing;
    this.#js = js;
    this.#log = log.child({ service: "pending-recheck", region });
    this.#o = options;
    this.name = `pending-recheck-${region}`;
    // The first round waits an interval too: a node starting during an outage has nothing new to learn.
    this.#rounds = new Periodic({
      intervalMs: options.intervalMs,
      tick: () => this.#round(),
      onError: (err) => this.#log.warn({ err: errorMessage(err) }, "pending re-check failed; next round"),
    });
  }

  async start(): Promise<void> {
    this.state = "running";
    await this.#rounds.start();
  }

  async stop(): Promise<void> {
    if (this.state === "stopped") return;
    this.state = "stopped";
    await this.#rounds.stop();
  }

  async #round(): Promise<void> {
    const r = await this.recheckOnce();
    if (r.decided > 0 || r.serviceDown)
      this.#log.info(r, r.serviceDown ? "pending verdicts: service still unavailable" : "pending verdicts decided");
  }

  async #publish(item: { event: ComplianceVerdict; msgId: string }): Promise<boolean> {
    try {
      await publishMessage(this.#js, {
        subject: subjects.compliance(item.event.region),
        schema: "compliance-verdict",
        body: item.event,
        msgId: item.msgId,
      });
      return true;
    } catch (err) {
      this.#log.warn({ err: errorMessage(err), jobId: item.event.jobId }, "verdict event not published; next round");
      this.#unpublished.push(item);
      return false;
    }
  }

  /** One round over the region's domains whose latest scan has pending verdicts. */
  async recheckOnce(now = new Date()): Promise<RecheckRound> {
    const round: RecheckRound = { checked: 0, decided: 0, published: 0, serviceDown: false };
    for (const item of this.#unpublished.splice(0)) if (await this.#publish(item)) round.published++;
    // Rounds go round the pending domains by id, so one the service keeps failing on cannot starve the rest.
    const page = (after: string | null) =>
      this.#c.domains
        .find(
          {
            region: this.#region,
            "latest.compliance.counts.pending": { $gt: 0 },
            ...(after === null ? {} : { _id: { $gt: after } }),
          },
          { projection: { _id: 1, latest: 1 } },
        )
        .sort({ _id: 1 })
        .limit(this.#o.batch)
        .toArray();
    let domains = await page(this.#after);
    if (domains.length === 0 && this.#after !== null) domains = await page((this.#after = null));
    for (const d of domains) {
      if (this.state === "stopped") break;
      if (!d.latest) continue;
      round.checked++;
      this.#after = d._id;
      const outcome = await recheckScan(this.#c, this.#licensing, d.latest.jobId, now);
      if (outcome.kind === "still-pending") {
        round.serviceDown = true;
        break;
      }
      if (outcome.kind !== "decided") continue;
      round.decided++;
      if (await this.#publish({ event: outcome.event, msgId: outcome.msgId })) round.published++;
    }
    if (!round.serviceDown && domains.length < this.#o.batch) this.#after = null;
    return round;
  }
}
