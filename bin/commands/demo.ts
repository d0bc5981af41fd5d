/**
 * `glyphscan demo`: the whole pipeline on the local stack against the bundled corpus of local
 * sites. It starts the corpus, a node with every role, submits the sites mixed with duplicates
 * and bad input, waits until every site has a scan, prints what was found, and stops.
 */
import { Redis } from "ioredis";
import type { Config } from "../../config/mod.ts";
import { connectNats, listDeadLetters, type Logger } from "../../cluster/mod.ts";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { startCorpus } from "../../ops/demo/corpus.ts";
import { submitUrls } from "./submit.ts";

/** The demo keeps to its own database and Bloom filter, so it can run again and again. */
export const DEMO_OVERRIDES = {
  mongo: { database: "glyphscan_demo" },
  coordinator: { allowHosts: ["*.test"], seenFilterName: "demo" },
  scanner: { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } },
  frontier: { dispatchIntervalMs: 200 },
};

export async function runDemo(config: Config, log: Logger, opts: { sites: number; timeoutMs: number }): Promise<number> {
  const corpus = await startCorpus({ sites: opts.sites });
  // A fresh start: forget earlier demo runs.
  const db = await openDatabase(config);
  await db.db.dropDatabase();
  await db.close();
  const redis = new Redis(config.redis.url);
  const stale = await redis.keys(`bloom:{${config.coordinator.seenFilterName}}:*`);
  if (stale.length > 0) await redis.del(...stale);
  await redis.quit();

  const node = await startNode(config, log);
  const control = await connectNats(config, "glyphscan-demo");
  const dlqBefore = (await listDeadLetters(control.jsm)).length;
  try {
    const urls = corpus.sites.map((s) => s.url);
    const junk = ["not a url", "http://127.0.0.1/admin", "http://10.0.0.8/", "ftp://files.example.org/", "http://localhost:8080/"];
    const input = [...urls, ...urls.slice(0, 5).map((u) => `${u}about`), ...junk];
    const summary = await submitUrls(control.js, config, input, { source: "demo", batchSize: 10, progress: process.stderr });
    process.stdout.write(`submitted ${summary.read} URLs: ${summary.accepted} accepted, ${summary.rejected.length} rejected\n`);

    const deadline = Date.now() + opts.timeoutMs;
    const domains = corpus.sites.map((s) => s.domain);
    const reopened = await openDatabase(config);
    try {
      let done = 0;
      while (Date.now() < deadline) {
        done = await reopened.collections.domains.countDocuments({ _id: { $in: domains }, latest: { $ne: null } });
        if (done === domains.length) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      const docs = await reopened.collections.domains.find({ _id: { $in: domains } }).sort({ _id: 1 }).toArray();
      process.stdout.write(`\n${"domain".padEnd(14)} ${"status".padEnd(7)} fonts used (declared only)\n`);
      for (const d of docs) {
        const l = d.latest;
        const declared = l?.declaredOnlyFamilies.length ? ` (${l.declaredOnlyFamilies.join(", ")})` : "";
        process.stdout.write(`${d._id.padEnd(14)} ${(l?.status ?? "pending").padEnd(7)} ${l ? l.usedFamilies.join(", ") : "-"}${declared}\n`);
      }
      const fonts = await reopened.collections.fonts.countDocuments({});
      const dlq = (await listDeadLetters(control.jsm)).slice(dlqBefore);
      process.stdout.write(`\n${docs.filter((d) => d.latest).length}/${domains.length} sites scanned, ${fonts} distinct font files catalogued\n`);
      process.stdout.write(`dead letters: ${dlq.length}\n`);
      for (const d of dlq) {
        const payload = JSON.parse(Buffer.from(d.payloadBase64, "base64").toString("utf8")) as { url?: string };
        process.stdout.write(`  ${d.stage}: ${payload.url ?? "?"} → ${d.reason}\n`);
      }
      process.stdout.write(`\ntry: npm run glyphscan -- lookup ${domains[0]} --demo\n`);
      return done === domains.length ? 0 : 1;
    } finally {
      await reopened.close();
    }
  } finally {
    await control.nc.close();
    await node.stop();
    await corpus.close();
  }
}
