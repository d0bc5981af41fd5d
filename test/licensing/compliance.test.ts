/**
 * Assessing a scan: font uses from a report, the registry and the licensing service together
 * (real MongoDB-wire server and a real local HTTP service), and what changed between scans.
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { assessScan, countVerdicts, diffVerdicts, fontUses } from "../../actors/licensing/compliance.ts";
import { importLicenses } from "../../actors/licensing/import.ts";
import { LicensingClient } from "../../actors/licensing/licensing-client.ts";
import { openCatalogue } from "../../actors/licensing/open-licence.ts";
import { LicenseRegistry } from "../../actors/licensing/registry.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import type { FontFace, FontFile, ScanResult } from "../../protocol/mod.ts";
import { startMongo, stopAll, type ManagedServer } from "../harness/servers.ts";
import { testConfig, uniqueName } from "../helpers/stack.ts";
import { LocalLicensingService } from "./local-licensing-service.ts";

const COMMERCIAL = readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));
const OPEN = readFileSync(fileURLToPath(import.meta.resolve("@fontsource/inter/files/inter-latin-400-normal.woff2")));

function file(bytes: Buffer, url: string, provider: string | null = null): FontFile {
  const { metadata, parseError } = readFontMetadata(bytes);
  return {
    sha256: sha256Hex(bytes),
    url,
    bytes: bytes.length,
    contentType: null,
    via: "font-request",
    metadata,
    parseError,
    provider,
  };
}
const face = (family: string, f: FontFile, provider: string | null = null): FontFace => ({
  family,
  weight: "400",
  style: "normal",
  used: true,
  declaredIn: "stylesheet",
  srcUrls: [f.url],
  fileSha256: [f.sha256],
  provider,
});

function result(domain: string, files: FontFile[], faces: FontFace[]): ScanResult {
  return {
    jobId: `${domain}:1`,
    domain,
    region: "local",
    leaseToken: "t",
    attempt: 1,
    scannerNode: "n",
    report: {
      status: "ok",
      failure: null,
      path: "browser",
      pages: [],
      faces,
      files,
      startedAt: "2026-06-01T00:00:00.000Z",
      finishedAt: "2026-06-01T00:00:01.000Z",
    },
  };
}

let mongo: ManagedServer;
let db: Database;
test.before(async () => {
  mongo = await startMongo();
  db = await openDatabase(
    testConfig(
      { nats: "nats://127.0.0.1:1", redis: "redis://127.0.0.1:1", mongo: mongo.url },
      { mongo: { database: uniqueName("compliance") } },
    ),
  );
});
test.after.always(async () => {
  await db?.close();
  await stopAll();
});

test("fontUses: one per file, with the CSS families that named it and the face's provider as fallback", (t) => {
  const c = file(COMMERCIAL, "https://brand.test/c.ttf");
  const o = file(OPEN, "https://fonts.gstatic.com/inter.woff2", "google-fonts");
  const uses = fontUses(
    result("brand.test", [c, o, c], [face("Brand", c, "self-hosted"), face("Brand Bold", c), face("Inter", o)]).report,
  );
  t.is(uses.length, 2);
  t.deepEqual(uses[0]?.cssFamilies, ["Brand", "Brand Bold"]);
  t.is(uses[0]?.provider, "self-hosted");
  t.is(uses[1]?.provider, "google-fonts");
});

test("diffVerdicts and countVerdicts", (t) => {
  t.is(diffVerdicts(null, []), null);
  const changes = diffVerdicts(
    {
      jobId: "j1",
      verdicts: [
        { sha256: "a", verdict: "unlicensed" },
        { sha256: "b", verdict: "open-licence" },
      ],
    },
    [
      { sha256: "a", verdict: "licensed" },
      { sha256: "c", verdict: "unknown" },
    ],
  );
  t.deepEqual(changes, {
    sinceJobId: "j1",
    added: ["c"],
    removed: ["b"],
    changed: [{ sha256: "a", from: "unlicensed", to: "licensed" }],
  });
  t.deepEqual(countVerdicts([{ verdict: "licensed" }, { verdict: "licensed" }, { verdict: "pending" }]), {
    licensed: 2,
    "open-licence": 0,
    unlicensed: 0,
    unknown: 0,
    pending: 1,
  });
});

test("assessScan: registry first; only undecided fonts go to the licensing service; down → pending, back → licensed", async (t) => {
  const service = new LocalLicensingService();
  await service.start();
  t.teardown(() => service.stop());
  const client = new LicensingClient({
    url: service.url,
    timeoutMs: 500,
    retries: 0,
    retryBaseMs: 10,
    breakerFailures: 100,
    breakerResetMs: 1_000,
    cacheTtlMs: 60_000,
  });
  const registry = new LicenseRegistry(db.collections);
  const deps = { registry, catalogue: openCatalogue(), external: client.check.bind(client) };
  const c = file(COMMERCIAL, "https://brand.test/c.ttf", "self-hosted");
  const o = file(OPEN, "https://brand.test/inter.woff2", "self-hosted");
  const scan = result("brand.test", [c, o], [face("Brand", c), face("Inter", o)]);

  await service.stop();
  const down = await assessScan(deps, scan);
  t.deepEqual(
    down.map((v) => v.verdict),
    ["pending", "open-licence"],
  );
  service.grant("brand.test", c.sha256, "svc-77");
  await service.start();
  const up = await assessScan(deps, scan);
  t.like(up[0], { verdict: "licensed", licence: "svc-77" });
  t.is(service.requests, 1, "the open font was never asked about");

  await importLicenses(registry, [
    { line: 1, data: { id: "other.test-web", licensee: "O", domains: "other.test", family: "X", type: "web" } },
    {
      line: 2,
      data: {
        id: "brand-web",
        licensee: "Brand",
        domains: "brand.test",
        family: "Glyphscan Commercial Sans",
        type: "web",
      },
    },
  ]);
  const fromRegistry = await assessScan(deps, scan);
  t.like(fromRegistry[0], { verdict: "licensed", licence: "brand-web" });
  t.is(service.requests, 1, "decided by the registry: the service is not asked");
});
