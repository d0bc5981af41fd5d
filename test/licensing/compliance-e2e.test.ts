/**
 * Verdicts through the whole pipeline on real servers and Chromium: a corpus site (open fonts from
 * @fontsource) is assessed open-licence; a site self-hosting the commercial fixture is unlicensed
 * until a licence for its domain is imported, and licensed on its next scan; with the licensing
 * service down its fonts are pending, and licensed once it is back. Each assessed scan publishes a
 * compliance-verdict event on compliance.<region>.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startNode } from "../../actors/compose.ts";
import { importLicenses } from "../../actors/licensing/import.ts";
import { LicenseRegistry } from "../../actors/licensing/registry.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { connectNats, createLogger, publishMessage, type ClusterNode, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { complianceVerdictV1, streams, subjects, type ComplianceVerdict } from "../../protocol/mod.ts";
import { sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { eventually, startStack, type TestStack } from "../helpers/stack.ts";
import { LocalLicensingService } from "./local-licensing-service.ts";

const FONT = readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));
const FONT_SHA = sha256Hex(FONT);
const BRAND = "brand-licensing.test";

let stack: TestStack;
let corpus: Corpus;
let brand: http.Server;
let config: Config;
let node: ClusterNode;
let nats: NatsHandles;
let db: Database;
let service: LocalLicensingService;
const events: ComplianceVerdict[] = [];

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 2, tag: "lic" })]);
  brand = http.createServer((req, res) => {
    if (req.url === "/brand.ttf") {
      res.writeHead(200, { "content-type": "font/ttf" });
      return res.end(FONT);
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><html><head><style>
@font-face { font-family: "Brand Sans"; src: url("/brand.ttf") format("truetype"); }
body { font-family: "Brand Sans", sans-serif; }
</style></head><body><h1>Brand</h1><p>The quick brown fox.</p></body></html>`);
  });
  await new Promise<void>((resolve) => brand.listen(0, "127.0.0.1", resolve));
  service = new LocalLicensingService();
  await service.start();
  // Rescans every few seconds, so a licence import shows on the next scan within the test; the
  // licensing service's answers are not cached, so its coming back shows on the next scan too.
  config = stack.config({
    frontier: { rescanIntervalMs: 3_000 },
    licensing: { serviceUrl: service.url, timeoutMs: 2_000, retries: 1, retryBaseMs: 50, cacheTtlMs: 1 },
  });
  node = await startNode(config, createLogger(config.logLevel, {}));
  nats = await connectNats(config, "licensing-e2e");
  db = await openDatabase(config);
  const consumer = await nats.js.consumers.get(streams.compliance);
  const messages = await consumer.consume();
  void (async () => {
    for await (const m of messages) events.push(complianceVerdictV1.parse(m.json()));
  })();
});

test.after.always(async () => {
  await node?.stop();
  await nats?.nc.close();
  await db?.close();
  await corpus?.close();
  await new Promise((r) => brand?.close(r));
  await service?.stop();
  await stack?.stop();
});

test.serial("corpus fonts are open-licence; a licence import flips the commercial font to licensed", async (t) => {
  const site = corpus.sites[0]!;
  const brandUrl = `http://${BRAND}:${(brand.address() as AddressInfo).port}/`;
  for (const url of [site.url, brandUrl])
    await publishMessage(nats.js, {
      subject: subjects.feed("e2e"),
      schema: "feed-submission",
      body: { url, source: "e2e", submittedAt: new Date().toISOString() },
      msgId: `lic:${url}`,
    });

  // The corpus site: every font it uses is open-licence, on the scan, the domain and the event.
  const corpusDomain = await eventually(
    "the corpus site assessed",
    async () =>
      (await db.collections.domains.findOne({ _id: site.domain, "latest.compliance": { $ne: null } })) ?? undefined,
    120_000,
  );
  const scan = await db.collections.scans.findOne({ _id: corpusDomain.latest!.jobId });
  const expected = new Set(site.expectedFiles.map((f) => f.sha256));
  t.deepEqual([...new Set(scan?.verdicts?.map((v) => v.sha256))].sort(), [...expected].sort());
  for (const v of scan?.verdicts ?? []) {
    t.is(v.verdict, "open-licence", `${v.family}: ${v.reason}`);
    t.is(v.licence, "OFL-1.1");
  }
  t.like(corpusDomain.latest?.compliance?.counts, { "open-licence": expected.size, unlicensed: 0, unknown: 0 });
  const corpusEvent = await eventually("a compliance event for the corpus site", async () =>
    events.find((e) => e.domain === site.domain),
  );
  t.is(corpusEvent.fonts.length, expected.size);
  t.true(corpusEvent.fonts.every((f) => f.verdict === "open-licence"));

  // The brand site: the commercial font, self-hosted, with no licence.
  const first = await eventually(
    "the brand site assessed",
    async () => (await db.collections.domains.findOne({ _id: BRAND, "latest.compliance": { $ne: null } })) ?? undefined,
    120_000,
  );
  const firstScan = await db.collections.scans.findOne({ _id: first.latest!.jobId });
  t.is(firstScan?.verdicts?.length, 1);
  t.like(firstScan?.verdicts?.[0], { sha256: FONT_SHA, family: "Glyphscan Commercial Sans", verdict: "unlicensed" });

  const summary = await importLicenses(new LicenseRegistry(db.collections), [
    {
      line: 1,
      data: {
        id: "brand-web-1",
        licensee: "Brand Ltd",
        domains: BRAND,
        family: "Glyphscan Commercial Sans",
        foundry: "Example Type Foundry",
        type: "web",
      },
    },
  ]);
  t.is(summary.inserted, 1);
  const imported = new Date();

  const after = await eventually(
    "a scan of the brand site after the import, assessed licensed",
    async () => {
      const d = await db.collections.domains.findOne({ _id: BRAND });
      return d?.latest?.compliance?.counts.licensed === 1 ? d : undefined;
    },
    60_000,
  );
  t.true(after.latest!.finishedAt > first.latest!.finishedAt);
  t.true(after.latest!.compliance!.assessedAt >= imported);
  const changes = after.latest!.compliance!.changes;
  t.truthy(changes, "compared with the previous scan");
  t.deepEqual(changes?.changed, [{ sha256: FONT_SHA, from: "unlicensed", to: "licensed" }]);
  const afterScan = await db.collections.scans.findOne({ _id: after.latest!.jobId });
  t.like(afterScan?.verdicts?.[0], { verdict: "licensed", licence: "brand-web-1" });
  t.like(afterScan?.verdicts?.[0]?.evidence, { licenseId: "brand-web-1", licensee: "Brand Ltd" });

  const flipped = await eventually("a compliance event with the change", async () =>
    events.find((e) => e.domain === BRAND && e.changes?.changed.some((c) => c.to === "licensed")),
  );
  t.is(flipped.counts.licensed, 1);
  t.is(flipped.fonts[0]?.licence, "brand-web-1");
  t.is(flipped.jobId, after.latest!.jobId);
});

test.serial(
  "licensing service down: the commercial font is pending; back up and granting, licensed on the next scan",
  async (t) => {
    const domain = "brand-service.test";
    await service.stop();
    const url = `http://${domain}:${(brand.address() as AddressInfo).port}/`;
    await publishMessage(nats.js, {
      subject: subjects.feed("e2e"),
      schema: "feed-submission",
      body: { url, source: "e2e", submittedAt: new Date().toISOString() },
      msgId: `lic:${url}`,
    });
    const pending = await eventually(
      "the site assessed while the service is down",
      async () =>
        (await db.collections.domains.findOne({ _id: domain, "latest.compliance": { $ne: null } })) ?? undefined,
      120_000,
    );
    t.like(pending.latest?.compliance?.counts, { pending: 1, unlicensed: 0, licensed: 0 });
    const scan = await db.collections.scans.findOne({ _id: pending.latest!.jobId });
    t.regex(scan?.verdicts?.[0]?.reason ?? "", /licensing service is unavailable \(unreachable: ECONNREFUSED\)/);

    service.grant(domain, FONT_SHA, "svc-brand-1");
    await service.start();
    const licensed = await eventually(
      "a scan after the service came back, licensed through it",
      async () => {
        const d = await db.collections.domains.findOne({ _id: domain });
        return d?.latest?.compliance?.counts.licensed === 1 ? d : undefined;
      },
      60_000,
    );
    t.deepEqual(licensed.latest?.compliance?.changes?.changed, [{ sha256: FONT_SHA, from: "pending", to: "licensed" }]);
    const after = await db.collections.scans.findOne({ _id: licensed.latest!.jobId });
    t.like(after?.verdicts?.[0], { verdict: "licensed", licence: "svc-brand-1" });
    t.is(after?.verdicts?.[0]?.evidence.externalReference, "svc-brand-1");
  },
);
