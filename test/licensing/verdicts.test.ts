/**
 * Open-licence recognition and the verdict engine, on real font files: open fonts from the
 * @fontsource packages and the commercial-licence fixture (Lato with rewritten licence records).
 */
import test from "ava";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { toLicenseDoc, licenseInputSchema } from "../../actors/licensing/license-record.ts";
import {
  catalogueFromGoogleMetadata,
  claimedLicence,
  knownOpenFamily,
  openCatalogue,
} from "../../actors/licensing/open-licence.ts";
import { decideVerdict, type FontUse, type VerdictInput } from "../../actors/licensing/verdict.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import type { LicenseDoc } from "../../actors/store/documents.ts";
import type { FontMetadata } from "../../protocol/mod.ts";
import { COMMERCIAL_FONT, makeCommercialFont } from "../fixtures/licensing/make-commercial-font.ts";

const NOW = new Date("2026-06-01T00:00:00Z");
const COMMERCIAL_PATH = fileURLToPath(new URL("../fixtures/licensing/commercial-sans.ttf", import.meta.url));

function fontUse(bytes: Buffer, extra: Partial<FontUse> = {}): FontUse {
  const { metadata, parseError } = readFontMetadata(bytes);
  if (!metadata) throw new Error(parseError ?? "unreadable");
  return {
    sha256: sha256Hex(bytes),
    url: "https://example.test/f",
    cssFamilies: ["Brand"],
    metadata,
    provider: null,
    ...extra,
  };
}
const fontsource = (pkg: string, weight = 400, ext = "woff2") =>
  readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${pkg}/files/${pkg}-latin-${weight}-normal.${ext}`)));
const commercial = () => readFileSync(COMMERCIAL_PATH);

function licence(fields: Record<string, unknown>): LicenseDoc {
  const parsed = licenseInputSchema.parse({
    id: "acme-web",
    licensee: "Acme Corp",
    domains: "acme.test",
    family: COMMERCIAL_FONT.family,
    type: "web",
    ...fields,
  });
  return { ...toLicenseDoc(parsed), importedAt: NOW, updatedAt: NOW };
}
const input = (extra: Partial<VerdictInput> = {}): VerdictInput => ({
  domain: "acme.test",
  now: NOW,
  licences: [],
  catalogue: openCatalogue(),
  ...extra,
});

test("the committed commercial fixture is what make-commercial-font.ts builds, and reads as commercial", (t) => {
  const bytes = commercial();
  t.true(makeCommercialFont().equals(bytes), "fixture is reproducible from its script");
  const { metadata } = readFontMetadata(bytes);
  t.like(metadata, {
    format: "ttf",
    family: COMMERCIAL_FONT.family,
    manufacturer: COMMERCIAL_FONT.foundry,
    vendorId: "EXTF",
    license: COMMERCIAL_FONT.license,
    licenseUrl: COMMERCIAL_FONT.licenseUrl,
  });
});

test("licence strings from IDs 13, 14 and 0 are recognised; two licences are ambiguous", (t) => {
  const m = (license: string | null, licenseUrl: string | null = null, copyright: string | null = null) => ({
    license,
    licenseUrl,
    copyright,
  });
  t.like(
    claimedLicence(
      m(
        "This Font Software is licensed under the SIL Open Font License, Version 1.1. This license is available with a FAQ at: https://openfontlicense.org",
      ),
    ),
    { kind: "open", licence: "OFL-1.1", fields: ["license"] },
  );
  t.like(claimedLicence(m(null, "http://scripts.sil.org/OFL")), { kind: "open", licence: "OFL-1.1" });
  t.like(claimedLicence(m(null, null, "Fork Awesome, licensed under the SIL OFL 1.1 (http://scripts.sil.org/OFL)")), {
    kind: "open",
    licence: "OFL-1.1",
    fields: ["copyright"],
  });
  t.like(
    claimedLicence(m("Licensed under the Apache License, Version 2.0", "https://www.apache.org/licenses/LICENSE-2.0")),
    { kind: "open", licence: "Apache-2.0", fields: ["license", "licenseUrl"] },
  );
  t.like(claimedLicence(m("Licensed under the Ubuntu Font Licence 1.0.", "http://font.ubuntu.com/ufl/")), {
    kind: "open",
    licence: "UFL-1.0",
  });
  t.like(claimedLicence(m("Licensed under the Apache License, Version 2.0", "https://openfontlicense.org")), {
    kind: "ambiguous",
    licences: ["Apache-2.0", "OFL-1.1"],
  });
  t.like(claimedLicence(m(COMMERCIAL_FONT.license, COMMERCIAL_FONT.licenseUrl, COMMERCIAL_FONT.copyright)), {
    kind: "none",
  });
  t.like(claimedLicence(null), { kind: "none" });
});

test("the catalogue from google-font-metadata lists every family once, with its licence", (t) => {
  const catalogue = openCatalogue();
  t.is(catalogue, openCatalogue(), "loaded once");
  t.true(catalogue.size > 1800, `${catalogue.size} families`);
  t.like(catalogue.lookup("Open Sans"), { id: "open-sans", licence: "OFL-1.1" });
  t.like(catalogue.lookup("Ubuntu Mono"), { licence: "UFL-1.0" });
  t.like(catalogue.lookup("Arimo"), { licence: "Apache-2.0" });
  t.like(catalogue.lookup("Fira Sans"), { id: "fira-sans", licence: "OFL-1.1" }, "from @fontsource/fira-sans");
  t.like(catalogue.lookup("Merriweather Light 18pt"), { id: "merriweather" }, "style words are dropped");
  t.is(catalogue.lookup("Merriweather Commercial"), null, "other words are not");
  t.is(catalogue.lookup(COMMERCIAL_FONT.family), null);
  t.is(catalogue.lookup(null), null);
  const tiny = catalogueFromGoogleMetadata({
    x: { id: "x-sans", license: { type: "Some Other License" } },
    y: { id: "y-serif", license: { type: "Apache License, Version 2.0", url: "u" } },
  });
  t.is(tiny.size, 1, "unknown licence types are left out");
});

test("Font Awesome Free and Brands are OFL; Pro is not", (t) => {
  t.like(knownOpenFamily("Font Awesome 6 Free"), { licence: "OFL-1.1" });
  t.like(knownOpenFamily("Font Awesome 7 Brands"), { licence: "OFL-1.1" });
  t.like(knownOpenFamily("FontAwesome"), { licence: "OFL-1.1" });
  t.is(knownOpenFamily("Font Awesome 6 Pro"), null);
});

for (const pkg of ["roboto", "open-sans", "lato", "inter", "merriweather", "fira-sans"]) {
  test(`open-licence: @fontsource/${pkg} (ID 13 stripped, ID 14 and the catalogue agree)`, (t) => {
    const use = fontUse(fontsource(pkg), { provider: "self-hosted" });
    t.is(use.metadata?.license, null, "web subsets carry no ID 13");
    const v = decideVerdict(use, input());
    t.is(v.verdict, "open-licence", v.reason);
    t.is(v.licence, "OFL-1.1");
    t.true(
      v.evidence.nameFields.some((f) => f.field === "licenseUrl"),
      "the licence URL is the evidence",
    );
    t.is(v.evidence.catalogue?.licence, "OFL-1.1");
    t.is(v.evidence.provider, "self-hosted");
  });
}

test("open-licence from the WOFF 1.0 files too, and from an open-font provider alone", (t) => {
  t.is(decideVerdict(fontUse(fontsource("roboto", 700, "woff")), input()).verdict, "open-licence");
  const bare = fontUse(fontsource("inter"), { provider: "google-fonts" });
  bare.metadata = { ...bare.metadata!, licenseUrl: null, family: "Unlisted Family" };
  const v = decideVerdict(bare, input());
  t.is(v.verdict, "open-licence");
  t.regex(v.reason, /Google Fonts/);
});

test("unlicensed: the commercial fixture self-hosted with no licence", (t) => {
  const v = decideVerdict(fontUse(commercial(), { provider: "self-hosted" }), input());
  t.is(v.verdict, "unlicensed", v.reason);
  t.deepEqual(
    v.evidence.nameFields.map((f) => f.field),
    ["license", "licenseUrl", "copyright"],
  );
  t.is(v.evidence.nameFields[0]?.value, COMMERCIAL_FONT.license);
});

test("licensed: a web licence for the domain (by family + foundry, or by file), and for subdomains", (t) => {
  const use = fontUse(commercial());
  const byFamily = decideVerdict(use, input({ licences: [licence({ foundry: "Example Type Foundry" })] }));
  t.like(byFamily, { verdict: "licensed", licence: "acme-web" });
  t.like(byFamily.evidence, { licenseId: "acme-web", licensee: "Acme Corp" });
  const byFile = decideVerdict(use, input({ licences: [licence({ family: "Whatever", sha256: use.sha256 })] }));
  t.is(byFile.verdict, "licensed");
  t.is(decideVerdict(use, input({ domain: "shop.acme.test", licences: [licence({})] })).verdict, "licensed");
});

test("licences that do not cover the use: desktop, app, expired, not yet valid, other domain, other foundry, other file", (t) => {
  const use = fontUse(commercial());
  const cases: Array<[Record<string, unknown>, RegExp | null]> = [
    [{ type: "desktop" }, /a desktop licence does not cover web use/],
    [{ type: "app" }, /an? app licence does not cover web use/],
    [{ validTo: "2025-12-31" }, /expired 2025-12-31/],
    [{ validFrom: "2027-01-01" }, /not valid before 2027-01-01/],
    [{ foundry: "Other Foundry" }, /another foundry/],
    [{ domains: "other.test" }, null],
    [{ sha256: "b".repeat(64) }, null],
  ];
  for (const [fields, why] of cases) {
    const v = decideVerdict(use, input({ licences: [licence(fields)] }));
    t.is(v.verdict, "unlicensed", JSON.stringify(fields));
    if (why) t.regex(v.evidence.rejected[0]?.why ?? "", why, JSON.stringify(fields));
    else t.deepEqual(v.evidence.rejected, [], "a licence for something else is no evidence");
  }
  // A desktop licence alongside a web licence: the web licence wins.
  t.is(
    decideVerdict(use, input({ licences: [licence({ id: "d", type: "desktop" }), licence({})] })).verdict,
    "licensed",
  );
});

test("subscription providers license through their kit; Fontshare is free but not OFL", (t) => {
  for (const provider of ["adobe-fonts", "monotype", "myfonts", "hoefler-co"]) {
    const v = decideVerdict(fontUse(commercial(), { provider }), input());
    t.is(v.verdict, "licensed", provider);
    t.is(v.licence, provider);
    t.is(v.evidence.provider, provider);
  }
  const fontshare = decideVerdict(fontUse(fontsource("inter"), { provider: "fontshare" }), input());
  t.is(fontshare.verdict, "open-licence");
  t.is(fontshare.licence, "ITF-FFL");
  t.not(fontshare.licence, "OFL-1.1");
});

test("Font Awesome Free files are open; Pro files served from elsewhere are not", (t) => {
  const fa: FontMetadata = {
    ...readFontMetadata(commercial()).metadata!,
    family: "Font Awesome 6 Free",
    manufacturer: "Fonticons, Inc.",
    copyright: "Copyright (c) Font Awesome",
    license: "The Font Awesome Free fonts are licensed under the SIL OFL 1.1",
    licenseUrl: "https://fontawesome.com/license/free",
  };
  const use: FontUse = { sha256: "c".repeat(64), url: "u", cssFamilies: [], metadata: fa, provider: "font-awesome" };
  t.like(decideVerdict(use, input()), { verdict: "open-licence", licence: "OFL-1.1" });
  const pro = {
    ...use,
    metadata: { ...fa, family: "Font Awesome 6 Pro", license: "Commercial licence: https://fontawesome.com/license" },
  };
  t.is(decideVerdict(pro, input()).verdict, "unlicensed");
});

test("ambiguous claims and catalogue conflicts are unknown; unreadable files are unknown", (t) => {
  const base = fontUse(fontsource("roboto"));
  const ambiguous = {
    ...base,
    metadata: { ...base.metadata!, license: "Licensed under the Apache License, Version 2.0" },
  };
  const v = decideVerdict(ambiguous, input());
  t.is(v.verdict, "unknown");
  t.regex(v.reason, /several licences/);
  const conflict = { ...base, metadata: { ...base.metadata!, family: "Arimo" } };
  const c = decideVerdict(conflict, input());
  t.is(c.verdict, "unknown");
  t.regex(c.reason, /catalogue lists arimo as Apache-2.0/);
  t.is(decideVerdict({ ...base, metadata: null }, input()).verdict, "unknown");
  const silent = {
    ...base,
    metadata: { ...base.metadata!, family: "Private Face", licenseUrl: null, copyright: null },
  };
  t.is(decideVerdict(silent, input()).verdict, "unknown");
});

test("the licensing service: its licence counts; when it is unavailable, undecided fonts are pending", (t) => {
  const use = fontUse(commercial());
  t.like(decideVerdict(use, input({ external: { status: "licensed", reference: "svc-42" } })), {
    verdict: "licensed",
    licence: "svc-42",
  });
  t.is(decideVerdict(use, input({ external: { status: "not-licensed" } })).verdict, "unlicensed");
  const pending = decideVerdict(use, input({ external: { status: "unavailable", reason: "timeout" } }));
  t.is(pending.verdict, "pending");
  t.regex(pending.reason, /unavailable \(timeout\)/);
  // What is decided without the service is not held back by it.
  const open = decideVerdict(fontUse(fontsource("lato")), input({ external: { status: "unavailable", reason: "x" } }));
  t.is(open.verdict, "open-licence");
  t.is(
    decideVerdict(use, input({ licences: [licence({})], external: { status: "unavailable", reason: "x" } })).verdict,
    "licensed",
  );
});
