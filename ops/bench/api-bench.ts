/**
 * `npm run bench:api`: lookups per second and their latency on the HTTP API, on private servers
 * (test harness). Seeds a database with --domains N domains (100k), each with a scan, its font
 * files and their licence verdicts (the store's own document shapes, bulk inserted), starts
 * `glyphscan api` as a child process (as an operator runs it, with metrics and rate limits on;
 * the load generator then never shares the server's event loop), and runs autocannon against
 *
 *  - GET /healthz: the framework's ceiling on this machine (no store read), the baseline;
 *  - GET /v1/domains/{domain} and GET /urlinfo/1/{host}/{path} on a hot set of --hot domains,
 *    read once beforehand, so these runs are served by the API's lookup cache (its TTL is
 *    --cache-ttl, set long enough to outlast the run; printed with the figures);
 *  - the same two routes on a random domain of all N per request: most miss the in-process cache
 *    (it keeps api.lookupCacheEntries, 10k, of the N) and are answered from the lookup view in Redis,
 *    filled beforehand by `glyphscan views rebuild` as an operator would (its time is printed);
 *  - GET /v1/domains/{domain}/scans (scan history) on a random domain whose scans the scan index
 *    lists (even-numbered ones, indexed as the results writer does); and one request at a time,
 *    on those and, as the baseline, on domains scanned before the index existed (odd-numbered:
 *    answered by a query of `scans`, which FerretDB answers by reading every scan).
 *
 * Also prints the view's Redis memory per domain (MEMORY USAGE of sampled keys, and used_memory
 * before and after the rebuild over N), and the load average before and after the runs (the
 * machine may be shared). The API is one process, as `glyphscan api` runs: autocannon (this
 * process, its CPU printed per run as "client cores") and Redis share the same cores, so a second
 * API process would compete with them rather than add a free core.
 * Prints requests/s, p50, p99, errors and non-2xx per run, the API process's CPU use, what one
 * lookup from the view costs alone, and each run's ratio to /healthz. Flags: --domains N (100000),
 * --duration S per run (15), --connections N (16), --hot N (10), --cache-ttl MS (1800000),
 * --fonts N (distinct font files, 400), --profile DIR (V8 CPU profile of the API process), --json FILE (requestsPerSecond, p50Ms, p99Ms of the
 * lookups over all N, hot* of the hot set, ratios, and every run in detail).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { Redis } from "ioredis";
import { openDatabase } from "../../actors/store/database.ts";
import { DICTIONARY_ID } from "../../actors/store/lookup-view.ts";
import type { DomainDoc, FontDoc, ScanDoc } from "../../actors/store/documents.ts";
import type { FontVerdict } from "../../actors/licensing/verdict.ts";
import { loadConfig, type Config } from "../../config/mod.ts";
import { freePort, startMongo, startNats, startRedis, stopAll } from "../harness/servers.ts";

const { values: args } = parseArgs({
  options: {
    domains: { type: "string", default: "100000" },
    duration: { type: "string", default: "15" },
    connections: { type: "string", default: "16" },
    hot: { type: "string", default: "10" },
    "cache-ttl": { type: "string", default: "1800000" },
    fonts: { type: "string", default: "400" },
    json: { type: "string" },
    profile: { type: "string" },
  },
});
const DOMAINS = Number(args.domains);
const DURATION = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const FONTS = Number(args.fonts);
const HOT = Number(args.hot);
const CACHE_TTL = Number(args["cache-ttl"]);
const BATCH = 1_000;

const hex = (n: number, salt: string) => `${salt}${n.toString(16)}`.padStart(64, "0").slice(-64);
const domainName = (i: number) => `bench-site${i}.com`;
const FAMILIES = ["Inter", "Roboto", "Open Sans", "Lato", "Merriweather", "Acme Grotesk", "Brand Serif", "Fira Sans"];

function fontDoc(i: number, now: Date): FontDoc {
  const family = FAMILIES[i % FAMILIES.length]!;
  return {
    _id: hex(i, "f"),
    bytes: 20_000 + i,
    metadata: {
      format: "woff2",
      family,
      subfamily: i % 2 === 0 ? "Regular" : "Bold",
      fullName: `${family} ${i % 2 === 0 ? "Regular" : "Bold"}`,
      postscriptName: `${family.replaceAll(" ", "")}-${i % 2 === 0 ? "Regular" : "Bold"}`,
      version: "Version 3.001",
      manufacturer: "A Foundry",
      designer: "A Designer",
      vendorId: "AFND",
      copyright: `Copyright 2020 A Foundry (${i})`,
      trademark: null,
      license: i % 3 === 0 ? "This Font Software is licensed under the SIL Open Font License, Version 1.1." : null,
      licenseUrl: i % 3 === 0 ? "https://openfontlicense.org" : null,
      fsType: 0,
      isVariable: false,
    },
    parseError: null,
    firstSeenAt: now,
    lastSeenAt: now,
    firstUrl: `https://cdn.example/f${i}.woff2`,
  };
}

/** Two used files and one declared-only face per site, with a verdict per used file. */
function siteDocs(i: number, now: Date): { domain: DomainDoc; scan: ScanDoc } {
  const d = domainName(i);
  const jobId = `${d}:lease${i}`;
  const picks = [(i * 7) % FONTS, (i * 13 + 1) % FONTS];
  const finishedAt = new Date(now.getTime() - (i % 86_400) * 1000);
  const faces: ScanDoc["faces"] = picks.map((f) => ({
    family: FAMILIES[f % FAMILIES.length]!,
    weight: f % 2 === 0 ? "400" : "700",
    style: "normal",
    used: true,
    declaredIn: "stylesheet",
    srcUrls: [`https://${d}/fonts/f${f}.woff2`],
    fileSha256: [hex(f, "f")],
    provider: "self-hosted",
  }));
  faces.push({ ...faces[0]!, weight: "300", used: false, fileSha256: [], srcUrls: [`https://${d}/fonts/light.woff2`] });
  const files: ScanDoc["files"] = picks.map((f) => ({
    sha256: hex(f, "f"),
    url: `https://${d}/fonts/f${f}.woff2`,
    bytes: 20_000 + f,
    contentType: "font/woff2",
    via: "font-request",
    parseError: null,
    provider: "self-hosted",
    family: FAMILIES[f % FAMILIES.length]!,
  }));
  const verdicts: FontVerdict[] = picks.map((f) => ({
    sha256: hex(f, "f"),
    family: FAMILIES[f % FAMILIES.length]!,
    cssFamilies: [FAMILIES[f % FAMILIES.length]!],
    verdict: f % 3 === 0 ? "open-licence" : "unlicensed",
    licence: f % 3 === 0 ? "OFL-1.1" : null,
    reason: f % 3 === 0 ? "the name fields claim OFL-1.1" : "commercial signs and no licence",
    evidence: {
      licenseId: null,
      licensee: null,
      nameFields: [{ field: "copyright", value: `Copyright 2020 A Foundry (${f})` }],
      provider: "self-hosted",
      catalogue: null,
      externalReference: null,
      rejected: [],
    },
  }));
  const open = verdicts.filter((v) => v.verdict === "open-licence").length;
  const compliance = {
    counts: { licensed: 0, "open-licence": open, pending: 0, unlicensed: 2 - open, unknown: 0 },
    changes: null,
    assessedAt: finishedAt,
  };
  const scan: ScanDoc = {
    _id: jobId,
    domain: d,
    region: "local",
    attempt: 1,
    scannerNode: "bench",
    leaseToken: `lease${i}`,
    onCurrentLease: true,
    status: "ok",
    failure: null,
    path: "static",
    pages: [{ url: `https://${d}/`, finalUrl: `https://www.${d}/`, httpStatus: 200 }],
    faces,
    files,
    startedAt: new Date(finishedAt.getTime() - 1500),
    finishedAt,
    durationMs: 1500,
    recordedAt: finishedAt,
    verdicts,
    compliance,
  };
  const domain: DomainDoc = {
    _id: d,
    region: "local",
    state: "scanned",
    seedUrl: `https://${d}/`,
    sources: ["bench"],
    firstSeenAt: finishedAt,
    lastSeenAt: finishedAt,
    nextScanAt: new Date(finishedAt.getTime() + 7 * 86_400_000),
    attempts: 0,
    leaseToken: null,
    leaseJobId: null,
    leaseUntil: null,
    lastScanAt: finishedAt,
    scanCount: 1,
    latest: {
      jobId,
      status: "ok",
      failureKind: null,
      failureMessage: null,
      finishedAt,
      path: "static",
      usedFamilies: [...new Set(faces.filter((f) => f.used).map((f) => f.family))],
      declaredOnlyFamilies: [],
      fileCount: files.length,
      compliance,
    },
    traceparent: null,
  };
  return { domain, scan };
}

