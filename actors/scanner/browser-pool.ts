/**
 * One headless Chromium shared by concurrent scans through puppeteer-cluster.
 *
 * Isolation between sites, two modes (`isolation`):
 * - "wiped-context" (default): each worker slot owns a long-lived incognito browser context and
 *   every job gets a fresh page in it; between jobs the slot closes every page of its context
 *   (popups included), clears storage of every origin the job touched (local/session storage,
 *   IndexedDB, Cache API, service workers), the context's cookies and HTTP cache, and only then
 *   takes the next job. The context is thrown away after RECYCLE_AFTER jobs, a timeout, a crash or
 *   any failed wipe step. See slot-concurrency.ts for which CDP calls are scoped to the context.
 * - "context-per-job": puppeteer-cluster's CONCURRENCY_CONTEXT, a fresh incognito context per job.
 * Both keep a site's result independent of what ran before it (a retry never sees the first
 * attempt's consent cookie); test/scanner/isolation.test.ts proves it and fails for PAGE mode,
 * where cookies, storage, service workers and popups persist in one profile. A new context per job
 * costs CPU and a renderer launch on the job's path: in `npm run bench:scan` (2 cores, concurrency 4)
 * context-per-job did 7.75 pages/s overall (0.98x Crawlee), wiped-context 17.96-18.78 (2.16-2.36x),
 * for one more idle renderer per slot (the next job's page, opened ahead).
 */
import { Cluster } from "puppeteer-cluster";
import puppeteerCore, { type Page } from "puppeteer-core";
import { EgressProxy, type EgressProxyOptions } from "./egress-proxy.ts";
import { jobSettled, slotConcurrency, type SlotStats } from "./slot-concurrency.ts";

export type BrowserIsolation = "wiped-context" | "context-per-job";

export type BrowserPoolOptions = {
  executablePath: string;
  /** Pages (contexts) open at once. */
  concurrency: number;
  /** Default timeout of every page operation; a whole job gets this plus JOB_HEADROOM_MS. */
  pageTimeoutMs: number;
  /** Passed as --host-resolver-rules, e.g. "MAP *.test 127.0.0.1" for local corpora. */
  hostResolverRules?: string;
  /**
   * Route all of Chromium's traffic through the SSRF-guarded egress proxy (egress-proxy.ts):
   * every request and redirect hop of every page is checked, and connects to the checked address.
   * Production always sets it; without it the browser reaches whatever its pages name.
   */
  egress?: EgressProxyOptions;
  /** How sites are kept apart (header comment); default "wiped-context". */
  isolation?: BrowserIsolation;
  /** Jobs a slot's context serves before a fresh one replaces it ("wiped-context" only). */
  recycleAfter?: number;
};

export type PageTask<T> = (page: Page, url: string) => Promise<T>;

/** Chromium or its renderer died, or no working browser could be had. */
export class BrowserCrashError extends Error {
  override name = "BrowserCrashError";
}

/** The job outlived its whole budget (the cluster's timeout, or the pool's own guard). */
export class JobTimeoutError extends Error {
  override name = "JobTimeoutError";
}

/** Room after page operations for fonts.ready waits, settle and body reads before a job is cut. */
const JOB_HEADROOM_MS = 25_000;
/** The pool's own guard, beyond the cluster timeout, in case the cluster itself wedges. */
const GUARD_HEADROOM_MS = 10_000;

const CRASH_MESSAGE =
  /target closed|session closed|connection closed|page crashed|frame was detached|browser has disconnected|unable to (?:get browser page|restart chrome)|websocket is not open/i;

/** A page target gone before the task could attach to it (Target.attachToTarget). */
const STALE_TARGET = /No target with given id found/;

type ClusterOf = Cluster<string, unknown>;
type ClusterConcurrency = NonNullable<NonNullable<Parameters<typeof Cluster.launch>[0]>["concurrency"]>;

export class BrowserPool {
  readonly pageTimeoutMs: number;
  readonly jobTimeoutMs: number;
  readonly #opts: BrowserPoolOptions;
  #cluster: ClusterOf | null = null;
  #proxy: EgressProxy | null = null;
  /** Set when puppeteer-cluster failed internally (Chromium could not be relaunched). */
  #broken: Error | null = null;
  #recovering: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  readonly #inflight = new Set<(err: Error) => void>();
  /** Jobs, wipes and context recycles of the "wiped-context" slots, across relaunches. */
  readonly slotStats: SlotStats = { jobs: 0, wipes: 0, recycles: 0, contexts: 0, wipeMs: 0 };

