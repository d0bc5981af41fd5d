/**
 * `glyphscan submit`: URLs from a file or stdin onto a feed subject, in batches, with a
 * progress bar and a summary. Each URL is judged by the same rules the coordinator applies, so
 * the summary says what will be accepted; rejected URLs are still sent, so the coordinator
 * records each as a dead letter with its reason.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import cliProgress from "cli-progress";
import type { JetStreamClient } from "@nats-io/jetstream";
import { publishMessage } from "../../cluster/mod.ts";
import type { Config } from "../../config/mod.ts";
import { msgIds, subjects } from "../../protocol/mod.ts";
import { normaliseSubmission } from "../../actors/coordinator/normalise-url.ts";

export interface SubmitOptions {
  source: string;
  batchSize: number;
  regionHint?: string | undefined;
  /** Show a progress bar on this stream (when it is a terminal). */
  progress?: NodeJS.WriteStream | undefined;
}

export interface SubmitSummary {
  read: number;
  accepted: number;
  rejected: Array<{ url: string; reason: string }>;
  batches: number;
  /** Batches the feed stream had already stored (same content within its window). */
  duplicateBatches: number;
}

export async function* linesOf(path: string | undefined): AsyncGenerator<string> {
  const input = path && path !== "-" ? createReadStream(path) : process.stdin;
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    const url = line.trim();
    if (url !== "" && !url.startsWith("#")) yield url;
  }
}

/** Room for a batch's other fields (source, date, region hint) around its URLs. */
const BATCH_ENVELOPE_BYTES = 1024;

export async function submitUrls(
  js: JetStreamClient,
  config: Config,
  urls: AsyncIterable<string> | Iterable<string>,
  opts: SubmitOptions,
): Promise<SubmitSummary> {
  const summary: SubmitSummary = { read: 0, accepted: 0, rejected: [], batches: 0, duplicateBatches: 0 };
  const bar =
    opts.progress?.isTTY === true
      ? new cliProgress.SingleBar(
          { stream: opts.progress, format: "submit [{bar}] {value} URLs | {accepted} accepted, {rejected} rejected" },
          cliProgress.Presets.shades_classic,
        )
      : null;
  bar?.start(0, 0, { accepted: 0, rejected: 0 });
  let batch: string[] = [];
  let batchBytes = 0;
  // A batch must fit in one message the coordinator reads (actors.maxMessageBytes, under NATS's
  // max_payload): 1,000 URLs of 4 KB are 4 MB, so batches close on size as well as on count.
  const byteBudget = config.actors.maxMessageBytes - BATCH_ENVELOPE_BYTES;
  const flush = async () => {
    if (batch.length === 0) return;
    batchBytes = 0;
    // Content-derived id: sending the same batch twice within the window stores it once.
    const hash = createHash("sha256").update(batch.join("\n")).digest("hex").slice(0, 32);
    const ack = await publishMessage(js, {
      subject: subjects.feed(opts.source),
      schema: "feed-batch",
      msgId: msgIds.feed(opts.source, hash),
      body: {
        urls: batch,
        source: opts.source,
        submittedAt: new Date().toISOString(),
        ...(opts.regionHint ? { regionHint: opts.regionHint } : {}),
      },
    });
    summary.batches++;
    if (ack.duplicate) summary.duplicateBatches++;
    batch = [];
  };
  for await (const url of urls) {
    summary.read++;
    const verdict = normaliseSubmission(url, { allowHosts: config.coordinator.allowHosts });
    if (verdict.ok) summary.accepted++;
    else summary.rejected.push({ url, reason: `${verdict.code}: ${verdict.reason}` });
    // Over-long URLs are rejected either way; the cut keeps the batch within its schema.
    const kept = url.slice(0, 4096);
    const bytes = Buffer.byteLength(JSON.stringify(kept)) + 1;
    if (batchBytes + bytes > byteBudget) await flush();
    batch.push(kept);
    batchBytes += bytes;
    if (batch.length >= opts.batchSize) await flush();
    bar?.setTotal(summary.read);
    bar?.update(summary.read, { accepted: summary.accepted, rejected: summary.rejected.length });
  }
  await flush();
  bar?.stop();
  return summary;
}
