/**
 * The lookup read model: the answer of GET /v1/domains/{domain} (and the part of GET /urlinfo that
 * depends on the domain) for every known domain, pre-serialised in Redis, so a lookup of any domain
 * costs one Redis GET instead of three to five MongoDB reads (the default server answers ~1.5k `_id` reads/s).
 *
 * MongoDB stays the source of truth. Whoever changes what a lookup shows writes the entry after its
 * MongoDB writes: the results writer (a scan stored, its verdicts, the domain's outcome), the pending
 * re-check (verdicts decided), the rescan route (next scan time), `glyphscan views rebuild` (all of
 * it). A lookup that misses (never written, expired, Redis flushed) reads MongoDB and fills the entry
 * only if it is still absent (SET NX), so a fill racing a writer never puts back an older answer.
 * With Redis away lookups read MongoDB (slower) and writers skip the view (counted, logged by them).
 *
 * Staleness: fields only the frontier moves (`state` and `nextScanAt` when it leases a domain or a
 * lease runs out, `sources` when another feed admits it again) show as of the last write above; each
 * entry expires `api.lookupViewTtlMs` (default 1 h, jittered by up to -10 %) after it was written, so
 * they are never older than that. A view write that failed (Redis unreachable while it kept its data)
 * is bounded the same way; `glyphscan views rebuild` repairs everything at once.
 *
 * Each entry holds urlinfo's fields as they are and the domain answer deflated with a fixed preset
 * dictionary of the answer's common keys and values (~9x smaller than its JSON). The key carries
 * the dictionary's hash, so a changed dictionary never reads old entries.
 */
import { createHash } from "node:crypto";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { Redis } from "ioredis";
import type { Config } from "../../config/mod.ts";
import type { Collections } from "./collections.ts";
import type { DomainDoc, FontDoc, ScanDoc } from "./documents.ts";
import { readLatestScan, type LatestScan } from "./latest-scan.ts";

/**
 * A lookup's answer as served: the UTF-8 JSON body of GET /v1/domains/{domain} (bytes, so it goes
 * to the socket without being decoded and encoded again), and urlinfo's domain fields (no braces).
 */
export interface LookupEntry {
  readonly domain: Buffer;
  readonly urlinfo: string;
}

function domainFields(d: DomainDoc) {
  return {
    domain: d._id,
    region: d.region,
    state: d.state,
    sources: d.sources,
    firstSeenAt: d.firstSeenAt,
    lastScanAt: d.lastScanAt,
    nextScanAt: d.nextScanAt,
    scanCount: d.scanCount,
    latest: d.latest,
  };
}

/** One row of a domain's scan history (GET /v1/domains/{domain}/scans), and the head of the latest scan. */
export function scanSummary(s: ScanDoc) {
  return {
    jobId: s._id,
    status: s.status,
    failure: s.failure,
    path: s.path,
    startedAt: s.startedAt,
    finishedAt: s.finishedAt,
    durationMs: s.durationMs,
    fileCount: s.files.length,
    usedFamilies: [...new Set(s.faces.filter((f) => f.used).map((f) => f.family))],
    compliance: s.compliance ?? null,
  };
}

/** The body of GET /v1/domains/{domain}: the domain, its latest scan with file metadata from the catalogue. */
export function lookupAnswer(latest: LatestScan) {
  const { domain: d, scan } = latest;
  const byHash = new Map(latest.fonts.map((f) => [f._id, f]));
  return {
    ...domainFields(d),
    scan: scan
      ? {
          ...scanSummary(scan),
          pages: scan.pages,
          faces: scan.faces,
          files: scan.files.map((f) => ({
            ...f,
            metadata: byHash.get(f.sha256)?.metadata ?? null,
            parseError: f.parseError ?? byHash.get(f.sha256)?.parseError ?? null,
          })),
          verdicts: scan.verdicts ?? [],
          // Scans recorded before these were stored have neither: shown as empty, like verdicts.
          blocked: scan.blocked ?? [],
          renderedFonts: scan.renderedFonts ?? [],
        }
      : null,
  };
}

