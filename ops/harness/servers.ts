/**
 * Server harness for tests and benches: starts private NATS, Redis and MongoDB-wire servers on free
 * ports with temporary data dirs, so tests are hermetic and can run side by
 * side (never the machine's own 4222 / 6379 / 27017 servers).
 *
 * Binaries come from `ops/install-tools.sh paths` (see {@link toolPaths}).
 * Every server runs as a child process of the test process, logs to a file in
 * its temp dir, and is killed when the test process exits — also on signals,
 * and (through a small reaper process watching a pipe) even when the test
 * process itself is SIGKILLed.
 *
 * @module
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import fsp from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** A server process owned by this test process. */
export interface ManagedServer {
  /** Human-readable name used in errors, e.g. `"nats:41234"`. */
  readonly name: string;
  /** TCP port on 127.0.0.1; stays the same across {@link ManagedServer.restart}. */
  readonly port: number;
  /** Client URL, e.g. `"nats://127.0.0.1:41234"`. */
  readonly url: string;
  /** Temporary directory holding config, data and log; kept across restarts, removed by stop(). */
  readonly dir: string;
  /** The server's combined stdout/stderr (appended to across restarts). */
  readonly logFile: string;
  /** Graceful shutdown: SIGTERM, wait for exit (SIGKILL after 10 s), then delete the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Crash simulation: SIGKILL and wait for exit. Data dir is kept so {@link ManagedServer.restart} can reuse it. */
  kill(): Promise<void>;
  /**
   * Start again on the SAME port and SAME data dir (stopping it gracefully first if it
   * is running) and wait until it is ready. Rejects after {@link ManagedServer.stop}.
   */
  restart(): Promise<void>;
}

/** Options for {@link startNats}. */
export interface NatsOptions {
  /** Enable JetStream with a file store in the temp dir. Default `true`. */
  jetstream?: boolean;
  /** Extra nats.conf text, appended after the generated config. */
  configText?: string;
}

/** How long a server may take to answer its protocol after spawning. */
const READY_TIMEOUT_MS = 30_000;
/** How long a graceful stop may take before we SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
/** Lines of server log quoted in errors. */
const LOG_TAIL_LINES = 40;

const INSTALL_SCRIPT = fileURLToPath(new URL("../install-tools.sh", import.meta.url));

let toolPathsPromise: Promise<Record<string, string>> | undefined;

/**
 * Paths of the external binaries, from `bash ops/install-tools.sh paths`
 * (keys `NATS_SERVER`, `REDIS_SERVER`, `MONGO_KIND` = `ferretdb`|`mongod`,
 * `MONGO_SERVER`, `CHROMIUM`). The script installs anything missing first, and
 * runs once per process; concurrent workers are serialised by its lock.
 *
 * On a fresh machine the install builds two Go binaries (minutes), longer than
 * ava's timeout: run `bash ops/install-tools.sh` before the tests (CI does).
 */
export function toolPaths(): Promise<Record<string, string>> {
  toolPathsPromise ??= new Promise<Record<string, string>>((resolve, reject) => {
    execFile(
      "bash",
      [INSTALL_SCRIPT, "paths"],
      { maxBuffer: 16 * 1024 * 1024, timeout: 30 * 60_000 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`ops/install-tools.sh paths failed (${error.message.split("\n")[0]}):\n${stderr}`));
          return;
        }
        const paths: Record<string, string> = {};
        for (const line of stdout.split("\n")) {
          const eq = line.indexOf("=");
          if (eq > 0) paths[line.slice(0, eq)] = line.slice(eq + 1);
        }
        resolve(paths);
      },
    );
  });
  // A failed install should be retried by the next caller, not cached forever.
  toolPathsPromise.catch(() => {
    toolPathsPromise = undefined;
  });
  return toolPathsPromise;
}

async function tool(key: string): Promise<string> {
  const paths = await toolPaths();
  const value = paths[key];
  if (!value) throw new Error(`ops/install-tools.sh paths did not report ${key}`);
  return value;
}

