#!/usr/bin/env node
/**
 * The glyphscan command line. Each command resolves the config once (file, environment, flags)
 * and reports errors in one line on stderr with a non-zero exit.
 */
import { Command, Option } from "commander";
import { ConfigError, ROLES } from "../config/mod.ts";
import { InputError, connectNats, errorMessage, openRegistry } from "../cluster/mod.ts";
import { startTelemetry } from "../cluster/telemetry.ts";
import { startNode } from "../actors/compose.ts";
import { commandContext, type GlobalOptions } from "./commands/context.ts";
import { linesOf, submitUrls } from "./commands/submit.ts";
import { formatLookup, lookupDomain } from "./commands/lookup.ts";
import { clusterStatus, formatStatus } from "./commands/status.ts";
import { DEMO_OVERRIDES, runDemo } from "./commands/demo.ts";
import { formatImportSummary, importLicenseFile } from "./commands/licenses.ts";
import { formatDlq, formatReplay, listDlq, replayDlq, type DlqOptions } from "./commands/dlq.ts";
import { formatRescan, requestRescan } from "./commands/rescan.ts";
import { formatExportSummary, parseExportFlags, runExport, type ExportFlags } from "./commands/export.ts";
import { startApi } from "../actors/api/server.ts";
import { bloomStats, formatBloomStats, formatRebuild, rebuildSeenFilter } from "./commands/bloom.ts";
import { formatReindex, reindex } from "./commands/scans.ts";
import { formatViewRebuild, rebuildViews } from "./commands/views.ts";
import { formatScans, parseScanFlags, scanNow } from "./commands/scan.ts";

const program = new Command("glyphscan")
  .description("Find the web fonts every website uses, on a cluster of actors over NATS JetStream")
  .option("-c, --config <file>", "JSON config file (also GLYPHSCAN_CONFIG)")
  .option("--region <region>", "region of this node (GLYPHSCAN_REGION)")
  .option("--log-level <level>", "log level (GLYPHSCAN_LOG_LEVEL)");

const globals = () => program.opts<GlobalOptions>();

async function runUntilSignal(extra: Record<string, unknown>, roles?: string) {
  const { config, log } = commandContext({ ...globals(), ...(roles ? { roles } : {}) }, extra);
  const telemetry = await startTelemetry(config);
  if (telemetry.metricsUrl) log.info({ url: telemetry.metricsUrl }, "metrics served");
  const node = await startNode(config, log).catch(async (err: unknown) => {
    await telemetry.shutdown();
    throw err;
  });
  node.handleSignals((code) => void telemetry.shutdown().finally(() => process.exit(code)));
}

program
  .command("up")
  .description("run every actor in one process on the local stack, until SIGTERM")
  .action(() => runUntilSignal({}, ROLES.join(",")));

program
  .command("node")
  .description("run a node with chosen roles in a region, until SIGTERM (drains on exit)")
  .addOption(new Option("--roles <roles>", `comma-separated: ${ROLES.join(",")}`).makeOptionMandatory())
  .option("--concurrency <n>", "pages rendered at once (scanner role)", (v) => Number.parseInt(v, 10))
  .action((opts: { roles: string; concurrency?: number }) =>
    runUntilSignal(opts.concurrency ? { scanner: { concurrency: opts.concurrency } } : {}, opts.roles),
  );

program
  .command("submit [file]")
  .description("send URLs (one per line, from a file or stdin) to a feed")
  .option("--source <name>", "feed source name", "cli")
  .option("--batch-size <n>", "URLs per message", (v) => Number.parseInt(v, 10), 500)
  .option("--region-hint <region>", "preferred region for these URLs")
  .action(async (file: string | undefined, opts: { source: string; batchSize: number; regionHint?: string }) => {
    const { config } = commandContext(globals());
    // Traces only: each feed publish starts the trace of its domains; no metrics endpoint for a one-shot command.
    const telemetry = await startTelemetry({ ...config, telemetry: { ...config.telemetry, metricsPort: undefined } });
    const nats = await connectNats(config, "glyphscan-submit");
    try {
      const s = await submitUrls(nats.js, config, linesOf(file), { ...opts, progress: process.stderr });
      process.stdout.write(
        `read ${s.read} URLs in ${s.batches} batches: ${s.accepted} accepted, ${s.rejected.length} rejected\n`,
      );
      if (s.duplicateBatches > 0)
        process.stdout.write(`${s.duplicateBatches} batches were already submitted (deduplicated)\n`);
      for (const r of s.rejected.slice(0, 50)) process.stdout.write(`  rejected ${r.url}: ${r.reason}\n`);
      if (s.rejected.length > 50) process.stdout.write(`  … and ${s.rejected.length - 50} more (see dead letters)\n`);
    } finally {
      await nats.nc.drain();
      await telemetry.shutdown();
    }
  });

