/**
 * Fixtures the frontier tests share: a DomainStore on the test stack, scan results as a scanner
 * would publish them for a leased job, and a scanner as the node registry sees it.
 */
import type { ExecutionContext } from "ava";
import type { KV } from "@nats-io/kv";
import { DomainStore } from "../../actors/frontier/domain-store.ts";
import { openDatabase } from "../../actors/store/database.ts";
import type { ServerAdapter } from "../../actors/store/server-adapter.ts";
import { NodeRegistration } from "../../cluster/mod.ts";
import type { ScanJob, ScanResult } from "../../protocol/mod.ts";
import { uniqueName, type TestStack } from "./stack.ts";

/**
 * A frontier's store on the stack, with these frontier settings; closed when the test ends. With
 * `server`, the store uses that adapter's implementations instead of the detected server's.
 */
export async function frontierStore(
  stack: TestStack,
  t: ExecutionContext,
  frontier: Record<string, unknown> = {},
  { server }: { server?: ServerAdapter } = {},
) {
  const config = stack.config({ roles: ["frontier"], frontier });
  const db = await openDatabase(config);
  t.teardown(() => db.close());
  const stores = server ? { ...db.collections, server } : db.collections;
  return { config, db, stores, store: new DomainStore(stores, config.frontier) };
}

/** The result a scanner publishes for `job`: a static-path success unless `report` says otherwise. */
export function scanResultFor(
  job: ScanJob,
  at: Date,
  report: Partial<ScanResult["report"]> = {},
  scannerNode = "test",
): ScanResult {
  return {
    jobId: job.jobId,
    domain: job.domain,
    region: job.region,
    leaseToken: job.leaseToken,
    attempt: job.attempt,
    scannerNode,
    report: {
      status: "ok",
      failure: null,
      path: "static",
      pages: [{ url: job.url, finalUrl: job.url, httpStatus: 200 }],
      faces: [],
      files: [],
      startedAt: at.toISOString(),
      finishedAt: at.toISOString(),
      ...report,
    },
  };
}

/** A live scanner node in `region` with `slots` pages at once, registered until the test ends. */
export async function registerScanner(
  t: ExecutionContext,
  registry: KV,
  heartbeatMs: number,
  { slots, nodeId = uniqueName("scanner"), region = "local" }: { slots: number; nodeId?: string; region?: string },
): Promise<NodeRegistration> {
  const registration = new NodeRegistration(
    registry,
    () => ({
      nodeId,
      region,
      roles: ["scanner"],
      host: "test",
      pid: process.pid,
      state: "running",
      startedAt: new Date().toISOString(),
      heartbeatAt: new Date().toISOString(),
      inflight: {},
      scannerSlots: slots,
    }),
    heartbeatMs,
  );
  await registration.start();
  t.teardown(() => registration.leave());
  return registration;
}
