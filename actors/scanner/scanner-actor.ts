/**
 * Scanner: takes a scan job, renders the site, and publishes what it found as a scan result.
 * A site's own failures (DNS, TLS, timeouts, blocked addresses) are results too; only a browser
 * crash is retried, since the site did nothing wrong.
 */
import type { ActorDefinition } from "../../cluster/actor.ts";
import { TransientError } from "../../cluster/errors.ts";
import type { Config } from "../../config/mod.ts";
import { consumers, msgIds, streams, subjects } from "../../protocol/mod.ts";
import { instruments } from "../../cluster/metrics.ts";
import { withSpan } from "../../cluster/telemetry.ts";
import { context } from "@opentelemetry/api";
import type { BrowserPool } from "./browser-pool.ts";
import { scanSite } from "./scan-site.ts";

/** Chromium's --host-resolver-rules for the configured static host map (tests and demo). */
export function hostResolverRules(hostMap: Readonly<Record<string, string>>): string | undefined {
  const rules = Object.entries(hostMap).map(([pattern, ip]) => `MAP ${pattern} ${ip}`);
  return rules.length > 0 ? rules.join(", ") : undefined;
}

/** The pool with each page render (load, font extraction and parsing) in its own span. */
function tracedPool(pool: BrowserPool): BrowserPool {
  return new Proxy(pool, {
    get(target, key) {
      if (key === "run") {
        const run: BrowserPool["run"] = (url, fn) =>
          withSpan("render page", { "url.full": url }, () => {
            // The pool may run the task from its own queue: keep it under this span either way.
            const ctx = context.active();
            return target.run(url, (page, u) => context.with(ctx, () => fn(page, u)));
          });
        return run;
      }
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

export function scannerActor(config: Config, pool: BrowserPool): ActorDefinition<"scan-job"> {
  const { scanner } = config;
  return {
    name: `scanner-${config.region}`,
    stage: "scanner",
    stream: streams.jobs(config.region),
    consumer: consumers.scanners,
    accept: ["scan-job"],
    concurrency: scanner.concurrency,
    async handle(job, ctx) {
      if (Date.parse(job.leaseUntil) < Date.now()) {
        // The frontier has already handed this domain to a newer job; scanning it here would double the work.
        ctx.log.info({ domain: job.domain, jobId: job.jobId }, "lease expired before the scan started; skipped");
        instruments().leaseExpiries.add(1, { region: job.region, where: "before-scan" });
        return;
      }
      const report = await withSpan("scan site", { "glyphscan.domain": job.domain, "url.full": job.url }, (span) =>
        scanSite(
          span ? tracedPool(pool) : pool,
          { url: job.url },
          {
            allowHosts: scanner.allowHosts,
            hostMap: scanner.hostMap,
            maxFontBytes: scanner.maxFontBytes,
            navigationTimeoutMs: scanner.navigationTimeoutMs,
            settleMs: scanner.settleMs,
            settleQuietMs: scanner.settleQuietMs,
            settleBudgetMs: scanner.settleBudgetMs,
            fastPath: scanner.fastPath,
            extraPages: scanner.extraPages,
          },
        ).then((r) => {
          span?.setAttributes({
            "glyphscan.scan.status": r.status,
            "glyphscan.scan.failure": r.failure?.kind ?? "none",
            "glyphscan.fonts.files": r.files.length,
            "glyphscan.fonts.faces": r.faces.length,
          });
          return r;
        }),
      );
      const outcome = report.failure?.kind ?? "ok";
      const metrics = instruments();
      metrics.scans.add(1, { region: job.region, outcome });
      const seconds = (Date.parse(report.finishedAt) - Date.parse(report.startedAt)) / 1000;
      metrics.scanDuration.record(seconds, { region: job.region, outcome });
      metrics.fonts.add(report.files.length, { region: job.region });
      if (report.failure?.kind === "browser-crash") {
        throw new TransientError(`browser crashed while scanning ${job.domain}: ${report.failure.message}`);
      }
      await ctx.publish({
        subject: subjects.results(job.region),
        schema: "scan-result",
        msgId: msgIds.result(job.jobId),
        body: {
          jobId: job.jobId,
          domain: job.domain,
          region: job.region,
          leaseToken: job.leaseToken,
          attempt: job.attempt,
          scannerNode: config.nodeId!,
          report,
        },
      });
    },
  };
}