/** What GET /urlinfo tells about the URL's domain (null: not known). */
export function urlinfoFields(d: DomainDoc | null) {
  return {
    known: d !== null,
    state: d?.state ?? null,
    lastScanAt: d?.lastScanAt ?? null,
    nextScanAt: d?.nextScanAt ?? null,
    status: d?.latest?.status ?? null,
    usedFamilies: d?.latest?.usedFamilies ?? [],
    compliance: d?.latest?.compliance?.counts ?? null,
  };
}

const fieldsText = (o: object) => JSON.stringify(o).slice(1, -1);

export function lookupEntry(latest: LatestScan): LookupEntry {
  return {
    domain: Buffer.from(JSON.stringify(lookupAnswer(latest))),
    urlinfo: fieldsText(urlinfoFields(latest.domain)),
  };
}

/** urlinfo's domain fields for an unknown domain. */
export const UNKNOWN_URLINFO = fieldsText(urlinfoFields(null));

/**
 * Preset dictionary: an answer's shape with its usual values, most frequent last (deflate reaches
 * back from the end). Changing it changes DICTIONARY_ID and so every key: old entries are never read.
 */
const DICTIONARY = Buffer.from(
  [
    '"licensee":null,"catalogue":null,"externalReference":null,"rejected":[]',
    '"format":"woff2","subfamily":"Regular","fullName":"","postscriptName":"","version":"Version ',
    '"manufacturer":"","designer":"","vendorId":"","copyright":"Copyright ","trademark":null,',
    '"license":"This Font Software is licensed under the SIL Open Font License, Version 1.1.",',
    '"licenseUrl":"https://openfontlicense.org","fsType":0,"isVariable":false},',
    '"google-fonts","adobe-fonts","font-face-api","browser","failed","retry","leased","queued",',
    '"renderedAs":[],"blocked":[],"renderedFonts":[{"family":"","postScriptName":"","custom":true,"glyphs":',
    '"known":true,"state":"scanned","lastScanAt":"2026-11-',
    'T00:00:00.000Z","nextScanAt":"',
    '"status":"ok","usedFamilies":[],"compliance":{"licensed":0,"open-licence":0,"pending":0,"unlicensed":0,"unknown":0}',
    '{"domain":"","region":"","state":"scanned","sources":[""],"firstSeenAt":"2026-11-',
    'T00:00:00.000Z",',
    '"lastScanAt":"","nextScanAt":"","scanCount":1,"latest":{"jobId":"","status":"ok","failureKind":null,',
    '"failureMessage":null,"finishedAt":"","path":"static","usedFamilies":[""],"declaredOnlyFamilies":[],',
    '"fileCount":2,"compliance":{"counts":{"licensed":0,"open-licence":1,"pending":0,"unlicensed":1,"unknown":0},',
    '"changes":null,"assessedAt":""}},"scan":{"jobId":"","status":"ok","failure":null,"path":"static",',
    '"startedAt":"","finishedAt":"","durationMs":1500,"fileCount":2,"usedFamilies":[""],"compliance":{"counts":',
    '{"licensed":0,"open-licence":1,"pending":0,"unlicensed":1,"unknown":0},"changes":null,"assessedAt":""},',
    '"pages":[{"url":"https://","finalUrl":"https://www.","httpStatus":200}],"faces":[{"family":"",',
    '"weight":"400","style":"normal","used":true,"declaredIn":"stylesheet","srcUrls":["https://',
    '/fonts/"],"fileSha256":[""],"provider":"self-hosted"}],"files":[{"sha256":"","url":"https://',
    '.woff2","bytes":20000,"contentType":"font/woff2","via":"font-request","parseError":null,',
    '"provider":"self-hosted","family":"","metadata":{"format":"woff2","family":"","subfamily":"Bold",',
    '"verdicts":[{"sha256":"","family":"","cssFamilies":[""],"verdict":"unlicensed","licence":null,',
    '"reason":"commercial signs and no licence","evidence":{"licenseId":null,"licensee":null,',
    '"nameFields":[{"field":"copyright","value":"Copyright "}],"provider":"self-hosted","catalogue":null,',
    '"externalReference":null,"rejected":[]}},{"sha256":"","family":"","verdict":"open-licence","licence":"OFL-1.1",',
  ].join(""),
);
export const DICTIONARY_ID = createHash("sha256").update(DICTIONARY).digest("hex").slice(0, 8);

