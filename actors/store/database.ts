/**
 * MongoDB collections and their indexes. Only features FerretDB v1 has are used here: no
 * transactions, change streams or TTL indexes, and no dots in field names.
 */
import { MongoClient, type Collection, type Db } from "mongodb";
import type { Config } from "../../config/mod.ts";
import type { DueDoc } from "../frontier/due-index.ts";
import type { DomainDoc, FontDoc, LicenseDoc, LicenseDomainDoc, ScanDoc } from "./documents.ts";
import { openLookupView, type LookupView } from "./lookup-view.ts";

export interface Collections {
  domains: Collection<DomainDoc>;
  scans: Collection<ScanDoc>;
  fonts: Collection<FontDoc>;
  licenses: Collection<LicenseDoc>;
  licenseDomains: Collection<LicenseDomainDoc>;
  /** Per-IP politeness: the live leases on each IP address of a region. */
  frontierHosts: Collection<HostDoc>;
  /** The frontier's due index (time wheel by region, rank and bucket), read by `_id` only. */
  frontierDue: Collection<DueDoc>;
  /** The lookup read model in Redis (lookup-view.ts), written after these collections; null when off. */
  lookupView?: LookupView | null;
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

export async function openDatabase(config: Config): Promise<Database> {
  const client = new MongoClient(config.mongo.url, {
    appName: `glyphscan-${config.nodeId}`,
    serverSelectionTimeoutMS: 10_000,
  });
  await client.connect();
  const db = client.db(config.mongo.database);
  const collections: Collections = {
    domains: db.collection<DomainDoc>("domains"),
    scans: db.collection<ScanDoc>("scans"),
    fonts: db.collection<FontDoc>("fonts"),
    licenses: db.collection<LicenseDoc>("licenses"),
    licenseDomains: db.collection<LicenseDomainDoc>("license_domains"),
    frontierHosts: db.collection<HostDoc>("frontier_hosts"),
    frontierDue: db.collection<DueDoc>("frontier_due"),
    lookupView: openLookupView(config),
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
