/** `glyphscan licenses import` on a real MongoDB-wire server: valid rows, bad rows by line, idempotence. */
import test from "ava";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { formatOf, importLicenses, readRows } from "../../actors/licensing/import.ts";
import { LicenseRegistry, parentDomains } from "../../actors/licensing/registry.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { startMongo, stopAll, type ManagedServer } from "../harness/servers.ts";
import { testConfig, uniqueName } from "../helpers/stack.ts";

const CSV = new URL("../fixtures/licensing/licenses.csv", import.meta.url);
const JSON_FILE = new URL("../fixtures/licensing/licenses.json", import.meta.url);

let mongo: ManagedServer;
test.before(async () => {
  mongo = await startMongo();
});
test.after.always(() => stopAll());

async function freshDb(): Promise<Database> {
  return openDatabase(
    testConfig(
      { nats: "nats://127.0.0.1:1", redis: "redis://127.0.0.1:1", mongo: mongo.url },
      {
        mongo: { database: uniqueName("lic") },
      },
    ),
  );
}

test("CSV: valid rows are stored, every bad row is reported with its line", async (t) => {
  const db = await freshDb();
  t.teardown(() => db.close());
  const text = await readFile(CSV, "utf8");
  t.is(formatOf("x.csv", text), "csv");
  const summary = await importLicenses(new LicenseRegistry(db.collections), readRows(text, "csv"));
  t.is(summary.read, 9);
  t.is(summary.inserted, 3);
  t.deepEqual(
    summary.errors.map((e) => [e.line, e.id]),
    [
      [6, "bad-type"],
      [7, "bad-domain"],
      [8, "bad-dates"],
      [9, "acme-web-1"],
      [10, "bad-sha"],
      [11, ""],
    ],
  );
  const byLine = new Map(summary.errors.map((e) => [e.line, e.message]));
  t.regex(byLine.get(6)!, /^type: /);
  t.is(byLine.get(7), "domains.0, domains.1, domains.2: not a domain name");
  t.regex(byLine.get(8)!, /validTo is before validFrom/);
  t.regex(byLine.get(9)!, /already given on line 3/);
  t.regex(byLine.get(10)!, /sha256\.0: not a SHA-256/);
  t.regex(byLine.get(11)!, /^id: /);

  const acme = await db.collections.licenses.findOne({ _id: "acme-web-1" });
  t.like(acme, {
    licensee: "Acme Corp",
    domains: ["acme.test", "shop.acme.test"],
    familyKey: "glyphscancommercialsans",
    foundryKey: "exampletypefoundry",
    type: "web",
    pageViews: 250_000,
    maxDomains: 2,
  });
  t.deepEqual(acme?.validFrom, new Date("2024-01-01T00:00:00Z"));
  t.like(await db.collections.licenses.findOne({ _id: "beta-web-1" }), {
    licensee: "Beta, Inc.",
    pageViews: 1_000_000,
    foundry: null,
    validTo: null,
  });
});

