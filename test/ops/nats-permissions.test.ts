/**
 * The shipped NATS users (ops/deploy/nats/auth.conf) on a real nats-server: the file is what the
 * generator makes, nobody gets in without a password, the pipeline runs end to end with each role
 * under its own user and no permission violation, and each user is refused outside its subjects.
 */
import test, { type ExecutionContext } from "ava";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { connect, PermissionViolationError, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { SignJWT } from "jose";
import { parse } from "yaml";
import { startApi, type RunningApi } from "../../actors/api/server.ts";
import { startNode } from "../../actors/compose.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import { createLogger, listDeadLetters, publishMessage, type ClusterNode } from "../../cluster/mod.ts";
import { submitUrls } from "../../bin/commands/submit.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import {
  DEPLOY_ARGS,
  deploymentUsers,
  parseAuthArgs,
  passwordVar,
  renderAuthConf,
  userInbox,
  type BusUser,
} from "../../ops/nats-auth.ts";
import { buckets, leaderKey, msgIds, nodeKey, streams, subjects } from "../../protocol/mod.ts";
import { NODE_ROLES, jsApi, permissionsFor } from "../../protocol/permissions.ts";
import { startMongo, startRedis, type ManagedServer } from "../harness/servers.ts";
import { startAuthServer, type AuthServer } from "./nats-auth-server.ts";
import { eventually, testConfig } from "../helpers/stack.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const AUTH_CONF = path.join(ROOT, "ops/deploy/nats/auth.conf");
const shipped = parseAuthArgs(DEPLOY_ARGS);
const users = deploymentUsers(shipped.opts);
const passwords = Object.fromEntries(users.map((u) => [u.user, randomBytes(12).toString("hex")]));

const asOperator = { user: "operator", pass: passwords["operator"]! };
const serverEnv = (list: readonly BusUser[]) =>
  Object.fromEntries(list.map((u) => [u.passwordVar, passwords[u.user] ?? "unused"]));

let nats: AuthServer;
let redis: ManagedServer;
let mongo: ManagedServer;

test.before(async () => {
  [nats, redis, mongo] = await Promise.all([
    startAuthServer(AUTH_CONF, serverEnv(users), asOperator),
    startRedis(),
    startMongo(),
  ]);
});

test.after.always(async () => {
  await Promise.all([nats?.stop(), redis?.stop(), mongo?.stop()]);
});

const login = (user: string, pass = passwords[user]) => connect({ servers: nats.url, user, pass, reconnect: false });

/** Publishing as `nc` is refused by the server with a permissions violation naming `subject`. */
async function refused(t: ExecutionContext, nc: NatsConnection, subject: string): Promise<void> {
  const js = jetstream(nc, { timeout: 5_000 });
  const err = await t.throwsAsync(js.publish(subject, "forged"), undefined, `${subject} was accepted`);
  // A JetStream publish is a request: the server's -ERR rejects it at once, the cause says why.
  const cause = (err as (Error & { cause?: unknown }) | undefined)?.cause;
  t.true(cause instanceof PermissionViolationError, `${subject}: ${err?.message}`);
  t.regex(err?.message ?? "", new RegExp(`publish.*${subject.replaceAll("$", "\\$")}`, "i"));
}

