/**
 * The HTTP API against a private stack: every route and every error status, with tokens signed
 * by jose (valid, forged, expired, wrong audience, wrong issuer, without the submit scope).
 */
import { createHash } from "node:crypto";
import { createServer, type AddressInfo } from "node:net";
import test from "ava";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { connectNats, ensureTopology, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { buildApi } from "../../actors/api/server.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import type { DomainDoc, ScanDoc } from "../../actors/store/documents.ts";
import { submitUrls } from "../../bin/commands/submit.ts";
import { eventually, spawnGlyphscan, startStack, type TestStack } from "../helpers/stack.ts";

const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";
const SHA = (c: string) => c.repeat(64);

let stack: TestStack;
let config: Config;
let db: Database;
let nats: NatsHandles;
let redis: Redis;
let app: ReturnType<typeof buildApi>;

async function token(
  claims: Record<string, unknown> = { scope: "submit" },
  opts: { secret?: string; audience?: string; issuer?: string; expires?: string | number } = {},
): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(opts.issuer ?? config.api.jwtIssuer)
    .setAudience(opts.audience ?? config.api.jwtAudience)
    .setSubject("client-1")
    .setIssuedAt()
    .setExpirationTime(opts.expires ?? "5m")
    .sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

function scanDoc(domain: string, id: string, finishedAt: Date, family: string): ScanDoc {
  return {
    _id: id,
    domain,
    region: "local",
    attempt: 1,
    scannerNode: "n1",
    leaseToken: "t",
    onCurrentLease: true,
    status: "ok",
    failure: null,
    path: "static",
    pages: [{ url: `https://${domain}/`, finalUrl: `https://${domain}/`, httpStatus: 200 }],
    faces: [
      {
        family,
        weight: "400",
        style: "normal",
        used: true,
        declaredIn: "stylesheet",
        srcUrls: [`https://${domain}/f.woff2`],
        fileSha256: [SHA("a")],
        provider: "self-hosted",
      },
    ],
    files: [
      {
        sha256: SHA("a"),
        url: `https://${domain}/f.woff2`,
        bytes: 1234,
        contentType: "font/woff2",
        via: "font-request",
        parseError: null,
        provider: "self-hosted",
        family,
      },
    ],
    startedAt: new Date(finishedAt.getTime() - 1000),
    finishedAt,
    durationMs: 1000,
    recordedAt: finishedAt,
    verdicts: [],
    compliance: null,
  };
}

test.before(async () => {
  stack = await startStack();
  config = stack.config({ api: { jwtSecret: SECRET, maxBatchUrls: 3 } });
  db = await openDatabase(config);
  nats = await connectNats(config, "api-test");
  await ensureTopology(nats.jsm, config);
  redis = new Redis(stack.redis.url);
  app = buildApi({ config, db, nats, redis, submitUrls });
  await app.ready();

  // example.test: three scans, the latest summarised on the domain; empty.test: known, never scanned.
  const times = [1, 2, 3].map((d) => new Date(Date.UTC(2026, 10, d)));
  const scans = times.map((t, i) => scanDoc("example.test", `job-${i + 1}`, t, `Family ${i + 1}`));
  await db.collections.scans.insertMany(scans);
  await db.collections.fonts.insertOne({
    _id: SHA("a"),
    bytes: 1234,
    metadata: { family: "Family 3", subfamily: "Regular", version: "1.0" } as never,
    parseError: null,
    firstSeenAt: times[0]!,
    lastSeenAt: times[2]!,
    firstUrl: "https://example.test/f.woff2",
  });
  const domain = (id: string, latest: ScanDoc | null): DomainDoc => ({
    _id: id,
    region: "local",
    state: latest ? "scanned" : "queued",
    seedUrl: `https://${id}/`,
    sources: ["cli"],
    firstSeenAt: times[0]!,
    lastSeenAt: times[2]!,
    nextScanAt: new Date(Date.UTC(2026, 11, 1)),
    attempts: 0,
    leaseToken: null,
    leaseJobId: null,
    leaseUntil: null,
    lastScanAt: latest?.finishedAt ?? null,
    scanCount: latest ? 3 : 0,
    latest: latest
      ? {
          jobId: latest._id,
          status: "ok",
          failureKind: null,
          failureMessage: null,
          finishedAt: latest.finishedAt,
          path: "static",
          usedFamilies: ["Family 3"],
          declaredOnlyFamilies: [],
          fileCount: 1,
          compliance: null,
        }
      : null,
    traceparent: null,
  });
  await db.collections.domains.insertMany([domain("example.test", scans[2]!), domain("empty.test", null)]);
});

test.after.always(async () => {
  await app?.close();
  redis?.disconnect();
  await nats?.nc.close();
  await db?.close();
  await stack?.stop();
});

test("GET /v1/domains/{domain} answers the latest scan with fonts, metadata, verdicts and next scan", async (t) => {
  // A host under the domain resolves to its registrable domain.
  const res = await app.inject({ method: "GET", url: "/v1/domains/www.example.test" });
  t.is(res.statusCode, 200);
  const body = res.json<{
    domain: string;
    nextScanAt: string;
    latest: { jobId: string };
    scan: { jobId: string; faces: unknown[]; files: Array<{ metadata: { family: string } | null }>; verdicts: [] };
  }>();
  t.is(body.domain, "example.test");
  t.is(body.nextScanAt, "2026-12-01T00:00:00.000Z");
  t.is(body.latest.jobId, "job-3");
  t.is(body.scan.jobId, "job-3");
  t.is(body.scan.faces.length, 1);
  t.is(body.scan.files[0]?.metadata?.family, "Family 3");
  t.deepEqual(body.scan.verdicts, []);

  const never = await app.inject({ method: "GET", url: "/v1/domains/empty.test" });
  t.is(never.statusCode, 200);
  t.is(never.json<{ scan: unknown }>().scan, null);
});

test("GET /v1/domains/{domain}: 404 for an unknown domain, 400 for an invalid one", async (t) => {
  const unknown = await app.inject({ method: "GET", url: "/v1/domains/nobody.test" });
  t.is(unknown.statusCode, 404);
  t.is(unknown.json<{ error: string }>().error, "not-found");
  for (const bad of ["not_a%20domain", "-x-.test", "localhost", "a..b"]) {
    const res = await app.inject({ method: "GET", url: `/v1/domains/${bad}` });
    t.is(res.statusCode, 400, bad);
    t.is(res.json<{ error: string }>().error, "bad-request");
  }
});

test("GET /v1/domains/{domain}/scans pages the history newest first with an opaque cursor", async (t) => {
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const qs: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const res = await app.inject({ method: "GET", url: `/v1/domains/example.test/scans?limit=2${qs}` });
    t.is(res.statusCode, 200);
    const body = res.json<{ scans: Array<{ jobId: string }>; nextCursor: string | null }>();
    seen.push(...body.scans.map((s) => s.jobId));
    cursor = body.nextCursor;
    pages++;
  } while (cursor && pages < 5);
  t.deepEqual(seen, ["job-3", "job-2", "job-1"]);
  t.is(pages, 2);

  const all = await app.inject({ method: "GET", url: "/v1/domains/example.test/scans" });
  t.is(all.json<{ scans: unknown[] }>().scans.length, 3);
});

