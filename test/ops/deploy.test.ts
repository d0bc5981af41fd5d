/**
 * The deployment files under ops/deploy: the compose file passes `docker compose config` and
 * names both regions' services; the Kubernetes manifests, as `kustomize build` makes them from the base and
 * each region's overlay, pass the schema check of
 * kubernetes-models (and KEDA's models), with no field the schema does not know; every GLYPHSCAN_*
 * variable they set is a real setting that loads; the KEDA trigger names the job stream and
 * consumer that protocol/subjects.ts builds for the region; pods and the image run as non-root;
 * the NATS configs really form a two-region supercluster; the image's health check and the
 * runbook's metric names and commands are real.
 */
import test, { type ExecutionContext } from "ava";
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import { builtinModules } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import { ConfigMap, Namespace, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { ROLES, configFields, loadConfig, type Config } from "../../config/mod.ts";
import { buckets, consumers, streams } from "../../protocol/mod.ts";
import { freePort, startNats, toolPaths, type ManagedServer } from "../harness/servers.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DEPLOY = path.join(ROOT, "ops/deploy");
const COMPOSE_FILE = path.join(DEPLOY, "compose.yaml");
const REGIONS = ["eu", "us"] as const;
const ENV_NAMES = new Set(configFields().map((f) => f.env));
/** Settings that are secrets: never a literal value in a committed file. */
const SECRET_ENV = [
  "GLYPHSCAN_NATS_PASS",
  "GLYPHSCAN_API_JWT_SECRET",
  "GLYPHSCAN_LICENSING_TOKEN",
  "GLYPHSCAN_MONGO_URL",
];
/** Each generated NATS user's password variable (ops/deploy/nats/auth.conf) gets a test value of its own. */
const natsPasswordVars = () =>
  [...readFileSync(path.join(DEPLOY, "nats", "auth.conf"), "utf8").matchAll(/password: \$(\w+)$/gm)].map((m) => m[1]!);
const COMPOSE_SECRETS: { MONGO_PASSWORD: string; GLYPHSCAN_API_JWT_SECRET: string; [v: string]: string } = {
  MONGO_PASSWORD: "mongo-test-pass",
  GLYPHSCAN_API_JWT_SECRET: "jwt-test-secret-of-at-least-32-characters",
  ...Object.fromEntries(natsPasswordVars().map((v) => [v, `test-pass-${v.toLowerCase()}`])),
};
/** The password variable of a generated NATS user (`control-eu` → `GLYPHSCAN_NATS_PASS_CONTROL_EU`). */
const natsPasswordVar = (user: string) => `GLYPHSCAN_NATS_PASS_${user.toUpperCase().replaceAll("-", "_")}`;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === "string" ? v : "");

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(cmd, args, { ...opts, maxBuffer: 32 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 127) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === 127 ? err.message : "") });
    });
  });
}

/** A config from environment strings as a pod or container would see them. */
function configFromEnv(env: Record<string, string>, overrides: Record<string, unknown> = {}): Config {
  return loadConfig({ env, overrides });
}

// ---------------------------------------------------------------------------------- compose

const INSTALL_HINT =
  "docker compose is not available. Run `bash ops/install-tools.sh compose` (builds Docker Compose v5 with Go into " +
  "~/.cache/glyphscan/bin and links it as ~/.docker/cli-plugins/docker-compose; `bash ops/install-tools.sh` does it " +
  "too), or install Docker's docker-compose-plugin package.";

/** `docker compose`, or our build run standalone where the docker CLI is missing. */
async function composeCommand(): Promise<{ cmd: string; args: string[] } | string> {
  const docker = await run("docker", ["compose", "version"]);
  if (docker.code === 0) return { cmd: "docker", args: ["compose"] };
  const tools = process.env["GLYPHSCAN_TOOLS"] ?? path.join(os.homedir(), ".cache/glyphscan/bin");
  const built = existsSync(tools) ? readdirSync(tools).filter((f) => f.startsWith("docker-compose-")) : [];
  for (const name of built.sort().reverse()) {
    const res = await run(path.join(tools, name), ["version"]);
    if (res.code === 0) return { cmd: path.join(tools, name), args: [] };
  }
  return `${INSTALL_HINT}\n(\`docker compose version\`: ${(docker.stderr || docker.stdout).trim().split("\n")[0]})`;
}

/** Runs `docker compose -f ops/deploy/compose.yaml … config` with only the given variables (no .env file). */
async function composeConfig(t: ExecutionContext, vars: Record<string, string>, extra: string[] = []) {
  const compose = await composeCommand();
  if (typeof compose === "string") {
    t.fail(compose);
    return undefined;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "glyphscan-compose-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const envFile = path.join(dir, "empty.env");
  writeFileSync(envFile, "");
  const env: NodeJS.ProcessEnv = { PATH: process.env["PATH"], HOME: process.env["HOME"], ...vars };
  if (process.env["DOCKER_CONFIG"]) env["DOCKER_CONFIG"] = process.env["DOCKER_CONFIG"];
  const args = [...compose.args, "-f", COMPOSE_FILE, "--env-file", envFile, "--profile", "tools", "config", ...extra];
  return run(compose.cmd, args, { env, cwd: dir });
}

interface ComposeService {
  image?: string;
  command?: string[];
  environment?: Record<string, string | null>;
  build?: unknown;
  deploy?: { replicas?: number };
  stop_grace_period?: string;
  shm_size?: string | number;
  container_name?: string;
  healthcheck?: { test?: string[]; disable?: boolean };
}

const glyphscanServices = (services: Record<string, ComposeService>) =>
  Object.entries(services).filter(([, s]) => s.build !== undefined);

/** "1m0s", "60s", "1m30s" → ms. */
function durationMs(d: string): number {
  let ms = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|[hms])/gy)) {
    ms += Number(m[1]) * { h: 3_600_000, m: 60_000, s: 1_000, ms: 1 }[m[2] as "h" | "m" | "s" | "ms"];
  }
  return ms;
}

