/**
 * The lookup view in Redis against a private stack: written by the results writer when a scan is
 * stored (with the scan's blocked requests and rendered fonts), rewritten when pending verdicts are
 * decided and when a rescan is requested; lookups answer from MongoDB (and refill) after FLUSHALL and
 * with Redis killed; `glyphscan views rebuild` fills it. Serial: Redis is flushed and killed here.
 */
import { readFileSync } from "node:fs";
import test from "ava";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { buildApi } from "../../actors/api/server.ts";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { recheckScan } from "../../actors/licensing/pending-recheck.ts";
import { recordScan } from "../../actors/results/results-actor.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { readLatestScan } from "../../actors/store/latest-scan.ts";
import { lookupEntry, unpackEntry, type LookupView } from "../../actors/store/lookup-view.ts";
import { submitUrls } from "../../bin/commands/submit.ts";
import { connectNats, ensureTopology, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import type { ScanResult } from "../../protocol/mod.ts";
import { freePort } from "../harness/servers.ts";
import { scanResultFor } from "../helpers/frontier.ts";
import { LocalLicensingService } from "../licensing/local-licensing-service.ts";
import { eventually, spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";
const FONT = readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));
const FONT_SHA = sha256Hex(FONT);

let stack: TestStack;
let config: Config;
let db: Database;
let nats: NatsHandles;
let redis: Redis;
let store: DomainStore;
let view: LookupView;
let service: LocalLicensingService;
let app: ReturnType<typeof buildApi>;

test.before(async () => {
  stack = await startStack();
  service = new LocalLicensingService();
  await service.start();
  // The process cache off: every lookup shows what the view (or MongoDB) holds.
  config = stack.config({
    api: { jwtSecret: SECRET, lookupCacheTtlMs: 0, rateLimit: { lookups: 0, submissions: 0 } },
  });
  db = await openDatabase(config);
  view = db.collections.lookupView!;
  nats = await connectNats(config, "lookup-view-test");
  await ensureTopology(nats.jsm, config);
  redis = new Redis(stack.redis.url, { maxRetriesPerRequest: 1 });
  redis.on("error", () => undefined); // Redis is killed in one test
  store = new DomainStore(db.collections, config.frontier);
  app = buildApi({ config, db, nats, redis, submitUrls });
  await app.ready();
});

test.after.always(async () => {
  await app?.close();
  redis?.disconnect();
  await nats?.nc.close();
  await db?.close();
  await service?.stop();
  await stack?.stop();
});

const BLOCKED = [{ url: "http://10.0.0.8/admin", reason: "ssrf-refused: private address 10.0.0.8" }];
const RENDERED = [
  { family: "Brand Sans", postScriptName: "BrandSans-Regular", custom: true, glyphs: 812 },
  { family: "DejaVu Sans", postScriptName: "DejaVuSans", custom: false, glyphs: 14 },
];

/** Admits and leases `domain` as the frontier does; the result a scanner publishes for it. */
async function scanned(domain: string): Promise<ScanResult> {
  await store.admit([
    {
      admission: {
        domain,
        region: config.region,
        seedUrl: `http://${domain}/`,
        source: "test",
        admittedAt: new Date().toISOString(),
      },
      traceparent: undefined,
    },
  ]);
  const job = await eventually(`${domain} leased`, async () =>
    (await store.leaseDue(config.region, 10)).map((l) => l.job).find((j) => j.domain === domain),
  );
  const { metadata, parseError } = readFontMetadata(FONT);
  const url = `http://${domain}/brand.ttf`;
  const now = Date.now();
  return scanResultFor(
    job,
    new Date(now),
    {
      path: "browser",
      faces: [
        {
          family: "Brand Sans",
          weight: "400",
          style: "normal",
          used: true,
          declaredIn: "stylesheet",
          srcUrls: [url],
          fileSha256: [FONT_SHA],
          provider: "self-hosted",
        },
      ],
      files: [
        {
          sha256: FONT_SHA,
          url,
          bytes: FONT.length,
          contentType: "font/ttf",
          via: "font-request",
          metadata,
          parseError,
          provider: "self-hosted",
        },
      ],
      blocked: BLOCKED,
      renderedFonts: RENDERED,
      startedAt: new Date(now - 500).toISOString(),
    },
    "test-scanner",
  );
}

