/**
 * "Seen recently?" for domains: a time-sliced Bloom filter on plain Redis 7.0 (no RedisBloom module).
 *
 * Time is cut into slices of `windowMs`; slice `floor(now / windowMs)` is the current one. A domain is
 * "seen" if all its bits are set in any of the `slices` live slices (current + `slices - 1` older ones);
 * new domains are written to the current slice only, so an admission is remembered for between
 * `(slices - 1) · windowMs` and `slices · windowMs`. Old slices expire through their TTL.
 *
 * Node hashes (md5 → h1, h2) and sends, per domain, the first offset g₀ = h1 mod m and the step h2 as two
 * 32-bit integers in one binary argument; the Lua scripts walk g_i = g₀ + i·h2 mod m (Kirsch–Mitzenmacher),
 * so the scripts never hash and every client agrees. Batches of up to 1000 domains are one script call
 * each, all written to the connection at once (pipelined): Redis runs them in order, so a later batch sees
 * the bits an earlier one set. A Bloom filter never misses a domain it saw; a false positive drops a new
 * domain until its slices roll past (the coordinator's `confirmSources` check MongoDB instead). This is a
 * cache: Redis errors are thrown and the caller decides (the coordinator treats them as transient), and
 * every slice can be rebuilt from MongoDB (`glyphscan bloom rebuild`, {@link SeenFilter.addAt}).
 */
