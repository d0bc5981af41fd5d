/**
 * Picks the region that scans a domain: a valid hint, else the TLD map, else a stable hash; while
 * that region is down past its grace period, its configured fallback.
 */
import { hash } from "node:crypto";

/**
 * Options of {@link routeRegion}.
 * - `regions`: every configured region (config `regions`); only these are ever returned, besides `defaultRegion`.
 * - `defaultRegion`: returned when `regions` is empty or the domain is empty.
 * - `tldRegions`: suffix → region, e.g. `{ de: "eu", "co.uk": "eu" }`; the longest matching suffix wins,
 *   keys are case-insensitive and may start with a dot. Entries naming an unconfigured region are ignored.
 */
export type RouteOptions = {
  regions: readonly string[];
  defaultRegion: string;
  tldRegions: Readonly<Record<string, string>>;
  /** Region → the region taking its new domains while it is down (config `coordinator.fallbackRegions`). */
  fallbacks?: Readonly<Record<string, string>>;
  /** Is this region down past its grace period? Without it no region is ever down. */
  isDown?: (region: string) => boolean;
};

/**
 * Where a domain routed to `primary` goes now: `primary` while it is up; else the first region up
 * along its fallback chain (`eu → us → ap`); if every region on the chain is down, `primary`
 * itself, so the work waits there durably rather than anywhere arbitrary.
 */
export function fallbackRegion(
  primary: string,
  fallbacks: Readonly<Record<string, string>>,
  isDown: (region: string) => boolean,
): string {
  const visited = new Set<string>();
  let region = primary;
  while (isDown(region)) {
    visited.add(region);
    const next = fallbacks[region];
    if (next === undefined || visited.has(next)) return primary;
    region = next;
  }
  return region;
}

/** sha1 of region + domain, first 48 bits: a stable score, the same in every process and release. */
function score(region: string, domain: string): number {
  return hash("sha1", `${region}\u0000${domain}`, "buffer").readUIntBE(0, 6);
}

/** Normalised suffix maps, built once per config object rather than once per domain. */
const suffixMaps = new WeakMap<object, Map<string, string>>();

function suffixMap(tldRegions: Readonly<Record<string, string>>): Map<string, string> {
  let map = suffixMaps.get(tldRegions);
  if (map === undefined) {
    map = new Map();
    for (const [suffix, region] of Object.entries(tldRegions)) {
      map.set(
        suffix
          .trim()
          .toLowerCase()
          .replace(/^\.+|(?<!\.)\.+$/g, ""),
        region,
      );
    }
    suffixMaps.set(tldRegions, map);
  }
  return map;
}

function fromSuffixMap(domain: string, opts: RouteOptions): string | undefined {
  const map = suffixMap(opts.tldRegions);
  // Walk from the longest suffix to the TLD so "co.uk" beats "uk".
  const labels = domain.split(".");
  for (let i = 0; i < labels.length; i++) {
    const region = map.get(labels.slice(i).join("."));
    if (region !== undefined && opts.regions.includes(region)) return region;
  }
  return undefined;
}

/**
 * Region for `domain` (already normalised, lower-case punycode). `hint` wins when it names a configured
 * region (case-insensitive). Hash fallback is rendezvous hashing: independent of the order of `regions`, and
 * adding or removing a region only moves the domains that hash to it.
 */
export function routeRegion(domain: string, hint: string | undefined, opts: RouteOptions): string {
  const primary = primaryRegion(domain, hint, opts);
  if (!opts.isDown || !opts.fallbacks) return primary;
  const fallbacks = opts.fallbacks;
  // Only configured regions take work; a fallback naming another region is ignored.
  const usable = Object.fromEntries(Object.entries(fallbacks).filter(([, to]) => opts.regions.includes(to)));
  return fallbackRegion(primary, usable, opts.isDown);
}

/** The region a domain belongs to when every region is up. */
export function primaryRegion(domain: string, hint: string | undefined, opts: RouteOptions): string {
  const wanted = hint?.trim().toLowerCase();
  const hinted = wanted ? opts.regions.find((r) => r.toLowerCase() === wanted) : undefined;
  if (hinted !== undefined) return hinted;

  const name = domain
    .trim()
    .toLowerCase()
    .replace(/(?<!\.)\.+$/, "");
  if (name === "" || opts.regions.length === 0) return opts.defaultRegion;

  const mapped = fromSuffixMap(name, opts);
  if (mapped !== undefined) return mapped;

  let best = opts.defaultRegion;
  let bestScore = -1;
  for (const region of opts.regions) {
    const s = score(region, name);
    // Ties (vanishingly rare) go to the lexically smaller region so the result never depends on order.
    if (s > bestScore || (s === bestScore && region < best)) {
      best = region;
      bestScore = s;
    }
  }
  return best;
}
