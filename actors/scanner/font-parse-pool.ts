/**
 * Font parsing off the actor's event loop. Font bytes come from any site, and a parser bug on
 * the main thread (an inflate loop that never ends, an allocation that never stops) freezes the
 * whole node: no heartbeat, no drain, SIGTERM ignored. Each file is parsed in a piscina worker
 * thread with a heap limit (Worker resourceLimits) and a time limit (an AbortSignal: piscina
 * terminates the thread running an aborted task and starts a replacement), so the worst a file
 * can do is answer `parseError: "timeout: …"` or `"memory: …"` while the scan goes on.
 */
import { MessageChannel } from "node:worker_threads";
import { Piscina } from "piscina";
import { configSchema } from "../../config/schema.ts";
import type { MetadataResult } from "./font-metadata.ts";
import type { FontParseTask } from "./font-parse-worker.ts";

/** scanner.fontParse: see config/schema.ts for the defaults. */
export type FontParseLimits = {
  /** Worker threads, and so files parsed at once. */
  workers: number;
  /** Longest one file may take, counted from when a worker takes it. */
  timeoutMs: number;
  /** V8 old-generation heap of each worker (resourceLimits.maxOldGenerationSizeMb). */
  maxHeapMb: number;
  /** Largest decoded font (WOFF/WOFF2 declared and actual sizes); larger is `oversized`. */
  maxDecodedBytes: number;
};

/** Longest a worker may take to start a task (a replacement thread loading the parser). */
const START_LIMIT_MS = 30_000;

export class FontParsePool {
  readonly limits: Readonly<FontParseLimits>;
  readonly #piscina: Piscina;
  readonly #waiting: Array<() => void> = [];
  #busy = 0;
  #closed = false;

  constructor(limits: FontParseLimits) {
    this.limits = Object.freeze({ ...limits });
    this.#piscina = new Piscina({
      filename: new URL("./font-parse-worker.ts", import.meta.url).href,
      minThreads: limits.workers,
      maxThreads: limits.workers,
      resourceLimits: { maxOldGenerationSizeMb: limits.maxHeapMb },
      closeTimeout: 1_000,
    });
    // A thread that dies with no task on it is replaced; unhandled, the event would throw.
    this.#piscina.on("error", () => undefined);
  }

  /** Metadata of one file, or the limit it hit. Never throws. */
  async parse(bytes: Uint8Array): Promise<MetadataResult> {
    if (!(await this.#acquire())) return { metadata: null, parseError: "internal: font parse pool closed" };
    // The clock starts when the worker starts parsing: neither files queued behind a hung one nor
    // the replacement thread's start-up eat into a file's budget.
    const abort = new AbortController();
    const { port1, port2 } = new MessageChannel();
    let timer = setTimeout(() => abort.abort(), Math.max(START_LIMIT_MS, this.limits.timeoutMs));
    port1.once("message", () => {
      clearTimeout(timer);
      timer = setTimeout(() => abort.abort(), this.limits.timeoutMs);
    });
    const copy = new Uint8Array(bytes);
    const task: FontParseTask = { bytes: copy, maxDecodedBytes: this.limits.maxDecodedBytes, started: port2 };
    try {
      const transferList = [copy.buffer, port2];
      return (await this.#piscina.run(task, { signal: abort.signal, transferList })) as MetadataResult;
    } catch (err) {
      return this.#failed(err);
    } finally {
      clearTimeout(timer);
      port1.close();
      this.#release();
    }
  }

  /** Terminates the workers; parses still waiting answer "pool closed". Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const wake of this.#waiting.splice(0)) wake();
    await this.#piscina.destroy();
  }

  #failed(err: unknown): MetadataResult {
    if (err instanceof Error && err.name === "AbortError") {
      return {
        metadata: null,
        parseError: `timeout: parse took over ${this.limits.timeoutMs} ms; its worker was terminated`,
        parseLimit: "timeout",
      };
    }
    if ((err as NodeJS.ErrnoException | null)?.code === "ERR_WORKER_OUT_OF_MEMORY") {
      return {
        metadata: null,
        parseError: `memory: parse outgrew the ${this.limits.maxHeapMb} MB worker heap; its worker was terminated`,
        parseLimit: "memory",
      };
    }
    const message = err instanceof Error ? err.message : String(err);
    return { metadata: null, parseError: `internal: font parse worker failed: ${message.slice(0, 300)}` };
  }

  async #acquire(): Promise<boolean> {
    while (!this.#closed && this.#busy >= this.limits.workers) {
      await new Promise<void>((wake) => this.#waiting.push(wake));
    }
    if (this.#closed) return false;
    this.#busy++;
    return true;
  }

  #release(): void {
    this.#busy--;
    this.#waiting.shift()?.();
  }
}

const installed: FontParsePool[] = [];
let fallback: FontParsePool | undefined;

/**
 * Makes `pool` the one parseFontMetadata uses, until the returned function is called. A scanner
 * node installs the pool it built (compose.ts) and uninstalls it when it closes it.
 */
export function installFontParsePool(pool: FontParsePool): () => void {
  installed.push(pool);
  return () => {
    const at = installed.lastIndexOf(pool);
    if (at >= 0) installed.splice(at, 1);
  };
}

/**
 * The one function the scanner calls to parse a font file: the installed pool, else a
 * process-wide pool with the configured defaults (scans run outside a node: tests, benches),
 * whose idle threads never hold the process open. Never throws.
 */
export function parseFontMetadata(bytes: Uint8Array): Promise<MetadataResult> {
  const pool = installed.at(-1) ?? (fallback ??= new FontParsePool(defaultLimits()));
  return pool.parse(bytes);
}

function defaultLimits(): FontParseLimits {
  return configSchema.shape.scanner.parse(undefined).fontParse;
}