import { hash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import { TransientError } from "../../cluster/errors.ts";

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

/** The filter options of a coordinator config section. */
export function seenFilterOptions(coordinator: {
  seenFilterName: string;
  seenWindowMs: number;
  seenSlices: number;
  expectedDomainsPerWindow: number;
  falsePositiveRate: number;
}): SeenFilterOptions {
  return {
    name: coordinator.seenFilterName,
    windowMs: coordinator.seenWindowMs,
    slices: coordinator.seenSlices,
    expectedPerWindow: coordinator.expectedDomainsPerWindow,
    falsePositiveRate: coordinator.falsePositiveRate,
  };
}

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

/** One live slice as {@link SeenFilter.stats} sees it. */
export type SliceStats = {
  key: string;
  /** Slice index, `floor(time / windowMs)`. */
  index: number;
  /** Start of the slice's window. */
  start: Date;
  exists: boolean;
  /** Bits set (BITCOUNT). */
  bitsSet: number;
  /** bitsSet / m. */
  fill: number;
  /** Domains in the slice, estimated from the fill: n ≈ -(m/k)·ln(1 - fill). */
  estimatedDomains: number;
  /** Remaining time to live in ms (-1: none, -2: absent). */
  ttlMs: number;
};

/** What {@link SeenFilter.stats} reports. */
export type FilterStats = {
  name: string;
  sizing: BloomSizing;
  targetFalsePositiveRate: number;
  slices: SliceStats[];
  /** Expected false-positive rate of a new domain against the live slices as they are filled now: 1 - Π(1 - fill^k). */
  estimatedFalsePositiveRate: number;
  /** Domains in all live slices, estimated from their fill. */
  estimatedDomains: number;
};

/** Redis strings hold at most 512 MiB = 2³² bits, so g₀ and h2 (both < m) fit in 32 bits. */
const MAX_BITS = 2 ** 32;
/** Items per script call: bounds the script's run time (Redis is single-threaded). */
const MAX_ITEMS_PER_CALL = 1000;
/** Script calls in flight at once on the connection; bounds memory on huge inputs. */
const MAX_CALLS_IN_FLIGHT = 16;

// Reads item i (0-based) of the packed argument: big-endian g0 and h2.
const UNPACK = `
local call = redis.call
local function item(blob, i)
  local a, b, c, d, e, f, g, h = string.byte(blob, i * 8 + 1, i * 8 + 8)
  return ((a * 256 + b) * 256 + c) * 256 + d, ((e * 256 + f) * 256 + g) * 256 + h
end
`;

// KEYS: current slice, then older live slices. ARGV: k, m, ttl ms, packed items.
// Returns 1 (seen in a live slice) or 0 (new; now set in the current slice) per domain.
const TEST_AND_SET = `${UNPACK}
local k, m, ttl, blob = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local cur = KEYS[1]
local pttl = redis.call('PTTL', cur)
if pttl == -2 then
  -- Allocate the whole string now rather than on some SETBIT mid-batch.
  redis.call('SETBIT', cur, m - 1, 0)
  redis.call('PEXPIRE', cur, ttl)
elseif pttl == -1 then
  redis.call('PEXPIRE', cur, ttl)
end
local older = {}
for w = 2, #KEYS do
  if redis.call('EXISTS', KEYS[w]) == 1 then older[#older + 1] = KEYS[w] end
end
local res = {}
for i = 0, #blob / 8 - 1 do
  local g0, h2 = item(blob, i)
  local seen = 0
  for w = 1, #older do
    local all, g = 1, g0
    for j = 1, k do
      if call('GETBIT', older[w], g) == 0 then all = 0 break end
      g = g + h2 if g >= m then g = g - m end
    end
    if all == 1 then seen = 1 break end
  end
  if seen == 0 then
    -- SETBIT returns the old bit: all ones means the current slice already had it.
    local all, g = 1, g0
    for j = 1, k do
      if call('SETBIT', cur, g, 1) == 0 then all = 0 end
      g = g + h2 if g >= m then g = g - m end
    end
    seen = all
  end
  res[i + 1] = seen
end
return res
`;

// KEYS: live slices. ARGV: k, m, packed items. Returns 1 (seen) or 0 per domain; writes nothing.
const HAS = `${UNPACK}
local k, m, blob = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local live = {}
for w = 1, #KEYS do
  if redis.call('EXISTS', KEYS[w]) == 1 then live[#live + 1] = KEYS[w] end
end
local res = {}
for i = 0, #blob / 8 - 1 do
  local g0, h2 = item(blob, i)
  local seen = 0
  for w = 1, #live do
    local all, g = 1, g0
    for j = 1, k do
      if call('GETBIT', live[w], g) == 0 then all = 0 break end
      g = g + h2 if g >= m then g = g - m end
    end
    if all == 1 then seen = 1 break end
  end
  res[i + 1] = seen
end
return res
`;

// KEYS: one slice. ARGV: k, m, expire-at ms (end of the slice's life), packed items.
// Sets every domain's bits; returns 1 if all were set already, else 0, per domain.
const ADD = `${UNPACK}
local k, m, expireAt, blob = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local key = KEYS[1]
local pttl = redis.call('PTTL', key)
if pttl == -2 then
  redis.call('SETBIT', key, m - 1, 0)
  redis.call('PEXPIREAT', key, expireAt)
elseif pttl == -1 then
  redis.call('PEXPIREAT', key, expireAt)
end
local res = {}
for i = 0, #blob / 8 - 1 do
  local all, g, h2 = 1, item(blob, i)
  for j = 1, k do
    if call('SETBIT', key, g, 1) == 0 then all = 0 end
    g = g + h2 if g >= m then g = g - m end
  end
  res[i + 1] = all
end
return res
`;

/** The commands `defineCommand` adds to the client (ioredis flattens array arguments). */
type BloomCommands = {
  glyphscanBloomTestAndSet(numKeys: number, ...args: (string | number | Buffer | string[])[]): Promise<number[]>;
  glyphscanBloomHas(numKeys: number, ...args: (string | number | Buffer | string[])[]): Promise<number[]>;
  glyphscanBloomAdd(numKeys: number, ...args: (string | number | Buffer | string[])[]): Promise<number[]>;
  bitcount(key: string): Promise<number>;
  pttl(key: string): Promise<number>;
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
 * registers three Lua scripts on the client (EVAL on a connection's first use, EVALSHA after).
 */
export class SeenFilter {
  readonly #cmd: BloomCommands;
  readonly #opts: SeenFilterOptions;
  readonly #sizing: BloomSizing;

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
    redis.defineCommand("glyphscanBloomTestAndSet", { lua: TEST_AND_SET });
    redis.defineCommand("glyphscanBloomHas", { lua: HAS, readOnly: true });
    redis.defineCommand("glyphscanBloomAdd", { lua: ADD });
    this.#cmd = redis as unknown as BloomCommands;
  }

  /** The Bloom parameters in use. */
  sizing(): BloomSizing {
    return { ...this.#sizing };
  }

  /** The options this filter was made with. */
  options(): SeenFilterOptions {
    return { ...this.#opts };
  }

  /**
   * For each domain: true if seen in a live slice, false if new. New domains are recorded in the current
   * slice, so a domain repeated within `domains` is new the first time and seen after. Domains are compared
   * case-insensitively. One script call per up to 1000 domains, pipelined; each call is atomic.
   * @param now clock in ms since the epoch (default `Date.now()`); picks the current slice.
   */
  async testAndSet(domains: readonly string[], now: number = Date.now()): Promise<boolean[]> {
    const keys = this.#liveKeys(now);
    const ttlMs = this.#opts.slices * this.#opts.windowMs;
    const { hashes: k, bitsPerSlice: m } = this.#sizing;
    return this.#batched(domains, (items) => this.#cmd.glyphscanBloomTestAndSet(keys.length, keys, k, m, ttlMs, items));
  }

  /** Like {@link testAndSet} without recording anything. */
  async has(domains: readonly string[], now: number = Date.now()): Promise<boolean[]> {
    const keys = this.#liveKeys(now);
    const { hashes: k, bitsPerSlice: m } = this.#sizing;
    return this.#batched(domains, (items) => this.#cmd.glyphscanBloomHas(keys.length, keys, k, m, items));
  }

  /**
   * Records domains as seen at time `at` (e.g. their last admission, from MongoDB): in the slice containing
   * `at`, which expires when it leaves the live window, `(slice + slices) · windowMs`. Nothing is written
   * (and null returned) if that slice is no longer live at `now`; `at` later than `now` counts as `now`.
   * Otherwise, per domain: true if it was there already. Idempotent.
   */
  async addAt(domains: readonly string[], at: number, now: number = Date.now()): Promise<boolean[] | null> {
    check(Number.isFinite(at), "at must be a finite number of ms");
    const current = this.#slice(now);
    const slice = Math.min(this.#slice(at), current);
    if (slice <= current - this.#opts.slices) return null;
    const expireAt = (slice + this.#opts.slices) * this.#opts.windowMs;
    const { hashes: k, bitsPerSlice: m } = this.#sizing;
    return this.#batched(domains, (items) => this.#cmd.glyphscanBloomAdd(1, this.#key(slice), k, m, expireAt, items));
  }

  /** Fill of each live slice (BITCOUNT, O(m/8) each) and the false-positive rate it implies. */
  async stats(now: number = Date.now()): Promise<FilterStats> {
    const { bitsPerSlice: m, hashes: k } = this.#sizing;
    const current = this.#slice(now);
    const slices = await Promise.all(
      Array.from({ length: this.#opts.slices }, async (_, i): Promise<SliceStats> => {
        const index = current - i;
        const key = this.#key(index);
        const [bitsSet, ttlMs] = await Promise.all([this.#cmd.bitcount(key), this.#cmd.pttl(key)]);
        const fill = bitsSet / m;
        return {
          key,
          index,
          start: new Date(index * this.#opts.windowMs),
          exists: ttlMs !== -2,
          bitsSet,
          fill,
          estimatedDomains: fill >= 1 ? Infinity : Math.round((-m / k) * Math.log1p(-fill)),
          ttlMs,
        };
      }),
    );
    const miss = slices.reduce((p, s) => p * (1 - s.fill ** k), 1);
    return {
      name: this.#opts.name,
      sizing: this.sizing(),
      targetFalsePositiveRate: this.#opts.falsePositiveRate,
      slices,
      estimatedFalsePositiveRate: 1 - miss,
      estimatedDomains: slices.reduce((n, s) => n + s.estimatedDomains, 0),
    };
  }

  /** Redis key of the slice containing `now`. */
  keyAt(now: number): string {
    return this.#key(this.#slice(now));
  }

  #slice(now: number): number {
    check(Number.isFinite(now), "now must be a finite number of ms");
    return Math.floor(now / this.#opts.windowMs);
  }

  #key(slice: number): string {
    return `bloom:{${this.#opts.name}}:${slice}`;
  }

  /** Current slice first, then the older live ones. */
  #liveKeys(now: number): string[] {
    const current = this.#slice(now);
    return Array.from({ length: this.#opts.slices }, (_, i) => this.#key(current - i));
  }

  /**
   * Splits `domains` into script calls and pipelines them: all calls go out on the one connection in
   * order (a later batch sees the bits an earlier one set; all keys share the `{name}` hash slot, so a
   * Redis Cluster sends them to one node too), at most {@link MAX_CALLS_IN_FLIGHT} unanswered at once.
   */
  async #batched(domains: readonly string[], call: (items: Buffer) => Promise<number[]>): Promise<boolean[]> {
    const out = new Array<boolean>(domains.length);
    const inFlight = new Set<Promise<void>>();
    const failed: { error: Error | null } = { error: null };
    for (let start = 0; start < domains.length && failed.error === null; start += MAX_ITEMS_PER_CALL) {
      const end = Math.min(domains.length, start + MAX_ITEMS_PER_CALL);
      const done = call(this.#pack(domains, start, end)).then((reply) => {
        if (reply.length !== end - start) {
          throw new TransientError(`SeenFilter: ${reply.length} replies for ${end - start} domains`);
        }
        for (let i = 0; i < reply.length; i++) out[start + i] = reply[i] === 1;
      });
      const tracked = done.then(
        () => void inFlight.delete(tracked),
        (err: unknown) => {
          inFlight.delete(tracked);
          failed.error ??= err instanceof Error ? err : new Error(String(err));
        },
      );
      inFlight.add(tracked);
      if (inFlight.size >= MAX_CALLS_IN_FLIGHT) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    if (failed.error !== null) throw failed.error;
    return out;
  }

  /** Per domain, big-endian uint32 g₀ = h1 mod m and uint32 step h2. */
  #pack(domains: readonly string[], start: number, end: number): Buffer {
    const m = this.#sizing.bitsPerSlice;
    const buf = Buffer.allocUnsafe((end - start) * 8);
    for (let i = start, o = 0; i < end; i++, o += 8) {
      const digest = hash("md5", domains[i]!.toLowerCase(), "buffer");
      // Odd h2 cycles through every offset when m is a power of two; never 0, or all k offsets coincide.
      buf.writeUInt32BE(digest.readUIntBE(0, 6) % m, o);
      buf.writeUInt32BE((digest.readUIntBE(6, 6) * 2 + 1) % m || 1, o + 4);
    }
    return buf;
  }
}
