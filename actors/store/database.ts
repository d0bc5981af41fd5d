/**
 * MongoDB collections and their indexes. Only features FerretDB v1 has are used here: no
 * transactions, change streams or TTL indexes, and no dots in field names.
 */
import { MongoClient, type Collection, type Db } from "mongodb";
import type { Config } from "../../config/mod.ts";
import type { DomainDoc, FontDoc, LicenseDoc, LicenseDomainDoc, ScanDoc } from "./documents.ts";

export interface Collections {
  domains: Collection<DomainDoc>;
  scans: Collection<ScanDoc>;
  fonts: Collection<FontDoc>;
  licenses: Collection<LicenseDoc>;
  licenseDomains: Collection<LicenseDomainDoc>;
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
  };
  // "Due in region, soonest first": the dispatcher's only query. Leases reuse nextScanAt.
  await collections.domains.createIndex({ region: 1, nextScanAt: 1 }, { name: "due_by_region" });
  // The dispatcher's order: manual rescans, then priority, then soonest due, within a region.
  await collections.domains.createIndex(
    { region: 1, manual: -1, priority: -1, nextScanAt: 1 },
    { name: "due_by_priority" },
  );
  await collections.scans.createIndex({ domain: 1, finishedAt: -1 }, { name: "by_domain_recent" });
  let closed = false;
  return {
    client,
    db,
    collections,
    async close() {
      if (closed) return;
      closed = true;
      await client.close();
    },
  };
}