test("GET /v1/domains/{domain}/scans: 400 on a bad limit or cursor, 404 unknown, 400 invalid domain", async (t) => {
  for (const q of ["limit=0", "limit=101", "limit=abc", "limit=1.5", "cursor=garbage", "other=1"]) {
    const res = await app.inject({ method: "GET", url: `/v1/domains/example.test/scans?${q}` });
    t.is(res.statusCode, 400, q);
  }
  t.is((await app.inject({ method: "GET", url: "/v1/domains/nobody.test/scans" })).statusCode, 404);
  t.is((await app.inject({ method: "GET", url: "/v1/domains/a..b/scans" })).statusCode, 400);
});

test("GET /urlinfo/1/{host:port}/{path-and-query} answers by registrable domain with the URL's SHA-256", async (t) => {
  const res = await app.inject({ method: "GET", url: "/urlinfo/1/WWW.Example.test:80/a/b?q=1%202" });
  t.is(res.statusCode, 200);
  const body = res.json<{ url: string; urlSha256: string; domain: string; known: boolean; status: string | null }>();
  t.is(body.url, "http://www.example.test/a/b?q=1%202");
  t.is(body.urlSha256, createHash("sha256").update("http://www.example.test/a/b?q=1%202").digest("hex"));
  t.is(body.domain, "example.test");
  t.true(body.known);
  t.is(body.status, "ok");

  const other = await app.inject({ method: "GET", url: "/urlinfo/1/nobody.test:8443/" });
  t.is(other.statusCode, 200);
  t.like(other.json(), { url: "http://nobody.test:8443/", domain: "nobody.test", known: false, status: null });

  for (const bad of ["/urlinfo/1/", "/urlinfo/1/localhost/x", "/urlinfo/1/a..b/x", "/urlinfo/1/a%40b.test/x"]) {
    t.is((await app.inject({ method: "GET", url: bad })).statusCode, 400, bad);
  }
});

