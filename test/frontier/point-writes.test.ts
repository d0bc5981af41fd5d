/**
 * What each scan result costs the database: the frontier's lease cycle and the results writer
 * reach documents by `_id` only, so their cost does not grow with the number of domains or scans
 * (FerretDB v1, the default stack's server, answers any other filter by reading the whole
 * collection: 859 ms per update at 100k domains in `npm run bench:ingest`). Every command the
 * driver sends is watched.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import type { CommandStartedEvent, Document } from "mongodb";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { recheckScan } from "../../actors/licensing/pending-recheck.ts";
import { recordScan, summarise } from "../../actors/results/results-actor.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { openDatabase } from "../../actors/store/database.ts";
import type { ScanJob, ScanResult } from "../../protocol/mod.ts";
import { scanResultFor } from "../helpers/frontier.ts";
import { startStack, type TestStack } from "../helpers/stack.ts";
import { LocalLicensingService } from "../licensing/local-licensing-service.ts";

const FONT = readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));
const MIN = 60_000;

let stack: TestStack;
test.before(async () => {
  stack = await startStack();
});
test.after.always(() => stack?.stop());

type Sent = { collection: string; command: string; filter: Document };

/** The filters of every read and write the driver sends, by collection. */
function filtersOf(e: CommandStartedEvent): Sent[] {
  const c = e.command;
  const sent = (collection: unknown, filter: unknown): Sent => ({
    collection: String(collection),
    command: e.commandName,
    filter: filter ?? {},
  });
  switch (e.commandName) {
    case "find":
      return [sent(c.find, c.filter)];
    case "findAndModify":
      return [sent(c.findAndModify, c.query)];
    case "update":
      return (c.updates as Document[]).map((u) => sent(c.update, u.q));
    case "delete":
      return (c.deletes as Document[]).map((d) => sent(c.delete, d.q));
    case "count":
      return [sent(c.count, c.query)];
    case "aggregate":
      return [sent(c.aggregate, (c.pipeline as Document[])[0]?.$match)];
    default:
      return [];
  }
}

const fontReport = (job: ScanJob, at: Date): Partial<ScanResult["report"]> => {
  const url = `http://${job.domain}/brand.ttf`;
  const sha256 = sha256Hex(FONT);
  return {
    faces: [
      {
        ...{ family: "Brand Sans", weight: "400", style: "normal", used: true, declaredIn: "stylesheet" as const },
        ...{ srcUrls: [url], fileSha256: [sha256], provider: "self-hosted" },
      },
    ],
    files: [
      {
        ...{ sha256, url, bytes: FONT.length, contentType: "font/ttf", via: "font-request" as const },
        ...readFontMetadata(FONT),
        provider: "self-hosted",
      },
    ],
    startedAt: new Date(at.getTime() - 500).toISOString(),
  };
};

test("the lease cycle, the results writer and the pending re-check reach domains and scans by _id only", async (t) => {
  const config = stack.config({ roles: ["frontier", "results"], frontier: { leaseMs: 10 * MIN } });
  const db = await openDatabase(config, { clientOptions: { monitorCommands: true } });
  t.teardown(() => db.close());
  const service = new LocalLicensingService();
  await service.start();
  t.teardown(() => service.stop());
  const licensing = service.deps(db.collections);
  const store = new DomainStore(db.collections, config.frontier);
  const t0 = new Date(Date.now() - 60 * MIN);
  const at = (minutes: number) => new Date(t0.getTime() + minutes * MIN);
  const domains = ["a.test", "b.test", "c.test"];
  await store.admit(
    domains.map((domain) => ({
      admission: { domain, seedUrl: `http://${domain}/`, source: "t", region: "local", admittedAt: t0.toISOString() },
      traceparent: undefined,
    })),
    t0,
    { fresh: true },
  );

  const sent: Sent[] = [];
  db.client.on("commandStarted", (e) => sent.push(...filtersOf(e)));
  const leased = await store.leaseDue("local", 10, t0);
  const job = (d: string) => leased.find((l) => l.job.domain === d)!.job;
  t.deepEqual(leased.map((l) => l.job.domain).sort(), domains);
  // a: scanned with a font and assessed; b: failed, retried later; c: its lease given back.
  const first = scanResultFor(job("a.test"), at(1), fontReport(job("a.test"), at(1)));
  t.is((await recordScan(db.collections, store, first, at(1), licensing)).lease, "current");
  const failed = scanResultFor(job("b.test"), at(1), {
    status: "failed",
    failure: { kind: "timeout", message: "slow" },
  });
  t.is((await recordScan(db.collections, store, failed, at(1), licensing)).lease, "current");
  await store.releaseLease("c.test", job("c.test").leaseToken, at(1));
  t.is((await store.get("c.test"))?.state, "queued");

  // A rescan of a makes it due now; the next scan is compared with the first.
  t.is(await store.requestRescan("a.test", at(2)), "requested");
  const round = await store.leaseDue("local", 10, at(2));
  const leasedAgain = (d: string) => round.find((l) => l.job.domain === d)!.job;
  const again = leasedAgain("a.test");
  t.is(await store.requestRescan("a.test", at(2)), "leased", "a live lease is left alone");
  const second = scanResultFor(again, at(3), fontReport(again, at(3)));
  const recorded = await recordScan(db.collections, store, second, at(3), licensing);
  t.is(recorded.lease, "current");
  t.truthy(recorded.compliance?.changes, "compared with the first scan");
  t.is((await store.get("a.test"))?.assessed?.jobId, second.jobId);

  // The first lease's job answering again, late: kept as a scan, schedules nothing.
  const late = scanResultFor(job("a.test"), at(4), fontReport(job("a.test"), at(4)));
  t.is(await store.recordOutcome(late, summarise(late), at(4)), "stale");
  t.is((await store.get("a.test"))?.latest?.jobId, late.jobId, "newer than the latest: shown as latest");
  // A lease token that is not the domain's changes nothing.
  const before = await store.get("b.test");
  await store.releaseLease("b.test", "not-the-token", at(4));
  t.deepEqual(await store.get("b.test"), before);

  // c, scanned while the licensing service is away: pending, then decided once it is back.
  const cJob = leasedAgain("c.test");
  await service.stop();
  const pending = scanResultFor(cJob, at(5), fontReport(cJob, at(5)));
  await recordScan(db.collections, store, pending, at(5), licensing);
  t.is((await store.get("c.test"))?.latest?.compliance?.counts.pending, 1);
  await service.start();
  t.is((await recheckScan(db.collections, licensing, pending.jobId, at(6))).kind, "decided");
  t.is((await store.get("c.test"))?.latest?.compliance?.counts.pending, 0);

  const watched = sent.filter((s) => s.collection === "domains" || s.collection === "scans");
  t.true(watched.length > 20, `${watched.length} commands watched`);
  const notPoint = watched.filter((s) => typeof s.filter["_id"] !== "string");
  t.deepEqual(notPoint, [], "every filter names one document by _id");
  if (!db.collections.server.indexedFilters) {
    const guarded = watched.filter((s) => Object.keys(s.filter).length !== 1);
    t.deepEqual(guarded, [], "on FerretDB, by _id alone: any other field reads the whole collection");
  }
});