program
  .command("lookup <domain>")
  .description("latest scan of a domain: fonts, when, status")
  .option("--json", "print JSON")
  .option("--demo", "look in the demo's database")
  .action(async (domain: string, opts: { json?: boolean; demo?: boolean }) => {
    const { config } = commandContext(globals(), opts.demo ? DEMO_OVERRIDES : {});
    const found = await lookupDomain(config, domain);
    if (!found) {
      process.stderr.write(`${domain}: not known\n`);
      process.exitCode = 1;
      return;
    }
    process.stdout.write(opts.json ? `${JSON.stringify(found, null, 2)}\n` : `${formatLookup(found)}\n`);
  });

program
  .command("rescan <domain>")
  .description("scan a domain again as soon as possible, ahead of the queue")
  .action(async (domain: string) => {
    const { config } = commandContext(globals());
    const r = await requestRescan(config, domain);
    process.stdout.write(`${formatRescan(r)}\n`);
    if (r.outcome === "unknown") process.exitCode = 1;
  });

program
  .command("status")
  .description("per region: nodes and roles, job lag, scans per minute, failures, oldest pending job; streams")
  .option("--json", "print JSON")
  .action(async (opts: { json?: boolean }) => {
    const { config } = commandContext(globals());
    const nats = await connectNats(config, "glyphscan-status");
    try {
      const registry = await openRegistry(nats.js, config.actors.heartbeatMs);
      const status = await clusterStatus(nats, registry, {
        regions: config.regions,
        heartbeatMs: config.actors.heartbeatMs,
      });
      process.stdout.write(opts.json ? `${JSON.stringify(status, null, 2)}\n` : `${formatStatus(status)}\n`);
    } finally {
      await nats.nc.close();
    }
  });

program
  .command("demo")
  .description("scan the bundled corpus of local sites end to end on the local stack and print what was found")
  .option("--sites <n>", "number of corpus sites", (v) => Number.parseInt(v, 10), 24)
  .option("--timeout <seconds>", "give up after", (v) => Number.parseInt(v, 10), 300)
  .action(async (opts: { sites: number; timeout: number }) => {
    const { config, log } = commandContext({ logLevel: "warn", ...globals() }, DEMO_OVERRIDES);
    process.exitCode = await runDemo(config, log, { sites: opts.sites, timeoutMs: opts.timeout * 1000 });
  });