test("the checked-in auth.conf is what the generator makes", (t) => {
  const expected = renderAuthConf(users, shipped.opts, shipped.command);
  t.is(readFileSync(AUTH_CONF, "utf8"), expected, `regenerate it: ${shipped.command} --out ops/deploy/nats/auth.conf`);
  t.false(/password:\s*["'\w]/.test(expected), "every password is a $VARIABLE reference");
});

test("no credentials, or a wrong password, cannot connect", async (t) => {
  await t.throwsAsync(connect({ servers: nats.url, reconnect: false }), { message: /authoriz/i });
  await t.throwsAsync(login("scanner-eu", "not-the-password"), { message: /authoriz/i });
  await t.throwsAsync(login("glyphscan", "anything"), { message: /authoriz/i });
});

/** A node's config as the deploy runs it: region eu of eu and us, logged in as `user`. */
function nodeConfig(user: string, database: string, overrides: Record<string, unknown> = {}) {
  return testConfig(
    { nats: nats.url, redis: redis.url, mongo: mongo.url },
    {
      region: "eu",
      regions: ["eu", "us"],
      nats: { user, pass: passwords[user] },
      mongo: { database },
      api: { port: 0, jwtSecret: API_SECRET },
      ...overrides,
    },
  );
}

const API_SECRET = randomBytes(24).toString("hex");
/** The server logs each refusal as `"$G/user:<name>" - Publish Violation - Subject "<subject>"`. */
const violations = (log: string) => log.split("\n").filter((l) => / (?:Publish|Subscription) Violation /.test(l));

test.serial("the pipeline runs end to end with every role under its own user", async (t) => {
  const database = `perms_${randomBytes(4).toString("hex")}`;
  const corpus: Corpus = await startCorpus({ sites: 2 });
  const log = createLogger("silent", {});
  const nodes: ClusterNode[] = [];
  let db: Database | undefined;
  let api: RunningApi | undefined;
  const feed = await login("feed-extension");
  const operator = await login("operator");
  try {
    // Fallbacks switch on the coordinator's region probes (job streams, registry), within a long grace.
    const control = nodeConfig("control-eu", database, {
      roles: ["coordinator", "frontier", "results"],
      coordinator: { fallbackRegions: { eu: "us" }, regionProbeMs: 500 },
    });
    nodes.push(await startNode(control, log));
    nodes.push(await startNode(nodeConfig("scanner-eu", database, { roles: ["scanner"] }), log));
    api = await startApi(nodeConfig("api-eu", database), submitUrls, log);
    db = await openDatabase(control);

    const [viaFeed, viaApi] = corpus.sites;
    // A malformed URL beside the site: the coordinator dead-letters it under its own user.
    const urls = [viaFeed!.url, "http://exa mple.test/"];
    await publishMessage(jetstream(feed), {
      subject: subjects.feed("extension"),
      schema: "feed-batch",
      body: { urls, source: "extension", submittedAt: new Date().toISOString(), regionHint: "eu" },
      msgId: msgIds.feed("extension", viaFeed!.domain),
    });
    const res = await fetch(`${api.url}/v1/submissions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${await apiToken(control)}` },
      body: JSON.stringify({ urls: [viaApi!.url], regionHint: "eu" }),
    });
    t.is(res.status, 202, await res.text());

    for (const site of [viaFeed!, viaApi!]) {
      const scan = await eventually(
        `a stored scan of ${site.domain}`,
        async () => (await db!.collections.scans.findOne({ domain: site.domain })) ?? undefined,
        90_000,
      );
      t.is(scan.status, "ok", `${site.domain}: ${scan.failure?.message ?? ""}`);
      t.deepEqual(
        [...new Set(scan.files.map((f) => f.sha256))].sort(),
        [...new Set(site.expectedFiles.map((f) => f.sha256))].sort(),
      );
    }
    const letters = await eventually("the malformed URL's dead letter", async () => {
      const found = await listDeadLetters(await jetstreamManager(operator));
      return found.some((dl) => dl.stage === "coordinator") ? found : undefined;
    });
    t.true(
      letters.every((dl) => dl.stage === "coordinator" && dl.code === "rejected-input"),
      JSON.stringify(letters),
    );
  } finally {
    await api?.close();
    for (const node of nodes.reverse()) await node.stop();
    await db?.close();
    await Promise.all([feed.close(), operator.close()]);
    await corpus.close();
  }
  // Through start, work and drain: nothing any role does was refused.
  t.deepEqual(violations(nats.log()), [], "no role was refused anything it does");
});

async function apiToken(config: ReturnType<typeof nodeConfig>): Promise<string> {
  // Tokens name the regions they may route to (actors/api/auth.ts); the source stays the default.
  return new SignJWT({ scope: "submit", regions: ["eu"] })
    .setProtectedHeader({ alg: "HS256" })
    .setIssuer(config.api.jwtIssuer)
    .setAudience(config.api.jwtAudience)
    .setSubject("perms-test")
    .setIssuedAt()
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(API_SECRET));
}

