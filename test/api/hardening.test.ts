/**
 * What a client can send never gets a 500: batches larger than one bus message are split to fit,
 * bodies and headers over their limits get 413 and 431 in the documented error body, tokens with
 * an `iat` in the future or a lifetime past `api.maxTokenLifetimeS` are refused, and a property
 * test throws random bodies, headers and paths at every route.
 */
import test from "ava";
import net from "node:net";
import fc from "fast-check";
import { Redis } from "ioredis";
import { SignJWT } from "jose";
import { connectNats, ensureTopology, type NatsHandles } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { buildApi } from "../../actors/api/server.ts";
import { errorBody } from "../../actors/api/schemas.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { submitUrls } from "../../bin/commands/submit.ts";
import { streams } from "../../protocol/mod.ts";
import { startStack, type TestStack } from "../helpers/stack.ts";

const SECRET = "a-test-secret-that-is-at-least-32-bytes-long";
let stack: TestStack;
let config: Config;
let db: Database;
let nats: NatsHandles;
let redis: Redis;
let app: ReturnType<typeof buildApi>;
let port: number;

const nowS = () => Math.floor(Date.now() / 1000);
async function token(claims: { iat?: number; exp?: number } = {}) {
  const jwt = new SignJWT({ scope: "submit" })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(config.api.jwtIssuer)
    .setAudience(config.api.jwtAudience)
    .setSubject("hardening")
    .setExpirationTime(claims.exp ?? nowS() + 300);
  if (claims.iat !== undefined) jwt.setIssuedAt(claims.iat);
  return jwt.sign(new TextEncoder().encode(SECRET));
}

test.before(async () => {
  stack = await startStack();
  config = stack.config({ api: { jwtSecret: SECRET, maxTokenLifetimeS: 7 * 24 * 3600, port: 0 } });
  db = await openDatabase(config);
  nats = await connectNats(config, "api-hardening-test");
  await ensureTopology(nats.jsm, config);
  redis = new Redis(stack.redis.url);
  app = buildApi({ config, db, nats, redis, submitUrls });
  await app.listen({ host: "127.0.0.1", port: 0 });
  port = (app.server.address() as net.AddressInfo).port;
});
test.after.always(async () => {
  await app?.close();
  redis?.disconnect();
  await nats?.nc.close();
  await db?.close();
  await stack?.stop();
});

const isErrorBody = (text: string) => errorBody.safeParse(JSON.parse(text)).success;

test.serial("1,000 URLs of 4 KB are accepted, in batches that each fit one bus message", async (t) => {
  const before = (await nats.jsm.streams.info(streams.feeds)).state.last_seq;
  const urls = Array.from({ length: 1_000 }, (_, i) => `https://site${i}.example.org/${"p".repeat(4_000)}`);
  const res = await app.inject({
    method: "POST",
    url: "/v1/submissions",
    headers: { authorization: `Bearer ${await token()}` },
    payload: { urls },
  });
  t.is(res.statusCode, 202, res.body);
  t.is(res.json<{ accepted: number }>().accepted, 1_000);
  // FEEDS is a work queue (no ordered consumer): read the stored batches by sequence.
  const last = (await nats.jsm.streams.info(streams.feeds)).state.last_seq;
  let seen = 0;
  let batches = 0;
  for (let seq = before + 1; seq <= last; seq++) {
    const m = await nats.jsm.streams.getMessage(streams.feeds, { seq });
    if (!m) continue;
    batches++;
    t.true(m.data.length <= config.actors.maxMessageBytes, `batch ${batches} is ${m.data.length} bytes`);
    seen += m.json<{ urls: string[] }>().urls.length;
  }
  t.is(seen, 1_000, "every URL reached the feed");
  t.true(batches >= 16, `4 MB of URLs in ${batches} batches of at most 256 KiB`);
});

test("a body over the limit gets 413 and headers over 16 KiB get 431, both in the error body", async (t) => {
  const big = await fetch(`http://127.0.0.1:${port}/v1/submissions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${await token()}` },
    body: JSON.stringify({ urls: ["x".repeat(8 << 20)] }),
  });
  t.is(big.status, 413);
  t.true(isErrorBody(await big.text()));
  const raw = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () =>
      socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${"a".repeat(32 * 1024)}\r\n\r\n`),
    );
    let text = "";
    socket.on("data", (d) => (text += d.toString()));
    socket.on("end", () => resolve(text));
    socket.on("error", reject);
  });
  t.regex(raw, /^HTTP\/1\.1 431 /);
  t.true(isErrorBody(raw.slice(raw.indexOf("\r\n\r\n") + 4)));
});

test("tokens issued in the future or living past the maximum lifetime get 401", async (t) => {
  const send = async (jwt: string) =>
    app.inject({
      method: "POST",
      url: "/v1/submissions",
      headers: { authorization: `Bearer ${jwt}` },
      payload: { urls: ["https://ok.example.org/"] },
    });
  const future = await send(await token({ iat: nowS() + 3_600, exp: nowS() + 7_200 }));
  t.is(future.statusCode, 401);
  t.regex(future.json<{ message: string }>().message, /iat is in the future/);
  const year5000 = Math.floor(Date.UTC(5000, 0, 1) / 1000);
  for (const claims of [{ exp: year5000 }, { iat: nowS(), exp: year5000 }]) {
    const res = await send(await token(claims));
    t.is(res.statusCode, 401, JSON.stringify(claims));
    t.regex(res.json<{ message: string }>().message, /lives longer than/);
  }
  t.is((await send(await token({ iat: nowS() - 10, exp: nowS() + 3_600 }))).statusCode, 202);
});

test("no request a client can build gets a 500", async (t) => {
  const auth = `Bearer ${await token()}`;
  const paths = [
    "/v1/submissions",
    "/v1/domains/example.org",
    "/v1/domains/example.org/scans",
    "/v1/domains/example.org/rescan",
    "/urlinfo/1/example.org:443/a",
    "/healthz",
    "/openapi.json",
  ];
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom("GET", "POST", "PUT", "DELETE"),
      fc.constantFrom(...paths),
      fc.string({ maxLength: 40 }),
      fc.oneof(fc.json(), fc.string(), fc.constant("")),
      fc.constantFrom(
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
      ),
      fc.boolean(),
      async (method, path, suffix, body, contentType, withAuth) => {
        const res = await app.inject({
          method: method as "GET",
          url: `${path}${encodeURI(suffix).replaceAll("#", "%23")}`,
          headers: { "content-type": contentType, ...(withAuth ? { authorization: auth } : {}) },
          ...(method === "GET" || method === "DELETE" ? {} : { payload: body }),
        });
        return res.statusCode < 500 || res.statusCode === 503;
      },
    ),
    { numRuns: 300, seed: 1204 },
  );
  t.pass();
});
