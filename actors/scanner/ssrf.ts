/**
 * SSRF guard: a scan target must resolve only to public unicast addresses, so a feed URL cannot
 * make the scanner's browser reach cloud metadata, the cluster network or the scanner itself.
 */
import { lookup } from "node:dns/promises";
import ipaddr from "ipaddr.js";

export type AddressCheck = { ok: true; address: string } | { ok: false; reason: string };

export type AddressPolicy = {
  /** Hosts allowed whatever they resolve to: exact names or `*.suffix` patterns (tests, corpora). */
  allowHosts: string[];
  /** Static resolution instead of DNS (`*.test` → `127.0.0.1`), for tests. */
  hostMap?: Record<string, string>;
};

/** `*.test` matches `a.test` and `b.a.test` but not `test`; other patterns match exactly. */
export function hostMatches(host: string, pattern: string): boolean {
  const h = normalizeHost(host);
  const p = normalizeHost(pattern);
  return p.startsWith("*.") ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
}

/** Why an address is not public, or null when it is public unicast. */
export function nonPublicReason(address: string): string | null {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(canonical(address));
  } catch {
    return `not an IP address: ${address}`;
  }
  if (ip.kind() === "ipv4") {
    const range = ip.range();
    return range === "unicast" ? null : range;
  }
  const v6 = ip as ipaddr.IPv6;
  const range = v6.range();
  // ipaddr.js calls whatever it has no name for "unicast", including the IPv4-compatible ::/96
  // (`[::7f00:1]` is 127.0.0.1) and the rest of ::/8; only 2000::/3 is global unicast.
  if (range === "unicast") return v6.match(GLOBAL_UNICAST) ? null : ipv4CompatibleReason(v6);
  // Forms that embed an IPv4 address are judged by it: NAT64 (rfc6052) carries public sites
  // on IPv6-only networks; mapped and 6to4 forms must not smuggle a private IPv4 through.
  const embedded = embeddedIPv4(v6, range);
  if (embedded) {
    const inner = nonPublicReason(embedded);
    return inner ? `${range} of ${inner} ${embedded}` : null;
  }
  return range === "rfc6052" ? "rfc6052 local-use prefix (not 64:ff9b::/96)" : range;
}

/**
 * IPv6 in the form a connection would use: ipaddr.js reads `::8.8.8.8` (IPv4-compatible) as
 * `::ffff:8.8.8.8` (mapped), while the URL parser, like the socket, keeps it `::808:808`.
 */
function canonical(address: string): string {
  return address.includes(":") ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

const GLOBAL_UNICAST = ipaddr.parseCIDR("2000::/3") as [ipaddr.IPv6, number];
const IPV4_COMPATIBLE = ipaddr.parseCIDR("::/96") as [ipaddr.IPv6, number];

function ipv4CompatibleReason(ip: ipaddr.IPv6): string {
  if (!ip.match(IPV4_COMPATIBLE)) return "reserved (outside global unicast 2000::/3)";
  const embedded = ip.toByteArray().slice(12, 16).join(".");
  return `ipv4Compatible of ${nonPublicReason(embedded) ?? "unicast"} ${embedded} (deprecated, never public)`;
}

/** The embedded IPv4 address, when the prefix really is the one its range names. */
function embeddedIPv4(ip: ipaddr.IPv6, range: string): string | null {
  const b = ip.toByteArray();
  const prefixIs = (bytes: number[]) => bytes.every((v, i) => b[i] === v);
  if (range === "ipv4Mapped" && prefixIs([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])) return b.slice(12, 16).join(".");
  if (range === "rfc6052" && prefixIs([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])) return b.slice(12, 16).join(".");
  if (range === "6to4") return b.slice(2, 6).join(".");
  return null;
}

/**
 * Resolves `hostname` (URL form: IPv6 literals may keep their brackets) and accepts it only when
 * every address is public, since the browser may connect to any of them; allowlisted hosts pass
 * whatever they resolve to. Never throws.
 */
export async function resolvePublicAddress(hostname: string, opts: AddressPolicy): Promise<AddressCheck> {
  const host = normalizeHost(hostname);
  if (host === "") return { ok: false, reason: "dns: empty hostname" };
  let addresses: string[];
  const mapped = Object.entries(opts.hostMap ?? {}).find(([pattern]) => hostMatches(host, pattern));
  if (mapped) {
    addresses = [mapped[1]];
  } else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "lookup failed";
      return { ok: false, reason: `dns: ${code} for ${host}` };
    }
  }
  const first = addresses[0];
  if (first === undefined) return { ok: false, reason: `dns: no address for ${host}` };
  if (opts.allowHosts.some((pattern) => hostMatches(host, pattern))) return { ok: true, address: first };
  for (const address of addresses) {
    const reason = nonPublicReason(address);
    if (reason) return { ok: false, reason: `${host} resolves to ${address} (${reason})` };
  }
  return { ok: true, address: first };
}

function normalizeHost(host: string): string {
  return host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.$/, "");
}
