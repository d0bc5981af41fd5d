/**
 * A one-server JetStream nats-server for the permission tests, whose config `include`s a users
 * file by a relative path, as the deploy's region configs do. The harness's startNats cannot: it
 * appends text to a config in a directory made at start, and nats-server resolves includes
 * relative to the including file.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { connect } from "@nats-io/transport-node";
import { freePort, toolPaths } from "../harness/servers.ts";
import { eventually } from "../helpers/stack.ts";

export interface AuthServer {
  url: string;
  /** The server's log so far: refusals show as `Publish Violation` / `Subscription Violation` lines. */
  log(): string;
  stop(): Promise<void>;
}

/** Starts the server with `env` (the password variables) and waits until `readyAs` can log in. */
export async function startAuthServer(
  authFile: string,
  env: Record<string, string>,
  readyAs: { user: string; pass: string },
): Promise<AuthServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "glyphscan-perms-"));
  const port = await freePort();
  const logFile = path.join(dir, "nats.log");
  const conf = path.join(dir, "nats.conf");
  writeFileSync(
    conf,
    [
      `listen: "127.0.0.1:${port}"`,
      `server_name: "perms-${port}"`,
      `jetstream { store_dir: ${JSON.stringify(dir)} }`,
      `log_file: ${JSON.stringify(logFile)}`,
      `include ${JSON.stringify(path.relative(dir, authFile))}`,
      "",
    ].join("\n"),
  );
  const server = spawn((await toolPaths())["NATS_SERVER"]!, ["-c", conf], {
    env: { PATH: process.env["PATH"], ...env },
    stdio: "ignore",
  });
  // Never outlive the test process.
  const killOnExit = () => server.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise<void>((resolve) => server.once("exit", () => resolve()));
  const url = `nats://127.0.0.1:${port}`;
  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const stop = async () => {
    process.removeListener("exit", killOnExit);
    if (server.exitCode === null) server.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  await eventually(`nats-server on ${url}`, async () => {
    if (server.exitCode !== null) throw new Error(`nats-server exited: ${log()}`);
    const nc = await connect({ servers: url, ...readyAs, reconnect: false });
    await nc.close();
    return true;
  }).catch(async (err: unknown) => {
    await stop();
    throw err;
  });
  return { url, log, stop };
}
