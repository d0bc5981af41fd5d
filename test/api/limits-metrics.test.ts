/**
 * The API's per-client rate limits, its Prometheus metrics by route template and status, and the
 * lookup cache, against a private stack.
 */
import test from "ava";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { connectNats, ensureTopology, type NatsHandles } from "../../cluster/mod.ts";
import { startTelemetry } from "../../cluster/telemetry.ts";
import type { Config } from "../../config/mod.ts";
import { LookupCache } from "../../actors/api/lookup-cache.ts";
import { buildApi } from "../../actors/api/server.ts";
import { NEVER_SCANNED } from "../../actors/frontier/admission.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import type { DomainDoc } from "../../actors/store/documents.ts";
import { submitUrls } from "../../bin/commands/submit.ts";
import { freePort } from "../harness/servers.ts";
import { eventually, startStack, type TestStack } from "../helpers/stack.ts";

const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";

let stack: TestStack;
let config: Config;
let db: Database;
let nats: NatsHandles;
let redis: Redis;
const apps: Array<ReturnType<typeof buildApi>> = [];

async function token(sub: string, claims: Record<string, unknown> = { scope: "submit" }, secret = SECRET) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(config.api.jwtIssuer)
    .setAudience(config.api.jwtAudience)
    .setSubject(sub)
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(secret));
}

const domainDoc = (id: string): DomainDoc => ({
  _id: id,
  ...NEVER_SCANNED,
  region: "local",
  seedUrl: `https://${id}/`,
  sources: ["cli"],
  firstSeenAt: new Date(),
  lastSeenAt: new Date(),
  nextScanAt: new Date(),
  traceparent: null,
});

async function app(overrides: Record<string, unknown>) {
  const c = stack.config({ mongo: { database: config.mongo.database }, api: { jwtSecret: SECRET, ...overrides } });
  const a = buildApi({ config: c, db, nats, redis, submitUrls });
  apps.push(a);
  await a.ready();
  return a;
}

test.before(async () => {
  stack = await startStack();
  config = stack.config({ api: { jwtSecret: SECRET } });
  db = await openDatabase(config);
  nats = await connectNats(config, "api-limits-test");
  await ensureTopology(nats.jsm, config);
  redis = new Redis(stack.redis.url);
  await db.collections.domains.insertMany([domainDoc("known.test"), domainDoc("other.test")]);
});

test.after.always(async () => {
  for (const a of apps) await a.close();
  redis?.disconnect();
  await nats?.nc.close();
  await db?.close();
  await stack?.stop();
});

