/**
 * The test harness's servers. They live in ops/harness so that benches share them without
 * importing test code; tests keep importing them from here.
 */
export * from "../../ops/harness/servers.ts";
