/**
 * puppeteer-cluster concurrency where each worker slot owns one long-lived incognito browser
 * context, and every job gets a fresh page in it. While a job runs, the slot opens the next job's
 * page (about:blank, a tab the site has no handle on: a renderer launch off the critical path).
 * After the job it wipes what the site left, and only then hands out that page:
 *   1. closes every other page target of its context (the job's page, popups, anything the site
 *      opened) and waits until they are gone (unload handlers), which also ends its workers;
 *   2. through the next page's own CDP session, `Storage.clearDataForOrigin` (storageTypes "all":
 *      local/session storage, IndexedDB, Cache API, service workers, file systems, ...) for every
 *      origin the job touched, and `Network.clearBrowserCache`; at the same time
 *      `Storage.clearCookies` with the context's browserContextId on the browser endpoint;
 *   3. checks with `Storage.getCookies` that the jar is empty and that no other page appeared.
 * Scope (content/browser/devtools/protocol): Storage.clearDataForOrigin and
 * Network.clearBrowserCache sent to a page session act on that page's storage partition / browser
 * context (StorageHandler keeps the frame process's StoragePartition, NetworkHandler runs the
 * BrowsingDataRemover of the process's BrowserContext); sent to the browser endpoint they have no
 * partition, or the default profile's. Storage.clearCookies/getCookies on the browser endpoint
 * take an explicit browserContextId. Each slot's context is its own off-the-record BrowserContext,
 * so clearing one never touches another slot's running page (test/scanner/isolation.test.ts).
 * A slot throws its context away instead (and starts a new one) after RECYCLE_AFTER jobs, when a
 * job timed out or crashed, when the site touched too many origins to list, or when any wipe step
 * fails. Origins are gathered from every request and target URL of the context during the job.
 */
import type { Browser, BrowserContext, CDPSession, Page, Target } from "puppeteer-core";
import { withTimeout } from "../../cluster/async.ts";

/** A context serves this many jobs, then a fresh one replaces it (bounds whatever a wipe might miss). */
export const RECYCLE_AFTER = 100;
/** A site touching more origins than this gets its context thrown away rather than wiped origin by origin. */
const MAX_ORIGINS = 64;
/** Budget of one wipe, and of getting a page for a job. */
const WIPE_MS = 10_000;
const ACQUIRE_MS = 15_000;

/** How the job left its page: reusable (ended normally or with a site error) or not (crash). */
const outcomes = new WeakMap<Page, boolean>();

/** Called by the pool when a task ends; a page without an outcome (timed out) is never reused. */
export function jobSettled(page: Page, reusable: boolean): void {
  outcomes.set(page, reusable);
}

type Launcher = { launch(options: unknown): Promise<Browser> };
type JobInstance = { resources: { page: Page }; close: () => Promise<void> };
type WorkerInstance = {
  jobInstance: () => Promise<JobInstance>;
  close: () => Promise<void>;
  repair: () => Promise<void>;
};

/** Counters for tests and the bench: how often slots wiped and recycled. */
export type SlotStats = { jobs: number; wipes: number; recycles: number; contexts: number; wipeMs: number };

