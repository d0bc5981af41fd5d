/**
 * The whole path on real servers: feed messages (valid sites, duplicates, malformed URLs and
 * private addresses) → coordinator → frontier → scanner (Chromium) → results in MongoDB.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { headers } from "@nats-io/transport-node";
import { startNode } from "../../actors/compose.ts";
import { openDatabase, type Database } from "../../actors/store/database.ts";
import {
  connectNats,
  createLogger,
  listDeadLetters,
  publishMessage,
  type ClusterNode,
  type NatsHandles,
} from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { subjects, type FeedSubmission } from "../../protocol/mod.ts";
import { eventually, startStack, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
let corpus: Corpus;
let config: Config;
let node: ClusterNode;
let nats: NatsHandles;
let db: Database;

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 24 })]);
  config = stack.config();
  node = await startNode(config, createLogger(config.logLevel, {}));
  nats = await connectNats(config, "e2e-client");
  db = await openDatabase(config);
});

test.after.always(async () => {
  await node?.stop();
  await nats?.nc.close();
  await db?.close();
  await corpus?.close();
  await stack?.stop();
});

const submission = (url: string): FeedSubmission => ({ url, source: "e2e", submittedAt: new Date().toISOString() });

test.serial("every valid site is scanned exactly once with the right fonts; bad input is dead-lettered", async (t) => {
  const sites = corpus.sites;
  t.true(sites.length >= 20);
  const malformed = ["not a url", "http://", "javascript:alert(1)", "http://exa mple.com/"];
  const privateAddresses = [
    "http://127.0.0.1/",
    "http://10.1.2.3/admin",
    "http://localhost:8080/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data/",
  ];
  // Duplicates: the same URL again, another page of the same site, and a case variant.
  const duplicates = sites
    .slice(0, 6)
    .flatMap((s) => [s.url, `${s.url}about?x=1`, s.url.replace("http://", "HTTP://")]);

  // Half the sites arrive one per message, half in batches, as feeds do.
  const singles = sites.slice(0, 12).map((s) => s.url);
  for (const url of singles) {
    await publishMessage(nats.js, {
      subject: subjects.feed("e2e"),
      schema: "feed-submission",
      body: submission(url),
      msgId: `s:${url}`,
    });
  }
  const batched = [...sites.slice(12).map((s) => s.url), ...duplicates, ...malformed, ...privateAddresses];
  for (let i = 0; i < batched.length; i += 7) {
    await publishMessage(nats.js, {
      subject: subjects.feed("e2e"),
      schema: "feed-batch",
      body: { urls: batched.slice(i, i + 7), source: "e2e", submittedAt: new Date().toISOString() },
      msgId: `b:${i}`,
    });
  }

  const domains = sites.map((s) => s.domain);
  await eventually(
    "every corpus site to have a recorded scan",
    async () =>
      (await db.collections.domains.countDocuments({ _id: { $in: domains }, latest: { $ne: null } })) === domains.length
        ? true
        : undefined,
    120_000,
  );
  // A few more dispatcher ticks: nothing must be scanned a second time.
  await new Promise((r) => setTimeout(r, 1_500));

  t.is(await db.collections.domains.countDocuments({}), sites.length, "only the corpus domains were admitted");
  t.is(await db.collections.scans.countDocuments({}), sites.length, "one scan per site");
  for (const site of sites) {
    const domain = await db.collections.domains.findOne({ _id: site.domain });
    const scan = await db.collections.scans.findOne({ domain: site.domain });
    t.truthy(scan, `${site.domain} has a scan`);
    if (!domain?.latest || !scan) continue;
    t.is(scan.status, "ok", `${site.domain}: ${scan.failure?.message ?? ""}`);
    t.deepEqual(
      domain.latest.usedFamilies,
      [...site.expectedUsedFamilies].sort(),
      `${site.domain} (${site.variant}) used families`,
    );
    t.deepEqual(
      domain.latest.declaredOnlyFamilies,
      [...site.expectedDeclaredOnlyFamilies].sort(),
      `${site.domain} declared-only families`,
    );
    t.deepEqual(
      [...new Set(scan.files.map((f) => f.sha256))].sort(),
      [...new Set(site.expectedFiles.map((f) => f.sha256))].sort(),
      `${site.domain} font files by SHA-256`,
    );
    t.is(domain.state, "scanned");
    t.true(domain.nextScanAt !== null && domain.nextScanAt.getTime() > Date.now(), "next scan scheduled");
  }
  const catalogued = await db.collections.fonts.find({}).toArray();
  t.true(
    catalogued.length > 0 && catalogued.every((f) => f.metadata?.family),
    "every font file parsed into the catalogue",
  );

  const rejected = await eventually("a dead letter for each bad input", async () => {
    const dl = (await listDeadLetters(nats.jsm)).filter((d) => d.stage === "coordinator");
    return dl.length >= malformed.length + privateAddresses.length ? dl : undefined;
  });
  t.is(
    rejected.length,
    malformed.length + privateAddresses.length,
    "one dead letter per bad input, none for duplicates",
  );
  const byUrl = new Map(
    rejected.map((d) => [(JSON.parse(Buffer.from(d.payloadBase64, "base64").toString()) as FeedSubmission).url, d]),
  );
  for (const url of [...malformed, ...privateAddresses]) {
    const dl = byUrl.get(url);
    t.truthy(dl, `dead letter for ${url}`);
    t.is(dl?.code, "rejected-input");
    t.regex(dl?.reason ?? "", /^(malformed|unsupported-scheme|ip-literal|private-host|no-registrable-domain): ./, url);
  }
  t.regex(byUrl.get("http://10.1.2.3/admin")!.reason, /^ip-literal/);
  t.regex(byUrl.get("http://localhost:8080/")!.reason, /^private-host/);
});

test.serial("a message with a W3C trace context continues that trace through to the job", async (t) => {
  const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
  const site = corpus.sites.at(-1)!;
  const h = headers();
  h.set("Glyphscan-Schema", "feed-submission.v1");
  h.set("traceparent", `00-${traceId}-00f067aa0ba902b7-01`);
  // Already scanned, so look at the stored admission trace of a fresh domain instead.
  const url = site.url.replace(site.domain, "trace-probe.test");
  await nats.js.publish(subjects.feed("e2e"), JSON.stringify(submission(url)), { headers: h });
  const doc = await eventually(
    "trace-probe admitted",
    async () => (await db.collections.domains.findOne({ _id: "trace-probe.test" })) ?? undefined,
  );
  t.regex(doc.traceparent ?? "", new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
});

test.serial("glyphscan lookup prints the stored result", async (t) => {
  const site = corpus.sites[0]!;
  const { stdout } = await promisify(execFile)(process.execPath, ["bin/glyphscan.ts", "lookup", site.url], {
    env: {
      ...process.env,
      GLYPHSCAN_MONGO_URL: config.mongo.url,
      GLYPHSCAN_MONGO_DATABASE: config.mongo.database,
      GLYPHSCAN_COORDINATOR_ALLOW_HOSTS: "*.test",
    },
  });
  t.regex(stdout, new RegExp(`domain\\s+${site.domain.replace(".", "\\.")}`));
  t.regex(stdout, /state\s+scanned/);
  for (const family of site.expectedUsedFamilies) t.true(stdout.includes(family), `lookup shows ${family}`);
  for (const file of site.expectedFiles) t.true(stdout.includes(file.sha256), `lookup shows ${file.sha256}`);
});