/**
 * `<urlinfo length, u16 BE><urlinfo fields, UTF-8><domain answer, deflated with DICTIONARY>`: urlinfo
 * reads its few fields without inflating the answer (~10 µs of a lookup's CPU).
 */
export function packEntry(e: LookupEntry): Buffer {
  const urlinfo = Buffer.from(e.urlinfo);
  const head = Buffer.alloc(2);
  head.writeUInt16BE(urlinfo.length);
  return Buffer.concat([head, urlinfo, deflateRawSync(e.domain, { dictionary: DICTIONARY, level: 9 })]);
}

/** The entry; its answer is inflated when first read (urlinfo never reads it), then kept. */
export function unpackEntry(b: Buffer): LookupEntry {
  const end = 2 + b.readUInt16BE(0);
  let domain: Buffer | null = null;
  return {
    urlinfo: b.toString("utf8", 2, end),
    get domain() {
      return (domain ??= inflateRawSync(b.subarray(end), { dictionary: DICTIONARY }));
    },
  };
}

/** The collections and the view over them. */
export type ViewStores = Collections & { lookupView: LookupView | null };

export interface LookupViewOptions {
  /** Keys are `<prefix><domain>`. */
  prefix: string;
  /** Entries expire this long after they were written (minus up to 10 % jitter, so a rebuild's do not all go at once). */
  ttlMs: number;
  /** Whether close() disconnects the client (false: whoever passed it in closes it). Default true. */
  ownsClient?: boolean;
}

export interface LookupViewStats {
  hits: number;
  misses: number;
  /** Reads and writes skipped or failed because Redis was unavailable. */
  unavailable: number;
  writes: number;
}

/** Entries in Redis. Every method answers without throwing: Redis is a cache, MongoDB the truth. */
export class LookupView {
  readonly redis: Redis;
  readonly prefix: string;
  readonly ttlMs: number;
  readonly stats: LookupViewStats = { hits: 0, misses: 0, unavailable: 0, writes: 0 };
  #connecting: Promise<void> | null = null;
  readonly #ownsClient: boolean;

  constructor(redis: Redis, opts: LookupViewOptions) {
    this.redis = redis;
    this.#ownsClient = opts.ownsClient ?? true;
    this.prefix = opts.prefix;
    this.ttlMs = opts.ttlMs;
  }

  key(domain: string): string {
    return this.prefix + domain;
  }