test("POST /v1/domains/{domain}/rescan makes the domain due now; 401, 403, 400, 404 and 409 where they apply", async (t) => {
  const rescan = async (domain: string, auth?: string) =>
    app.inject({ method: "POST", url: `/v1/domains/${domain}/rescan`, headers: auth ? { authorization: auth } : {} });
  const auth = `Bearer ${await token()}`;
  const before = Date.now();
  const res = await rescan("empty.test", auth);
  t.is(res.statusCode, 202);
  t.deepEqual(res.json(), { domain: "empty.test", status: "requested" });
  const d = await db.collections.domains.findOne({ _id: "empty.test" });
  t.true((d?.nextScanAt?.getTime() ?? 0) >= before - 1000 && (d?.nextScanAt?.getTime() ?? Infinity) <= Date.now());

  await db.collections.domains.insertOne({
    ...d!,
    _id: "busy.test",
    state: "leased",
    leaseToken: "lease-1",
    leaseUntil: new Date(Date.now() + 600_000),
    nextScanAt: new Date(Date.now() + 600_000),
  });
  t.is((await rescan("busy.test", auth)).statusCode, 409);
  t.is((await rescan("nobody.test", auth)).statusCode, 404);
  t.is((await rescan("a..b", auth)).statusCode, 400);
  t.is((await rescan("empty.test")).statusCode, 401);
  t.is((await rescan("empty.test", `Bearer ${await token(undefined, { audience: "x" })}`)).statusCode, 401);
  t.is((await rescan("empty.test", `Bearer ${await token({ scope: "read" })}`)).statusCode, 403);
});

const submit = (payload: unknown, auth?: string) =>
  app.inject({
    method: "POST",
    url: "/v1/submissions",
    payload: payload as Record<string, unknown>,
    headers: auth ? { authorization: auth } : {},
  });

test("POST /v1/submissions publishes the batch and answers per URL", async (t) => {
  const urls = ["https://www.shop.test/a?b=1", "ftp://nope.test/", "https://other.test/"];
  // The source is the token's claim; the body's `source` is a spoof and is ignored.
  const res = await submit(
    { urls, source: "spoofed" },
    `Bearer ${await token({ scope: "submit", source: "partner" })}`,
  );
  t.is(res.statusCode, 202);
  const body = res.json<{
    accepted: number;
    rejected: number;
    results: Array<{ url: string; accepted: boolean; domain?: string; reason?: string }>;
  }>();
  t.is(body.accepted, 2);
  t.is(body.rejected, 1);
  t.deepEqual(
    body.results.map((r) => [r.url, r.accepted, r.domain ?? null]),
    [
      [urls[0], true, "shop.test"],
      [urls[1], false, null],
      [urls[2], true, "other.test"],
    ],
  );
  t.truthy(body.results[1]?.reason);
  // Every URL, rejected ones included, is on the feed (the coordinator dead-letters the rejected).
  const msg = await nats.jsm.streams.getMessage("FEEDS", { last_by_subj: "feeds.partner" });
  t.deepEqual((msg?.json<{ urls: string[] }>() ?? { urls: [] }).urls, urls);
  const spoofed = await nats.jsm.streams.getMessage("FEEDS", { last_by_subj: "feeds.spoofed" }).catch(() => null);
  t.is(spoofed, null, "nothing published under the source the body claimed");
});

test("POST /v1/submissions: a region hint needs the token's regions claim or the admin scope", async (t) => {
  const body = { urls: ["https://hinted.test/"], regionHint: "eu" };
  const plain = await submit(body, `Bearer ${await token()}`);
  t.is(plain.statusCode, 403);
  t.regex(plain.json<{ message: string }>().message, /may not route submissions to region eu/);
  t.is((await submit(body, `Bearer ${await token({ scope: "submit", regions: ["eu"] })}`)).statusCode, 202);
  t.is((await submit(body, `Bearer ${await token({ scope: "submit admin" })}`)).statusCode, 202);
  const badSource = await submit(
    { urls: ["https://a.test/"] },
    `Bearer ${await token({ scope: "submit", source: "Bad Source" })}`,
  );
  t.is(badSource.statusCode, 403);
});

test("POST /v1/submissions: 401 for missing, malformed, forged, expired, wrong-audience and wrong-issuer tokens", async (t) => {
  const body = { urls: ["https://a.test/"] };
  const cases: Array<[string, string | undefined]> = [
    ["missing", undefined],
    ["not bearer", `Basic ${Buffer.from("a:b").toString("base64")}`],
    ["garbage", "Bearer not.a.jwt"],
    ["forged", `Bearer ${await token(undefined, { secret: "another-secret-that-is-also-32-bytes-long!" })}`],
    ["expired", `Bearer ${await token(undefined, { expires: Math.floor(Date.now() / 1000) - 60 })}`],
    ["wrong audience", `Bearer ${await token(undefined, { audience: "someone-else" })}`],
    ["wrong issuer", `Bearer ${await token(undefined, { issuer: "evil" })}`],
  ];
  for (const [name, auth] of cases) {
    const res = await submit(body, auth);
    t.is(res.statusCode, 401, name);
    t.is(res.json<{ error: string }>().error, "unauthorized", name);
  }
});