/** The class puppeteer-cluster instantiates (`concurrency` option), with its recycle count bound. */
export function slotConcurrency(opts: { recycleAfter?: number; stats?: SlotStats } = {}) {
  const recycleAfter = opts.recycleAfter ?? RECYCLE_AFTER;
  const stats = opts.stats ?? { jobs: 0, wipes: 0, recycles: 0, contexts: 0, wipeMs: 0 };
  return class SlotConcurrency {
    readonly #options: unknown;
    readonly #puppeteer: Launcher;
    #browser: Browser | null = null;
    #relaunching: Promise<void> | null = null;
    readonly #browserSessions = new WeakMap<Browser, Promise<CDPSession>>();

    constructor(options: unknown, puppeteer: Launcher) {
      this.#options = options;
      this.#puppeteer = puppeteer;
    }

    async init(): Promise<void> {
      this.#browser = await this.#puppeteer.launch(this.#options);
    }

    async close(): Promise<void> {
      await this.#browser?.close();
    }

    browserSession(browser: Browser): Promise<CDPSession> {
      let session = this.#browserSessions.get(browser);
      if (!session) {
        session = browser.target().createCDPSession();
        session.catch(() => this.#browserSessions.delete(browser));
        this.#browserSessions.set(browser, session);
      }
      return session;
    }

    async workerInstance(): Promise<WorkerInstance> {
      const slot = new Slot(this, recycleAfter, stats);
      return {
        jobInstance: async () => {
          const page = await withTimeout(slot.acquire(), ACQUIRE_MS, "getting a page");
          return { resources: { page }, close: () => slot.release(page) };
        },
        close: () => slot.dispose(),
        repair: () => this.#repair(slot),
      };
    }

    /** The live browser; throws when it is gone (the worker then asks for a repair). */
    currentBrowser(): Browser {
      const browser = this.#browser;
      if (!browser?.connected) throw new Error("browser has disconnected");
      return browser;
    }

    /** A dead browser is relaunched once for all slots; a live one only costs this slot its context. */
    async #repair(slot: Slot): Promise<void> {
      await slot.dispose();
      if (this.#browser?.connected) return;
      this.#relaunching ??= (async () => {
        await withTimeout(this.#browser?.close() ?? Promise.resolve(), 5_000, "closing").catch(() => undefined);
        try {
          this.#browser = await this.#puppeteer.launch(this.#options);
        } catch {
          throw new Error("Unable to restart chrome.");
        }
      })().finally(() => {
        this.#relaunching = null;
      });
      await this.#relaunching;
    }
  };
}

type Owner = { currentBrowser(): Browser; browserSession(browser: Browser): Promise<CDPSession> };

class Slot {
  readonly #owner: Owner;
  readonly #recycleAfter: number;
  readonly #stats: SlotStats;
  #context: BrowserContext | null = null;
  /** The next job's page (a blank tab the running site has no handle on), opened while the job runs. */
  #next: Promise<Page> | null = null;
  /** The next job's page once the wipe through it succeeded. */
  #ready: Page | null = null;
  /** The wipe after the last job; acquire waits for it. */
  #cleaning: Promise<void> = Promise.resolve();
  #jobs = 0;
  #origins = new Set<string>();
  #stopTracking: () => void = () => undefined;

  constructor(owner: Owner, recycleAfter: number, stats: SlotStats) {
    this.#owner = owner;
    this.#recycleAfter = recycleAfter;
    this.#stats = stats;
  }