  #ttl(): number {
    return this.ttlMs - Math.floor(Math.random() * this.ttlMs * 0.1);
  }

  /** True when commands can go now; connects a lazy client on first use (without queueing commands). */
  async ready(): Promise<boolean> {
    if (this.redis.status === "ready") return true;
    if (this.redis.status === "wait") {
      this.#connecting ??= this.redis
        .connect()
        .catch(() => undefined)
        .finally(() => (this.#connecting = null));
    }
    if (this.#connecting) await this.#connecting;
    return (this.redis.status as string) === "ready"; // changed while awaiting
  }

  /** The entry, or undefined when it is not in the view or Redis is unavailable. */
  async get(domain: string): Promise<LookupEntry | undefined> {
    if (this.redis.status !== "ready" && !(await this.ready())) {
      this.stats.unavailable++;
      return undefined;
    }
    try {
      const b = await this.redis.getBuffer(this.key(domain));
      if (b === null) {
        this.stats.misses++;
        return undefined;
      }
      this.stats.hits++;
      return unpackEntry(b);
    } catch {
      this.stats.unavailable++;
      return undefined;
    }
  }

  /** Writes an entry (replacing any); with `ifAbsent`, only when there is none (a lookup's fill). False if not written. */
  async put(domain: string, entry: LookupEntry, opts: { ifAbsent?: boolean } = {}): Promise<boolean> {
    if (!(await this.ready())) {
      this.stats.unavailable++;
      return false;
    }
    try {
      const key = this.key(domain);
      const value = packEntry(entry);
      const ok = opts.ifAbsent
        ? await this.redis.set(key, value, "PX", this.#ttl(), "NX")
        : await this.redis.set(key, value, "PX", this.#ttl());
      if (ok === "OK") this.stats.writes++;
      return ok === "OK";
    } catch {
      this.stats.unavailable++;
      return false;
    }
  }

  /** Writes many entries in one round trip (the rebuild). False if Redis refused them. */
  async putMany(entries: Array<[domain: string, entry: LookupEntry]>): Promise<boolean> {
    if (entries.length === 0) return true;
    if (!(await this.ready())) {
      this.stats.unavailable++;
      return false;
    }
    const pipe = this.redis.pipeline();
    for (const [domain, entry] of entries) pipe.set(this.key(domain), packEntry(entry), "PX", this.#ttl());
    try {
      const results = (await pipe.exec()) ?? [];
      const failed = results.some(([err]) => err !== null);
      if (!failed) this.stats.writes += entries.length;
      return !failed;
    } catch {
      this.stats.unavailable++;
      return false;
    }
  }

  async delete(domain: string): Promise<boolean> {
    if (!(await this.ready())) return false;
    try {
      await this.redis.del(this.key(domain));
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.#ownsClient) this.redis.disconnect();
  }
}

/**
 * The Redis connection a lookup view wants: commands never queue while Redis is away (a lookup goes
 * to MongoDB at once), replies wait at most 500 ms (the rebuild's batches longer), and concurrent
 * GETs share writes (auto-pipelining). Connects on first use. The caller owns it.
 */
export function lookupViewRedis(config: Config, opts: { commandTimeoutMs?: number } = {}): Redis {
  const redis = new Redis(config.redis.url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs ?? 500,
    connectionName: "glyphscan-lookup-view",
  });
  redis.on("error", () => undefined); // shows as unavailable in the view's stats and its callers' logs
  return redis;
}

/**
 * The view of a database: keys `glyphscan:lookup:<database>:<dictionary id>:<domain>`, on `redis`
 * when given (from {@link lookupViewRedis}; its owner closes it), else on a connection of its own.
 * Null when `api.lookupView` is off.
 */
export function openLookupView(
  config: Config,
  opts: { commandTimeoutMs?: number; redis?: Redis } = {},
): LookupView | null {
  if (!config.api.lookupView) return null;
  return new LookupView(opts.redis ?? lookupViewRedis(config, opts), {
    prefix: `glyphscan:lookup:${config.mongo.database}:${DICTIONARY_ID}:`,
    ttlMs: config.api.lookupViewTtlMs,
    ownsClient: opts.redis === undefined,
  });
}

/**
 * Rewrites a domain's entry from MongoDB (after a writer changed it). `known` saves the reads a
 * writer has just done: the scan it stored and that scan's catalogue entries; used only if that scan
 * is still the domain's latest. An unknown domain's entry is dropped. False when the view was not written.
 */
export async function refreshLookupView(
  c: ViewStores,
  domain: string,
  known?: { scan: ScanDoc; fonts: FontDoc[] },
): Promise<boolean> {
  const view = c.lookupView;
  if (!view) return true;
  let latest: LatestScan | null;
  if (known) {
    const doc = await c.domains.findOne({ _id: domain });
    latest =
      doc && doc.latest?.jobId === known.scan._id
        ? { domain: doc, scan: known.scan, fonts: known.fonts }
        : doc
          ? await readLatestScan(c, domain)
          : null;
  } else {
    latest = await readLatestScan(c, domain);
  }
  if (!latest) return view.delete(domain);
  return view.put(domain, lookupEntry(latest));
}
