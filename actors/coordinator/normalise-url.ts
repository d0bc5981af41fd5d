/**
 * Turns one submitted URL (or bare host) into the registrable domain the coordinator dedupes on and the
 * seed URL the scanner starts from, or a rejection with a code and a human reason.
 *
 * Registrable domain = ICANN section of the Public Suffix List only (tldts, `allowPrivateDomains: false`):
 * `alice.github.io` → `github.io`. Private-section suffixes (github.io, blogspot.com, …) are run by one
 * operator on shared infrastructure, so politeness and "seen recently" apply to that operator; the seed URL
 * keeps the full host, so the submitted site is still what gets scanned.
 */
import { parse } from "tldts";
import { MAX_URL_LENGTH } from "../../protocol/mod.ts";

export const REJECT_CODES = [
  "malformed",
  "unsupported-scheme",
  "ip-literal",
  "private-host",
  "no-registrable-domain",
] as const;

/** Why a submission was refused; stable strings, safe to count in metrics. */
export type RejectCode = (typeof REJECT_CODES)[number];

/**
 * Result of {@link normaliseSubmission}.
 * - `domain`: lower-case, punycode registrable domain (ICANN suffixes), e.g. `example.co.uk`.
 * - `seedUrl`: origin + `/`; scheme, host and non-default port kept, userinfo/path/query/fragment dropped.
 */
export type NormaliseOutcome =
  { ok: true; domain: string; seedUrl: string } | { ok: false; code: RejectCode; reason: string };

/**
 * Options of {@link normaliseSubmission}.
 * `allowHosts`: patterns exempt from the reserved/private-name and unknown-TLD checks (demos and tests).
 * `*.test` matches any host under `test` (not `test` itself); a pattern without `*.` matches that exact
 * host, and is the only way to admit an IP literal (e.g. `127.0.0.1`). Default in config: `[]`.
 */
export type NormaliseOptions = { allowHosts: readonly string[] };

/** Names (and everything under them) that never reach the public internet. */
const PRIVATE_SUFFIXES = [
  "localhost",
  "local", // mDNS, RFC 6762
  "internal",
  "intranet",
  "lan",
  "home.arpa", // RFC 8375
  "test", // RFC 6761 / 2606
  "example",
  "invalid",
  "onion", // RFC 7686: needs Tor
  "alt", // RFC 9476
];

/** Schemes we accept. */
const WEB_SCHEMES = new Set(["http:", "https:"]);
const SCHEME_PREFIX = /^([a-z][a-z0-9+.-]*):/i;
/** `host:port[/…]`, which WHATWG would otherwise read as scheme `host:`. */
const HOST_PORT = /^[^/:?#@]+:\d+(?:[/?#]|$)/;
/** Whitespace or control characters anywhere (WHATWG would silently drop tabs/newlines). */
const BAD_CHARS = /[\s\u0000-\u001f\u007f-\u009f\u200b-\u200f]/u;
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/;

const reject = (code: RejectCode, reason: string): NormaliseOutcome => ({ ok: false, code, reason });

/** True if `host` (lower-case, no trailing dot) is `suffix` or a sub-domain of it. */
function under(host: string, suffix: string): boolean {
  return host === suffix || host.endsWith(`.${suffix}`);
}

/** Matches a lower-case host against an allow-list pattern (see {@link NormaliseOptions}). */
export function matchesHostPattern(host: string, pattern: string): boolean {
  const p = pattern.trim().toLowerCase().replace(/\.$/, "");
  if (p.startsWith("*.")) return host.endsWith(p.slice(1));
  return host === p;
}

/** Adds `https://` to bare hosts; leaves anything with a scheme alone. */
function withScheme(input: string): string {
  if (input.startsWith("//")) return `https:${input}`;
  if (!SCHEME_PREFIX.test(input) || HOST_PORT.test(input)) return `https://${input}`;
  return input;
}

/**
 * Normalises one submission. Bare hosts get `https://`; only http and https are accepted; IP literals,
 * private/reserved names (unless allow-listed), bare public suffixes and TLDs outside the ICANN list are
 * rejected with a {@link RejectCode} and a reason fit to show the submitter. Pure and synchronous.
 */
export function normaliseSubmission(raw: string, opts: NormaliseOptions): NormaliseOutcome {
  const input = raw.trim();
  if (input === "") return reject("malformed", "empty submission");
  if (input.length > MAX_URL_LENGTH) {
    return reject("malformed", `URL is ${input.length} characters long; the limit is ${MAX_URL_LENGTH}`);
  }
  if (BAD_CHARS.test(input)) return reject("malformed", "URL contains whitespace or control characters");

  const candidate = withScheme(input);
  const scheme = SCHEME_PREFIX.exec(candidate)?.[1]?.toLowerCase();
  if (scheme === undefined || !WEB_SCHEMES.has(`${scheme}:`)) {
    return reject("unsupported-scheme", `scheme "${scheme ?? ""}:" is not http or https`);
  }
  let url: URL;
  try {
    // WHATWG parsing lower-cases, converts IDN to punycode and canonicalises odd IPv4 forms (0x7f.1, 2130706433).
    url = new URL(candidate);
  } catch {
    return reject("malformed", "not a parseable URL");
  }
  // An FQDN's trailing dot names the same site; drop it so dedupe and seeds agree.
  const host = url.hostname.replace(/(?<!\.)\.+$/, "");
  if (host === "") return reject("malformed", "URL has no host");
  url.hostname = host;
  const seedUrl = `${url.origin}/`;
  const allowed = opts.allowHosts.some((p) => matchesHostPattern(host, p));

  if (host.startsWith("[") || IPV4.test(host)) {
    if (allowed) return { ok: true, domain: host, seedUrl };
    return reject("ip-literal", `host ${host} is an IP address; submit a domain name`);
  }
  const info = parse(host, { allowPrivateDomains: false });
  if (info.isIp === true) return reject("ip-literal", `host ${host} is an IP address; submit a domain name`);
  if (info.hostname === null) return reject("malformed", `host ${host} is not a valid DNS name`);
  if (allowed) return { ok: true, domain: info.domain ?? host, seedUrl };

  const reserved = PRIVATE_SUFFIXES.find((s) => under(host, s));
  if (reserved !== undefined) {
    const where = host === reserved ? "is" : `is under .${reserved},`;
    return reject("private-host", `host ${host} ${where} a private or reserved name`);
  }
  if (info.isIcann === true && info.domain === null) {
    return reject("no-registrable-domain", `${host} is a public suffix, not a site; submit a domain under it`);
  }
  if (!host.includes(".")) return reject("private-host", `single-label host ${host} is not a public name`);
  if (info.isIcann !== true || info.domain === null) {
    const tld = host.slice(host.lastIndexOf(".") + 1);
    return reject("no-registrable-domain", `top-level domain .${tld} is not in the ICANN public suffix list`);
  }
  return { ok: true, domain: info.domain, seedUrl };
}