/** A free TCP port on 127.0.0.1, chosen by the kernel. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      srv.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error("could not determine a free port"));
      });
    });
  });
}

/**
 * Connects to 127.0.0.1:port, optionally writes `send`, and resolves true once the
 * received text satisfies `accept` (false on any error or after `timeoutMs`).
 */
function probe(
  port: number,
  send: string | undefined,
  accept: (received: string) => boolean,
  timeoutMs = 1000,
): Promise<boolean> {
  return new Promise((resolve) => {
    let received = "";
    let done = false;
    const socket = net.connect({ host: "127.0.0.1", port });
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.setEncoding("utf8");
    socket.once("connect", () => {
      if (send !== undefined) socket.write(send);
    });
    socket.on("data", (chunk: string) => {
      received += chunk;
      if (accept(received)) finish(true);
    });
    socket.once("error", () => finish(false));
    socket.once("close", () => finish(false));
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function logTail(logFile: string): Promise<string> {
  try {
    const text = await fsp.readFile(logFile, "utf8");
    const lines = text.trimEnd().split("\n");
    return lines.slice(-LOG_TAIL_LINES).join("\n");
  } catch {
    return "(no log output)";
  }
}

// ---------------------------------------------------------------------------
// Orphan protection. Live children are tracked here; on process exit (and on
// fatal signals) they are SIGKILLed synchronously and their temp dirs removed.
// A reaper process additionally kills them if we die without running handlers.

const liveChildren = new Map<number, ChildProcess>();
const liveServers = new Set<ServerImpl>();
let reaper: ChildProcess | undefined;
let hooksInstalled = false;

// The reaper reads "+pid" / "-pid" and "+dir:PATH" / "-dir:PATH" lines; at EOF
// (our death, however it happens) it SIGKILLs every pid still registered and
// deletes every dir still registered. It ignores INT/TERM/HUP so a Ctrl-C to
// the whole process group cannot take it down before it acts.
const REAPER_SCRIPT = `
trap '' INT TERM HUP
declare -A pids=() dirs=()
while IFS= read -r line; do
  case "$line" in
    +dir:*) dirs["\${line#+dir:}"]=1 ;;
    -dir:*) unset 'dirs['"\${line#-dir:}"']' ;;
    +*) pids["\${line#+}"]=1 ;;
    -*) unset 'pids['"\${line#-}"']' ;;
  esac
done
for p in "\${!pids[@]}"; do kill -9 "$p" 2>/dev/null; done
sleep 0.5
for d in "\${!dirs[@]}"; do rm -rf -- "$d"; done
exit 0
`;

function reaperSend(line: string): void {
  if (!reaper?.stdin || reaper.stdin.destroyed) return;
  try {
    reaper.stdin.write(`${line}\n`);
  } catch {
    // The reaper is a safety net only; never fail a test because of it.
  }
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;

  try {
    reaper = spawn("bash", ["-c", REAPER_SCRIPT], { stdio: ["pipe", "ignore", "ignore"], detached: true });
    reaper.on("error", () => {
      reaper = undefined;
    });
    reaper.stdin?.on("error", () => {});
    reaper.unref();
    // The pipe must not keep the test process alive either.
    (reaper.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  } catch {
    reaper = undefined;
  }

  process.on("exit", killAllSync);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      killAllSync();
      // If nobody else handles this signal, restore the default behaviour (terminate).
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}

function killAllSync(): void {
  // We do the reaper's job right here, so it must not act on stale pids later.
  try {
    reaper?.kill("SIGKILL");
  } catch {
    // already gone
  }
  reaper = undefined;
  for (const [pid] of liveChildren) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  if (process.env["GLYPHSCAN_KEEP_TMP"]) return;
  for (const server of liveServers) {
    try {
      fs.rmSync(server.dir, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
  liveServers.clear();
}

/** Stops every server this process started (gracefully, in parallel). Also runs, synchronously and forcefully, at process exit. */
export async function stopAll(): Promise<void> {
  await Promise.all([...liveServers].map((server) => server.stop()));
}

// ---------------------------------------------------------------------------

interface ServerSpec {
  kind: string;
  scheme: string;
  /** URL suffix after host:port, e.g. "/" for MongoDB. */
  urlSuffix?: string;
  command: string;
  /** Writes config files for `port` (called before every start) and returns the argv. */
  prepare(port: number, dir: string): Promise<string[]>;
  /** Resolves true once the server answers its protocol on `port`. */
  ready(port: number): Promise<boolean>;
}

class ServerImpl implements ManagedServer {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  readonly logFile: string;
  private readonly spec: ServerSpec;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(spec: ServerSpec, dir: string, port: number) {
    this.spec = spec;
    this.dir = dir;
    this.logFile = path.join(dir, `${spec.kind}.log`);
    this.port = port;
    this.name = `${spec.kind}:${port}`;
    this.url = `${spec.scheme}://127.0.0.1:${port}${spec.urlSuffix ?? ""}`;
  }

  /** Spawns the process and waits until it is ready; rejects (after killing it) if it is not. */
  async start(): Promise<void> {
    if (this.stopped) throw new Error(`${this.name} was stopped; start a new server instead`);
    installHooks();
    if (!liveServers.has(this)) {
      liveServers.add(this);
      if (!process.env["GLYPHSCAN_KEEP_TMP"]) reaperSend(`+dir:${this.dir}`);
    }
    const args = await this.spec.prepare(this.port, this.dir);
    const logFd = fs.openSync(this.logFile, "a");
    let child: ChildProcess;
    try {
      fs.writeSync(logFd, `\n==== ${new Date().toISOString()} starting ${this.spec.command} ${args.join(" ")}\n`);
      child = spawn(this.spec.command, args, { cwd: this.dir, stdio: ["ignore", logFd, logFd] });
    } finally {
      fs.closeSync(logFd);
    }
    this.child = child;
    let exitInfo: string | undefined;
    this.exited = new Promise<void>((resolve) => {
      child.once("exit", (code, signal) => {
        exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        if (child.pid !== undefined) {
          liveChildren.delete(child.pid);
          reaperSend(`-${child.pid}`);
        }
        if (this.child === child) this.child = undefined;
        resolve();
      });
      child.once("error", (err) => {
        exitInfo = `spawn error: ${err.message}`;
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    if (child.pid !== undefined) {
      liveChildren.set(child.pid, child);
      reaperSend(`+${child.pid}`);
    }
    // Do not let a forgotten server keep the test process alive; exit hooks kill it.
    child.unref();

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exitInfo !== undefined) {
        throw new Error(
          `${this.name} exited (${exitInfo}) before it was ready; log ${this.logFile}:\n${await logTail(this.logFile)}`,
        );
      }
      if (await this.spec.ready(this.port)) return;
      if (Date.now() > deadline) {
        await this.terminate("SIGKILL");
        throw new Error(
          `${this.name} did not answer on 127.0.0.1:${this.port} within ${READY_TIMEOUT_MS} ms; log ${this.logFile}:\n${await logTail(this.logFile)}`,
        );
      }
      await sleep(100);
    }
  }

  /** Sends `signal` to the running process (if any) and waits for it to exit. */
  private async terminate(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer); // a pending timer would keep the test process alive for STOP_TIMEOUT_MS
    if (timedOut) {
      child.kill("SIGKILL");
      await this.exited;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.terminate("SIGTERM");
    liveServers.delete(this);
    if (!process.env["GLYPHSCAN_KEEP_TMP"]) {
      await fsp.rm(this.dir, { recursive: true, force: true });
      reaperSend(`-dir:${this.dir}`);
    }
  }

  async kill(): Promise<void> {
    await this.terminate("SIGKILL");
  }

  async restart(): Promise<void> {
    if (this.stopped) throw new Error(`${this.name} was stopped; it cannot be restarted`);
    await this.terminate("SIGTERM");
    await this.start();
  }
}

/** Creates the temp dir, picks a port and starts; retries on a fresh port if someone grabbed ours. */
async function launch(spec: ServerSpec): Promise<ManagedServer> {
  for (let attempt = 1; ; attempt++) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `glyphscan-${spec.kind}-`));
    const server = new ServerImpl(spec, dir, await freePort());
    try {
      await server.start();
      return server;
    } catch (err) {
      const log = await logTail(server.logFile);
      await server.stop();
      if (attempt < 3 && /address already in use/i.test(log)) continue;
      throw err;
    }
  }
}

/**
 * Starts a nats-server on a free port (`nats://127.0.0.1:PORT`), with JetStream
 * (file store in its temp dir) unless `jetstream: false`. `configText` is appended
 * to the generated nats.conf.
 */
export async function startNats(opts: NatsOptions = {}): Promise<ManagedServer> {
  const command = await tool("NATS_SERVER");
  const jetstream = opts.jetstream ?? true;
  return launch({
    kind: "nats",
    scheme: "nats",
    command,
    async prepare(port, dir) {
      const conf = path.join(dir, "nats.conf");
      const lines = [
        `listen: "127.0.0.1:${port}"`,
        `server_name: "harness-${port}"`,
        // nats-server keeps its files in <store_dir>/jetstream.
        jetstream ? `jetstream { store_dir: ${JSON.stringify(dir)} }` : "",
        opts.configText ?? "",
      ];
      await fsp.writeFile(conf, `${lines.join("\n")}\n`);
      return ["-c", conf];
    },
    // The INFO line is sent once the accept loop runs, i.e. after JetStream recovered its streams.
    ready: (port) => probe(port, undefined, (text) => text.startsWith("INFO ") && text.includes("\n")),
  });
}

/**
 * Starts a redis-server on a free port (`redis://127.0.0.1:PORT`), without
 * persistence (`--save "" --appendonly no`, like the dev stack): a restart
 * brings back an empty server.
 */
export async function startRedis(): Promise<ManagedServer> {
  const command = await tool("REDIS_SERVER");
  return launch({
    kind: "redis",
    scheme: "redis",
    command,
    async prepare(port, dir) {
      // prettier-ignore
      return [
        "--port", String(port),
        "--bind", "127.0.0.1",
        "--dir", dir,
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", "",
      ];
    },
    ready: (port) => probe(port, "PING\r\n", (text) => text.startsWith("+PONG")),
  });
}

/**
 * Starts a MongoDB-wire server on a free port (`mongodb://127.0.0.1:PORT/`):
 * FerretDB with its SQLite backend in the temp dir, or `mongod` when
 * install-tools chose it. Data survives kill()/restart().
 */
export async function startMongo(): Promise<ManagedServer> {
  const [command, kind] = await Promise.all([tool("MONGO_SERVER"), tool("MONGO_KIND")]);
  return launch({
    kind: "mongo",
    scheme: "mongodb",
    urlSuffix: "/",
    command,
    async prepare(port, dir) {
      if (kind === "mongod") {
        const dbpath = path.join(dir, "db");
        await fsp.mkdir(dbpath, { recursive: true });
        // prettier-ignore
        return [
          "--dbpath", dbpath,
          "--port", String(port),
          "--bind_ip", "127.0.0.1",
          "--nounixsocket",
          "--wiredTigerCacheSizeGB", "0.25",
          "--setParameter", "diagnosticDataCollectionEnabled=false",
        ];
      }
      const data = path.join(dir, "data");
      const state = path.join(dir, "state");
      await fsp.mkdir(data, { recursive: true });
      await fsp.mkdir(state, { recursive: true });
      return [
        "--handler=sqlite",
        `--sqlite-url=file:${data}/`,
        `--state-dir=${state}`,
        "--telemetry=disable",
        "--debug-addr=-",
        `--listen-addr=127.0.0.1:${port}`,
      ];
    },
    ready: mongoPing,
  });
}

/** TCP accept first (cheap), then a real driver `ping`. */
async function mongoPing(port: number): Promise<boolean> {
  if (!(await canConnect(port))) return false;
  const { MongoClient } = await import("mongodb");
  const client = new MongoClient(`mongodb://127.0.0.1:${port}/`, {
    serverSelectionTimeoutMS: 1000,
    connectTimeoutMS: 1000,
    directConnection: true,
  });
  try {
    await client.db("admin").command({ ping: 1 });
    return true;
  } catch {
    return false;
  } finally {
    await client.close().catch(() => {});
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

// ---------------------------------------------------------------------------
// Several NATS clusters joined into one supercluster, for region tests.

/** Options for {@link startSupercluster}. */
export interface SuperclusterOptions {
  /** One single-server NATS cluster per name, joined by gateways. At least 3 so a cut leaves a majority. */
  clusters: readonly string[];
}

/** A running supercluster: one server per cluster, each able to be cut off and brought back. */
export interface Supercluster {
  /** Cluster name → its server. `kill()` cuts the cluster off; `restart()` brings it back on the same ports and store. */
  readonly servers: Readonly<Record<string, ManagedServer>>;
  /** Cluster name → client URL of its server. */
  readonly urls: Readonly<Record<string, string>>;
  stop(): Promise<void>;
}

/**
 * Starts one nats-server per cluster name, each a one-server cluster "NAME" with JetStream, tagged
 * `region:NAME`, joined to the others through gateways: one JetStream meta group over all of them,
 * streams placed per cluster or tag. Ports are fixed at start so a restarted server comes back
 * where the others' gateways look for it. Resolves once JetStream answers on every server.
 */
export async function startSupercluster(opts: SuperclusterOptions): Promise<Supercluster> {
  const command = await tool("NATS_SERVER");
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(
      opts.clusters.map(async () => ({ client: await freePort(), route: await freePort(), gateway: await freePort() })),
    );
    const gateways = opts.clusters
      .map((name, i) => `    { name: "${name}", urls: ["nats://127.0.0.1:${ports[i]!.gateway}"] }`)
      .join("\n");
    const made: ServerImpl[] = [];
    try {
      for (const [i, name] of opts.clusters.entries()) {
        const p = ports[i]!;
        const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `glyphscan-nats-${name}-`));
        const spec: ServerSpec = {
          kind: `nats-${name}`,
          scheme: "nats",
          command,
          async prepare(port, d) {
            const conf = path.join(d, "nats.conf");
            await fsp.writeFile(
              conf,
              [
                `listen: "127.0.0.1:${port}"`,
                `server_name: "${name}1"`,
                `server_tags: ["region:${name}"]`,
                `jetstream { store_dir: ${JSON.stringify(d)} }`,
                // A one-server cluster needs a route (to itself) for clustered JetStream.
                `cluster { name: "${name}", listen: "127.0.0.1:${p.route}", routes: ["nats://127.0.0.1:${p.route}"] }`,
                `gateway {\n  name: "${name}"\n  listen: "127.0.0.1:${p.gateway}"\n  gateways: [\n${gateways}\n  ]\n}`,
                "",
              ].join("\n"),
            );
            return ["-c", conf];
          },
          ready: (port) => probe(port, undefined, (text) => text.startsWith("INFO ") && text.includes("\n")),
        };
        made.push(new ServerImpl(spec, dir, p.client));
      }
      await Promise.all(made.map((s) => s.start()));
      const servers = Object.fromEntries(opts.clusters.map((name, i) => [name, made[i]!]));
      const urls = Object.fromEntries(opts.clusters.map((name, i) => [name, made[i]!.url]));
      await Promise.all(made.map((s) => waitForJetStream(s.url)));
      return { servers, urls, stop: async () => void (await Promise.all(made.map((s) => s.stop()))) };
    } catch (err) {
      const logs = await Promise.all(made.map((s) => logTail(s.logFile)));
      await Promise.all(made.map((s) => s.stop()));
      if (attempt < 3 && logs.some((log) => /address already in use/i.test(log))) continue;
      throw err;
    }
  }
}

/** Resolves once a JetStream API call through the server at `url` answers (meta leader elected). */
export async function waitForJetStream(url: string, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager } = await import("@nats-io/jetstream");
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const nc = await connect({ servers: url, reconnect: false }).catch((err: unknown) => {
      last = err;
      return undefined;
    });
    if (nc) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2_000 });
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        last = err;
      } finally {
        await nc.close().catch(() => undefined);
      }
    }
    await sleep(200);
  }
  throw new Error(`JetStream at ${url} did not answer within ${timeoutMs} ms: ${String(last)}`);
}
