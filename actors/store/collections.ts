/** The MongoDB collections, by name and document type (documents.ts). */
import type { Collection, Db } from "mongodb";
import type {
  DomainDoc,
  DueWheelDoc,
  FontDoc,
  HostDoc,
  LicenseDoc,
  LicenseDomainDoc,
  ScanDoc,
  ScanIndexDoc,
} from "./documents.ts";

/** The MongoDB collections. */
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
  /** The due queue's own documents where the server keeps it as a time wheel (due-wheel.ts). */
  frontierDue: Collection<DueWheelDoc>;
}

/** The collections of `db`. */
export function collectionsOf(db: Db): Collections {
  return {
    domains: db.collection<DomainDoc>("domains"),
    scans: db.collection<ScanDoc>("scans"),
    scanIndex: db.collection<ScanIndexDoc>("scan_index"),
    fonts: db.collection<FontDoc>("fonts"),
    licenses: db.collection<LicenseDoc>("licenses"),
    licenseDomains: db.collection<LicenseDomainDoc>("license_domains"),
    frontierHosts: db.collection<HostDoc>("frontier_hosts"),
    frontierDue: db.collection<DueWheelDoc>("frontier_due"),
  };
}