test("a client over its lookup limit gets 429 with Retry-After; another token's client still gets 200", async (t) => {
  const api = await app({ rateLimit: { lookups: 3, submissions: 100, windowMs: 60_000 } });
  const get = (auth?: string, remoteAddress = "127.0.0.1") =>
    api.inject({
      method: "GET",
      url: "/v1/domains/known.test",
      remoteAddress,
      headers: auth ? { authorization: `Bearer ${auth}` } : {},
    });
  const alice = await token("alice", { scope: "read" }); // no scope is needed to be told apart
  const bob = await token("bob", { scope: "read" });
  for (let i = 0; i < 3; i++) t.is((await get(alice)).statusCode, 200, `alice #${i + 1}`);
  const over = await get(alice);
  t.is(over.statusCode, 429);
  const retryAfter = Number(over.headers["retry-after"]);
  t.true(retryAfter > 0 && retryAfter <= 60, `retry-after ${over.headers["retry-after"]}`);
  t.is(over.headers["content-type"], "application/json; charset=utf-8");
  const body = over.json<{ error: string; message: string }>();
  t.is(body.error, "rate-limited");
  t.regex(body.message, /more than 3 lookups requests in 60 s/);
  t.is((await get(bob)).statusCode, 200, "bob has his own budget, from the same address");
  // Without a token the address is the client: alice's use does not count against it.
  t.is((await get(undefined, "10.0.0.7")).statusCode, 200);
  // Other lookup routes share the budget; probes are never limited.
  t.is(
    (await api.inject({ method: "GET", url: "/urlinfo/1/known.test/x", headers: { authorization: `Bearer ${alice}` } }))
      .statusCode,
    429,
  );
  for (let i = 0; i < 5; i++) t.is((await api.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
});

test("a forged token names no client: it counts against its address", async (t) => {
  const api = await app({ rateLimit: { lookups: 2, submissions: 100, windowMs: 60_000 } });
  const forged = await token("mallory-1", {}, "another-secret-that-is-also-32-bytes-long!");
  const forged2 = await token("mallory-2", {}, "another-secret-that-is-also-32-bytes-long!");
  const get = (auth: string) =>
    api.inject({
      method: "GET",
      url: "/v1/domains/known.test",
      remoteAddress: "10.9.9.9",
      headers: { authorization: `Bearer ${auth}` },
    });
  t.is((await get(forged)).statusCode, 200);
  t.is((await get(forged2)).statusCode, 200);
  t.is((await get(forged)).statusCode, 429, "a new subject in a forged token does not buy a new budget");
});

test("submissions have their own, smaller budget per client; 0 turns a limit off", async (t) => {
  const api = await app({ rateLimit: { lookups: 0, submissions: 2, windowMs: 60_000 } });
  const post = (auth: string) =>
    api.inject({
      method: "POST",
      url: "/v1/submissions",
      payload: { urls: ["https://a.test/"] },
      headers: { authorization: `Bearer ${auth}` },
    });
  const carol = await token("carol");
  const dave = await token("dave");
  t.is((await post(carol)).statusCode, 202);
  t.is((await post(carol)).statusCode, 202);
  const over = await post(carol);
  t.is(over.statusCode, 429);
  t.truthy(over.headers["retry-after"]);
  t.is(over.json<{ error: string }>().error, "rate-limited");
  t.is((await post(dave)).statusCode, 202);
  // lookups: 0 means unlimited.
  for (let i = 0; i < 10; i++) {
    const res = await api.inject({
      method: "GET",
      url: "/v1/domains/known.test",
      headers: { authorization: `Bearer ${carol}` },
    });
    t.is(res.statusCode, 200);
  }
});

test("the OpenAPI document lists 429 on every limited route", async (t) => {
  const api = await app({});
  const doc = (await api.inject({ method: "GET", url: "/openapi.json" })).json<{
    paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>>;
  }>();
  for (const [path, method] of [
    ["/v1/domains/{domain}", "get"],
    ["/v1/domains/{domain}/scans", "get"],
    ["/urlinfo/1/{hostPort}/{pathAndQuery}", "get"],
    ["/v1/submissions", "post"],
    ["/v1/domains/{domain}/rescan", "post"],
  ] as const) {
    const r = doc.paths[path]?.[method]?.responses["429"];
    t.truthy(r, `${method} ${path}`);
    t.truthy(r?.headers?.["Retry-After"], `${method} ${path} Retry-After`);
  }
  t.falsy(doc.paths["/healthz"]?.["get"]?.responses["429"]);
});

/** Prometheus text → value of each sample line, keyed by `name{labels}` with labels sorted. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-z_:]+)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels = ((m[2] ?? "").match(/(?<![a-z_])[a-z_]+="[^"]*"/g) ?? []).filter(
      (l) => !l.startsWith("otel_scope_"),
    );
    out.set(`${m[1]}{${labels.sort().join(",")}}`, Number(m[3]));
  }
  return out;
}

test.serial("GET /metrics counts requests and their durations by route template and status", async (t) => {
  const port = await freePort();
  const telemetry = await startTelemetry(stack.config({ telemetry: { metricsPort: port, metricsHost: "127.0.0.1" } }));
  t.teardown(() => telemetry.shutdown());
  const api = await app({ rateLimit: { lookups: 4, submissions: 100, windowMs: 60_000 } });
  const get = (url: string) => api.inject({ method: "GET", url });
  const sent: Array<[string, number]> = [];
  for (const [url, status] of [
    ["/v1/domains/known.test", 200],
    ["/v1/domains/www.known.test", 200],
    ["/v1/domains/other.test", 200],
    ["/v1/domains/nobody.test", 404],
    ["/v1/domains/other.test", 429], // the fifth lookup from 127.0.0.1
    ["/healthz", 200],
    ["/healthz", 200],
    ["/no/such/route", 404],
  ] as const) {
    const res = await get(url);
    t.is(res.statusCode, status, url);
    sent.push([url, status]);
  }
  const text = await (await fetch(telemetry.metricsUrl!)).text();
  const s = samples(text);
  const count = (route: string, status: number) =>
    s.get(`glyphscan_http_requests_total{method="GET",route="${route}",status="${status}"}`);
  t.is(count("/v1/domains/:domain", 200), 3);
  t.is(count("/v1/domains/:domain", 404), 1);
  t.is(count("/v1/domains/:domain", 429), 1);
  t.is(count("/healthz", 200), 2);
  t.is(count("unmatched", 404), 1);
  const histogramCount = s.get(
    `glyphscan_http_request_duration_seconds_count{method="GET",route="/v1/domains/:domain",status="200"}`,
  );
  t.is(histogramCount, 3);
  // Raw paths never become labels.
  const httpLines = text.split("\n").filter((l) => l.startsWith("glyphscan_http_"));
  t.true(httpLines.length > 0);
  t.false(
    httpLines.some((l) => /known\.test|nobody|no\/such/.test(l)),
    "no raw URL in a label",
  );
});

test("a cached lookup is served for at most api.lookupCacheTtlMs, and a rescan through the API drops it", async (t) => {
  await db.collections.domains.insertOne(domainDoc("cached.test"));
  // The process cache alone: with the Redis view on, a deletion behind the writers' back would show
  // only when the view entry expires (lookup-view.test.ts covers the view).
  const api = await app({ lookupCacheTtlMs: 3_000, lookupView: false, rateLimit: { lookups: 0, submissions: 0 } });
  const get = () => api.inject({ method: "GET", url: "/v1/domains/cached.test" });
  t.is((await get()).statusCode, 200);
  await db.collections.domains.deleteOne({ _id: "cached.test" });
  const cached = await get();
  t.is(cached.statusCode, 200, "served from the cache (within the TTL)");
  await eventually("the deletion to show once the entry expired", async () =>
    (await get()).statusCode === 404 ? true : undefined,
  );
  // A rescan requested through this process drops the entry at once.
  await db.collections.domains.insertOne(domainDoc("cached.test"));
  await eventually("the domain to show again", async () => ((await get()).statusCode === 200 ? true : undefined));
  const before = (await get()).json<{ nextScanAt: string }>().nextScanAt;
  await db.collections.domains.updateOne({ _id: "cached.test" }, { $set: { nextScanAt: new Date(0) } });
  const rescan = await api.inject({
    method: "POST",
    url: "/v1/domains/cached.test/rescan",
    headers: { authorization: `Bearer ${await token("erin")}` },
  });
  t.is(rescan.statusCode, 202);
  t.not((await get()).json<{ nextScanAt: string }>().nextScanAt, before);
});

test("LookupCache keeps at most maxEntries, least recently used out first, and shares concurrent misses", async (t) => {
  const cache = new LookupCache<string>({ ttlMs: 60_000, maxEntries: 2 });
  let reads = 0;
  const load = (v: string) => async () => {
    reads++;
    return v;
  };
  await cache.get("a", load("A"));
  await cache.get("b", load("B"));
  t.is(await cache.get("a", load("A2")), "A"); // a is now the most recent
  await cache.get("c", load("C")); // evicts b
  t.is(cache.size, 2);
  t.is(await cache.get("b", load("B2")), "B2");
  t.is(reads, 4);

  let release: (v: string) => void = () => undefined;
  const slow = () =>
    new Promise<string>((resolve) => {
      reads++;
      release = resolve;
    });
  const both = Promise.all([cache.get("d", slow), cache.get("d", slow)]);
  release("D");
  t.deepEqual(await both, ["D", "D"]);
  t.is(reads, 5, "one read for two concurrent misses");

  const off = new LookupCache<string>({ ttlMs: 0, maxEntries: 10 });
  await off.get("x", load("X1"));
  t.is(await off.get("x", load("X2")), "X2", "ttl 0: every get reads");
});
