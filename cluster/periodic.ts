/**
 * Periodic work (heartbeats, probes, re-checks): one tick at a time, the next one an interval
 * after the previous one ended, so a slow tick delays the next instead of piling up beside it.
 * A tick that throws is reported and the loop goes on; `stop()` waits for the tick under way.
 */

export interface PeriodicOptions {
  /** Milliseconds between the end of one tick and the start of the next. */
  intervalMs: number;
  tick: () => Promise<unknown>;
  /** Told about every tick that throws; the loop goes on. */
  onError: (err: unknown) => void;
  /** `now`: the first tick starts with `start()` (which waits for it); default `after-interval`. */
  first?: "now" | "after-interval";
  /** Each wait is the interval ± this fraction of it, at random (0 to 1; default 0), so nodes do not tick in step. */
  jitter?: number;
  /** Random numbers in [0, 1) for the jitter; injectable so tests are exact. */
  random?: () => number;
}

export class Periodic {
  readonly #o: PeriodicOptions;
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #current: Promise<void> = Promise.resolve();

  constructor(options: PeriodicOptions) {
    const jitter = options.jitter ?? 0;
    if (!(options.intervalMs > 0)) throw new RangeError(`intervalMs must be positive, not ${options.intervalMs}`);
    if (!(jitter >= 0 && jitter <= 1)) throw new RangeError(`jitter must be within 0..1, not ${jitter}`);
    this.#o = options;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Starts the loop; with `first: "now"` resolves once the first tick has ended. Starting twice does nothing. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    if (this.#o.first === "now") {
      this.#run();
      await this.#current;
    } else {
      this.#schedule();
    }
  }

  /** Stops the loop and waits for the tick under way, if any. Safe to call twice. */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#current;
  }

  /** The next wait: the interval, moved by up to ±jitter of it. */
  delayMs(): number {
    const jitter = this.#o.jitter ?? 0;
    const random = this.#o.random ?? Math.random;
    return Math.max(0, Math.round(this.#o.intervalMs * (1 + jitter * (2 * random() - 1))));
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => this.#run(), this.delayMs());
  }

  #run(): void {
    this.#timer = undefined;
    this.#current = (async () => {
      try {
        await this.#o.tick();
      } catch (err) {
        this.#report(err);
      }
    })().finally(() => this.#schedule());
  }

  #report(err: unknown): void {
    try {
      this.#o.onError(err);
    } catch {
      // A failing error callback must not end the loop either.
    }
  }
}
