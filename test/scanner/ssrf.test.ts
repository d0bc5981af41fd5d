import test from "ava";
import { hostMatches, nonPublicReason, resolvePublicAddress } from "../../actors/scanner/ssrf.ts";

const strict = { allowHosts: [] };

const refused: Array<[host: string, why: RegExp]> = [
  ["127.0.0.1", /loopback/],
  ["10.0.0.1", /private/],
  ["172.20.1.1", /private/],
  ["192.168.1.10", /private/],
  ["169.254.169.254", /linkLocal/],
  ["100.64.0.1", /carrierGradeNat/],
  ["0.0.0.0", /unspecified/],
  ["224.0.0.1", /multicast/],
  ["240.0.0.1", /reserved/],
  ["255.255.255.255", /broadcast/],
  ["[::1]", /loopback/],
  ["::", /unspecified/],
  ["fe80::1", /linkLocal/],
  ["fd00::1", /uniqueLocal/],
  ["ff02::1", /multicast/],
  ["::ffff:127.0.0.1", /ipv4Mapped of loopback/],
  ["[::ffff:10.1.2.3]", /ipv4Mapped of private/],
  ["64:ff9b::a9fe:a9fe", /rfc6052 of linkLocal/], // NAT64 form of 169.254.169.254
  ["2002:c0a8:0101::1", /6to4 of private/], // 6to4 wrapping 192.168.1.1
  // IPv4-compatible and other transition or reserved forms outside global unicast.
  ["[::7f00:1]", /ipv4Compatible of loopback 127\.0\.0\.1/],
  ["::127.0.0.1", /ipv4Compatible of loopback/],
  ["[::a9fe:a9fe]", /ipv4Compatible of linkLocal 169\.254\.169\.254/],
  ["::8.8.8.8", /ipv4Compatible of unicast 8\.8\.8\.8 \(deprecated, never public\)/],
  ["::ffff:0:7f00:1", /rfc6145/], // IPv4-translated 127.0.0.1
  ["64:ff9b:1::7f00:1", /local-use prefix/], // local-use NAT64 prefix (RFC 8215)
  ["2001:0:4136:e378:8000:63bf:3fff:fdd2", /teredo/],
  ["100::1", /discard/],
  ["2001:db8::1", /reserved/],
  ["4000::1", /outside global unicast/],
];
for (const [host, why] of refused) {
  test(`refuses ${host}`, async (t) => {
    const result = await resolvePublicAddress(host, strict);
    t.false(result.ok);
    if (!result.ok) t.regex(result.reason, why);
  });
}

test("accepts public addresses, and NAT64 of a public IPv4", async (t) => {
  t.deepEqual(await resolvePublicAddress("93.184.216.34", strict), { ok: true, address: "93.184.216.34" });
  t.deepEqual(await resolvePublicAddress("[2606:4700::1111]", strict), { ok: true, address: "2606:4700::1111" });
  t.is(nonPublicReason("64:ff9b::5db8:d822"), null); // 93.184.216.34 via NAT64
});

test("refuses a name mapped to a private address", async (t) => {
  const result = await resolvePublicAddress("intranet.example.com", {
    allowHosts: ["*.test"],
    hostMap: { "intranet.example.com": "10.1.2.3" },
  });
  t.false(result.ok);
  if (!result.ok) t.regex(result.reason, /intranet\.example\.com resolves to 10\.1\.2\.3 \(private\)/);
});

test("refuses localhost through real DNS", async (t) => {
  const result = await resolvePublicAddress("localhost", strict);
  t.false(result.ok);
});

test("accepts an allowlisted *.test host whatever it maps to", async (t) => {
  const policy = { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } };
  t.deepEqual(await resolvePublicAddress("site07.test", policy), { ok: true, address: "127.0.0.1" });
  t.deepEqual(await resolvePublicAddress("Assets.Site07.TEST.", policy), { ok: true, address: "127.0.0.1" });
  // The pattern needs a label before the suffix; an unlisted name stays refused.
  t.false((await resolvePublicAddress("test", { ...policy, hostMap: { test: "127.0.0.1" } })).ok);
});

test("DNS failures are reported with a dns: reason", async (t) => {
  const result = await resolvePublicAddress("no-such-host.invalid", strict);
  t.false(result.ok);
  if (!result.ok) t.regex(result.reason, /^dns: /);
  const empty = await resolvePublicAddress("", strict);
  t.false(empty.ok);
});

test("host patterns", (t) => {
  t.true(hostMatches("a.test", "*.test"));
  t.true(hostMatches("b.a.test", "*.test"));
  t.false(hostMatches("test", "*.test"));
  t.false(hostMatches("atest", "*.test"));
  t.true(hostMatches("Example.COM", "example.com"));
  t.false(hostMatches("www.example.com", "example.com"));
});
