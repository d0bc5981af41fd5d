/**
 * Pending verdicts decided when the licensing service comes back, without waiting for a rescan: a
 * node with the results role (real NATS, MongoDB-wire server and local licensing service) records
 * scans while the service is down (pending), keeps them pending while it still fails, and once it
 * answers decides them (licensed where it grants, unlicensed where not) on the scan and the domain,
 * and publishes the scan's compliance-verdict event again on compliance.<region>.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startNode } from "../../actors/compose.ts";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { openCatalogue } from "../../actors/licensing/open-licence.ts";
import { LicenseRegistry } from "../../actors/licensing/registry.ts";
import { LicensingClient } from "../../actors/licensing/licensing-client.ts";
import { PendingRecheck, recheckScan } from "../../actors/licensing/pending-recheck.ts";
import { recordScan } from "../../actors/results/results-actor.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { connectNats, createLogger, publishMessage, type ClusterNode, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import {
  complianceVerdictV1,
  msgIds,
  streams,
  subjects,
  type ComplianceVerdict,
  type FontFile,
  type ScanResult,
} from "../../protocol/mod.ts";
import { eventually, startStack, type TestStack } from "../helpers/stack.ts";
import { LocalLicensingService } from "./local-licensing-service.ts";

const FONT = readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));
const FONT_SHA = sha256Hex(FONT);

let stack: TestStack;
let config: Config;
let node: ClusterNode;
let nats: NatsHandles;
let db: Database;
let store: DomainStore;
let service: LocalLicensingService;
const events: ComplianceVerdict[] = [];

test.before(async () => {
  stack = await startStack();
  service = new LocalLicensingService();
  await service.start();
  await service.stop(); // down from the start; its port is kept for when it comes back
  config = stack.config({
    roles: ["results"],
    licensing: {
      serviceUrl: service.url,
      timeoutMs: 1_000,
      retries: 0,
      retryBaseMs: 50,
      breakerFailures: 3,
      breakerResetMs: 300,
      cacheTtlMs: 1,
      pendingRecheckIntervalMs: 300,
    },
  });
  node = await startNode(config, createLogger(config.logLevel, {}));
  nats = await connectNats(config, "pending-recheck-test");
  db = await openDatabase(config);
  store = new DomainStore(db.collections, config.frontier);
  const messages = await (await nats.js.consumers.get(streams.compliance)).consume();
  void (async () => {
    for await (const m of messages) events.push(complianceVerdictV1.parse(m.json()));
  })();
});

test.after.always(async () => {
  await node?.stop();
  await nats?.nc.close();
  await db?.close();
  await service?.stop();
  await stack?.stop();
});

function fontFile(domain: string): FontFile {
  const { metadata, parseError } = readFontMetadata(FONT);
  const url = `http://${domain}/brand.ttf`;
  return {
    sha256: FONT_SHA,
    url,
    bytes: FONT.length,
    contentType: "font/ttf",
    via: "font-request",
    metadata,
    parseError,
    provider: "self-hosted",
  };
}

/** What a scanner publishes for a leased job on a site self-hosting the commercial font. */
function scanResult(job: { jobId: string; domain: string; leaseToken: string; attempt: number }): ScanResult {
  const f = fontFile(job.domain);
  const now = Date.now();
  return {
    jobId: job.jobId,
    domain: job.domain,
    region: config.region,
    leaseToken: job.leaseToken,
    attempt: job.attempt,
    scannerNode: "test-scanner",
    report: {
      status: "ok",
      failure: null,
      path: "static",
      pages: [{ url: `http://${job.domain}/`, finalUrl: `http://${job.domain}/`, httpStatus: 200 }],
      faces: [
        {
          family: "Brand Sans",
          weight: "400",
          style: "normal",
          used: true,
          declaredIn: "stylesheet",
          srcUrls: [f.url],
          fileSha256: [f.sha256],
          provider: "self-hosted",
        },
      ],
      files: [f],
      startedAt: new Date(now - 500).toISOString(),
      finishedAt: new Date(now).toISOString(),
    },
  };
}

/** Admits and leases the domains as the frontier does, and publishes their scan results as a scanner would. */
async function scan(domains: string[]): Promise<ScanResult[]> {
  await store.admit(
    domains.map((domain) => ({
      admission: {
        domain,
        region: config.region,
        seedUrl: `http://${domain}/`,
        source: "test",
        admittedAt: new Date().toISOString(),
      },
      traceparent: undefined,
    })),
  );
  const leased = await store.leaseDue(config.region, domains.length);
  const results = leased.map(({ job }) => scanResult(job));
  for (const r of results)
    await publishMessage(nats.js, {
      subject: subjects.results(r.region),
      schema: "scan-result",
      body: r,
      msgId: msgIds.result(r.jobId),
    });
  return results;
}

