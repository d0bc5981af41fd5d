/**
 * Region health decisions: when a region counts as down for routing, and when it is back. The
 * checks are plain functions here; the NATS check runs for real in the regions e2e test.
 */
import test from "ava";
import { createLogger } from "../../cluster/log.ts";
import { RegionHealth } from "../../cluster/region-health.ts";
import { placementFor, streamSpecs } from "../../cluster/topology.ts";
import { loadConfig } from "../../config/mod.ts";
import { streams } from "../../protocol/mod.ts";

const log = createLogger("silent", {});

function health(check: (region: string) => Promise<string | null> = async () => null) {
  return new RegionHealth({ regions: ["eu", "us"], graceMs: 1_000, probeMs: 100, check, log });
}

test("a region is down for routing only after failing for the whole grace period", (t) => {
  const h = health();
  t.false(h.isDown("eu", 0));
  h.observe("eu", "job stream unreachable", 10_000);
  t.false(h.isDown("eu", 10_000), "just failed");
  h.observe("eu", "job stream unreachable", 10_900);
  t.false(h.isDown("eu", 10_999), "within grace");
  t.true(h.isDown("eu", 11_000), "grace over");
  t.deepEqual(h.status("eu", 11_000), {
    region: "eu",
    downSince: 10_000,
    reason: "job stream unreachable",
    fallback: true,
  });
  t.false(h.isDown("us", 11_000), "other regions are unaffected");
});

test("one healthy probe brings a region back at once, and a new failure starts a new grace", (t) => {
  const h = health();
  h.observe("eu", "no live scanner", 0);
  t.true(h.isDown("eu", 5_000));
  h.observe("eu", null, 5_000);
  t.false(h.isDown("eu", 5_000));
  t.is(h.status("eu", 5_000).downSince, null);
  h.observe("eu", "no live scanner", 6_000);
  t.false(h.isDown("eu", 6_500), "a blip after recovery does not fall back at once");
  t.true(h.isDown("eu", 7_000));
});

test("probe() runs the check per region; a throwing check counts as unhealthy", async (t) => {
  const h = health(async (region) => {
    if (region === "eu") throw new Error("boom");
    return null;
  });
  const statuses = await h.probe();
  t.deepEqual(
    statuses.map((s) => s.region),
    ["eu", "us"],
  );
  t.regex(statuses[0]!.reason ?? "", /^probe failed: .*boom/);
  t.is(statuses[1]!.reason, null);
});

test("placement: region streams in their region, shared streams in the shared location; none by default", (t) => {
  const base = { regions: ["eu", "us"], region: "eu" };
  const plain = loadConfig({ env: {}, overrides: base });
  t.is(placementFor(plain, "eu"), undefined);
  t.true(
    streamSpecs(plain).every((s) => s.placement === undefined),
    "one plain server: no placement",
  );

  const byCluster = loadConfig({
    env: {},
    overrides: { ...base, nats: { placement: "cluster", sharedPlacement: "hub" } },
  });
  const spec = (name: string) => streamSpecs(byCluster).find((s) => s.name === name)!;
  t.deepEqual(spec(streams.jobs("eu")).placement, { cluster: "eu", tags: [] });
  t.deepEqual(spec(streams.results("us")).placement, { cluster: "us", tags: [] });
  t.deepEqual(spec(streams.feeds).placement, { cluster: "hub", tags: [] });
  const global = spec(streams.resultsGlobal);
  t.deepEqual(global.placement, { cluster: "hub", tags: [] });
  t.deepEqual(global.subjects, []);
  t.deepEqual(
    global.sources?.map((s) => s.name),
    [streams.results("eu"), streams.results("us")],
  );

  const byTag = loadConfig({ env: {}, overrides: { ...base, nats: { placement: "tag" } } });
  t.deepEqual(placementFor(byTag, "eu"), { cluster: "", tags: ["region:eu"] });
  t.is(streamSpecs(byTag).find((s) => s.name === streams.feeds)!.placement, undefined, "shared: unplaced");
});