type Answer = {
  domain: string;
  state: string;
  nextScanAt: string | null;
  latest: { jobId: string; compliance?: { counts: Record<string, number> } | null } | null;
  scan: {
    jobId: string;
    files: Array<{ sha256: string; metadata: { family?: string } | null }>;
    verdicts: Array<{ sha256: string; verdict: string; licence: string | null }>;
    blocked: typeof BLOCKED;
    renderedFonts: typeof RENDERED;
  } | null;
};

/** The view's entry for a domain, as the lookup would answer it; null when there is none. */
async function inView(domain: string): Promise<Answer | null> {
  const b = await redis.getBuffer(view.key(domain));
  return b === null ? null : (JSON.parse(unpackEntry(b).domain.toString("utf8")) as Answer);
}

/** What MongoDB says the lookup is, built the way the view is. */
async function fromMongo(domain: string): Promise<unknown> {
  const latest = await readLatestScan(db.collections, domain);
  return latest ? JSON.parse(lookupEntry(latest).domain.toString("utf8")) : null;
}

const lookup = async (domain: string) => {
  const res = await app.inject({ method: "GET", url: `/v1/domains/${domain}` });
  return { status: res.statusCode, body: res.statusCode === 200 ? res.json<Answer>() : null };
};

const token = () =>
  new SignJWT({ scope: "submit" })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(config.api.jwtIssuer)
    .setAudience(config.api.jwtAudience)
    .setSubject("client-1")
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(SECRET));

test.serial("a stored scan writes the view: its files, verdicts, blocked requests and rendered fonts", async (t) => {
  const domain = "stored.test";
  const result = await scanned(domain);
  const recorded = await recordScan(db.collections, store, result, new Date(), service.deps(db.collections));
  t.true(recorded.viewed);

  // The scan keeps what the report said about refused requests and rendered fonts.
  const scan = await db.collections.scans.findOne({ _id: result.jobId });
  t.deepEqual(scan?.blocked, BLOCKED);
  t.deepEqual(scan?.renderedFonts, RENDERED);

  const entry = await inView(domain);
  t.truthy(entry, "written by the results writer, before any lookup");
  t.is(entry!.state, "scanned");
  t.is(entry!.latest?.jobId, result.jobId);
  t.is(entry!.scan?.jobId, result.jobId);
  const family = readFontMetadata(FONT).metadata?.family;
  t.truthy(family);
  t.is(entry!.scan?.files[0]?.metadata?.family, family ?? undefined);
  t.is(entry!.scan?.verdicts[0]?.sha256, FONT_SHA);
  t.deepEqual(entry!.scan?.blocked, BLOCKED);
  t.deepEqual(entry!.scan?.renderedFonts, RENDERED);
  t.deepEqual(entry, await fromMongo(domain), "the same answer MongoDB gives");

  const answer = await lookup(domain);
  t.is(answer.status, 200);
  t.deepEqual(answer.body, entry);
  const info = await app.inject({ method: "GET", url: `/urlinfo/1/www.${domain}:80/page?q=1` });
  t.like(info.json(), { domain, known: true, state: "scanned", status: "ok", usedFamilies: ["Brand Sans"] });

  // Lookups are answered from the view: an entry changed there is what they serve.
  const latest = await readLatestScan(db.collections, domain);
  await view.put(domain, lookupEntry({ ...latest!, domain: { ...latest!.domain, sources: ["from-the-view"] } }));
  const served = await app.inject({ method: "GET", url: `/v1/domains/${domain}` });
  t.deepEqual(served.json<{ sources: string[] }>().sources, ["from-the-view"]);
});

test.serial("pending verdicts decided later rewrite the view", async (t) => {
  const domain = "pending-view.test";
  const result = await scanned(domain);
  await service.stop();
  await recordScan(db.collections, store, result, new Date(), service.deps(db.collections));
  const pending = await inView(domain);
  t.is(pending?.scan?.verdicts[0]?.verdict, "pending");
  t.like(pending?.latest?.compliance?.counts, { pending: 1, licensed: 0 });

  service.grant(domain, FONT_SHA, "svc-view-1");
  await service.start();
  const outcome = await recheckScan(db.collections, service.deps(db.collections), result.jobId);
  t.is(outcome.kind, "decided");
  const decided = await inView(domain);
  t.like(decided?.scan?.verdicts[0], { verdict: "licensed", licence: "svc-view-1" });
  t.like(decided?.latest?.compliance?.counts, { pending: 0, licensed: 1 });
  t.deepEqual((await lookup(domain)).body, decided);
});