program
  .command("api")
  .description("serve the HTTP API (lookups, history, submissions, health, OpenAPI) until SIGTERM")
  .option("--port <port>", "listen port (GLYPHSCAN_API_PORT)", (v) => Number.parseInt(v, 10))
  .action(async (opts: { port?: number }) => {
    const { config, log } = commandContext(globals(), opts.port === undefined ? {} : { api: { port: opts.port } });
    const telemetry = await startTelemetry(config);
    if (telemetry.metricsUrl) log.info({ url: telemetry.metricsUrl }, "metrics served");
    const api = await startApi(config, submitUrls, log).catch(async (err: unknown) => {
      await telemetry.shutdown();
      throw err;
    });
    log.info({ url: api.url }, "api listening");
    const onSignal = (signal: string) => {
      log.info({ signal }, "closing api");
      void api
        .close()
        .then(() => telemetry.shutdown())
        .finally(() => process.exit(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  });

const dlq = program.command("dlq").description("dead letters: list and replay");
const dlqFilters = (c: Command) =>
  c
    .option("--stage <stage>", "only this stage (coordinator, frontier, scanner, results)")
    .option("--reason <regex>", "only dead letters whose `code: reason` matches")
    .option("--older-than <duration>", "only dead letters that failed at least this long ago (90s, 15m, 2h, 7d)")
    .option("--limit <n>", "at most this many", (v) => Number.parseInt(v, 10));
dlqFilters(dlq.command("list").description("list dead letters, oldest first"))
  .option("--json", "print JSON")
  .action(async (opts: DlqOptions & { json?: boolean }) => {
    const { config } = commandContext(globals());
    const nats = await connectNats(config, "glyphscan-dlq");
    try {
      const letters = await listDlq(nats.jsm, opts);
      process.stdout.write(opts.json ? `${JSON.stringify(letters, null, 2)}\n` : `${formatDlq(letters)}\n`);
    } finally {
      await nats.nc.close();
    }
  });
dlqFilters(dlq.command("replay").description("republish matching dead letters to their subjects, then remove them"))
  .option("--json", "print JSON")
  .action(async (opts: DlqOptions & { json?: boolean }) => {
    const { config } = commandContext(globals());
    const nats = await connectNats(config, "glyphscan-dlq");
    try {
      const outcomes = await replayDlq(nats.js, nats.jsm, opts);
      process.stdout.write(opts.json ? `${JSON.stringify(outcomes, null, 2)}\n` : `${formatReplay(outcomes)}\n`);
      if (outcomes.some((o) => !o.ok)) process.exitCode = 1;
    } finally {
      await nats.nc.drain();
    }
  });

program
  .command("export")
  .description("compliance results as CSV or JSON Lines: one row per font file per domain (its latest assessed scan)")
  .option("--format <format>", "csv or jsonl", "csv")
  .option("--out <file>", "write to this file (default: stdout)")
  .option(
    "--verdict <verdicts>",
    "only these verdicts (licensed, open-licence, unlicensed, unknown, pending); repeatable or comma-separated",
    (v: string, prev: string[]) => [...prev, v],
    [] as string[],
  )
  .option("--region <region>", "only domains of this region")
  .option("--since <date>", "only scans finished at or after this ISO 8601 date or date-time (UTC unless an offset)")
  .option("--until <date>", "only scans finished before this ISO 8601 date or date-time")
  .option("--demo", "read the demo's database")
  // A mistyped flag is a usage error like a bad value: exit code 2.
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (opts: ExportFlags & { demo?: boolean }) => {
    // The program's own --region takes the flag wherever it stands: here it is the filter.
    const request = parseExportFlags({ ...opts, region: opts.region ?? globals().region });
    const { config } = commandContext({ ...globals(), region: undefined }, opts.demo ? DEMO_OVERRIDES : {});
    const summary = await runExport(config, request, { stdout: process.stdout, stderr: process.stderr });
    process.stderr.write(`${formatExportSummary(summary, request)}\n`);
  });

const licenses = program.command("licenses").description("the licence registry");
licenses
  .command("import <file>")
  .description("import licences from CSV, JSON or JSON Lines (idempotent; invalid rows reported by line)")
  .option("--format <format>", "csv, json or jsonl (default: from the file name or content)")
  .action(async (file: string, opts: { format?: string }) => {
    const { config } = commandContext(globals());
    const summary = await importLicenseFile(config, file, { format: opts.format, progress: process.stderr });
    process.stdout.write(`${formatImportSummary(summary)}\n`);
    if (summary.errors.length > 0) process.exitCode = 1;
  });

const bloom = program.command("bloom").description("the coordinator's seen-recently Bloom filter in Redis");
bloom
  .command("rebuild")
  .description("put the domains MongoDB last saw within the live window back into their slices (idempotent)")
  .option("--batch <n>", "domains read from MongoDB per batch", (v) => Number.parseInt(v, 10), 5000)
  .action(async (opts: { batch: number }) => {
    const { config } = commandContext(globals());
    const summary = await rebuildSeenFilter(config, { batch: opts.batch, progress: process.stderr });
    process.stdout.write(`${formatRebuild(summary)}\n`);
  });
bloom
  .command("stats")
  .description("bits per domain, fill of each live slice, measured false-positive rate")
  .option(
    "--probes <n>",
    "random never-added names probed to measure false positives",
    (v) => Number.parseInt(v, 10),
    100_000,
  )
  .option("--json", "print JSON")
  .action(async (opts: { probes: number; json?: boolean }) => {
    const { config } = commandContext(globals());
    const report = await bloomStats(config, { probes: opts.probes });
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatBloomStats(report)}\n`);
  });

const views = program.command("views").description("read models in Redis built from MongoDB");
views
  .command("rebuild")
  .description("write every domain's lookup answer into the lookup view from MongoDB (idempotent)")
  .option("--batch <n>", "documents per MongoDB batch and per Redis pipeline", (v) => Number.parseInt(v, 10), 1000)
  .option(
    "--chunk <n>",
    "domains held in memory per pass over the scans collection",
    (v) => Number.parseInt(v, 10),
    100_000,
  )
  .action(async (opts: { batch: number; chunk: number }) => {
    const { config } = commandContext(globals());
    const summary = await rebuildViews(config, { ...opts, progress: process.stderr });
    process.stdout.write(`${formatViewRebuild(summary)}\n`);
    if (summary.failed > 0) process.exitCode = 1;
  });

const scans = program.command("scans").description("stored scans");
scans
  .command("reindex")
  .description("list scans stored before the scan index in it, and name each domain's assessed scan (idempotent)")
  .option("--batch <n>", "scans per MongoDB batch", (v) => Number.parseInt(v, 10), 1000)
  .action(async (opts: { batch: number }) => {
    const { config } = commandContext(globals());
    const summary = await reindex(config, { ...opts, progress: process.stderr });
    process.stdout.write(`${formatReindex(summary)}\n`);
  });

program
  .command("scan <urls...>")
  .description(
    "scan sites now in this process, without the cluster, and print what they use (--json: the scan reports)",
  )
  .option("--json", "print each site's scan report as JSON, one per line")
  .option(
    "--allow-host <pattern[=address]>",
    "let hosts matching the pattern resolve to private addresses, optionally mapped to ADDRESS; repeatable",
    (v: string, prev: string[]) => [...prev, v],
    [] as string[],
  )
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (urls: string[], opts: { json?: boolean; allowHost: string[] }) => {
    const request = parseScanFlags(urls, opts);
    const { config } = commandContext({ logLevel: "warn", ...globals() });
    const sites = await scanNow(config, request);
    const out = request.json ? sites.map((s) => JSON.stringify(s.report)).join("\n") : formatScans(sites);
    process.stdout.write(`${out}\n`);
    if (sites.some((s) => s.report.status !== "ok")) process.exitCode = 1;
  });

// A wrong setting, flag or input file is a usage error (exit 2); anything else failed while running (exit 1).
program.parseAsync().catch((err: unknown) => {
  const usage = err instanceof ConfigError || err instanceof InputError;
  process.stderr.write(`glyphscan: ${usage ? err.message : errorMessage(err)}\n`);
  process.exit(usage ? 2 : 1);
});
