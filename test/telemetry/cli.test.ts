/**
 * Telemetry through the command line, as an operator runs it: `glyphscan up` with a metrics port
 * and an OTLP endpoint in its config file, `glyphscan submit` with the same file. The trace of
 * the submitted domain arrives at the collector from both processes under one trace id, and the
 * node serves /metrics until SIGTERM.
 */
import test from "ava";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCorpus, type Corpus } from "../../ops/demo/corpus.ts";
import { freePort } from "../harness/servers.ts";
import { eventually, spawnGlyphscan, startStack, uniqueName, type TestStack } from "../helpers/stack.ts";

let stack: TestStack;
let corpus: Corpus;

test.before(async () => {
  [stack, corpus] = await Promise.all([startStack(), startCorpus({ sites: 1, tag: "cli" })]);
});
test.after.always(async () => {
  await corpus?.close();
  await stack?.stop();
});

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
}
interface OtlpRequest {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans: Array<{ spans: OtlpSpan[] }>;
  }>;
}

test("up serves metrics and exports traces; submit starts the trace the node continues", async (t) => {
  const exported: Array<OtlpSpan & { instance: string }> = [];
  const collector = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/v1/traces") {
        for (const rs of (JSON.parse(Buffer.concat(chunks).toString()) as OtlpRequest).resourceSpans) {
          const attr = (k: string) => rs.resource.attributes.find((a) => a.key === k)?.value.stringValue ?? "";
          for (const ss of rs.scopeSpans)
            for (const s of ss.spans) exported.push({ ...s, instance: attr("service.instance.id") });
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  collector.listen(0, "127.0.0.1");
  await once(collector, "listening");
  t.teardown(() => void collector.close());
  const otlpEndpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;
  const metricsPort = await freePort();

  const config = stack.config({
    nodeId: uniqueName("up"),
    telemetry: { otlpEndpoint, metricsPort, metricsHost: "127.0.0.1" },
  });
  const up = await spawnGlyphscan(config, ["up"]);
  let stderr = "";
  up.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  t.teardown(() => void (up.exitCode === null && up.kill("SIGKILL")));

  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const first = await eventually(
    "the node's metrics endpoint",
    async () => {
      const text = await (await fetch(metricsUrl)).text();
      return text.includes("glyphscan_jobs_pending") ? text : undefined;
    },
    60_000,
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}; node stderr: ${stderr}`);
  });
  t.regex(first, /glyphscan_jobs_pending\{region="local",state="waiting"[^}]*\} 0/);

  const site = corpus.sites[0]!;
  const dir = await mkdtemp(join(tmpdir(), "glyphscan-cli-"));
  await writeFile(join(dir, "urls.txt"), `${site.url}\n`);
  const submitter = { ...config, nodeId: uniqueName("submit") };
  const submit = await spawnGlyphscan(submitter, ["submit", join(dir, "urls.txt"), "--source", "cli"]);
  const [code] = (await once(submit, "exit")) as [number];
  t.is(code, 0, "submit exits 0");

  const root = await eventually("the submit process's feed publish span", async () =>
    exported.find((s) => s.name === "publish feeds.{source}" && s.instance === submitter.nodeId),
  );
  t.falsy(root.parentSpanId, "the feed publish is the root");
  const stored = await eventually(
    "the node's results span in the same trace",
    async () => exported.find((s) => s.name === "process results.{region}" && s.traceId === root.traceId),
    60_000,
  );
  t.is(stored.instance, config.nodeId ?? "", "exported by the up node");
  const consumer = exported.find((s) => s.name === "process feeds.{source}" && s.traceId === root.traceId);
  t.is(consumer?.parentSpanId, root.spanId, "the coordinator's process span is the child of the submit publish");

  const after = await (await fetch(metricsUrl)).text();
  t.regex(after, /glyphscan_scans_total\{region="local",outcome="ok"[^}]*\} 1/);

  up.kill("SIGTERM");
  const [exitCode] = (await once(up, "exit")) as [number];
  t.is(exitCode, 0, "the node drains and exits 0 on SIGTERM");
  await t.throwsAsync(fetch(metricsUrl), undefined, "the metrics endpoint is closed");
});
