/**
 * The store a node is given: its MongoDB collections, the server's adapter (server-adapter.ts:
 * what the server can do, and the implementations that fit it) and the lookup view in Redis.
 * Built once per node by openDatabase and passed in; nothing here reaches for a resource itself.
 * Only features every server we run on has are used: no transactions, change streams or TTL
 * indexes, and no dots in field names.
 */
import { MongoClient, type Db, type MongoClientOptions } from "mongodb";
import type { Redis } from "ioredis";
import type { Config } from "../../config/mod.ts";
import { collectionsOf, type Collections } from "./collections.ts";
import type { HostDoc } from "./documents.ts";
import { openLookupView, type LookupView } from "./lookup-view.ts";
import { serverAdapterOf, type ServerAdapter } from "./server-adapter.ts";

export { collectionsOf };
export type { Collections, HostDoc };

/** The collections, what the server can do, and the lookup view: everything store code is passed. */
export interface Stores extends Collections {
  /** What the server can do, and the implementations that fit it. */
  server: ServerAdapter;
  /** The lookup read model in Redis (lookup-view.ts), written after the collections; null when off. */
  lookupView: LookupView | null;
}

export interface Database {
  client: MongoClient;
  db: Db;
  /** The node's stores (named `collections` for the callers that only use those). */
  collections: Stores;
  close(): Promise<void>;
}

export interface OpenDatabaseOptions {
  /** Passed to the driver as they are (tests watch commands with `monitorCommands`). */
  clientOptions?: MongoClientOptions;
  /**
   * The lookup view's Redis client (from `lookupViewRedis`), owned by the caller, which closes it.
   * Absent: with `api.lookupView` on, the view opens a connection of its own and close() ends it.
   */
  lookupRedis?: Redis;
}

/** Connects to MongoDB, asks the server what it can do, and creates the indexes it uses. */
export async function openDatabase(config: Config, opts: OpenDatabaseOptions = {}): Promise<Database> {
  const client = new MongoClient(config.mongo.url, {
    appName: `glyphscan-${config.nodeId}`,
    serverSelectionTimeoutMS: 10_000,
    ...opts.clientOptions,
  });
  await client.connect();
  const db = client.db(config.mongo.database);
  let stores: Stores;
  try {
    const collections = collectionsOf(db);
    const server = await serverAdapterOf(db);
    await collections.scans.createIndex({ domain: 1, finishedAt: -1 }, { name: "by_domain_recent" });
    await server.prepare(collections);
    const lookupView = openLookupView(config, opts.lookupRedis ? { redis: opts.lookupRedis } : {});
    stores = { ...collections, server, lookupView };
  } catch (err) {
    await client.close();
    throw err;
  }
  let closed = false;
  return {
    client,
    db,
    collections: stores,
    async close() {
      if (closed) return;
      closed = true;
      stores.lookupView?.close();
      await client.close();
    },
  };
}