test("docker compose config passes and names every service of both regions", async (t) => {
  const res = await composeConfig(t, COMPOSE_SECRETS, ["--format", "json"]);
  if (!res) return;
  t.is(res.code, 0, res.stderr);
  const config = JSON.parse(res.stdout) as { services: Record<string, ComposeService> };
  const services = config.services;
  for (const name of ["redis", "mongo", "otel-collector", "jaeger", "cli"]) t.truthy(services[name], name);
  for (const r of REGIONS) {
    for (const name of [`nats-${r}`, `control-${r}`, `scanner-${r}`, `api-${r}`]) t.truthy(services[name], name);
  }

  const nodes = glyphscanServices(services);
  t.true(nodes.length >= 7);
  for (const [name, s] of nodes) {
    const env = s.environment ?? {};
    for (const key of Object.keys(env)) {
      if (key.startsWith("GLYPHSCAN_"))
        t.true(ENV_NAMES.has(key), `${name}: ${key} is not a setting of config/schema.ts`);
    }
    // Compose leaves a variable without a value out of the container: so does this.
    const set = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== null));
    const cfg = configFromEnv(set);
    const region = name.split("-").pop()!;
    const command = s.command ?? [];
    if (name !== "cli") {
      t.is(cfg.region, region, `${name}: GLYPHSCAN_REGION`);
      t.deepEqual(cfg.nats.servers, [`nats://nats-${region}:4222`], `${name}: its own region's NATS`);
    }
    t.deepEqual([...cfg.regions].sort(), [...REGIONS]);
    t.is(cfg.nats.placement, "cluster", `${name}: streams placed in the region's NATS cluster`);
    t.is(cfg.api.jwtSecret ?? COMPOSE_SECRETS.GLYPHSCAN_API_JWT_SECRET, COMPOSE_SECRETS.GLYPHSCAN_API_JWT_SECRET);
    t.truthy(cfg.nats.user, `${name}: logs in as a NATS user of its own`);
    t.is(cfg.nats.pass, COMPOSE_SECRETS[natsPasswordVar(cfg.nats.user ?? "")], `${name}: its user's NATS password`);
    t.true(cfg.mongo.url.includes(COMPOSE_SECRETS.MONGO_PASSWORD), `${name}: Mongo password from the environment`);
    t.truthy(cfg.telemetry.otlpEndpoint?.startsWith("http://otel-collector:4318/"), `${name}: traces to the collector`);
    if (command[0] === "node") {
      const at = command.indexOf("--region");
      t.is(command[at + 1], region, `${name}: --region`);
      const roles = command[command.indexOf("--roles") + 1]!.split(",");
      for (const role of roles) t.true((ROLES as readonly string[]).includes(role), `${name}: role ${role}`);
      // Long-running nodes drain on SIGTERM; compose must wait longer than the drain.
      t.true(
        durationMs(s.stop_grace_period ?? "10s") >= cfg.actors.drainTimeoutMs + 15_000,
        `${name}: stop_grace_period ${s.stop_grace_period} vs drain ${cfg.actors.drainTimeoutMs} ms`,
      );
      t.truthy(cfg.telemetry.metricsPort, `${name}: metrics served (health check, collector scrape)`);
    }
  }
  // Every role of the pipeline runs in each region.
  for (const r of REGIONS) {
    const roles = nodes
      .filter(([name]) => name.endsWith(`-${r}`))
      .flatMap(([, s]) => {
        const c = s.command ?? [];
        return c[0] === "node" ? c[c.indexOf("--roles") + 1]!.split(",") : [];
      });
    t.deepEqual([...new Set(roles)].sort(), [...ROLES].sort(), `region ${r} runs every role`);
    t.deepEqual(services[`api-${r}`]!.command, ["api"]);
    t.is(services[`api-${r}`]!.environment?.["GLYPHSCAN_API_JWT_SECRET"], COMPOSE_SECRETS.GLYPHSCAN_API_JWT_SECRET);
  }
  // Scanners scale: replicas set, no fixed container name, room for Chromium's shared memory.
  for (const r of REGIONS) {
    const s = services[`scanner-${r}`]!;
    t.true((s.deploy?.replicas ?? 0) >= 1);
    t.is(s.container_name, undefined);
    t.true(Number(s.shm_size) >= 256 * 1024 * 1024, `scanner-${r}: shm_size ${s.shm_size}`);
  }
});

test("docker compose config refuses to run without the secrets and names each one", async (t) => {
  const res = await composeConfig(t, {}, ["--quiet"]);
  if (!res) return;
  t.not(res.code, 0);
  for (const v of Object.keys(COMPOSE_SECRETS)) t.regex(res.stderr, new RegExp(`required variable ${v} is missing`));
});

test("the compose file commits no secret value", (t) => {
  const text = readFileSync(COMPOSE_FILE, "utf8");
  const doc = parse(text, { merge: true }) as { services: Record<string, ComposeService> };
  for (const [name, s] of Object.entries(doc.services)) {
    for (const [key, value] of Object.entries(s.environment ?? {})) {
      if (!SECRET_ENV.includes(key) && !/PASSWORD|SECRET|TOKEN/.test(key)) continue;
      if (value === null) continue; // passed through from the environment when set there
      // Otherwise only interpolated from the environment, never a literal.
      const literal = value.replace(/\$\{[^}]*\}/g, "");
      if (key === "GLYPHSCAN_MONGO_URL") {
        t.regex(value, /\/\/[^:/@]+:\$\{MONGO_PASSWORD:\?[^}]*\}@/, `${name}.${key}: password from the environment`);
        t.notRegex(literal, /\/\/[^:/@]+:[^@]+@/, `${name}.${key}: a literal password`);
      } else {
        t.is(literal, "", `${name}.${key} has a literal value`);
      }
    }
  }
  const example = readFileSync(path.join(DEPLOY, ".env.example"), "utf8");
  for (const line of example.split("\n").filter((l) => /^[A-Z_]+=/.test(l))) {
    t.regex(line, /^[A-Z_]+=$/, `.env.example carries no value: ${line}`);
  }
  for (const v of Object.keys(COMPOSE_SECRETS)) t.regex(example, new RegExp(`^${v}=$`, "m"), `.env.example names ${v}`);
  const ignored = readFileSync(path.join(ROOT, ".gitignore"), "utf8");
  t.regex(ignored, /^ops\/deploy\/\.env$/m, ".env is ignored by git");
});