async function seed(config: Config): Promise<number> {
  const db = await openDatabase(config);
  const started = performance.now();
  try {
    const now = new Date();
    const { domains, scans, fonts, scanIndex } = db.collections;
    await fonts.insertMany(
      Array.from({ length: FONTS }, (_, i) => fontDoc(i, now)),
      { ordered: false },
    );
    for (let i = 0; i < DOMAINS; i += BATCH) {
      const docs = Array.from({ length: Math.min(BATCH, DOMAINS - i) }, (_, k) => siteDocs(i + k, now));
      await Promise.all([
        scans.insertMany(
          docs.map((x) => x.scan),
          { ordered: false },
        ),
        domains.insertMany(
          docs.map((x) => x.domain),
          { ordered: false },
        ),
        // Even domains' scans are in the scan index, as the results writer lists them; odd ones predate it.
        scanIndex.insertMany(
          docs
            .filter((_, k) => (i + k) % 2 === 0)
            .map((x) => ({
              _id: `${x.domain._id}|0`,
              e: [{ j: x.scan._id, f: x.scan.finishedAt }],
              last: 0,
              complete: true,
            })),
          { ordered: false },
        ),
      ]);
      if ((i / BATCH) % 10 === 9) process.stderr.write(`seeded ${i + BATCH} domains\n`);
    }
    const count = await domains.estimatedDocumentCount();
    if (count !== DOMAINS) throw new Error(`seeded ${count} domains, expected ${DOMAINS}`);
  } finally {
    await db.close();
  }
  return (performance.now() - started) / 1000;
}

