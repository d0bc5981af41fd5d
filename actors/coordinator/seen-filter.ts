/**
 * "Seen recently?" for domains: a time-sliced Bloom filter on plain Redis 7.0 (no RedisBloom module).
 *
 * Time is cut into slices of `windowMs`; slice `floor(now / windowMs)` is the current one. A domain is
 * "seen" if all its bits are set in any of the `slices` live slices (current + `slices - 1` older ones);
 * new domains are written to the current slice only, so an admission is remembered for between
 * `(slices - 1) · windowMs` and `slices · windowMs`. Old slices expire through their TTL.
 *
 * Offsets are computed in Node (md5 → h1, h2; Kirsch–Mitzenmacher g_i = h1 + i·h2 mod m), so the Lua
 * script never hashes and every client agrees. A Bloom filter never misses a domain it saw; a false
 * positive drops a new domain until its slices roll past. This is a cache: Redis errors are thrown and
 * the caller decides (the coordinator treats them as transient).
 */
import { hash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";

/** Options of {@link SeenFilter}. */
export type SeenFilterOptions = {
  /** Filter name, part of the Redis keys `bloom:{<name>}:<sliceIndex>`. Changing the sizing needs a new name. */
  name: string;
  /** Length of one slice in ms (config `coordinator.seenWindowMs`, default 24 h). */
  windowMs: number;
  /** Live slices checked, current included (config `coordinator.seenSlices`, default 7). */
  slices: number;
  /** Distinct domains expected per slice; beyond it the false-positive rate climbs (default 1,000,000). */
  expectedPerWindow: number;
  /** Target false-positive rate over all live slices together, 0 < p < 1 (default 0.001). */
  falsePositiveRate: number;
};

/** Bloom parameters derived from {@link SeenFilterOptions}. */
export type BloomSizing = {
  /** m: bits in one slice's Redis string. */
  bitsPerSlice: number;
  /** k: bit positions per domain. */
  hashes: number;
  /** Redis string size of one slice, bytes; total memory ≈ `slices` × this. */
  bytesPerSlice: number;
  /** m / expectedPerWindow, per slice (one domain lives in one slice). */
  bitsPerDomain: number;
};

/** Redis strings hold at most 512 MiB = 2³² bits. */
const MAX_BITS = 2 ** 32;
/** Items per script call: bounds the script's run time (Redis is single-threaded) and the argument count. */
const MAX_ITEMS_PER_CALL = 1000;
const MAX_ARGS_PER_CALL = 20_000;

// KEYS: current slice, then older live slices. ARGV: k, ttl ms, m - 1, then k offsets per domain.
// Returns 1 (seen in a live slice) or 0 (new; now set in the current slice) per domain.
const TEST_AND_SET = `
local k, ttl, last = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local cur = KEYS[1]
local pttl = redis.call('PTTL', cur)
if pttl == -2 then
  -- Allocate the whole string now rather than on some SETBIT mid-batch.
  redis.call('SETBIT', cur, last, 0)
  redis.call('PEXPIRE', cur, ttl)
elseif pttl == -1 then
  redis.call('PEXPIRE', cur, ttl)
end
local older = {}
for w = 2, #KEYS do
  if redis.call('EXISTS', KEYS[w]) == 1 then older[#older + 1] = KEYS[w] end
end
local res = {}
for i = 0, (#ARGV - 3) / k - 1 do
  local base = 3 + i * k
  local seen = 0
  for w = 1, #older do
    local all = 1
    for j = 1, k do
      if redis.call('GETBIT', older[w], ARGV[base + j]) == 0 then all = 0 break end
    end
    if all == 1 then seen = 1 break end
  end
  if seen == 0 then
    -- SETBIT returns the old bit: all ones means the current slice already had it.
    local all = 1
    for j = 1, k do
      if redis.call('SETBIT', cur, ARGV[base + j], 1) == 0 then all = 0 end
    end
    seen = all
  end
  res[i + 1] = seen
end
return res
`;

// KEYS: live slices. ARGV: k, then k offsets per domain. Returns 1 (seen) or 0 per domain; writes nothing.
const HAS = `
local k = tonumber(ARGV[1])
local live = {}
for w = 1, #KEYS do
  if redis.call('EXISTS', KEYS[w]) == 1 then live[#live + 1] = KEYS[w] end
end
local res = {}
for i = 0, (#ARGV - 1) / k - 1 do
  local base = 1 + i * k
  local seen = 0
  for w = 1, #live do
    local all = 1
    for j = 1, k do
      if redis.call('GETBIT', live[w], ARGV[base + j]) == 0 then all = 0 break end
    end
    if all == 1 then seen = 1 break end
  end
  res[i + 1] = seen
end
return res
`;

type ScriptArg = string | number | readonly (string | number)[];
/** The commands `defineCommand` adds to the client (ioredis flattens array arguments). */
type BloomCommands = {
  glyphscanBloomTestAndSet(numKeys: number, ...args: ScriptArg[]): Promise<number[]>;
  glyphscanBloomHas(numKeys: number, ...args: ScriptArg[]): Promise<number[]>;
};

/**
 * Sizes each slice for p_s = 1 - (1 - p)^(1/slices), so the union of all live slices stays near p:
 * m = ceil(-n·ln p_s / ln²2), k = round(m/n · ln 2).
 */
export function bloomSizing(expectedPerWindow: number, falsePositiveRate: number, slices: number): BloomSizing {
  const perSlice = 1 - (1 - falsePositiveRate) ** (1 / slices);
  const m = Math.ceil((-expectedPerWindow * Math.log(perSlice)) / Math.LN2 ** 2);
  const k = Math.max(1, Math.round((m / expectedPerWindow) * Math.LN2));
  return { bitsPerSlice: m, hashes: k, bytesPerSlice: Math.ceil(m / 8), bitsPerDomain: m / expectedPerWindow };
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new RangeError(`SeenFilter: ${what}`);
}

/**
 * Time-sliced Bloom filter of domains in Redis (see the module comment). Cheap to construct: it only
 * registers two Lua scripts on the client (EVALSHA, with EVAL after a Redis restart flushed the cache).
 */
export class SeenFilter {
  readonly #cmd: BloomCommands;
  readonly #opts: SeenFilterOptions;
  readonly #sizing: BloomSizing;
  readonly #itemsPerCall: number;

  constructor(redis: Redis | Cluster, opts: SeenFilterOptions) {
    check(opts.name.length > 0 && !/[{}\s]/.test(opts.name), "name must be non-empty, without braces or spaces");
    check(Number.isSafeInteger(opts.windowMs) && opts.windowMs > 0, "windowMs must be a positive integer");
    check(Number.isSafeInteger(opts.slices) && opts.slices > 0, "slices must be a positive integer");
    check(
      Number.isSafeInteger(opts.expectedPerWindow) && opts.expectedPerWindow > 0,
      "expectedPerWindow must be a positive integer",
    );
    check(opts.falsePositiveRate > 0 && opts.falsePositiveRate < 1, "falsePositiveRate must be in (0, 1)");
    this.#opts = { ...opts };
    this.#sizing = bloomSizing(opts.expectedPerWindow, opts.falsePositiveRate, opts.slices);
    check(
      this.#sizing.bitsPerSlice <= MAX_BITS,
      `a slice needs ${this.#sizing.bitsPerSlice} bits; Redis strings hold 2^32`,
    );
    this.#itemsPerCall = Math.max(1, Math.min(MAX_ITEMS_PER_CALL, Math.floor(MAX_ARGS_PER_CALL / this.#sizing.hashes)));
    redis.defineCommand("glyphscanBloomTestAndSet", { lua: TEST_AND_SET });
    redis.defineCommand("glyphscanBloomHas", { lua: HAS, readOnly: true });
    this.#cmd = redis as unknown as BloomCommands;
  }

  /** The Bloom parameters in use. */
  sizing(): BloomSizing {
    return { ...this.#sizing };
  }

  /**
   * For each domain: true if seen in a live slice, false if new. New domains are recorded in the current
   * slice, so a domain repeated within `domains` is new the first time and seen after. Domains are compared
   * case-insensitively. One round trip per up to 1000 domains; each round trip is atomic.
   * @param now clock in ms since the epoch (default `Date.now()`); picks the current slice.
   */
  async testAndSet(domains: readonly string[], now: number = Date.now()): Promise<boolean[]> {
    const keys = this.#liveKeys(now);
    const ttlMs = this.#opts.slices * this.#opts.windowMs;
    const last = this.#sizing.bitsPerSlice - 1;
    return this.#batched(domains, (offsets) =>
      this.#cmd.glyphscanBloomTestAndSet(keys.length, keys, this.#sizing.hashes, ttlMs, last, offsets),
    );
  }

  /** Like {@link testAndSet} without recording anything. */
  async has(domains: readonly string[], now: number = Date.now()): Promise<boolean[]> {
    const keys = this.#liveKeys(now);
    return this.#batched(domains, (offsets) =>
      this.#cmd.glyphscanBloomHas(keys.length, keys, this.#sizing.hashes, offsets),
    );
  }

  /** Redis key of the slice containing `now`. */
  keyAt(now: number): string {
    return this.#key(Math.floor(now / this.#opts.windowMs));
  }

  #key(slice: number): string {
    return `bloom:{${this.#opts.name}}:${slice}`;
  }

  /** Current slice first, then the older live ones. */
  #liveKeys(now: number): string[] {
    check(Number.isFinite(now), "now must be a finite number of ms");
    const current = Math.floor(now / this.#opts.windowMs);
    return Array.from({ length: this.#opts.slices }, (_, i) => this.#key(current - i));
  }

  async #batched(domains: readonly string[], call: (offsets: number[]) => Promise<number[]>): Promise<boolean[]> {
    const out: boolean[] = [];
    // Sequential on purpose: a later batch must see the bits an earlier one set.
    for (let start = 0; start < domains.length; start += this.#itemsPerCall) {
      const chunk = domains.slice(start, start + this.#itemsPerCall);
      const reply = await call(this.#offsets(chunk));
      if (reply.length !== chunk.length) {
        throw new Error(`SeenFilter: ${reply.length} replies for ${chunk.length} domains`);
      }
      for (const bit of reply) out.push(bit === 1);
    }
    return out;
  }

  /** k bit offsets per domain, flattened. */
  #offsets(domains: readonly string[]): number[] {
    const { bitsPerSlice: m, hashes: k } = this.#sizing;
    const out = new Array<number>(domains.length * k);
    let o = 0;
    for (const domain of domains) {
      const digest = hash("md5", domain.toLowerCase(), "buffer");
      let g = digest.readUIntBE(0, 6) % m;
      // Odd h2 cycles through every offset when m is a power of two; never 0, or all k offsets coincide.
      const h2 = (digest.readUIntBE(6, 6) * 2 + 1) % m || 1;
      for (let i = 0; i < k; i++) {
        out[o++] = g;
        g = (g + h2) % m;
      }
    }
    return out;
  }
}