  private constructor(opts: BrowserPoolOptions) {
    this.#opts = opts;
    this.pageTimeoutMs = opts.pageTimeoutMs;
    this.jobTimeoutMs = opts.pageTimeoutMs + JOB_HEADROOM_MS;
  }

  static async launch(opts: BrowserPoolOptions): Promise<BrowserPool> {
    const pool = new BrowserPool(opts);
    if (opts.egress) pool.#proxy = await EgressProxy.start(opts.egress);
    try {
      pool.#cluster = await pool.#launchCluster();
    } catch (err) {
      await pool.#proxy?.close();
      throw err;
    }
    return pool;
  }

  /**
   * Runs `task` on a fresh page in its own context. Rejects with BrowserCrashError when the
   * browser or renderer dies, JobTimeoutError when the job exceeds its budget, or the task's error.
   */
  async run<T>(url: string, task: PageTask<T>): Promise<T> {
    try {
      return await this.#runOnce(url, task);
    } catch (err) {
      // Under heavy load Chromium can drop a fresh page before the task attaches to it; the site
      // did nothing yet, so the job gets one more fresh page.
      if (!(err instanceof Error) || !STALE_TARGET.test(err.message)) throw err;
      return await this.#runOnce(url, task);
    }
  }

  async #runOnce<T>(url: string, task: PageTask<T>): Promise<T> {
    if (this.#closing) throw new Error("browser pool is closed");
    if (this.#broken || !this.#cluster) await this.#recover();
    const cluster = this.#cluster!;
    let timer: NodeJS.Timeout | undefined;
    let abort: (err: Error) => void = () => undefined;
    const stopped = new Promise<never>((_, reject) => {
      abort = reject;
      const ms = this.jobTimeoutMs + GUARD_HEADROOM_MS;
      timer = setTimeout(() => reject(new JobTimeoutError(`job exceeded ${ms} ms`)), ms);
    });
    this.#inflight.add(abort);
    try {
      const job = cluster.execute(url, ({ page, data }) => guarded(page, data, task, this.pageTimeoutMs));
      return (await Promise.race([job, stopped])) as T;
    } catch (err) {
      throw classify(err);
    } finally {
      clearTimeout(timer);
      this.#inflight.delete(abort);
    }
  }

  /** Why the egress proxy refused this URL (or its host) recently; null without a proxy or refusal. */
  refusalFor(url: string): string | null {
    return this.#proxy?.refusalFor(url) ?? null;
  }

  /** Whether pages reach the network only through the SSRF-guarded egress proxy. */
  get guarded(): boolean {
    return this.#proxy !== null;
  }

  /** Closes the browser; safe to call more than once. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#recovering?.catch(() => undefined);
      await this.#cluster?.close().catch(() => undefined);
      await this.#proxy?.close();
    })().catch(() => undefined);
    return this.#closing;
  }

  async #launchCluster(): Promise<ClusterOf> {
    const { executablePath, concurrency, pageTimeoutMs, hostResolverRules, isolation, recycleAfter } = this.#opts;
    const args = ["--disable-gpu", "--disable-background-networking", "--disable-component-update"];
    args.push("--disable-sync", "--no-first-run", "--disable-quic");
    // Chromium keeps one spare renderer warm, bound to one browser context. With a context per
    // slot, nearly every navigation finds the spare bound to another slot's context, throws it
    // away and warms a new one. ops/bench/scan-stages.ts counted 1.96 renderer launches per page
    // with the spare and 0.85 without (a lower bound: it misses short-lived ones), and 7.13 against
    // 7.82 pages/s. Puppeteer merges this with its own --disable-features.
    args.push("--disable-features=SpareRendererForSitePerProcess");
    // Chromium refuses to start its sandbox as root; elsewhere keep the sandbox.
    if (process.getuid?.() === 0) args.push("--no-sandbox");
    if (hostResolverRules) args.push(`--host-resolver-rules=${hostResolverRules}`);
    if (this.#proxy) {
      // Loopback too goes through the proxy (Chromium bypasses it by default), and WebRTC may not
      // send UDP around it; the proxy then is the only route out of every page.
      args.push(`--proxy-server=${this.#proxy.url}`, "--proxy-bypass-list=<-loopback>");
      args.push("--force-webrtc-ip-handling-policy=disable_non_proxied_udp", "--dns-prefetch-disable");
    }
    const cluster = (await Cluster.launch({
      // Without this, puppeteer-cluster require()s the full `puppeteer` and its downloaded Chrome.
      puppeteer: puppeteerCore,
      concurrency:
        isolation === "context-per-job"
          ? Cluster.CONCURRENCY_CONTEXT
          : // Duck-typed like puppeteer-cluster's own implementations (init, close, workerInstance).
            (slotConcurrency({
              stats: this.slotStats,
              ...(recycleAfter ? { recycleAfter } : {}),
            }) as unknown as ClusterConcurrency),
      maxConcurrency: concurrency,
      timeout: pageTimeoutMs + JOB_HEADROOM_MS,
      retryLimit: 0, // JetStream redelivery owns retries
      workerCreationDelay: 0,
      puppeteerOptions: {
        executablePath,
        headless: true,
        args,
        // A CDP call to a wedged browser must fail before the job timeout, not after 180 s.
        protocolTimeout: pageTimeoutMs + JOB_HEADROOM_MS,
        // The node drains on SIGTERM and closes the browser itself, after in-flight pages finish;
        // puppeteer's own handlers would kill Chromium under them.
        handleSIGTERM: false,
        handleSIGINT: false,
        handleSIGHUP: false,
        // Talk to Chromium over a pipe: when this process dies, even by SIGKILL, the pipe closes
        // and Chromium exits with it instead of living on as an orphan.
        pipe: true,
      },
    })) as ClusterOf;
    this.#guardInternals(cluster);
    return cluster;
  }

  /**
   * puppeteer-cluster 0.25 runs jobs from a timer with no catch: when Chromium cannot be
   * relaunched after a crash, that promise rejects unhandled (killing the process) and its
   * `repairing` flag stays set, so later jobs wait forever. Catch it, fail the jobs in flight,
   * and launch a new cluster on the next run instead.
   */
  #guardInternals(cluster: ClusterOf): void {
    const internals = cluster as unknown as { doWork?: () => Promise<void> };
    const doWork = internals.doWork?.bind(cluster);
    if (!doWork) return;
    internals.doWork = () =>
      doWork().catch((err: unknown) => {
        if (this.#cluster !== cluster) return; // a cluster already replaced
        const reason = err instanceof Error ? err.message : String(err);
        this.#broken = new BrowserCrashError(`browser unavailable: ${reason}`);
        for (const abort of this.#inflight) abort(this.#broken);
      });
  }

  #recover(): Promise<void> {
    this.#recovering ??= (async () => {
      const old = this.#cluster;
      this.#cluster = null;
      if (old) await withDeadline(old.close(), 10_000).catch(() => undefined);
      try {
        const cluster = await this.#launchCluster();
        if (this.#closing) {
          await cluster.close();
          throw new Error("browser pool is closed");
        }
        this.#cluster = cluster;
        this.#broken = null;
      } catch (err) {
        this.#broken = new BrowserCrashError(
          `browser unavailable: ${err instanceof Error ? err.message : String(err)}`,
        );
        throw this.#broken;
      }
    })().finally(() => {
      this.#recovering = null;
    });
    return this.#recovering;
  }
}