test.serial(
  "service down during the scan: pending; still failing: stays pending; back: licensed or unlicensed, stored and published",
  async (t) => {
    const granted = "granted-recheck.test";
    const refused = "refused-recheck.test";
    const results = await scan([granted, refused]);
    t.is(results.length, 2);

    for (const domain of [granted, refused]) {
      const d = await eventually(
        `${domain} assessed while the service is down`,
        async () =>
          (await db.collections.domains.findOne({ _id: domain, "latest.compliance": { $ne: null } })) ?? undefined,
        60_000,
      );
      t.like(d.latest?.compliance?.counts, { pending: 1, licensed: 0, unlicensed: 0 });
    }
    const first = await eventually("the first events", async () =>
      events.filter((e) => e.domain === granted || e.domain === refused).length === 2 ? [...events] : undefined,
    );
    t.true(first.every((e) => e.counts.pending === 1));

    // Up but failing: re-checks reach it (it counts the requests) and nothing is guessed.
    service.failures = [503, 503, 503];
    await service.start();
    await eventually("re-checks reaching the failing service", async () => (service.requests >= 2 ? true : undefined));
    for (const domain of [granted, refused]) {
      const d = await db.collections.domains.findOne({ _id: domain });
      t.is(d?.latest?.compliance?.counts.pending, 1, `${domain} still pending while the service fails`);
    }
    t.is(events.filter((e) => e.domain === granted || e.domain === refused).length, 2, "no event without a decision");

    // Answering: one domain granted, the other not.
    service.grant(granted, FONT_SHA, "svc-recheck-1");
    service.failures = [];
    const licensedEvent = await eventually(
      "a verdict event deciding the granted domain",
      async () => events.find((e) => e.domain === granted && e.counts.licensed === 1),
      60_000,
    );
    const unlicensedEvent = await eventually(
      "a verdict event deciding the refused domain",
      async () => events.find((e) => e.domain === refused && e.counts.unlicensed === 1),
      60_000,
    );
    const byDomain = new Map(results.map((r) => [r.domain, r]));
    t.is(licensedEvent.jobId, byDomain.get(granted)!.jobId, "the same scan, decided later");
    t.like(licensedEvent.counts, { pending: 0, licensed: 1 });
    t.like(licensedEvent.fonts[0], { sha256: FONT_SHA, verdict: "licensed", licence: "svc-recheck-1" });
    t.is(licensedEvent.changes, null, "the domain's first scan");
    t.like(unlicensedEvent.fonts[0], { sha256: FONT_SHA, verdict: "unlicensed" });

    // Stored on the scan (verdict and evidence) and on the domain (summary).
    const grantedScan = await db.collections.scans.findOne({ _id: licensedEvent.jobId });
    t.like(grantedScan?.verdicts?.[0], { verdict: "licensed", licence: "svc-recheck-1" });
    t.is(grantedScan?.verdicts?.[0]?.evidence.externalReference, "svc-recheck-1");
    t.true(grantedScan!.compliance!.assessedAt > grantedScan!.finishedAt, "re-assessed after the scan");
    const grantedDomain = await db.collections.domains.findOne({ _id: granted });
    t.like(grantedDomain?.latest?.compliance?.counts, { licensed: 1, pending: 0 });
    t.is(grantedDomain?.latest?.jobId, licensedEvent.jobId, "no rescan was needed");
    const refusedDomain = await db.collections.domains.findOne({ _id: refused });
    t.like(refusedDomain?.latest?.compliance?.counts, { unlicensed: 1, pending: 0 });

    // Decided once: nothing is left to ask about.
    const requests = service.requests;
    t.like(await recheckScan(db.collections, service.deps(db.collections), licensedEvent.jobId), {
      kind: "skipped",
      why: "no pending verdict",
    });
    t.is(service.requests, requests);
  },
);