test.serial("a scanner is refused feeds, admissions, jobs, other regions' results and the leader lease", async (t) => {
  const nc = await login("scanner-eu");
  try {
    // What it does may go through: the refusals below are the permissions, not a broken server.
    const ack = await jetstream(nc).publish(subjects.results("eu"), "{}", { msgID: randomBytes(8).toString("hex") });
    t.true(ack.seq > 0);
    for (const subject of [
      subjects.feed("x"),
      subjects.admit("eu"),
      subjects.jobs("eu"),
      subjects.results("us"),
      subjects.compliance("eu"),
      subjects.deadLetter("results"),
      jsApi.kvKey(buckets.leaders, leaderKey("dispatcher", "eu")),
      "$JS.API.STREAM.DELETE.FEEDS",
      "$JS.API.STREAM.PURGE.RESULTS_EU",
    ])
      await refused(t, nc, subject);
  } finally {
    await nc.close();
  }
});

test.serial("a feed may publish only its own source; the API only submissions", async (t) => {
  const feed = await login("feed-extension");
  const api = await login("api-eu");
  try {
    await refused(t, feed, subjects.feed("common-crawl"));
    await refused(t, feed, subjects.results("eu"));
    await refused(t, feed, subjects.admit("eu"));
    await refused(t, api, subjects.results("eu"));
    await refused(t, api, subjects.jobs("eu"));
    await refused(t, api, jsApi.kvKey(buckets.nodes, nodeKey("someone")));
  } finally {
    await Promise.all([feed.close(), api.close()]);
  }
});

test.serial("the refusals reach the server's log and the client's status stream", async (t) => {
  const nc = await login("feed-common-crawl");
  const seen = (async () => {
    for await (const s of nc.status())
      if (s.type === "error" && /permissions violation/i.test(String(s.error))) return s;
    return null;
  })();
  nc.publish(subjects.results("eu"), "forged"); // a plain publish: dropped, reported asynchronously
  const status = await seen;
  t.truthy(status, "the client heard of the violation");
  await nc.close();
  const logged = () => violations(nats.log()).filter((l) => l.includes("user:feed-common-crawl"));
  await eventually("the server's log of the refusal", async () => (logged().length > 0 ? true : undefined), 5_000);
  t.regex(logged()[0] ?? "", /Publish Violation - Subject "results\.eu"/, "the server logs who and what");
});

interface ComposeService {
  command?: string[];
  environment?: Record<string, string | null>;
}

test("compose runs each service as the user of its roles, and gives the servers every password", (t) => {
  const doc = parse(readFileSync(path.join(ROOT, "ops/deploy/compose.yaml"), "utf8"), { merge: true }) as {
    services: Record<string, ComposeService>;
  };
  const fromEnv = (v: string) => new RegExp(`^\\$\\{${v}:\\?[^}]+\\}$`);
  for (const r of ["eu", "us"]) {
    const env = doc.services[`nats-${r}`]?.environment ?? {};
    for (const u of users) t.regex(env[u.passwordVar] ?? "", fromEnv(u.passwordVar), `nats-${r}: ${u.passwordVar}`);
  }
  const nodes = Object.entries(doc.services).filter(([, s]) => s.environment?.["GLYPHSCAN_REGIONS"] !== undefined);
  t.true(nodes.length >= 7);
  for (const [name, s] of nodes) {
    const env = s.environment ?? {};
    const u = users.find((x) => x.user === env["GLYPHSCAN_NATS_USER"]);
    if (!u) {
      t.fail(`${name}: GLYPHSCAN_NATS_USER ${env["GLYPHSCAN_NATS_USER"]} is not a generated user`);
      continue;
    }
    t.regex(env["GLYPHSCAN_NATS_PASS"] ?? "", fromEnv(u.passwordVar), `${name}: its own user's password`);
    const [what, ...args] = s.command ?? [];
    const kinds = u.roles.map((r) => r.kind).sort();
    if (what === "node") {
      const region = args[args.indexOf("--region") + 1];
      t.deepEqual(kinds, args[args.indexOf("--roles") + 1]!.split(",").sort(), `${name}: the user has its roles`);
      for (const r of u.roles) t.is("region" in r ? r.region : undefined, region, `${name}: its region's user`);
    } else t.deepEqual(kinds, [what === "api" ? "api" : "operator"], `${name}: ${what}`);
  }
});