  async acquire(): Promise<Page> {
    await this.#cleaning;
    const browser = this.#owner.currentBrowser();
    if (this.#context && (this.#context.closed || this.#context.browser() !== browser)) await this.dispose();
    if (!this.#context) {
      this.#context = await browser.createBrowserContext();
      this.#jobs = 0;
      this.#stats.contexts++;
    }
    const context = this.#context;
    const page = this.#ready ?? (await context.newPage());
    this.#ready = null;
    this.#jobs++;
    this.#stats.jobs++;
    this.#track(context, page);
    // Opening a page costs a renderer launch: do it for the next job while this one runs.
    if (this.#jobs < this.#recycleAfter) {
      this.#next = context.newPage();
      this.#next.catch(() => undefined);
    }
    return page;
  }

  /** Never throws for the site's sake (a throw makes the cluster repair); only for a dead browser. */
  async release(page: Page): Promise<void> {
    this.#stopTracking();
    const reusable = outcomes.get(page) === true;
    const origins = [...this.#origins];
    this.#origins = new Set();
    const context = this.#context;
    const browser = page.browser();
    if (!browser.connected) {
      this.#context = null;
      this.#next = null;
      throw new Error("browser has disconnected");
    }
    const next = this.#next;
    this.#next = null;
    if (!context || !next || !reusable || origins.length > MAX_ORIGINS) {
      this.#cleaning = this.dispose();
      return;
    }
    const started = performance.now();
    this.#cleaning = withTimeout(this.#wipe(browser, context, next, origins), WIPE_MS, "wiping the context").then(
      (page) => {
        this.#ready = page;
        this.#stats.wipes++;
        this.#stats.wipeMs += performance.now() - started;
      },
      () => this.dispose(),
    );
  }

  /** Closes the context (its pages, workers and storage die with it); the next acquire opens a new one. */
  async dispose(): Promise<void> {
    this.#stopTracking();
    const context = this.#context;
    this.#context = null;
    this.#ready = null;
    this.#next = null;
    if (!context) return;
    this.#stats.recycles++;
    await withTimeout(context.close(), 5_000, "closing the context").catch(() => undefined);
  }

  /** Wipes what the last job left in `context`, through the next job's page, and returns that page. */
  async #wipe(browser: Browser, context: BrowserContext, next: Promise<Page>, origins: string[]): Promise<Page> {
    const root = await this.#owner.browserSession(browser);
    const page = await next;
    try {
      const cdp = await page.createCDPSession();
      try {
        const { targetInfo } = await cdp.send("Target.getTargetInfo");
        const others = async () =>
          (await root.send("Target.getTargets")).targetInfos.filter(
            (t) => t.browserContextId === context.id && t.type === "page" && t.targetId !== targetInfo.targetId,
          );
        await Promise.all((await others()).map((t) => root.send("Target.closeTarget", { targetId: t.targetId })));
        // A page's unload handlers may still write storage: clear only once its target is gone.
        while ((await others()).length > 0) await new Promise((r) => setTimeout(r, 10));
        // Independent stores: cleared at once.
        await Promise.all([
          ...origins.map((origin) => cdp.send("Storage.clearDataForOrigin", { origin, storageTypes: "all" })),
          cdp.send("Network.clearBrowserCache"),
          root.send("Storage.clearCookies", { browserContextId: context.id }),
        ]);
        const [{ cookies }, left] = await Promise.all([
          root.send("Storage.getCookies", { browserContextId: context.id }),
          others(),
        ]);
        if (cookies.length > 0) throw new Error(`${cookies.length} cookies survived the wipe`);
        // Only the next job's page may be left: a page that opened during the wipe would carry the old site.
        if (left.length > 0) throw new Error(`${left.length} other pages in the context after the wipe`);
      } finally {
        await cdp.detach().catch(() => undefined);
      }
      return page;
    } catch (err) {
      await page.close().catch(() => undefined);
      throw err;
    }
  }

  /** Records every origin the job's pages (and whatever they open) request or navigate to. */
  #track(context: BrowserContext, page: Page): void {
    const add = (url: string): void => {
      if (!/^(?:https?|wss?):/i.test(url)) return;
      try {
        const u = new URL(url);
        u.protocol = u.protocol === "wss:" ? "https:" : u.protocol === "ws:" ? "http:" : u.protocol;
        this.#origins.add(u.origin);
      } catch {
        // not a URL with an origin
      }
    };
    const onRequest = (r: { url(): string }): void => add(r.url());
    const watched = new Set<Page>();
    const watch = (p: Page): void => {
      if (watched.has(p)) return;
      watched.add(p);
      p.on("request", onRequest);
    };
    const onTarget = (t: Target): void => {
      add(t.url());
      if (String(t.type()) === "page")
        void t.page().then(
          (p) => p && watch(p),
          () => undefined,
        );
    };
    watch(page);
    context.on("targetcreated", onTarget);
    context.on("targetchanged", onTarget);
    this.#stopTracking = () => {
      context.off("targetcreated", onTarget);
      context.off("targetchanged", onTarget);
      for (const p of watched) p.off("request", onRequest);
      this.#stopTracking = () => undefined;
    };
  }
}
