/**
 * MongoDB collections and their indexes. Only features FerretDB v1 has are used here: no
 * transactions, change streams or TTL indexes, and no dots in field names.
 */
import { MongoClient, type Collection, type Db, type Filter, type MongoClientOptions } from "mongodb";
import type { Config } from "../../config/mod.ts";
import type { DueDoc } from "../frontier/due-index.ts";
import type { DomainDoc, FontDoc, LicenseDoc, LicenseDomainDoc, ScanDoc } from "./documents.ts";
import { openLookupView, type LookupView } from "./lookup-view.ts";
import type { ScanIndexDoc } from "./scan-index.ts";

export interface Collections {
  domains: Collection<DomainDoc>;
  scans: Collection<ScanDoc>;
  /** Each domain's scans in finish order, read by `_id` (scan-index.ts). */
  scanIndex: Collection<ScanIndexDoc>;
  fonts: Collection<FontDoc>;
  licenses: Collection<LicenseDoc>;
  licenseDomains: Collection<LicenseDomainDoc>;
  /** Per-IP politeness: the live leases on each IP address of a region. */
  frontierHosts: Collection<HostDoc>;
  /** The frontier's due index (time wheel by region, rank and bucket), read by `_id` only. */
  frontierDue: Collection<DueDoc>;
  /** The lookup read model in Redis (lookup-view.ts), written after these collections; null when off. */
  lookupView?: LookupView | null;
  /**
   * Whether a conditional point update (`_id` plus a condition) is found by `_id` and applied
   * atomically: true on MongoDB; false on FerretDB v1 (see guardedById). Absent means true.
   */
  atomicConditions?: boolean;
}

/**
 * The filter of a conditional update of one document. MongoDB finds `{ _id, ...condition }`
 * through the `_id` index and applies it atomically, so the condition guards the write. FerretDB
 * v1 does neither: any filter beyond `_id` reads the whole collection (859 ms per update at 100k
 * domains), and of 40 concurrent updates conditional on one value up to 27 applied (both lines of
 * `npm run bench:ingest`). There the filter is the `_id` alone: callers check the condition on
 * their own read by `_id` first, which guards as well as FerretDB's filter would.
 */
export function guardedById<T extends { _id: string }>(
  c: Pick<Collections, "atomicConditions">,
  _id: string,
  condition: Filter<T>,
): Filter<T> {
  return (c.atomicConditions === false ? { _id } : { ...condition, _id }) as Filter<T>;
}

/** FerretDB says so in buildInfo; MongoDB has no such field. */
async function isFerretDb(db: Db): Promise<boolean> {
  const info = await db.admin().command({ buildInfo: 1 });
  return typeof info["ferretdbVersion"] === "string";
}

/** The frontier's leases on one IP address (`_id`: `<region>|<ip>`), for per-IP politeness. */
export interface HostDoc {
  _id: string;
  /** Domains leased on this address and when each lease runs out. */
  leases: Array<{ d: string; until: Date }>;
  /** When the last lease on this address started. */
  lastAt: Date | null;
}

export interface Database {
  client: MongoClient;
  db: Db;
  collections: Collections;
  close(): Promise<void>;
}

/** `clientOptions` go to the driver as they are (tests watch commands with `monitorCommands`). */
export async function openDatabase(
  config: Config,
  { clientOptions = {} }: { clientOptions?: MongoClientOptions } = {},
): Promise<Database> {
  const client = new MongoClient(config.mongo.url, {
    appName: `glyphscan-${config.nodeId}`,
    serverSelectionTimeoutMS: 10_000,
    ...clientOptions,
  });
  await client.connect();
  const db = client.db(config.mongo.database);
  const collections: Collections = {
    domains: db.collection<DomainDoc>("domains"),
    scans: db.collection<ScanDoc>("scans"),
    scanIndex: db.collection<ScanIndexDoc>("scan_index"),
    fonts: db.collection<FontDoc>("fonts"),
    licenses: db.collection<LicenseDoc>("licenses"),
    licenseDomains: db.collection<LicenseDomainDoc>("license_domains"),
    frontierHosts: db.collection<HostDoc>("frontier_hosts"),
    frontierDue: db.collection<DueDoc>("frontier_due"),
    lookupView: openLookupView(config),
    atomicConditions: !(await isFerretDb(db)),
  };
  await collections.scans.createIndex({ domain: 1, finishedAt: -1 }, { name: "by_domain_recent" });
  let closed = false;
  return {
    client,
    db,
    collections,
    async close() {
      if (closed) return;
      closed = true;
      collections.lookupView?.close();
      await client.close();
    },
  };
}