test.serial("with its node id in its user, a scanner may write only its own registry key", async (t) => {
  const operator = users.find((u) => u.user === "operator")!;
  const node: BusUser = {
    user: "scanner-eu-1",
    passwordVar: passwordVar("scanner-eu-1"),
    roles: [{ kind: "scanner", region: "eu" }],
    nodeIds: ["scanner-eu-1"],
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), "glyphscan-perms-node-"));
  const file = path.join(dir, "auth.conf");
  writeFileSync(file, renderAuthConf([node, operator], shipped.opts, "per-node test"));
  const pass = randomBytes(12).toString("hex");
  const server = await startAuthServer(
    file,
    { [node.passwordVar]: pass, [operator.passwordVar]: asOperator.pass },
    asOperator,
  );
  const op = await connect({ servers: server.url, user: "operator", pass: passwords["operator"], reconnect: false });
  const nc = await connect({ servers: server.url, user: node.user, pass, reconnect: false });
  try {
    await new Kvm(jetstream(op)).create(buckets.nodes, { history: 1 });
    const own = await jetstream(nc).publish(jsApi.kvKey(buckets.nodes, nodeKey("scanner-eu-1")), "{}");
    t.true(own.seq > 0, "its own entry is written");
    await refused(t, nc, jsApi.kvKey(buckets.nodes, nodeKey("control-eu-7")));
    await refused(t, nc, jsApi.kvKey(buckets.nodes, nodeKey("scanner-eu-2")));
  } finally {
    await Promise.all([nc.close(), op.close()]);
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("with topology left to the operator, nodes may not create or update streams and consumers", (t) => {
  const opts = { regions: ["eu", "us"], topologyAtStart: false };
  for (const kind of NODE_ROLES) {
    const { publish } = permissionsFor([{ kind, region: "eu" }], opts);
    const setUp = publish.allow.filter((s) => /\.(?:CREATE|UPDATE)\./.test(s));
    t.deepEqual(setUp, [], `${kind} sets nothing up`);
    t.true(publish.deny.includes("$JS.API.STREAM.DELETE.>"), `${kind} may never delete a stream`);
  }
  const withTopology = permissionsFor([{ kind: "scanner", region: "eu" }], { ...opts, topologyAtStart: true });
  t.true(withTopology.publish.allow.includes(jsApi.streamUpdate(streams.feeds)), "today's start-up needs it");
});

test.serial("with user inboxes, a user's replies cannot be read by another user", async (t) => {
  const opts = { ...shipped.opts, userInboxes: true };
  const dir = mkdtempSync(path.join(os.tmpdir(), "glyphscan-perms-inbox-"));
  const file = path.join(dir, "auth.conf");
  writeFileSync(file, renderAuthConf(users, opts, "user-inbox test"));
  const server = await startAuthServer(file, serverEnv(users), asOperator);
  const as = (user: string, inbox: boolean) =>
    connect({
      servers: server.url,
      user,
      pass: passwords[user],
      reconnect: false,
      ...(inbox ? { inboxPrefix: userInbox(user) } : {}),
    });
  const [op, feed, scanner, plainFeed] = await Promise.all([
    as("operator", false),
    as("feed-extension", true),
    as("scanner-eu", true),
    as("feed-extension", false),
  ]);
  try {
    await jetstreamManager(op).then((jsm) => jsm.streams.add({ name: streams.feeds, subjects: [subjects.feedAll] }));
    const ack = await jetstream(feed).publish(subjects.feed("extension"), "{}");
    t.true(ack.seq > 0, "the feed gets its acks on its own inbox");
    const heard = (async () => {
      for await (const s of scanner.status()) if (s.type === "error") return String(s.error);
      return "";
    })();
    scanner.subscribe(`${userInbox("feed-extension")}.>`);
    t.regex(await heard, /permissions violation for subscription/i, "the scanner may not listen on the feed's inbox");
    // A client on the shared _INBOX prefix gets no acks at all: connectNats must pass the user's prefix.
    const noInbox = await t.throwsAsync(
      jetstream(plainFeed, { timeout: 2_000 }).publish(subjects.feed("extension"), "{}"),
    );
    t.regex(String(noInbox?.message), /permissions violation for subscription to "_INBOX\./i);
  } finally {
    await Promise.all([op, feed, scanner, plainFeed].map((nc) => nc.close()));
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