/** CPU seconds (user + system) a process has used, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
}

/** `glyphscan views rebuild` as a child process, as an operator runs it; its seconds. */
async function rebuildView(file: string): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, ["bin/glyphscan.ts", "--config", file, "views", "rebuild"], {
    stdio: ["ignore", "inherit", "pipe"],
  });
  let last = "";
  child.stderr.on("data", (b: Buffer) => {
    for (const line of b.toString().trim().split("\n")) {
      last = line;
      // One progress line in ten thousand domains.
      if (Number(/(?<!\d)(\d+)\//.exec(line)?.[1]) % 10_000 === 0) process.stderr.write(`${line}\n`);
    }
  });
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  if (code !== 0) throw new Error(`glyphscan views rebuild exited with ${code}: ${last}`);
  return (performance.now() - started) / 1000;
}

async function configFile(config: Config): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "glyphscan-api-bench-"));
  const file = join(dir, "config.json");
  await writeFile(file, JSON.stringify(config));
  return file;
}

/** Redis bytes per view entry: MEMORY USAGE of sampled keys (key, value, expiry and overheads). */
async function viewMemory(redisUrl: string, prefix: string): Promise<{ sampledBytes: number; usedBytes: number }> {
  const redis = new Redis(redisUrl);
  try {
    let total = 0;
    const SAMPLE = 1000;
    for (let i = 0; i < SAMPLE; i++) {
      const key = prefix + domainName(Math.floor((i * DOMAINS) / SAMPLE));
      total += Number(await redis.call("MEMORY", "USAGE", key, "SAMPLES", "0"));
    }
    const info = await redis.info("memory");
    const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
    return { sampledBytes: total / SAMPLE, usedBytes: used };
  } finally {
    redis.disconnect();
  }
}