test("POST /v1/submissions: 403 without the submit scope", async (t) => {
  const res = await submit({ urls: ["https://a.test/"] }, `Bearer ${await token({ scope: "read" })}`);
  t.is(res.statusCode, 403);
  t.regex(res.json<{ message: string }>().message, /submit/);
  const withArray = await submit({ urls: ["https://a.test/"] }, `Bearer ${await token({ scopes: ["submit"] })}`);
  t.is(withArray.statusCode, 202);
});

test("POST /v1/submissions: 413 over maxBatchUrls, 422 for an invalid body", async (t) => {
  const auth = `Bearer ${await token()}`;
  const over = await submit(
    { urls: ["https://a.test/", "https://b.test/", "https://c.test/", "https://d.test/"] },
    auth,
  );
  t.is(over.statusCode, 413);
  t.is(over.json<{ error: string }>().error, "too-many-urls");
  for (const bad of [
    {},
    { urls: [] },
    { urls: "https://a.test/" },
    { urls: [1] },
    { urls: ["x"], source: "Bad Source" },
    { urls: ["x"], extra: 1 },
  ]) {
    const res = await submit(bad, auth);
    t.is(res.statusCode, 422, JSON.stringify(bad));
    t.is(res.json<{ error: string }>().error, "invalid-body");
  }
});

test("GET /healthz and /readyz answer when everything is up", async (t) => {
  const health = await app.inject({ method: "GET", url: "/healthz" });
  t.is(health.statusCode, 200);
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  t.is(ready.statusCode, 200);
  t.deepEqual(ready.json<{ down: string[] }>().down, []);
});

test("GET /readyz: 503 naming what is down", async (t) => {
  // A second app whose Redis client points at a port nobody listens on; NATS and MongoDB stay up.
  const deadRedis = new Redis("redis://127.0.0.1:1", { lazyConnect: true, maxRetriesPerRequest: 0 });
  deadRedis.on("error", () => undefined);
  const other = buildApi({ config, db, nats, redis: deadRedis, submitUrls });
  try {
    const res = await other.inject({ method: "GET", url: "/readyz" });
    t.is(res.statusCode, 503);
    const body = res.json<{ down: string[]; checks: Record<string, string> }>();
    t.deepEqual(body.down, ["redis"]);
    t.is(body.checks["nats"], "up");
    t.is(body.checks["mongo"], "up");
  } finally {
    await other.close();
    deadRedis.disconnect();
  }
});

test("GET /openapi.json describes every route in OpenAPI 3.1; unknown routes answer 404", async (t) => {
  const res = await app.inject({ method: "GET", url: "/openapi.json" });
  t.is(res.statusCode, 200);
  const doc = res.json<{ openapi: string; paths: Record<string, Record<string, { responses: object }>> }>();
  t.is(doc.openapi, "3.1.0");
  t.deepEqual(Object.keys(doc.paths).sort(), [
    "/healthz",
    "/openapi.json",
    "/readyz",
    "/urlinfo/1/{hostPort}/{pathAndQuery}",
    "/v1/domains/{domain}",
    "/v1/domains/{domain}/rescan",
    "/v1/domains/{domain}/scans",
    "/v1/submissions",
  ]);
  t.deepEqual(Object.keys(doc.paths["/v1/submissions"]!["post"]!.responses).sort(), [
    "202",
    "401",
    "403",
    "413",
    "422",
    "429",
  ]);
  t.is((await app.inject({ method: "GET", url: "/v2/nothing" })).statusCode, 404);
});

test("`glyphscan api` serves on the configured port until SIGTERM", async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const child = await spawnGlyphscan(stack.config({ api: { host: "127.0.0.1", port, jwtSecret: SECRET } }), ["api"]);
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  try {
    const ready = await eventually("the api to answer /readyz", async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      return res.status === 200 ? ((await res.json()) as { status: string }) : undefined;
    });
    t.is(ready.status, "ready");
    const found = await fetch(`http://127.0.0.1:${port}/v1/domains/example.test`);
    t.is(found.status, 404); // its own database: nothing is known there
  } finally {
    child.kill("SIGTERM");
  }
  t.is(await exited, 0);
});