test.serial("two re-checkers of the same scan: one writes, the other skips; a newer scan is left alone", async (t) => {
  const domain = "race-recheck.test";
  // Another region than the node's, so its own re-checker stays out of this race.
  const region = "elsewhere";
  await service.stop();
  const downDeps = service.deps(db.collections);
  await store.admit([
    {
      admission: { domain, region, seedUrl: `http://${domain}/`, source: "t", admittedAt: "2026-06-01T00:00:00.000Z" },
      traceparent: undefined,
    },
  ]);
  // Recorded directly (the node's writer is not involved): pending, the service being down.
  const old = { ...scanResult({ jobId: `${domain}:old`, domain, leaseToken: "x", attempt: 1 }), region };
  await recordScan(db.collections, store, old, new Date(), downDeps);
  t.like((await db.collections.scans.findOne({ _id: old.jobId }))?.compliance?.counts, { pending: 1 });

  service.grant(domain, FONT_SHA, "svc-race");
  await service.start();
  const outcomes = await Promise.all([
    recheckScan(db.collections, service.deps(db.collections), old.jobId),
    recheckScan(db.collections, service.deps(db.collections), old.jobId),
  ]);
  // One decides; the other skips, or (where the store lets both conditional writes through) decides alike.
  const decided = outcomes.flatMap((o) => (o.kind === "decided" ? [o] : []));
  t.true(decided.length >= 1);
  t.true(outcomes.every((o) => o.kind === "decided" || o.kind === "skipped"));
  t.is(new Set(decided.map((o) => o.msgId)).size, 1, "the same event id");
  t.true(decided.every((o) => o.verdicts[0]?.verdict === "licensed"));
  const acks = [];
  for (const o of decided)
    acks.push(
      await publishMessage(nats.js, {
        subject: subjects.compliance(region),
        schema: "compliance-verdict",
        body: o.event,
        msgId: o.msgId,
      }),
    );
  t.deepEqual(
    acks.map((a) => a.duplicate),
    decided.map((_, i) => i > 0),
    "the stream keeps one",
  );
  t.like((await db.collections.scans.findOne({ _id: old.jobId }))?.verdicts?.[0], {
    verdict: "licensed",
    licence: "svc-race",
  });

  // A pending verdict on a scan that is no longer the domain's latest does not touch the domain.
  await service.stop();
  const older = { ...scanResult({ jobId: `${domain}:older`, domain, leaseToken: "y", attempt: 1 }), region };
  older.report.finishedAt = "2026-01-01T00:00:00.000Z";
  older.report.startedAt = "2026-01-01T00:00:00.000Z";
  await recordScan(db.collections, store, older, new Date(), downDeps);
  await service.start();
  const r = await recheckScan(db.collections, service.deps(db.collections), older.jobId);
  t.is(r.kind, "decided");
  const d = await db.collections.domains.findOne({ _id: domain });
  t.is(d?.latest?.jobId, old.jobId);
  t.like(d?.latest?.compliance?.counts, { licensed: 1, pending: 0 });
});

test.serial("a domain the service keeps failing on does not hold back the others", async (t) => {
  const region = "rotate";
  const stuck = "a-stuck.rotate.test";
  const fine = "b-fine.rotate.test";
  // A licensing service that fails for one domain only, and grants the other.
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { domain: string; fonts: Array<{ sha256: string }> };
      res.writeHead(body.domain === stuck ? 500 : 200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          results: body.fonts.map((f) => ({ sha256: f.sha256, licensed: true, reference: "svc-rot" })),
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  await store.admit(
    [stuck, fine].map((domain) => ({
      admission: { domain, region, seedUrl: `http://${domain}/`, source: "t", admittedAt: new Date().toISOString() },
      traceparent: undefined,
    })),
  );
  await service.stop();
  for (const domain of [stuck, fine])
    await recordScan(
      db.collections,
      store,
      { ...scanResult({ jobId: `${domain}:1`, domain, leaseToken: "z", attempt: 1 }), region },
      new Date(),
      service.deps(db.collections),
    );
  const client = new LicensingClient({
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    timeoutMs: 1_000,
    retries: 0,
    retryBaseMs: 10,
    breakerFailures: 100,
    breakerResetMs: 1_000,
    cacheTtlMs: 1,
  });
  const recheck = new PendingRecheck(
    region,
    db.collections,
    { registry: new LicenseRegistry(db.collections), catalogue: openCatalogue(), external: client.check.bind(client) },
    nats.js,
    createLogger("silent", {}),
    { intervalMs: 60_000, batch: 10 },
  );
  const first = await recheck.recheckOnce();
  t.like(first, { checked: 1, decided: 0, serviceDown: true }, "stops at the failing domain");
  const second = await recheck.recheckOnce();
  t.like(second, { decided: 1, published: 1 }, "goes on after it");
  const d = await db.collections.domains.findOne({ _id: fine });
  t.like(d?.latest?.compliance?.counts, { licensed: 1, pending: 0 });
  const s = await db.collections.domains.findOne({ _id: stuck });
  t.is(s?.latest?.compliance?.counts.pending, 1, "never guessed");
  await service.start();
});