async function startApiProcess(config: Config, file: string): Promise<{ child: ChildProcess; url: string }> {
  // --profile DIR: a V8 CPU profile of the API process, written when it exits.
  const profile = args.profile ? ["--cpu-prof", "--cpu-prof-dir", args.profile] : [];
  const child = spawn(process.execPath, [...profile, "bin/glyphscan.ts", "--config", file, "api"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${config.api.port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`glyphscan api exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) return { child, url };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("glyphscan api did not become ready within 30 s");
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Run {
  name: string;
  requestsPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  /** CPU cores the API process used during the run (1.0 = one core busy). */
  serverCores: number;
  /** CPU cores the load generator (this process) used during the run. */
  clientCores: number;
}

const randomDomain = () => domainName(Math.floor(Math.random() * DOMAINS));
/** The hot set: every HOT-th domain, spread over the collection. */
const hotDomain = () => domainName(Math.floor(Math.random() * HOT) * Math.floor(DOMAINS / HOT));
/** A random domain with an even or odd number: scans in the scan index, or scanned before it existed. */
const parityDomain = (parity: 0 | 1) => domainName(2 * Math.floor((Math.random() * DOMAINS) / 2) + parity);
const urlOf = (domain: string) => `/urlinfo/1/www.${domain}:443/shop/item?id=${Math.floor(Math.random() * 1e6)}`;
const PATHS = {
  health: () => "/healthz",
  domains: () => `/v1/domains/${randomDomain()}`,
  urlinfo: () => urlOf(randomDomain()),
  "domains-hot": () => `/v1/domains/${hotDomain()}`,
  "urlinfo-hot": () => urlOf(hotDomain()),
  history: () => `/v1/domains/${parityDomain(0)}/scans`,
} as const;
const LABELS: Record<keyof typeof PATHS, string> = {
  health: "GET /healthz (baseline)",
  domains: "GET /v1/domains/{domain}, any of N",
  urlinfo: "GET /urlinfo/1/{host}/{path}, any of N",
  "domains-hot": "GET /v1/domains/{domain}, hot set",
  "urlinfo-hot": "GET /urlinfo/1/{host}/{path}, hot set",
  history: "GET /v1/domains/{domain}/scans, scan index",
};

async function load(url: string, name: keyof typeof PATHS, seconds: number, pid: number): Promise<Run> {
  const path = PATHS[name];
  const cpu0 = await cpuSeconds(pid);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    timeout: 10,
    requests: [{ method: "GET", setupRequest: (req) => ({ ...req, path: path() }) }],
  });
  const cores = (await cpuSeconds(pid)) - cpu0;
  const client = process.cpuUsage(client0);
  return {
    name,
    requestsPerSecond: r.requests.total / r.duration,
    p50Ms: r.latency.p50,
    p90Ms: r.latency.p90,
    p99Ms: r.latency.p99,
    maxMs: r.latency.max,
    requests: r.requests.total,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    serverCores: cores / ((performance.now() - t0) / 1000),
    clientCores: (client.user + client.system) / 1000 / (performance.now() - t0),
  };
}

async function main() {
  const [nats, redis, mongo] = await Promise.all([startNats(), startRedis(), startMongo()]);
  let api: ChildProcess | undefined;
  const runs: Run[] = [];
  let seedSeconds = 0;
  let coldLookupMs = 0;
  /** One scan-history request alone (median of 3): through the scan index, and by a query. */
  const historyAloneMs = { index: 0, query: 0 };
  let rebuildSeconds = 0;
  let loadBefore: number[] = [];
  let loadAfter: number[] = [];
  let memory = { bytesPerDomain: 0, usedBytesPerDomain: 0 };
  try {
    const config = loadConfig({
      env: {},
      overrides: {
        logLevel: "warn",
        nats: { servers: [nats.url] },
        redis: { url: redis.url },
        mongo: { url: mongo.url, database: "bench_api" },
        api: {
          host: "127.0.0.1",
          port: await freePort(),
          // Limits stay on (their cost is measured) but far above what one client sends here.
          rateLimit: { lookups: 1_000_000_000, submissions: 1_000_000_000 },
          lookupCacheTtlMs: CACHE_TTL,
        },
        telemetry: { metricsPort: await freePort(), metricsHost: "127.0.0.1" },
      },
    });
    process.stderr.write(`seeding ${DOMAINS} domains, ${DOMAINS} scans, ${FONTS} font files...\n`);
    seedSeconds = await seed(config);
    process.stderr.write(`seeded in ${seedSeconds.toFixed(1)} s; glyphscan views rebuild\n`);
    const file = await configFile(config);
    const memoryBefore = await viewMemory(redis.url, "none:");
    rebuildSeconds = await rebuildView(file);
    const prefix = `glyphscan:lookup:${config.mongo.database}:${DICTIONARY_ID}:`;
    const after = await viewMemory(redis.url, prefix);
    memory = {
      bytesPerDomain: after.sampledBytes,
      usedBytesPerDomain: (after.usedBytes - memoryBefore.usedBytes) / DOMAINS,
    };
    process.stderr.write(`view rebuilt in ${rebuildSeconds.toFixed(1)} s; starting glyphscan api\n`);
    const started = await startApiProcess(config, file);
    api = started.child;
    const pid = api.pid!;
    loadBefore = loadavg();
    // Warm-up: JIT and connection pools.
    await load(started.url, "health", 3, pid);
    for (const name of ["health"] as const) {
      process.stderr.write(`load ${name} for ${DURATION} s...\n`);
      runs.push(await load(started.url, name, DURATION, pid));
    }
    // The hot set, read once (each route) so the runs below measure cache hits.
    for (let i = 0; i < HOT; i++) {
      const d = domainName(i * Math.floor(DOMAINS / HOT));
      for (const path of [`/v1/domains/${d}`, urlOf(d)]) {
        const res = await fetch(started.url + path);
        if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
      }
    }
    for (const name of ["domains-hot", "urlinfo-hot"] as const) {
      process.stderr.write(`load ${name} for ${DURATION} s...\n`);
      runs.push(await load(started.url, name, DURATION, pid));
    }
    // One lookup at a time on domains not read before: what a process-cache miss (a view read) costs.
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const res = await fetch(`${started.url}/v1/domains/${domainName(Math.floor(DOMAINS / HOT / 2) + i)}`);
      if (res.status !== 200) throw new Error(`cold lookup: ${res.status}`);
      await res.arrayBuffer();
      times.push(performance.now() - t0);
    }
    coldLookupMs = times.sort((a, b) => a - b)[2]!;
    process.stderr.write(`one lookup from the view: ${coldLookupMs.toFixed(1)} ms (median of 5)\n`);
    // Last: requests over every domain mostly miss the process cache and read the view.
    for (const name of ["domains", "urlinfo"] as const) {
      process.stderr.write(`load ${name} for ${DURATION} s...\n`);
      runs.push(await load(started.url, name, DURATION, pid));
    }
    // Scan history: through the scan index, and by a query of `scans` for domains scanned before it;
    // first one request at a time, then under load.
    for (const [kind, parity] of [
      ["index", 0],
      ["query", 1],
    ] as const) {
      const alone: number[] = [];
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const res = await fetch(`${started.url}/v1/domains/${parityDomain(parity)}/scans`);
        if (res.status !== 200) throw new Error(`scan history: ${res.status}`);
        await res.arrayBuffer();
        alone.push(performance.now() - t0);
      }
      historyAloneMs[kind] = alone.sort((a, b) => a - b)[1]!;
    }
    for (const name of ["history"] as const) {
      process.stderr.write(`load ${name} for ${DURATION} s...\n`);
      runs.push(await load(started.url, name, DURATION, pid));
    }
    loadAfter = loadavg();
  } finally {
    if (api && api.exitCode === null) {
      const exited = new Promise((r) => api!.once("exit", r));
      api.kill("SIGTERM");
      await exited;
    }
    await stopAll();
  }
  const [health, domainsHot, urlinfoHot, domains, urlinfo, history] = runs as [Run, Run, Run, Run, Run, Run];
  const ratio = (r: Run) => r.requestsPerSecond / health.requestsPerSecond;
  const header = [
    "route",
    "requests/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "errors",
    "non-2xx",
    "server cores",
    "client cores",
    "vs health",
  ];
  const rows = runs.map((r) => [
    LABELS[r.name as keyof typeof PATHS],
    r.requestsPerSecond.toFixed(0),
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.maxMs.toFixed(1),
    String(r.errors + r.timeouts),
    String(r.non2xx),
    r.serverCores.toFixed(2),
    r.clientCores.toFixed(2),
    `${ratio(r).toFixed(3)}x`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)));
  process.stdout.write(
    `N = ${DOMAINS} domains (seeded in ${seedSeconds.toFixed(0)} s), hot set ${HOT}, ${CONNECTIONS} connections, ` +
      `${DURATION} s per run, lookup cache TTL ${CACHE_TTL} ms\n` +
      `${[header, ...rows].map((r) => line(r).join("  ")).join("\n")}\n` +
      `one GET /v1/domains/{domain} alone, not in the process cache (from the view): ${coldLookupMs.toFixed(1)} ms\n` +
      `lookup view: rebuilt from MongoDB in ${rebuildSeconds.toFixed(1)} s (${(DOMAINS / rebuildSeconds).toFixed(0)} domains/s); ` +
      `Redis memory per domain ${memory.bytesPerDomain.toFixed(0)} B (MEMORY USAGE, 1000 keys), ` +
      `${memory.usedBytesPerDomain.toFixed(0)} B (used_memory growth / N)\n` +
      `load average (1, 5, 15 min) before the runs ${loadBefore.map((l) => l.toFixed(2)).join(", ")}, ` +
      `after ${loadAfter.map((l) => l.toFixed(2)).join(", ")}\n` +
      `lookups/health: domains ${ratio(domains).toFixed(3)}x, urlinfo ${ratio(urlinfo).toFixed(3)}x; ` +
      `hot set: domains ${ratio(domainsHot).toFixed(2)}x, urlinfo ${ratio(urlinfoHot).toFixed(2)}x\n` +
      `one scan history request alone: scan index ${historyAloneMs.index.toFixed(1)} ms, ` +
      `query ${historyAloneMs.query.toFixed(1)} ms (median of 3): the query takes ` +
      `${(historyAloneMs.query / historyAloneMs.index).toFixed(0)}x as long\n`,
  );
  if (args.json) {
    const figures = {
      domains: DOMAINS,
      hot: HOT,
      connections: CONNECTIONS,
      durationSeconds: DURATION,
      lookupCacheTtlMs: CACHE_TTL,
      // The headline: GET /v1/domains/{domain} over every seeded domain (mostly cache misses).
      requestsPerSecond: domains.requestsPerSecond,
      p50Ms: domains.p50Ms,
      p99Ms: domains.p99Ms,
      hotRequestsPerSecond: domainsHot.requestsPerSecond,
      hotP50Ms: domainsHot.p50Ms,
      hotP99Ms: domainsHot.p99Ms,
      urlinfoRequestsPerSecond: urlinfo.requestsPerSecond,
      urlinfoP99Ms: urlinfo.p99Ms,
      urlinfoHotRequestsPerSecond: urlinfoHot.requestsPerSecond,
      urlinfoHotP99Ms: urlinfoHot.p99Ms,
      healthRequestsPerSecond: health.requestsPerSecond,
      ratioDomainsVsHealth: ratio(domains),
      ratioUrlinfoVsHealth: ratio(urlinfo),
      ratioDomainsHotVsHealth: ratio(domainsHot),
      ratioUrlinfoHotVsHealth: ratio(urlinfoHot),
      historyAloneMs: historyAloneMs.index,
      historyUnindexedAloneMs: historyAloneMs.query,
      historyRequestsPerSecond: history.requestsPerSecond,
      historyP99Ms: history.p99Ms,
      ratioHistoryQueryVsIndexMs: historyAloneMs.query / historyAloneMs.index,
      coldLookupMs,
      seedSeconds,
      viewRebuildSeconds: rebuildSeconds,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
      viewBytesPerDomain: memory.bytesPerDomain,
      viewUsedMemoryBytesPerDomain: memory.usedBytesPerDomain,
      runs,
    };
    await writeFile(args.json, `${JSON.stringify(figures, null, 2)}\n`);
  }
}

await main();