test("JSON: elements are located by line; domains are normalised; re-import changes nothing", async (t) => {
  const db = await freshDb();
  t.teardown(() => db.close());
  const registry = new LicenseRegistry(db.collections);
  const rows = readRows(await readFile(JSON_FILE, "utf8"), "json");
  t.deepEqual(
    rows.map((r) => r.line),
    [3, 10, 20],
  );
  const first = await importLicenses(registry, rows, { now: new Date("2026-01-01T00:00:00Z") });
  t.like(first, { read: 3, inserted: 2, updated: 0, unchanged: 0 });
  t.is(first.errors.length, 1);
  t.is(first.errors[0]?.line, 20);
  t.regex(first.errors[0]!.message, /domains: at least one domain/);
  t.regex(first.errors[0]!.message, /colour/);
  const stored = await db.collections.licenses.findOne({ _id: "gamma-web-1" });
  t.deepEqual(stored?.domains, ["gamma-shop.test", "gamma.test"]);
  t.deepEqual(stored?.sha256, ["a".repeat(64)]);

  const before = await db.collections.licenses.find({}).sort({ _id: 1 }).toArray();
  const again = await importLicenses(registry, rows, { now: new Date("2026-02-01T00:00:00Z") });
  t.like(again, { inserted: 0, updated: 0, unchanged: 2 });
  t.deepEqual(await db.collections.licenses.find({}).sort({ _id: 1 }).toArray(), before, "nothing was rewritten");

  // A changed row replaces the record with its id; its import date stays.
  const changed = rows.map((r) =>
    r.line === 3 ? { ...r, data: { ...(r.data as object), domains: ["gamma.test", "gamma.example"] } } : r,
  );
  const third = await importLicenses(registry, changed, { now: new Date("2026-03-01T00:00:00Z") });
  t.like(third, { inserted: 0, updated: 1, unchanged: 1 });
  const app = await db.collections.licenses.findOne({ _id: "gamma-app-1" });
  t.deepEqual(app?.domains, ["gamma.example", "gamma.test"]);
  t.deepEqual(app?.importedAt, new Date("2026-01-01T00:00:00Z"));
  t.deepEqual(app?.updatedAt, new Date("2026-03-01T00:00:00Z"));
  t.is(await registry.count(), 2);

  const covering = await registry.coveringDomains(["gamma.test", "www.gamma-shop.test", "other.test"]);
  t.deepEqual(
    covering
      .get("gamma.test")
      ?.map((l) => l._id)
      .sort(),
    ["gamma-app-1", "gamma-web-1"],
  );
  t.deepEqual(
    covering.get("www.gamma-shop.test")?.map((l) => l._id),
    ["gamma-web-1"],
  );
  t.deepEqual(covering.get("other.test"), []);
  t.deepEqual(
    (await registry.coveringDomains(["gamma.example"])).get("gamma.example")?.map((l) => l._id),
    ["gamma-app-1"],
    "the domain index follows a changed record",
  );
  // A domain taken off a licence no longer finds it.
  const narrowed = changed.map((r) =>
    r.line === 3 ? { ...r, data: { ...(r.data as object), domains: ["gamma.example"] } } : r,
  );
  t.like(await importLicenses(registry, narrowed), { updated: 1 });
  t.deepEqual(
    (await registry.coveringDomains(["gamma.test"])).get("gamma.test")?.map((l) => l._id),
    ["gamma-web-1"],
  );
});

test("parentDomains lists a host and each registrable parent", (t) => {
  t.deepEqual(parentDomains("a.b.example.com"), ["a.b.example.com", "b.example.com", "example.com"]);
  t.deepEqual(parentDomains("example.com"), ["example.com"]);
});

test("JSON Lines: a line that is not JSON is one bad row", (t) => {
  const rows = readRows('{"id":"x"}\n\nnot json\n', "jsonl");
  t.deepEqual(
    rows.map((r) => r.line),
    [1, 3],
  );
  t.true(rows[1]?.data instanceof SyntaxError);
});

test("the CLI imports a file, prints the summary and exits 1 when rows were invalid; a second run changes nothing", async (t) => {
  const database = uniqueName("cli");
  const env = { ...process.env, GLYPHSCAN_MONGO_URL: mongo.url, GLYPHSCAN_MONGO_DATABASE: database };
  const run = (args: string[]) =>
    promisify(execFile)(process.execPath, ["bin/glyphscan.ts", ...args], { env }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  const dir = await mkdtemp(join(tmpdir(), "glyphscan-lic-"));
  const good = join(dir, "good.csv");
  const csv = await readFile(CSV, "utf8");
  await writeFile(good, csv.split("\n").slice(0, 5).join("\n"));
  const first = await run(["licenses", "import", good]);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /read 3 rows: 3 inserted, 0 updated, 0 unchanged, 0 invalid/);
  const second = await run(["licenses", "import", good]);
  t.regex(second.stdout, /read 3 rows: 0 inserted, 0 updated, 3 unchanged, 0 invalid/);
  const bad = await run(["licenses", "import", CSV.pathname]);
  t.is(bad.code, 1);
  t.regex(bad.stdout, /line 6 \(bad-type\): type: /);
  t.regex(bad.stdout, /line 11: id: /);
});
