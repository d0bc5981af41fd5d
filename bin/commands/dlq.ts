/** `glyphscan dlq list|replay`: dead letters by stage, reason and age. */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import {
  InputError,
  findDeadLetters,
  replayDeadLetters,
  type DeadLetterFilter,
  type ReplayOutcome,
  type StoredDeadLetter,
} from "../../cluster/mod.ts";
import { STAGES, type Stage } from "../../protocol/mod.ts";

export interface DlqOptions {
  stage?: string;
  reason?: string;
  olderThan?: string;
  limit?: number;
}

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "90s", "15m", "2h", "7d", "1h30m" → milliseconds. */
export function parseDuration(text: string): number {
  // Sticky: each part must start where the last ended, so the text is read once, left to right.
  const part = /(\d+(?:\.\d+)?)(ms|[dhmsw])/y;
  const s = text.trim();
  let ms = 0;
  while (part.lastIndex < s.length) {
    const m = part.exec(s);
    if (!m) break;
    ms += Number(m[1]) * UNITS[m[2]!]!;
  }
  if (s === "" || part.lastIndex !== s.length) {
    throw new InputError(`invalid duration "${text}": use e.g. 90s, 15m, 2h, 7d, 1h30m`);
  }
  return ms;
}

export function dlqFilter(opts: DlqOptions): DeadLetterFilter {
  if (opts.stage !== undefined && !(STAGES as readonly string[]).includes(opts.stage)) {
    throw new InputError(`invalid stage "${opts.stage}": one of ${STAGES.join(", ")}`);
  }
  return {
    stage: opts.stage as Stage | undefined,
    reason: opts.reason === undefined ? undefined : new RegExp(opts.reason),
    olderThanMs: opts.olderThan === undefined ? undefined : parseDuration(opts.olderThan),
    limit: opts.limit,
  };
}

export async function listDlq(jsm: JetStreamManager, opts: DlqOptions): Promise<StoredDeadLetter[]> {
  return findDeadLetters(jsm, dlqFilter(opts));
}

export async function replayDlq(
  js: JetStreamClient,
  jsm: JetStreamManager,
  opts: DlqOptions,
): Promise<ReplayOutcome[]> {
  return replayDeadLetters(js, jsm, await findDeadLetters(jsm, dlqFilter(opts)));
}

export function formatDlq(letters: readonly StoredDeadLetter[]): string {
  if (letters.length === 0) return "no dead letters match";
  const lines = letters.map(({ seq, deadLetter: d }) => {
    const payload = Buffer.from(d.payloadBase64, "base64").toString("utf8").replace(/\s+/g, " ");
    return [
      `#${seq} ${d.failedAt} ${d.stage} ${d.code} (${d.deliveries} deliveries) on ${d.subject}`,
      `    ${d.reason}`,
      `    ${payload.length > 160 ? `${payload.slice(0, 157)}...` : payload}`,
    ].join("\n");
  });
  lines.push(`${letters.length} dead letters`);
  return lines.join("\n");
}

export function formatReplay(outcomes: readonly ReplayOutcome[]): string {
  const failed = outcomes.filter((o) => !o.ok);
  const lines = failed.map((o) => `  #${o.seq} to ${o.subject} not replayed: ${o.error}`);
  lines.unshift(`replayed ${outcomes.length - failed.length} of ${outcomes.length} dead letters`);
  return lines.join("\n");
}
