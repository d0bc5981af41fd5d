/**
 * `glyphscan demo`: the whole pipeline on the local stack against the bundled corpus of local
 * sites. It starts the corpus, a node with every role, submits the sites mixed with duplicates
 * and bad input, waits until every site has a scan, prints what was found, and stops.
 */
import type { Config } from "../../config/mod.ts";
import { connectNats, listDeadLetters, type Logger } from "../../cluster/mod.ts";
import { startNode } from "../../actors/compose.ts";
import { openDatabase } from "../../actors/store/database.ts";
import { startCorpus } from "../../ops/demo/corpus.ts";
import { submitUrls } from "./submit.ts";

/** The demo keeps to its own database and Bloom filter, apart from real work on the same stack. */
export const DEMO_OVERRIDES = {
  mongo: { database: "glyphscan_demo" },
  coordinator: { allowHosts: ["*.test"], seenFilterName: "demo" },
  scanner: { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } },
  frontier: { dispatchIntervalMs: 200 },
};

export async function runDemo(
  config: Config,
  log: Logger,
  opts: { sites: number; timeoutMs: number },
): Promise<number> {
  // New names each run: the cluster's dedupe windows remember earlier runs' domains.
  const corpus = await startCorpus({ sites: opts.sites, tag: Date.now().toString(36).slice(-5) });

  const node = await startNode(config, log);
  const control = await connectNats(config, "glyphscan-demo");
  const dlqBefore = (await listDeadLetters(control.jsm)).length;
  try {
    const urls = corpus.sites.map((s) => s.url);
    const junk = [
      "not a url",
      "http://127.0.0.1/admin",
      "http://10.0.0.8/",
      "ftp://files.example.org/",
      "http://localhost:8080/",
    ];
    // Junk first, so it shares a batch with this run's new names (a repeated batch would be deduplicated).
    const input = [...junk, ...urls, ...urls.slice(0, 5).map((u) => `${u}about`)];
    const summary = await submitUrls(control.js, config, input, {
      source: "demo",
      batchSize: 10,
      progress: process.stderr,
    });
    process.stdout.write(
      `submitted ${summary.read} URLs: ${summary.accepted} accepted, ${summary.rejected.length} rejected\n`,
    );

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
      const docs = await reopened.collections.domains
        .find({ _id: { $in: domains } })
        .sort({ _id: 1 })
        .toArray();
      const scans = await reopened.collections.scans.find({ domain: { $in: domains } }).toArray();
      // CSS names are aliases; the files say which fonts they really are.
      const identified = new Map(
        scans.map((s) => [s.domain, [...new Set(s.files.map((f) => f.family ?? "?"))].sort()]),
      );
      const header = `${"domain".padEnd(20)} ${"status".padEnd(7)} ${"CSS families used (declared only)".padEnd(42)} font files identified as`;
      process.stdout.write(`\n${header}\n`);
      for (const d of docs) {
        const l = d.latest;
        const declared = l?.declaredOnlyFamilies.length ? ` (${l.declaredOnlyFamilies.join(", ")})` : "";
        const css = `${l ? l.usedFamilies.join(", ") : "-"}${declared}`;
        process.stdout.write(
          `${d._id.padEnd(20)} ${(l?.status ?? "pending").padEnd(7)} ${css.padEnd(42)} ${(identified.get(d._id) ?? []).join(", ")}\n`,
        );
      }
      const fonts = await reopened.collections.fonts.countDocuments({});
      const dlq = (await listDeadLetters(control.jsm)).slice(dlqBefore);
      process.stdout.write(
        `\n${docs.filter((d) => d.latest).length}/${domains.length} sites scanned, ${fonts} distinct font files catalogued\n`,
      );
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
