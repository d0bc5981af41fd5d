/**
 * One font parse inside a piscina worker thread (font-parse-pool.ts). The thread, not this code,
 * is the limit: a parse that spins or grows past the heap limit is terminated from outside.
 */
import type { MessagePort } from "node:worker_threads";
import { readFontMetadata, type MetadataResult } from "./font-metadata.ts";

/** `started` hears when parsing begins: the time limit counts from there, not from a cold start. */
export type FontParseTask = { bytes: Uint8Array; maxDecodedBytes: number; started: MessagePort };

export default function parseFont(task: FontParseTask): MetadataResult {
  task.started.postMessage("started");
  return readFontMetadata(task.bytes, task.maxDecodedBytes);
}
