import test from "ava";
import { normaliseSubmission, REJECT_CODES, type RejectCode } from "../../actors/coordinator/normalise-url.ts";

const none = { allowHosts: [] } as const;

const accepted: ReadonlyArray<[input: string, domain: string, seedUrl: string]> = [
  ["HTTPS://WWW.Example.CO.UK:8443/a?b#c", "example.co.uk", "https://www.example.co.uk:8443/"],
  ["münchen.de", "xn--mnchen-3ya.de", "https://xn--mnchen-3ya.de/"],
  ["https://MÜNCHEN.de/x", "xn--mnchen-3ya.de", "https://xn--mnchen-3ya.de/"],
  ["  example.com/path?q=1  ", "example.com", "https://example.com/"],
  ["example.com:8080/x", "example.com", "https://example.com:8080/"],
  ["//cdn.example.org/font.woff2", "example.org", "https://cdn.example.org/"],
  ["http://user:pw@example.com", "example.com", "http://example.com/"],
  ["https://user@sub.example.com:443/", "example.com", "https://sub.example.com/"],
  ["http://example.com:80/", "example.com", "http://example.com/"],
  ["https://example.com./", "example.com", "https://example.com/"],
  ["http:example.com", "example.com", "http://example.com/"],
  // ICANN section only: a private-section suffix does not make each tenant its own domain.
  ["https://alice.github.io/blog", "github.io", "https://alice.github.io/"],
  ["https://a.b.kawasaki.jp/", "a.b.kawasaki.jp", "https://a.b.kawasaki.jp/"],
];

for (const [input, domain, seedUrl] of accepted) {
  test(`accepts ${JSON.stringify(input)}`, (t) => {
    t.deepEqual(normaliseSubmission(input, none), { ok: true, domain, seedUrl });
  });
}

const rejected: ReadonlyArray<[input: string, code: RejectCode]> = [
  ["", "malformed"],
  ["   ", "malformed"],
  ["https://exa mple.com/", "malformed"],
  ["https://example.com/a\tb", "malformed"],
  ["https://example.com/\u0000", "malformed"],
  ["https://example.com/a\u00a0b", "malformed"],
  ["https://exam\u200bple.com/", "malformed"],
  [`https://example.com/${"a".repeat(5000)}`, "malformed"],
  ["https://a..b.com/", "malformed"],
  ["https://-bad.com/", "malformed"],
  ["https://xn--abc.com/", "malformed"],
  ["http://example.com:99999/", "malformed"],
  ["ftp://x.com", "unsupported-scheme"],
  ["javascript:alert(1)", "unsupported-scheme"],
  ["mailto:someone@example.com", "unsupported-scheme"],
  ["file:///etc/passwd", "unsupported-scheme"],
  ["data:text/html,hi", "unsupported-scheme"],
  ["http://[::1]/", "ip-literal"],
  ["https://[::ffff:127.0.0.1]/", "ip-literal"],
  ["http://127.1/", "ip-literal"],
  ["http://2130706433/", "ip-literal"],
  ["http://0x7f.1/", "ip-literal"],
  ["8.8.8.8", "ip-literal"],
  ["localhost:3000", "private-host"],
  ["http://localhost/", "private-host"],
  ["app.localhost", "private-host"],
  ["printer.local", "private-host"],
  ["db.internal", "private-host"],
  ["wiki.intranet", "private-host"],
  ["nas.home.arpa", "private-host"],
  ["router.lan", "private-host"],
  ["site01.test", "private-host"],
  ["www.example", "private-host"],
  ["foo.invalid", "private-host"],
  ["abc.onion", "private-host"],
  ["http://fileserver/", "private-host"],
  ["co.uk", "no-registrable-domain"],
  ["https://com/", "no-registrable-domain"],
  ["kawasaki.jp", "no-registrable-domain"],
  ["shop.notarealtld", "no-registrable-domain"],
];

for (const [input, code] of rejected) {
  test(`rejects ${JSON.stringify(input.slice(0, 60))} as ${code}`, (t) => {
    const out = normaliseSubmission(input, none);
    t.false(out.ok);
    if (!out.ok) {
      t.is(out.code, code);
      t.true(out.reason.length > 5, "a human reason is given");
    }
  });
}

test("reject codes are the exported list", (t) => {
  t.deepEqual([...REJECT_CODES].sort(), [
    "ip-literal",
    "malformed",
    "no-registrable-domain",
    "private-host",
    "unsupported-scheme",
  ]);
});

test("allowHosts admits *.test for demos, and only what it names", (t) => {
  const opts = { allowHosts: ["*.test"] };
  t.deepEqual(normaliseSubmission("http://site01.test:18080/page", opts), {
    ok: true,
    domain: "site01.test",
    seedUrl: "http://site01.test:18080/",
  });
  t.deepEqual(normaliseSubmission("a.site02.test", opts), {
    ok: true,
    domain: "site02.test",
    seedUrl: "https://a.site02.test/",
  });
  t.like(normaliseSubmission("test", opts), { ok: false, code: "private-host" });
  t.like(normaliseSubmission("latest", opts), { ok: false, code: "private-host" });
  t.like(normaliseSubmission("printer.local", opts), { ok: false, code: "private-host" });
  t.like(normaliseSubmission("http://127.0.0.1/", opts), { ok: false, code: "ip-literal" });
});

test("allowHosts exact entries admit a named host or IP", (t) => {
  const opts = { allowHosts: ["localhost", "127.0.0.1", "demo.notarealtld"] };
  t.deepEqual(normaliseSubmission("localhost:3000", opts), {
    ok: true,
    domain: "localhost",
    seedUrl: "https://localhost:3000/",
  });
  t.deepEqual(normaliseSubmission("http://127.1:18080/x", opts), {
    ok: true,
    domain: "127.0.0.1",
    seedUrl: "http://127.0.0.1:18080/",
  });
  t.like(normaliseSubmission("demo.notarealtld", opts), { ok: true, domain: "demo.notarealtld" });
  t.like(normaliseSubmission("app.localhost", opts), { ok: false, code: "private-host" });
});

test("seed URL never carries credentials, path, query or fragment", (t) => {
  const out = normaliseSubmission("https://admin:hunter2@shop.example.com/cart?id=1#top", none);
  t.true(out.ok);
  if (out.ok) {
    t.is(out.seedUrl, "https://shop.example.com/");
    t.false(out.seedUrl.includes("hunter2"));
  }
});

test("exactly 4096 characters is accepted, 4097 is not", (t) => {
  const base = "https://example.com/";
  const at = base + "a".repeat(4096 - base.length);
  t.like(normaliseSubmission(at, none), { ok: true });
  t.like(normaliseSubmission(`${at}a`, none), { ok: false, code: "malformed" });
});