// ---------------------------------------------------------------------------------- NATS

function natsConf(region: string): string {
  return readFileSync(path.join(DEPLOY, "nats", `${region}.conf`), "utf8");
}

/** The generated NATS users every region's config includes (`npm run nats:auth`). */
const AUTH_CONF = path.join(DEPLOY, "nats", "auth.conf");
/** The environment variables auth.conf takes its passwords from. */

test("each region's NATS config: cluster, gateway and tag named after the region, gateways to every region", (t) => {
  for (const r of REGIONS) {
    const conf = natsConf(r);
    t.regex(conf, new RegExp(`cluster \\{[^}]*\\bname: ${r}\\n`, "s"), `${r}: cluster name`);
    t.regex(conf, new RegExp(`gateway \\{\\s*name: ${r}\\n`, "s"), `${r}: gateway name`);
    t.regex(conf, new RegExp(`server_tags: \\["region:${r}"\\]`), `${r}: server tag`);
    t.regex(conf, /jetstream \{/);
    t.regex(conf, /^include "auth.conf"$/m, `${r}: the generated users`);
    for (const other of REGIONS) {
      t.regex(conf, new RegExp(`\\{ name: ${other}, urls: \\["nats://nats-${other}:7222"\\] \\}`), `${r} → ${other}`);
    }
  }
});

/**
 * The committed configs with the compose hostnames and fixed ports replaced by loopback ports,
 * so both servers run side by side here. Each replacement must apply exactly once.
 */
function localConf(t: ExecutionContext, region: string, ports: Record<string, Record<string, number>>, store: string) {
  let conf = natsConf(region);
  const replace = (from: RegExp, to: string) => {
    const all = new RegExp(from.source, `${from.flags}g`);
    t.true((conf.match(all)?.length ?? 0) >= 1, `${region}.conf: ${from} not found`);
    conf = conf.replace(all, to);
  };
  const p = ports[region]!;
  replace(/^listen: 0\.0\.0\.0:4222$/m, ""); // the harness writes the client listen line
  replace(/^http: 0\.0\.0\.0:8222/m, `http: 127.0.0.1:${p["http"]}`);
  replace(/^ {2}listen: 0\.0\.0\.0:6222$/m, `  listen: 127.0.0.1:${p["route"]}`);
  replace(/^ {2}listen: 0\.0\.0\.0:7222$/m, `  listen: 127.0.0.1:${p["gateway"]}`);
  replace(/store_dir: \/data\/jetstream/, `store_dir: ${JSON.stringify(store)}`);
  for (const r of REGIONS) {
    replace(new RegExp(`nats://nats-${r}:7222`), `nats://127.0.0.1:${ports[r]!["gateway"]}`);
    if (r === region) replace(new RegExp(`nats://nats-${r}:6222`), `nats://127.0.0.1:${ports[r]!["route"]}`);
  }
  // The harness runs the config from a directory of its own, and nats-server reads an include
  // relative to the config: the users file goes in its place, as it is.
  replace(/^include "auth.conf"$/m, readFileSync(AUTH_CONF, "utf8").replaceAll("$", "$$$$"));
  t.false(/nats-(?:eu|us):|0\.0\.0\.0/.test(conf), `${region}.conf: an address left unmapped`);
  return conf;
}

test("the NATS configs form one supercluster: a stream placed in the other region is reachable", async (t) => {
  const pass = "gateway-test-pass";
  // nats-server reads each user's $GLYPHSCAN_NATS_PASS_<USER> from its environment, as in compose.
  const vars = natsPasswordVars();
  t.true(vars.includes("GLYPHSCAN_NATS_PASS_OPERATOR"), vars.join(", "));
  for (const v of vars) process.env[v] = pass;
  const ports: Record<string, Record<string, number>> = {};
  for (const r of REGIONS) ports[r] = { http: await freePort(), route: await freePort(), gateway: await freePort() };
  const servers: ManagedServer[] = [];
  const stores: string[] = [];
  t.teardown(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    for (const d of stores) rmSync(d, { recursive: true, force: true });
  });
  for (const r of REGIONS) {
    const dir = mkdtempSync(path.join(os.tmpdir(), `glyphscan-deploy-nats-${r}-`));
    stores.push(dir);
    // Appended to the harness's config (client port, a server name that ours overrides).
    servers.push(await startNats({ jetstream: false, configText: localConf(t, r, ports, path.join(dir, "js")) }));
  }
  const [eu, us] = servers as [ManagedServer, ManagedServer];

  // Without the password the server refuses the client.
  await t.throwsAsync(connect({ servers: eu.url, reconnect: false }));

  const nc = await connect({ servers: eu.url, user: "operator", pass, reconnect: false });
  t.teardown(() => nc.close());
  // JetStream answers once both servers have formed the meta group over the gateway.
  const deadline = Date.now() + 30_000;
  let info: Awaited<ReturnType<Awaited<ReturnType<typeof jetstreamManager>>["streams"]["add"]>> | undefined;
  let last: unknown;
  while (!info && Date.now() < deadline) {
    try {
      const jsm = await jetstreamManager(nc, { timeout: 3_000 });
      info = await jsm.streams.add({
        name: "DEPLOY_TEST_US",
        subjects: ["deploytest.us"],
        placement: { cluster: "us", tags: [] },
      });
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  t.truthy(info, `stream placed in cluster "us" through a client of "eu": ${String(last)}`);
  t.is(info?.cluster?.name, "us");
  const jsm = await jetstreamManager(nc);
  await nc.flush();
  const ack = await jsm.jetstream().publish("deploytest.us", "hello");
  t.is(ack.stream, "DEPLOY_TEST_US");
  const gw = (await (await fetch(`http://127.0.0.1:${ports["eu"]!["http"]}/gatewayz`)).json()) as {
    name: string;
    outbound_gateways?: Record<string, unknown>;
  };
  t.is(gw.name, "eu");
  const varz = (await (await fetch(`http://127.0.0.1:${ports["eu"]!["http"]}/varz`)).json()) as { server_name: string };
  t.is(varz.server_name, "nats-eu-1", "the committed config, not the harness's, names the server");
  t.truthy(gw.outbound_gateways?.["us"], "eu has an outbound gateway to us");
  t.truthy(us.url);
});

// ---------------------------------------------------------------------------------- OpenTelemetry

test("the collector receives the nodes' OTLP traces, exports them to Jaeger and scrapes every node", async (t) => {
  const col = parse(readFileSync(path.join(DEPLOY, "otel-collector.yaml"), "utf8")) as Obj;
  const compose = parse(readFileSync(COMPOSE_FILE, "utf8"), { merge: true }) as {
    services: Record<string, ComposeService>;
    "x-glyphscan-env": Record<string, string>;
  };
  const otlp = new URL(compose["x-glyphscan-env"]["GLYPHSCAN_TELEMETRY_OTLP_ENDPOINT"]!);
  t.truthy(compose.services[otlp.hostname], "the OTLP endpoint is a compose service");
  t.is(otlp.pathname, "/v1/traces");
  const receivers = obj(col["receivers"]);
  t.is(
    str(obj(obj(obj(receivers["otlp"])["protocols"])["http"])["endpoint"])
      .split(":")
      .pop(),
    otlp.port,
  );
  const pipelines = obj(obj(col["service"])["pipelines"]);
  const traces = obj(pipelines["traces"]);
  t.deepEqual(traces["receivers"], ["otlp"]);
  const exporters = obj(col["exporters"]);
  for (const name of arr(traces["exporters"])) {
    const endpoint = str(obj(exporters[str(name)])["endpoint"]);
    const host = endpoint.replace(/^https?:\/\//, "").split(":")[0]!;
    t.truthy(compose.services[host], `trace exporter ${String(name)} → ${host} is a compose service`);
  }
  t.truthy(compose.services["jaeger"]);
  // The metrics scrape covers every long-running glyphscan service, at the port they serve.
  const scrape = arr(obj(obj(receivers["prometheus"])["config"])["scrape_configs"]).map(obj);
  const dns = scrape.flatMap((s) => arr(s["dns_sd_configs"]).map(obj));
  const names = new Set(dns.flatMap((d) => arr(d["names"]).map(str)));
  const port = Number(compose["x-glyphscan-env"]["GLYPHSCAN_TELEMETRY_METRICS_PORT"]);
  for (const d of dns) t.is(d["port"], port);
  for (const [name, s] of Object.entries(compose.services)) {
    if (s.build !== undefined && name !== "cli") t.true(names.has(name), `collector scrapes ${name}`);
  }
});

// ---------------------------------------------------------------------------------- Kubernetes

interface Validatable {
  validate(): void;
}
type ModelClass = (new (data: never) => Validatable) & { prototype: Validatable };
const MODELS: Record<string, ModelClass> = {
  "v1/Namespace": Namespace,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
};

/**
 * Fields the schema does not know (a typo such as `terminationGracePeriodSecond`): the generated
 * validators read every property their schema declares, so the validator runs on a proxy that
 * records each read, and a key of an object with declared properties that was never read is
 * unknown. Objects the validator enumerates (maps such as labels) or never looks into are skipped.
 */
function unknownFields(model: ModelClass, doc: unknown): string[] {
  const tracks = new Map<object, { read: Set<string>; enumerated: boolean }>();
  const proxies = new Map<object, object>();
  const wrap = (value: unknown): unknown => {
    if (typeof value !== "object" || value === null) return value;
    const known = proxies.get(value);
    if (known) return known;
    const track = { read: new Set<string>(), enumerated: false };
    tracks.set(value, track);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        const v: unknown = Reflect.get(target, key, receiver);
        if (typeof key !== "string" || !Object.hasOwn(target, key)) return v;
        track.read.add(key);
        return wrap(v);
      },
      ownKeys(target) {
        track.enumerated = true;
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  try {
    model.prototype.validate.call(wrap(doc));
  } catch {
    // Schema errors are reported by the plain validate(); here only unread keys matter.
  }
  const found: string[] = [];
  const walk = (value: unknown, at: string) => {
    if (Array.isArray(value)) return value.forEach((v, i) => walk(v, `${at}/${i}`));
    if (!isObj(value)) return;
    const track = tracks.get(value);
    if (!track) return;
    for (const [key, child] of Object.entries(value)) {
      if (!track.enumerated && track.read.size > 0 && !track.read.has(key)) found.push(`${at}/${key}`);
      else walk(child, `${at}/${key}`);
    }
  };
  walk(doc, "");
  return found;
}

interface K8sDoc {
  file: string;
  doc: Obj;
  kind: string;
  name: string;
}

const KUSTOMIZE_DIR = path.join(DEPLOY, "k8s");
const built = new Map<string, Promise<K8sDoc[]>>();

/** A region's manifests as `kustomize build ops/deploy/k8s/overlays/<region>` prints them (base + overlay). */
function loadRegion(region: string): Promise<K8sDoc[]> {
  let docs = built.get(region);
  if (!docs) {
    docs = buildOverlay(region);
    built.set(region, docs);
  }
  return docs;
}

async function buildOverlay(region: string): Promise<K8sDoc[]> {
  const kustomize = (await toolPaths())["KUSTOMIZE"];
  if (!kustomize) throw new Error("ops/install-tools.sh paths did not report KUSTOMIZE");
  const res = await run(kustomize, ["build", path.join(KUSTOMIZE_DIR, "overlays", region)]);
  if (res.code !== 0) throw new Error(`kustomize build overlays/${region} failed:\n${res.stderr}`);
  const out: K8sDoc[] = [];
  for (const d of parseAllDocuments(res.stdout)) {
    if (d.errors.length > 0) throw new Error(`overlays/${region}: ${d.errors.map((e) => e.message).join("; ")}`);
    const o = obj(d.toJS() as unknown);
    const kind = str(o["kind"]);
    const name = str(obj(o["metadata"])["name"]);
    out.push({ file: `overlays/${region} ${kind}`, doc: o, kind, name });
  }
  return out;
}

const podSpec = (d: K8sDoc) => obj(obj(obj(d.doc["spec"])["template"])["spec"]);
const containers = (d: K8sDoc) => arr(podSpec(d)["containers"]).map(obj);
const podLabels = (d: K8sDoc) => obj(obj(obj(obj(d.doc["spec"])["template"])["metadata"])["labels"]);
const matches = (selector: Obj, labels: Obj) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** The environment a container sees: its ConfigMap, its own values, and a stand-in for each secret. */
function containerEnv(t: ExecutionContext, d: K8sDoc, c: Obj, configMaps: Map<string, Obj>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of arr(c["envFrom"]).map(obj)) {
    const ref = str(obj(from["configMapRef"])["name"]);
    const data = configMaps.get(ref);
    t.truthy(data, `${d.file} ${d.name}: ConfigMap ${ref} is defined`);
    Object.assign(env, data);
    t.falsy(from["secretRef"], `${d.file}: secrets by explicit key only`);
  }
  for (const e of arr(c["env"]).map(obj)) {
    const name = str(e["name"]);
    const from = obj(e["valueFrom"]);
    if (from["secretKeyRef"]) {
      t.is(str(obj(from["secretKeyRef"])["name"]), "glyphscan-secrets", `${d.file} ${name}: secret reference`);
      if (obj(from["secretKeyRef"])["optional"] === true) continue;
      env[name] = name === "GLYPHSCAN_MONGO_URL" ? "mongodb://u:p@mongo:27017/" : `secret-of-${name}`;
    } else if (from["fieldRef"]) {
      env[name] = d.name.replace(/[^\w-]/g, "-") + "-7d9f8b6c5-abcde";
    } else {
      t.true(typeof e["value"] === "string", `${d.file} ${name}: a string value`);
      env[name] = str(e["value"]);
    }
  }
  return env;
}

test("every Kubernetes manifest passes the schema check, with no unknown field", async (t) => {
  let checked = 0;
  for (const r of REGIONS) {
    for (const d of await loadRegion(r)) {
      const apiVersion = str(d.doc["apiVersion"]);
      const model = MODELS[`${apiVersion}/${d.kind}`];
      if (!model) {
        t.fail(`${d.file}: ${apiVersion} ${d.kind} has no model to check it against`);
        continue;
      }
      t.notThrows(
        () => new (model as unknown as new (data: unknown) => Validatable)(d.doc).validate(),
        `${d.file} ${d.kind}`,
      );
      t.deepEqual(unknownFields(model, d.doc), [], `${d.file} ${d.kind} ${d.name}: unknown fields`);
      checked++;
    }
  }
  t.true(checked >= 2 * 9, `checked ${checked} documents`);
});

test("the unknown-field check catches a misspelt field and a wrong type", async (t) => {
  const deployment = (await loadRegion("eu")).find((d) => d.kind === "Deployment")!;
  const copy = structuredClone(deployment.doc);
  const spec = obj(obj(obj(copy["spec"])["template"])["spec"]);
  spec["terminationGracePeriodSecond"] = 60;
  obj(arr(spec["containers"])[0])["imagePullPolicyy"] = "Always";
  t.deepEqual(unknownFields(Deployment, copy).sort(), [
    "/spec/template/spec/containers/0/imagePullPolicyy",
    "/spec/template/spec/terminationGracePeriodSecond",
  ]);
  const scaled = structuredClone((await loadRegion("eu")).find((d) => d.kind === "ScaledObject")!.doc);
  obj(scaled["spec"])["minReplicaCount"] = "1";
  t.throws(() => new ScaledObject(scaled as never).validate());
});

for (const region of REGIONS) {
  test(`Kubernetes ${region}: settings load, secrets by reference, non-root pods, drain fits the grace period`, async (t) => {
    const docs = await loadRegion(region);
    const ns = `glyphscan-${region}`;
    t.truthy(
      docs.find((d) => d.kind === "Namespace" && d.name === ns),
      `namespace ${ns}`,
    );
    for (const d of docs.filter((x) => x.kind !== "Namespace")) {
      t.is(str(obj(d.doc["metadata"])["namespace"]), ns, `${d.file} ${d.kind} ${d.name}: namespace`);
    }
    t.deepEqual(
      docs.filter((d) => d.kind === "Secret"),
      [],
      "no Secret with values is committed (config.yaml tells how to create it)",
    );
    const configMaps = new Map<string, Obj>();
    for (const d of docs.filter((x) => x.kind === "ConfigMap")) {
      const data = obj(d.doc["data"]);
      for (const key of Object.keys(data)) {
        t.true(ENV_NAMES.has(key), `${d.file}: ${key} is not a setting of config/schema.ts`);
        t.false(SECRET_ENV.includes(key), `${d.file}: ${key} is a secret, it belongs in the Secret`);
      }
      configMaps.set(d.name, data);
    }
    const dockerUid = Number(/^USER (\d+)/m.exec(readFileSync(path.join(DEPLOY, "Dockerfile"), "utf8"))?.[1]);

    const deployments = docs.filter((d) => d.kind === "Deployment");
    t.true(deployments.length >= 3);
    const scannerOf = new Map<string, Config>();
    for (const d of deployments) {
      const pod = podSpec(d);
      const podSec = obj(pod["securityContext"]);
      t.is(podSec["runAsNonRoot"], true, `${d.name}: runAsNonRoot`);
      t.true(Number(podSec["runAsUser"]) > 0, `${d.name}: runAsUser`);
      t.is(podSec["runAsUser"], dockerUid, `${d.name}: the image's user`);
      for (const c of containers(d)) {
        const sec = obj(c["securityContext"]);
        t.is(sec["allowPrivilegeEscalation"], false, `${d.name}: allowPrivilegeEscalation`);
        t.deepEqual(obj(sec["capabilities"])["drop"], ["ALL"], `${d.name}: capabilities`);
        for (const e of arr(c["env"]).map(obj)) {
          const name = str(e["name"]);
          if (name.startsWith("GLYPHSCAN_")) t.true(ENV_NAMES.has(name), `${d.name}: ${name} is not a setting`);
          if (SECRET_ENV.includes(name))
            t.truthy(obj(e["valueFrom"])["secretKeyRef"], `${d.name}: ${name} from the Secret`);
        }
        const env = containerEnv(t, d, c, configMaps);
        const args = arr(c["args"]).map(str);
        const overrides: Record<string, unknown> = {};
        if (args[0] === "node") {
          // The region comes from the ConfigMap (the overlay's GLYPHSCAN_REGION) unless the args name one.
          if (args.includes("--region")) overrides["region"] = args[args.indexOf("--region") + 1];
          overrides["roles"] = args[args.indexOf("--roles") + 1]!.split(",");
        }
        const cfg = configFromEnv(env, overrides);
        t.is(cfg.region, region, `${d.name}: region`);
        t.is(cfg.nats.placement, "cluster");
        if (args[0] === "node") {
          t.true(
            Number(pod["terminationGracePeriodSeconds"]) * 1000 >= cfg.actors.drainTimeoutMs + 15_000,
            `${d.name}: terminationGracePeriodSeconds ${String(pod["terminationGracePeriodSeconds"])} vs drain ${cfg.actors.drainTimeoutMs} ms`,
          );
          t.truthy(cfg.telemetry.metricsPort, `${d.name}: serves the /metrics its probes ask`);
          if (cfg.roles.includes("scanner")) scannerOf.set(d.name, cfg);
        } else {
          t.deepEqual(args, ["api"], `${d.name}: the other workload is the API`);
          t.truthy(cfg.api.jwtSecret, "api: JWT secret from the Secret");
        }
      }
      const pdb = docs.find(
        (p) =>
          p.kind === "PodDisruptionBudget" &&
          matches(obj(obj(p.doc["spec"])["selector"])["matchLabels"] as Obj, podLabels(d)),
      );
      t.truthy(pdb, `${d.name}: has a PodDisruptionBudget`);
    }

    // Every role runs in the region.
    const roles = new Set(
      deployments.flatMap((d) =>
        containers(d).flatMap((c) => {
          const a = arr(c["args"]).map(str);
          return a[0] === "node" ? a[a.indexOf("--roles") + 1]!.split(",") : [];
        }),
      ),
    );
    t.deepEqual([...roles].sort(), [...ROLES].sort());

    // The API service reaches the API pods on a port they open.
    const svc = docs.find((d) => d.kind === "Service")!;
    const api = deployments.find((d) => matches(obj(obj(svc.doc["spec"])["selector"]), podLabels(d)));
    t.truthy(api, "the Service selects the API pods");
    const ports = containers(api!).flatMap((c) => arr(c["ports"]).map(obj));
    for (const p of arr(obj(svc.doc["spec"])["ports"]).map(obj)) {
      t.truthy(ports.find((cp) => cp["name"] === p["targetPort"] || cp["containerPort"] === p["targetPort"]));
    }

    // KEDA: the scanner's job consumer of this region, as protocol/subjects.ts names it.
    const scaled = docs.filter((d) => d.kind === "ScaledObject");
    t.is(scaled.length, 1);
    const so = obj(scaled[0]!.doc["spec"]);
    const target = str(obj(so["scaleTargetRef"])["name"]);
    const scannerCfg = scannerOf.get(target);
    t.truthy(scannerCfg, `ScaledObject targets the scanner Deployment (${target})`);
    t.deepEqual(scannerCfg?.roles, ["scanner"], "only scanners are scaled on the job lag");
    const scannerDeployment = deployments.find((d) => d.name === target)!;
    t.is(obj(scannerDeployment.doc["spec"])["replicas"], undefined, "KEDA owns the scanner replica count");
    const triggers = arr(so["triggers"]).map(obj);
    t.is(triggers.length, 1);
    t.is(triggers[0]!["type"], "nats-jetstream");
    const meta = obj(triggers[0]!["metadata"]);
    t.is(meta["stream"], streams.jobs(region));
    t.is(meta["consumer"], consumers.scanners);
    t.is(meta["account"], "$G");
    t.regex(str(meta["natsServerMonitoringEndpoint"]), /^[a-z0-9.-]+:8222$/, "the HTTP monitoring port, not 4222");
    const lag = Number(meta["lagThreshold"]);
    const cfg = scannerCfg!;
    t.true(Number(so["minReplicaCount"]) >= 1, "never zero scanners: the frontier dispatches only to live scanners");
    t.true(
      lag < cfg.scanner.concurrency * cfg.frontier.jobsPerScannerSlot,
      `lagThreshold ${lag} must be below concurrency × jobsPerScannerSlot (${cfg.scanner.concurrency} × ${cfg.frontier.jobsPerScannerSlot}), the most lag the frontier builds per pod, or scanners never scale up`,
    );
    t.true(
      Number(so["maxReplicaCount"]) * cfg.scanner.concurrency <= cfg.frontier.maxJobsInFlight,
      "maxReplicaCount × concurrency fits in frontier.maxJobsInFlight",
    );
    // Chromium's shared memory.
    const shm = arr(podSpec(scannerDeployment)["volumes"])
      .map(obj)
      .find((v) => obj(v["emptyDir"])["medium"] === "Memory");
    t.truthy(shm, "scanner mounts a memory-backed /dev/shm");
    t.truthy(
      containers(scannerDeployment).every((c) =>
        arr(c["volumeMounts"])
          .map(obj)
          .some((m) => m["mountPath"] === "/dev/shm" && m["name"] === shm?.["name"]),
      ),
    );
  });
}

test("both regions deploy the same objects", async (t) => {
  // The ConfigMap's name ends in a hash of its contents, which differ by region.
  const shape = async (r: string) =>
    (await loadRegion(r)).map(
      (d) =>
        `${d.kind} ${d.kind === "ConfigMap" ? d.name.replace(/-[a-z0-9]{10}$/, "") : d.name.replace(`-${r}`, "-<region>")}`,
    );
  t.deepEqual(await shape("us"), await shape("eu"));
  t.true((await shape("eu")).includes("ConfigMap glyphscan"));
});

test("the overlays differ only where a region must: namespace, region label and setting, job stream", async (t) => {
  const [eu, us] = await Promise.all([loadRegion("eu"), loadRegion("us")]);
  const normal = (docs: K8sDoc[], r: string) =>
    JSON.stringify(docs.map((d) => d.doc))
      .replaceAll(`glyphscan-${r}`, "glyphscan-<region>")
      .replaceAll(`"glyphscan.io/region":"${r}"`, `"glyphscan.io/region":"<region>"`)
      .replaceAll(`"GLYPHSCAN_REGION":"${r}"`, `"GLYPHSCAN_REGION":"<region>"`)
      .replaceAll(`"${streams.jobs(r)}"`, `"<job stream>"`)
      .replace(/"glyphscan-[a-z0-9]{10}"/g, `"glyphscan-<hash>"`);
  t.is(normal(us, "us"), normal(eu, "eu"));
  // Nothing of the base's stand-ins survives the overlay.
  t.false(JSON.stringify(eu).includes("JOBS_REGION"));
});

// ---------------------------------------------------------------------------------- image

/** Files reachable from `entry` by runtime imports (static and dynamic; `import type` is erased) and the packages they import. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const builtins = new Set(builtinModules);
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const source = readFileSync(file, "utf8");
    const specs = [
      ...source.matchAll(/^[ \t]*(?:import|export)(?!\s+type\b)[^"'`;]*?from\s*["']([^"']+)["']/gm),
      ...source.matchAll(/^[ \t]*import\s*["']([^"']+)["']/gm),
      ...source.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
    ].map((m) => m[1]!);
    for (const spec of specs) {
      if (spec.startsWith(".")) {
        const target = path.resolve(path.dirname(file), spec);
        if (target.endsWith(".ts")) visit(target);
      } else if (!spec.startsWith("node:") && !builtins.has(spec)) {
        const parts = spec.split("/");
        packages.add(spec.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!);
      }
    }
  };
  visit(entry);
  return { files, packages };
}

test("Dockerfile: Node 22 on Debian with Chromium, production dependencies only, non-root, health check", (t) => {
  const text = readFileSync(path.join(DEPLOY, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const lines = text.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  t.regex(lines[0]!, /^FROM node:22[^ ]*bookworm/, "node 22 on Debian bookworm");
  t.true(at(/^RUN .*apt-get install .*\bchromium\b/) >= 0, "Debian's chromium");
  t.true(at(/^RUN .*apt-get install .*\bfonts-/) >= 0, "fonts");
  const npmCi = at(/^RUN .*npm ci\b.*--omit=dev/);
  t.true(npmCi >= 0, "npm ci --omit=dev");
  const skip = at(/^ENV .*PUPPETEER_SKIP_DOWNLOAD=1/);
  t.true(skip >= 0 && skip < npmCi, "PUPPETEER_SKIP_DOWNLOAD before npm ci");
  t.true(at(/^COPY .*\.puppeteerrc\.json/) < npmCi);
  const user = at(/^USER /);
  const uid = /^USER (\d+)(?::(\d+))?$/.exec(lines[user] ?? "");
  t.truthy(uid, "USER is numeric (Kubernetes' runAsNonRoot can only verify a numeric user)");
  t.true(Number(uid?.[1]) > 0, "USER is not root");
  t.is(lines.slice(user + 1).filter((l) => /^USER /.test(l)).length, 0, "no later USER");
  t.is(lines.slice(user).filter((l) => /^RUN /.test(l)).length, 0, "nothing runs as root after USER");
  t.regex(
    lines.find((l) => l.startsWith("ENTRYPOINT"))!,
    /"node", "bin\/glyphscan\.ts"\]/,
  );
  const health = lines.find((l) => l.startsWith("HEALTHCHECK")) ?? "";
  const script = /"(ops\/deploy\/[^"]+\.ts)"/.exec(health)?.[1];
  t.truthy(script && existsSync(path.join(ROOT, script)), `HEALTHCHECK runs a script that exists: ${health}`);
  for (const m of text.matchAll(/\b(GLYPHSCAN_[A-Z0-9_]+)=/g)) t.true(ENV_NAMES.has(m[1]!), `${m[1]} is a setting`);
  t.regex(text, /GLYPHSCAN_SCANNER_CHROMIUM_PATH=\/usr\/bin\/chromium/);
  t.regex(text, /COPY ops\/deploy\/chromium-flags \/etc\/chromium\.d\//);

  // Everything the command line loads is copied in, and comes from `dependencies` (npm ci --omit=dev).
  const { files, packages } = importGraph(path.join(ROOT, "bin/glyphscan.ts"));
  const dirs = new Set([...files].map((f) => path.relative(ROOT, f).split(path.sep)[0]!));
  const copied = new Set([...text.matchAll(/^COPY (?!--)(\S+) \.\/\1\s*$/gm)].map((m) => m[1]!));
  for (const dir of dirs) t.true(copied.has(dir), `the image copies ${dir}/ (imported by bin/glyphscan.ts)`);
  const ignored = readFileSync(path.join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim());
  for (const dir of dirs) t.false(ignored.includes(dir), `.dockerignore keeps ${dir}/`);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Obj };
  for (const p of packages) t.truthy(pkg.dependencies[p], `${p} is loaded at run time, so it must be in dependencies`);
  t.true(packages.size >= 10, `found ${packages.size} packages`);
});

test("the image's Chromium flags file appends CHROMIUM_EXTRA_FLAGS to Debian's launcher flags", async (t) => {
  const res = await run("sh", ["-c", `. ${path.join(DEPLOY, "chromium-flags")}; printf '%s' "$CHROMIUM_FLAGS"`], {
    env: { PATH: process.env["PATH"], CHROMIUM_FLAGS: "--disable-pings", CHROMIUM_EXTRA_FLAGS: "--no-sandbox" },
  });
  t.is(res.code, 0, res.stderr);
  t.is(res.stdout.trim().split(/\s+/).join(" "), "--disable-pings --no-sandbox");
  // Debian's launcher sources /etc/chromium.d/*, which is where the Dockerfile puts the file.
  if (existsSync("/usr/bin/chromium") && statSync("/usr/bin/chromium").size < 100_000) {
    t.regex(readFileSync("/usr/bin/chromium", "utf8"), /for file in \/etc\/chromium\.d\/\*/);
  }
});