/**
 * Races the task against the page crashing or the browser disconnecting, which would otherwise
 * surface only as a CDP call that hangs until protocolTimeout.
 */
async function guarded<T>(page: Page, url: string, task: PageTask<T>, timeoutMs: number): Promise<T> {
  page.setDefaultTimeout(timeoutMs);
  page.setDefaultNavigationTimeout(timeoutMs);
  const browser = page.browser();
  let onCrash: (err: Error) => void = () => undefined;
  let onDisconnect: () => void = () => undefined;
  const died = new Promise<never>((_, reject) => {
    onCrash = (err) => reject(new BrowserCrashError(`page crashed: ${err.message}`));
    onDisconnect = () => reject(new BrowserCrashError("browser disconnected"));
  });
  page.once("error", onCrash);
  browser.once("disconnected", onDisconnect);
  try {
    // The task keeps running if `died` wins; race() has already subscribed to its rejection.
    const result = await Promise.race([task(page, url), died]);
    jobSettled(page, true);
    return result;
  } catch (err) {
    // A crashed page's context is thrown away; a site error (navigation, script) leaves it reusable.
    jobSettled(page, !(err instanceof BrowserCrashError));
    throw err;
  } finally {
    page.off("error", onCrash);
    browser.off("disconnected", onDisconnect);
  }
}

function classify(err: unknown): Error {
  if (err instanceof BrowserCrashError || err instanceof JobTimeoutError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/^Timeout hit: \d+/.test(message)) return new JobTimeoutError(`job exceeded its budget (${message})`);
  if (CRASH_MESSAGE.test(message) || (err instanceof Error && err.name === "TargetCloseError")) {
    return new BrowserCrashError(message);
  }
  return err instanceof Error ? err : new Error(message);
}

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, ms, undefined)));
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}
