/**
 * Client of an external licensing service: asks, for one domain, which of its font files are
 * licensed. Every request has a timeout; transient failures (network, timeout, 429, 5xx) are
 * retried with exponential backoff; consecutive failures open a circuit breaker, which lets one
 * trial request through after a pause; answers are cached for a while. When the service cannot
 * answer, the fonts it was asked about come back `unavailable`, so their verdict is `pending`:
 * never guessed, and never cached.
 *
 * Wire format (JSON): `POST <url>/v1/check` with `{domain, fonts: [{sha256, family, foundry}]}`,
 * answered `{results: [{sha256, licensed, reference?}]}`; `Authorization: Bearer <token>` when a
 * token is configured.
 */
import type { ExternalAnswer, FontUse } from "./verdict.ts";

export interface LicensingClientOptions {
  url: string;
  token?: string | undefined;
  timeoutMs: number;
  /** Retries after the first attempt. */
  retries: number;
  /** First retry delay; doubles per retry. */
  retryBaseMs: number;
  /** Consecutive failed checks that open the breaker. */
  breakerFailures: number;
  /** How long the open breaker refuses requests before letting one trial through. */
  breakerResetMs: number;
  cacheTtlMs: number;
  cacheMaxEntries?: number;
  /** Injectable clock and sleep, for tests of the breaker and backoff. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export type BreakerState = "closed" | "open" | "half-open";

class Unavailable extends Error {
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean) {
    super(message);
    this.retryable = retryable;
  }
}

interface CheckResponse {
  results: Array<{ sha256: string; licensed: boolean; reference?: string }>;
}

function isCheckResponse(body: unknown): body is CheckResponse {
  return (
    typeof body === "object" &&
    body !== null &&
    Array.isArray((body as { results?: unknown }).results) &&
    (body as CheckResponse).results.every(
      (r) => typeof r === "object" && r !== null && typeof r.sha256 === "string" && typeof r.licensed === "boolean",
    )
  );
}

export class LicensingClient {
  readonly #o: Required<Omit<LicensingClientOptions, "token">> & { token: string | undefined };
  readonly #cache = new Map<string, { answer: ExternalAnswer; until: number }>();
  #state: BreakerState = "closed";
  #failures = 0;
  #openedAt = 0;
  #trialInFlight = false;
  /** Requests sent, attempts included: lets tests see retries and the breaker at work. */
  requests = 0;

  constructor(options: LicensingClientOptions) {
    this.#o = {
      cacheMaxEntries: 100_000,
      now: Date.now,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      ...options,
      token: options.token,
      url: options.url.replace(/(?<!\/)\/+$/, ""),
    };
  }

  get breaker(): BreakerState {
    if (this.#state === "open" && this.#o.now() - this.#openedAt >= this.#o.breakerResetMs) return "half-open";
    return this.#state;
  }

  /** Answers for each font, from the cache or one request (with its retries) for the rest. */
  async check(domain: string, uses: readonly FontUse[]): Promise<Map<string, ExternalAnswer>> {
    const answers = new Map<string, ExternalAnswer>();
    const now = this.#o.now();
    const ask: FontUse[] = [];
    for (const use of uses) {
      const hit = this.#cache.get(`${domain}\n${use.sha256}`);
      if (hit && hit.until > now) answers.set(use.sha256, hit.answer);
      else ask.push(use);
    }
    if (ask.length === 0) return answers;
    try {
      const response = await this.#request(domain, ask);
      const until = this.#o.now() + this.#o.cacheTtlMs;
      const bySha = new Map(response.results.map((r) => [r.sha256, r]));
      for (const use of ask) {
        const r = bySha.get(use.sha256);
        const answer: ExternalAnswer = r?.licensed
          ? { status: "licensed", reference: r.reference ?? "licensing-service" }
          : { status: "not-licensed" };
        answers.set(use.sha256, answer);
        this.#remember(`${domain}\n${use.sha256}`, answer, until);
      }
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      for (const use of ask) answers.set(use.sha256, { status: "unavailable", reason });
    }
    return answers;
  }

  #remember(key: string, answer: ExternalAnswer, until: number) {
    if (this.#cache.size >= this.#o.cacheMaxEntries) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    this.#cache.set(key, { answer, until });
  }

  async #request(domain: string, uses: FontUse[]): Promise<CheckResponse> {
    const state = this.breaker;
    if (state === "open") throw new Unavailable("circuit open", false);
    if (state === "half-open") {
      if (this.#trialInFlight) throw new Unavailable("circuit open (trial in flight)", false);
      this.#trialInFlight = true;
    }
    try {
      const attempts = state === "half-open" ? 1 : this.#o.retries + 1;
      let last: Unavailable = new Unavailable("not tried", true);
      for (let attempt = 0; attempt < attempts; attempt++) {
        if (attempt > 0) await this.#o.sleep(this.#o.retryBaseMs * 2 ** (attempt - 1));
        try {
          const body = await this.#once(domain, uses);
          this.#state = "closed";
          this.#failures = 0;
          return body;
        } catch (err) {
          last = err instanceof Unavailable ? err : new Unavailable(String(err), true);
          if (!last.retryable) break;
        }
      }
      this.#failures++;
      if (state === "half-open" || this.#failures >= this.#o.breakerFailures) {
        this.#state = "open";
        this.#openedAt = this.#o.now();
      }
      throw last;
    } finally {
      if (state === "half-open") this.#trialInFlight = false;
    }
  }

  async #once(domain: string, uses: FontUse[]): Promise<CheckResponse> {
    this.requests++;
    let res: Response;
    try {
      res = await fetch(`${this.#o.url}/v1/check`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(this.#o.token ? { authorization: `Bearer ${this.#o.token}` } : {}),
        },
        body: JSON.stringify({
          domain,
          fonts: uses.map((u) => ({
            sha256: u.sha256,
            family: u.metadata?.family ?? u.cssFamilies[0] ?? null,
            foundry: u.metadata?.manufacturer ?? null,
          })),
        }),
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
      throw new Unavailable(
        timedOut ? `timeout after ${this.#o.timeoutMs} ms` : `unreachable: ${describeCause(err)}`,
        true,
      );
    }
    if (res.status === 429 || res.status >= 500) {
      await res.body?.cancel();
      throw new Unavailable(`HTTP ${res.status}`, true);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Unavailable(`HTTP ${res.status}`, false);
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch (err) {
      const timedOut = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
      throw new Unavailable(timedOut ? `timeout after ${this.#o.timeoutMs} ms` : "answer is not JSON", true);
    }
    if (!isCheckResponse(body)) throw new Unavailable("answer has the wrong shape", false);
    return body;
  }
}

function describeCause(err: unknown): string {
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}
