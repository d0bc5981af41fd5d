/** The licensing service client against a real local HTTP service: answers, cache, slow, failing, down and back. */
import test from "ava";
import { LicensingClient, type LicensingClientOptions } from "../../actors/licensing/licensing-client.ts";
import { openCatalogue } from "../../actors/licensing/open-licence.ts";
import { decideVerdict, type FontUse } from "../../actors/licensing/verdict.ts";
import { readFontMetadata } from "../../actors/scanner/font-metadata.ts";
import { readFileSync } from "node:fs";
import { LocalLicensingService } from "./local-licensing-service.ts";

const METADATA = readFontMetadata(
  readFileSync(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url)),
).metadata!;
const use = (n: number): FontUse => ({
  sha256: String(n).repeat(64).slice(0, 64),
  url: `https://a.test/${n}.woff2`,
  cssFamilies: ["Brand"],
  metadata: METADATA,
  provider: "self-hosted",
});
const [A, B] = [use(1), use(2)];

async function setup(t: { teardown(fn: () => Promise<void>): void }, options: Partial<LicensingClientOptions> = {}) {
  const service = new LocalLicensingService();
  await service.start();
  t.teardown(() => service.stop());
  let clock = 1_000_000;
  const sleeps: number[] = [];
  const client = new LicensingClient({
    url: service.url,
    // Generous: tests share two cores; the slow test sets its own.
    timeoutMs: 5_000,
    retries: 2,
    retryBaseMs: 20,
    breakerFailures: 2,
    breakerResetMs: 10_000,
    cacheTtlMs: 60_000,
    now: () => clock,
    sleep: async (ms) => void sleeps.push(ms),
    ...options,
  });
  return { service, client, sleeps, advance: (ms: number) => (clock += ms) };
}

const verdictWith = (answer: Parameters<typeof decideVerdict>[1]["external"]) =>
  decideVerdict(A, { domain: "a.test", now: new Date(), licences: [], catalogue: openCatalogue(), external: answer })
    .verdict;

test("answers per font in one request, sends the token, and caches answers", async (t) => {
  const { service, client } = await setup(t, { token: "s3cret" });
  service.token = "s3cret";
  service.grant("a.test", A.sha256, "svc-lic-1");
  const first = await client.check("a.test", [A, B]);
  t.deepEqual(first.get(A.sha256), { status: "licensed", reference: "svc-lic-1" });
  t.deepEqual(first.get(B.sha256), { status: "not-licensed" });
  t.is(service.requests, 1);
  t.is(verdictWith(first.get(A.sha256)), "licensed");
  t.is(verdictWith(first.get(B.sha256)), "unlicensed");
  await client.check("a.test", [A, B]);
  t.is(service.requests, 1, "the second check is served from the cache");
  await client.check("b.test", [A]);
  t.is(service.requests, 2, "the cache is per domain");
});

test("a wrong token is not retried; the fonts are pending", async (t) => {
  const { service, client } = await setup(t, { token: "wrong" });
  service.token = "right";
  const answers = await client.check("a.test", [A]);
  t.like(answers.get(A.sha256), { status: "unavailable", reason: "HTTP 401" });
  t.is(service.requests, 1);
  t.is(verdictWith(answers.get(A.sha256)), "pending");
});

test("slow: each attempt times out, is retried with backoff, then the fonts are pending; fast again, answers", async (t) => {
  const { service, client, sleeps } = await setup(t, { timeoutMs: 1_000 });
  service.delayMs = 2_500;
  const slow = await client.check("a.test", [A]);
  t.like(slow.get(A.sha256), { status: "unavailable", reason: "timeout after 1000 ms" });
  t.is(client.requests, 3, "first attempt and two retries");
  t.deepEqual(sleeps, [20, 40], "exponential backoff");
  t.is(verdictWith(slow.get(A.sha256)), "pending");
  service.delayMs = 0;
  service.grant("a.test", A.sha256, "svc-2");
  const fast = await client.check("a.test", [A]);
  t.deepEqual(fast.get(A.sha256), { status: "licensed", reference: "svc-2" }, "unavailable answers are not cached");
});

test("transient 503s are retried until an answer comes", async (t) => {
  const { service, client } = await setup(t);
  service.failures = [503, 429];
  const answers = await client.check("a.test", [A]);
  t.deepEqual(answers.get(A.sha256), { status: "not-licensed" });
  t.is(service.requests, 3);
  t.is(client.breaker, "closed");
});

test("down: the breaker opens and stops asking; after its pause one trial goes through; back up, it closes", async (t) => {
  const { service, client, advance } = await setup(t);
  await service.stop();
  for (let i = 0; i < 2; i++) {
    const down = await client.check("a.test", [A]);
    t.like(down.get(A.sha256), { status: "unavailable" });
    t.regex((down.get(A.sha256) as { reason: string }).reason, /unreachable: ECONNREFUSED/);
  }
  t.is(client.requests, 6);
  t.is(client.breaker, "open");
  const refused = await client.check("a.test", [A]);
  t.like(refused.get(A.sha256), { status: "unavailable", reason: "circuit open" });
  t.is(client.requests, 6, "no request while open");

  advance(10_000);
  t.is(client.breaker, "half-open");
  await client.check("a.test", [A]);
  t.is(client.requests, 7, "one trial, no retries");
  t.is(client.breaker, "open", "a failed trial opens it again");

  await service.start();
  service.grant("a.test", A.sha256, "svc-3");
  advance(10_000);
  const back = await client.check("a.test", [A, B]);
  t.deepEqual(back.get(A.sha256), { status: "licensed", reference: "svc-3" });
  t.is(client.breaker, "closed");
  t.is(service.requests, 1);
});
