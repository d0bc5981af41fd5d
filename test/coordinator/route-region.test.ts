import test from "ava";
import {
  fallbackRegion,
  primaryRegion,
  routeRegion,
  type RouteOptions,
} from "../../actors/coordinator/route-region.ts";

const opts: RouteOptions = {
  regions: ["eu", "us", "ap"],
  defaultRegion: "us",
  tldRegions: { de: "eu", ".FR": "eu", "co.uk": "eu", uk: "us", jp: "ap", br: "sa" },
};

test("a hint naming a configured region wins over the TLD map", (t) => {
  t.is(routeRegion("example.de", "ap", opts), "ap");
  t.is(routeRegion("example.com", " US ", opts), "us");
});

test("an unknown or empty hint is ignored", (t) => {
  t.is(routeRegion("example.de", "mars", opts), "eu");
  t.is(routeRegion("example.de", "", opts), "eu");
  t.is(routeRegion("example.de", undefined, opts), "eu");
});

test("TLD map: longest suffix wins, keys normalised", (t) => {
  t.is(routeRegion("example.co.uk", undefined, opts), "eu");
  t.is(routeRegion("example.uk", undefined, opts), "us");
  t.is(routeRegion("shop.example.fr", undefined, opts), "eu");
  t.is(routeRegion("example.jp", undefined, opts), "ap");
});

test("a TLD mapped to an unconfigured region falls back to the hash", (t) => {
  const r = routeRegion("example.br", undefined, opts);
  t.true(opts.regions.includes(r));
  t.is(r, routeRegion("example.br", undefined, { ...opts, tldRegions: {} }));
});

test("no regions or no domain → default region", (t) => {
  t.is(routeRegion("example.com", undefined, { regions: [], defaultRegion: "local", tldRegions: {} }), "local");
  t.is(routeRegion("", undefined, opts), "us");
});

const domains = Array.from({ length: 10_000 }, (_, i) => `site${i}.example${i % 7}.com`);

test("hash spreads 10k domains over 3 regions evenly and deterministically", (t) => {
  const counts = new Map<string, number>();
  const first = domains.map((d) => routeRegion(d, undefined, opts));
  for (const r of first) counts.set(r, (counts.get(r) ?? 0) + 1);
  t.deepEqual([...counts.keys()].sort(), ["ap", "eu", "us"]);
  for (const [region, n] of counts) {
    // Expected 3333 ± ~47 (1 sigma); 10% slack is ~7 sigma.
    t.true(n > 3000 && n < 3667, `${region}: ${n}`);
  }
  t.deepEqual(
    domains.map((d) => routeRegion(d, undefined, opts)),
    first,
  );
});

test("hash does not depend on the order of regions and is case-insensitive", (t) => {
  const reordered = { ...opts, regions: ["ap", "us", "eu"] };
  for (const d of domains.slice(0, 500)) {
    t.is(routeRegion(d, undefined, reordered), routeRegion(d.toUpperCase(), undefined, opts));
  }
});

test("adding a region only moves domains onto the new region", (t) => {
  const grown = { ...opts, regions: [...opts.regions, "sa"] };
  let moved = 0;
  for (const d of domains) {
    const before = routeRegion(d, undefined, opts);
    const after = routeRegion(d, undefined, grown);
    if (before !== after) {
      moved++;
      t.is(after, "sa");
    }
  }
  t.true(moved > 2000 && moved < 3000, `moved ${moved}`);
});

test("known values pin the hash across releases", (t) => {
  // If these change, coordinators of different versions route differently during a rolling upgrade.
  const pinned = ["example.com", "example.org", "glyphscan.dev", "wikipedia.org", "fonts.net"];
  t.deepEqual(
    pinned.map((d) => routeRegion(d, undefined, { ...opts, tldRegions: {} })),
    ["us", "ap", "ap", "eu", "us"],
  );
});

// --- Fallback while a region is down --------------------------------------------------------

const downSet =
  (...regions: string[]) =>
  (r: string) =>
    regions.includes(r);

test("fallback: an up region keeps its domains", (t) => {
  t.is(fallbackRegion("eu", { eu: "us" }, downSet()), "eu");
  t.is(fallbackRegion("eu", { eu: "us" }, downSet("us")), "eu");
});

test("fallback: a down region's domains go to its fallback, along the chain past down ones", (t) => {
  t.is(fallbackRegion("eu", { eu: "us" }, downSet("eu")), "us");
  t.is(fallbackRegion("eu", { eu: "us", us: "ap" }, downSet("eu", "us")), "ap");
});

test("fallback: no fallback, a down chain or a cycle leaves the domain in its own region to wait", (t) => {
  t.is(fallbackRegion("eu", {}, downSet("eu")), "eu");
  t.is(fallbackRegion("eu", { eu: "us" }, downSet("eu", "us")), "eu");
  t.is(fallbackRegion("eu", { eu: "us", us: "eu" }, downSet("eu", "us")), "eu");
});

test("routeRegion applies the fallback to hinted, mapped and hashed domains alike", (t) => {
  const withHealth: RouteOptions = { ...opts, fallbacks: { eu: "us", ap: "eu" }, isDown: downSet("eu") };
  t.is(routeRegion("example.de", undefined, withHealth), "us", "TLD-mapped to eu");
  t.is(routeRegion("example.com", "eu", withHealth), "us", "hinted eu");
  t.is(routeRegion("example.jp", undefined, withHealth), "ap", "ap is up: stays");
  const hashedToEu = domains.find((d) => primaryRegion(d, undefined, opts) === "eu")!;
  t.is(routeRegion(hashedToEu, undefined, withHealth), "us");
  // Back up: routing returns.
  t.is(routeRegion("example.de", undefined, { ...withHealth, isDown: downSet() }), "eu");
});

test("routeRegion ignores a fallback naming an unconfigured region", (t) => {
  const o: RouteOptions = { ...opts, fallbacks: { eu: "mars" }, isDown: downSet("eu") };
  t.is(routeRegion("example.de", undefined, o), "eu");
});