test.serial("a rescan requested through the API rewrites the view's next scan time", async (t) => {
  const domain = "rescan-view.test";
  await recordScan(db.collections, store, await scanned(domain), new Date());
  const before = await inView(domain);
  t.true(Date.parse(before!.nextScanAt!) > Date.now(), "next scan in the future after a scan");
  const res = await app.inject({
    method: "POST",
    url: `/v1/domains/${domain}/rescan`,
    headers: { authorization: `Bearer ${await token()}` },
  });
  t.is(res.statusCode, 202);
  const after = await inView(domain);
  t.true(Date.parse(after!.nextScanAt!) <= Date.now(), "due now");
  t.deepEqual(after, await fromMongo(domain));
  t.is((await lookup(domain)).body?.nextScanAt ?? null, after!.nextScanAt);
});

test.serial("after FLUSHALL a lookup answers from MongoDB and fills the view again", async (t) => {
  const domain = "flushed.test";
  await recordScan(db.collections, store, await scanned(domain), new Date(), service.deps(db.collections));
  await redis.flushall();
  t.is(await inView(domain), null);
  const answer = await lookup(domain);
  t.is(answer.status, 200);
  t.deepEqual(answer.body, await fromMongo(domain));
  const refilled = await eventually("the view refilled by the lookup", async () => (await inView(domain)) ?? undefined);
  t.deepEqual(refilled, answer.body);
  // Unknown domains are not kept: admissions do not write the view.
  t.is((await lookup("never-admitted.test")).status, 404);
  t.is(await inView("never-admitted.test"), null);
});

test.serial("with Redis killed lookups still answer from MongoDB, and writers go on without the view", async (t) => {
  const domain = "redis-down.test";
  await recordScan(db.collections, store, await scanned(domain), new Date(), service.deps(db.collections));
  const expected = await fromMongo(domain);
  await stack.redis.kill();
  try {
    const answer = await lookup(domain);
    t.is(answer.status, 200);
    t.deepEqual(answer.body, expected);
    const info = await app.inject({ method: "GET", url: `/urlinfo/1/${domain}/` });
    t.like(info.json(), { domain, known: true, state: "scanned" });
    // A scan stored meanwhile is in MongoDB; only the view write is skipped.
    const other = await scanned("written-while-down.test");
    const recorded = await recordScan(db.collections, store, other, new Date(), service.deps(db.collections));
    t.false(recorded.viewed);
    t.is((await lookup("written-while-down.test")).body?.scan?.jobId, other.jobId);
  } finally {
    await stack.redis.restart();
  }
  // Back: the lookups fill the view again.
  await eventually("lookups through the view again", async () => {
    await lookup(domain);
    return (await inView(domain)) ?? undefined;
  });
  t.deepEqual(await inView(domain), expected);
});

test.serial("`glyphscan views rebuild` fills the view from MongoDB", async (t) => {
  await redis.flushall();
  const domains = (await db.collections.domains.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id);
  t.true(domains.length >= 5);
  const child = await spawnGlyphscan(config, ["views", "rebuild", "--batch", "2", "--chunk", "3"]);
  let out = "";
  let err = "";
  child.stdout!.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  t.is(code, 0, err);
  t.regex(out, new RegExp(`lookup view: ${domains.length} domains written, 0 failed`));
  t.regex(err, /views rebuild: 2\/\d+ domains, 2 written/, "progress per batch");
  for (const domain of domains) t.deepEqual(await inView(domain), await fromMongo(domain), domain);
});

test.serial("`glyphscan api` reports its view reads on /metrics: hits, and misses answered from MongoDB", async (t) => {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const apiConfig = stack.config({
    mongo: { database: config.mongo.database },
    api: { host: "127.0.0.1", port, lookupCacheTtlMs: 0 },
    telemetry: { metricsPort, metricsHost: "127.0.0.1" },
  });
  await redis.flushall();
  const child = await spawnGlyphscan(apiConfig, ["api"]);
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  try {
    await eventually("the api to answer /readyz", async () =>
      (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200 ? true : undefined,
    );
    // The first lookup misses (flushed) and fills the view; the next ones hit it.
    for (let i = 0; i < 3; i++) {
      t.is((await fetch(`http://127.0.0.1:${port}/v1/domains/stored.test`)).status, 200);
      await eventually("the view filled", async () => ((await inView("stored.test")) ? true : undefined));
    }
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const count = (outcome: string) =>
      Number(
        new RegExp(`glyphscan_lookup_view_operations_total\\{outcome="${outcome}"[^}]*\\} (\\d+)`).exec(text)?.[1],
      );
    t.is(count("miss"), 1);
    t.is(count("hit"), 2);
  } finally {
    child.kill("SIGTERM");
  }
  t.is(await exited, 0);
});