test("the health check passes on a 2xx answer and fails on an error status or nothing listening", async (t) => {
  let status = 200;
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === "/metrics" ? status : 404;
    res.end("# metrics\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const check = (env: Record<string, string>, args: string[] = []) =>
    new Promise<number>((resolve) => {
      const child = spawn(process.execPath, [path.join(DEPLOY, "healthcheck.ts"), ...args], {
        env: { PATH: process.env["PATH"], ...env },
        stdio: "ignore",
      });
      child.on("exit", (code) => resolve(code ?? -1));
    });
  t.is(await check({ GLYPHSCAN_TELEMETRY_METRICS_PORT: String(port) }), 0);
  status = 503;
  t.is(await check({ GLYPHSCAN_TELEMETRY_METRICS_PORT: String(port) }), 1);
  status = 200;
  t.is(await check({}, [`http://127.0.0.1:${port}/metrics`]), 0);
  t.is(await check({}, [`http://127.0.0.1:${port}/other`]), 1);
  t.is(await check({}), 1, "no URL and no metrics port");
  const closed = await freePort();
  t.is(await check({ GLYPHSCAN_TELEMETRY_METRICS_PORT: String(closed) }), 1);
});

// ---------------------------------------------------------------------------------- runbook

test("the runbook names real metrics and real commands", (t) => {
  const runbook = readFileSync(path.join(ROOT, "ops/RUNBOOK.md"), "utf8");
  const metricsSource = readFileSync(path.join(ROOT, "cluster/metrics.ts"), "utf8");
  const declared = new Set([...metricsSource.matchAll(/\bglyphscan_[a-z_]+/g)].map((m) => m[0]));
  const bucketNames = new Set<string>(Object.values(buckets));
  const used = new Set(
    [...runbook.matchAll(/\bglyphscan_[a-z_]+/g)]
      .map((m) => m[0].replace(/_(?:bucket|sum|count)$/, ""))
      .filter((name) => !bucketNames.has(name)),
  );
  t.true(used.size >= 6, `the runbook uses ${used.size} metrics`);
  for (const m of used) t.true(declared.has(m), `${m} is declared in cluster/metrics.ts`);

  const cli = readFileSync(path.join(ROOT, "bin/glyphscan.ts"), "utf8");
  const commands = new Set([...cli.matchAll(/\.command\("([a-z]+)/g)].map((m) => m[1]!));
  // Commands in code: fenced blocks and `inline` spans.
  const code = [...runbook.matchAll(/```[a-z]*\n([\s\S]*?)```|`([^`\n]+)`/g)].map((m) => m[1] ?? m[2]!).join("\n");
  const invoked = [...code.matchAll(/(?:^|[\s;(|&])glyphscan (?:--[a-z-]+ \S+ )*([a-z]+)\b/gm)].map((m) => m[1]!);
  for (const c of ["status", "dlq", "lookup"]) t.true(invoked.includes(c), `the runbook uses glyphscan ${c}`);
  for (const c of invoked) t.true(commands.has(c), `glyphscan ${c} is a command of bin/glyphscan.ts`);
  for (const r of REGIONS) {
    t.true(runbook.includes(streams.jobs(r)), `names the job stream ${streams.jobs(r)}`);
  }
  t.true(runbook.includes(consumers.scanners));
  for (const symptom of [
    /scans stopped/i,
    /lag/i,
    /dead letters/i,
    /region .*cut off/i,
    /redis/i,
    /mongo/i,
    /nats/i,
    /licensing/i,
    /memory/i,
  ]) {
    t.regex(runbook, symptom);
  }
});
