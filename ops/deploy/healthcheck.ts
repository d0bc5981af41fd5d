/**
 * Container health check of the glyphscan image: exits 0 when the URL answers 2xx within the
 * budget, 1 otherwise (with the reason on stderr). Default URL: the node's Prometheus endpoint,
 * http://127.0.0.1:$GLYPHSCAN_TELEMETRY_METRICS_PORT/metrics, which every long-running node of the
 * deployment serves; the API passes its own, e.g. `node ops/deploy/healthcheck.ts http://127.0.0.1:8080/healthz`.
 *
 * Usage: node ops/deploy/healthcheck.ts [URL]
 */
const TIMEOUT_MS = 4_000;

function target(): string | undefined {
  const explicit = process.argv[2];
  if (explicit) return explicit;
  const port = process.env["GLYPHSCAN_TELEMETRY_METRICS_PORT"];
  return port ? `http://127.0.0.1:${port}/metrics` : undefined;
}

async function main(): Promise<number> {
  const url = target();
  if (!url) {
    process.stderr.write("healthcheck: no URL given and GLYPHSCAN_TELEMETRY_METRICS_PORT is not set\n");
    return 1;
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    await res.body?.cancel();
    if (res.ok) return 0;
    process.stderr.write(`healthcheck: ${url} answered ${res.status}\n`);
  } catch (err) {
    process.stderr.write(`healthcheck: ${url}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  return 1;
}

process.exitCode = await main();
