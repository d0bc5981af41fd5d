import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import test from "ava";
import { fontMetadataV1 } from "../../protocol/messages.ts";
import { readFontMetadata, sha256Hex, sniffFontFormat } from "../../actors/scanner/font-metadata.ts";

const fontsource = (pkg: string, file: string): Buffer =>
  readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${pkg}/files/${file}`)));

test("reads a woff2: Roboto, vendor GOOG, OFL licence URL, installable", (t) => {
  const { metadata, parseError } = readFontMetadata(fontsource("roboto", "roboto-latin-400-normal.woff2"));
  t.is(parseError, null);
  t.truthy(metadata);
  fontMetadataV1.parse(metadata);
  t.like(metadata, {
    format: "woff2",
    family: "Roboto",
    subfamily: "Regular",
    postscriptName: "Roboto-Regular",
    vendorId: "GOOG",
    licenseUrl: "https://openfontlicense.org",
    license: null, // the fontsource subsetter drops name ID 13
    fsType: 0,
    isVariable: false,
  });
  t.regex(metadata?.copyright ?? "", /Roboto Project Authors/);
  t.regex(metadata?.version ?? "", /^Version \d/);
});

test("reads a woff: Lato Bold, vendor tyPL, SIL licence URL", (t) => {
  const { metadata, parseError } = readFontMetadata(fontsource("lato", "lato-latin-700-normal.woff"));
  t.is(parseError, null);
  fontMetadataV1.parse(metadata);
  t.like(metadata, {
    format: "woff",
    family: "Lato",
    subfamily: "Bold",
    vendorId: "tyPL",
    licenseUrl: "http://scripts.sil.org/OFL",
    fsType: 0,
  });
});

test("reads a font that carries typographic names (IDs 16/17); trims the padded vendor tag", (t) => {
  const { metadata } = readFontMetadata(fontsource("merriweather", "merriweather-latin-400-normal.woff2"));
  t.is(metadata?.family, "Merriweather Light 18pt");
  t.is(metadata?.vendorId, "STC"); // padded "STC " in the OS/2 table
});

const garbage: Array<[string, Uint8Array]> = [
  ["empty", new Uint8Array(0)],
  ["text", new TextEncoder().encode("<!doctype html><h1>404 Not Found</h1>")],
  ["truncated woff2 header", fontsource("roboto", "roboto-latin-400-normal.woff2").subarray(0, 100)],
  ["truncated woff2 body", fontsource("roboto", "roboto-latin-400-normal.woff2").subarray(0, 1000)],
  ["truncated woff", fontsource("lato", "lato-latin-400-normal.woff").subarray(0, 1000)],
  ["magic then noise", Uint8Array.from({ length: 4096 }, (_, i) => (i < 4 ? "wOF2".charCodeAt(i) : (i * 7919) % 251))],
  ["ttf magic then noise", Uint8Array.from({ length: 512 }, (_, i) => (i === 1 ? 1 : (i * 31) % 256))],
];
for (const [label, bytes] of garbage) {
  test(`malformed bytes give a parseError, never a throw: ${label}`, (t) => {
    let result: ReturnType<typeof readFontMetadata> | undefined;
    t.notThrows(() => {
      result = readFontMetadata(bytes);
    });
    t.is(result?.metadata, null);
    t.regex(result?.parseError ?? "", /\S/);
  });
}

test("sniffs container formats by magic bytes", (t) => {
  const magic = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  t.is(sniffFontFormat(magic("wOF2....")), "woff2");
  t.is(sniffFontFormat(magic("wOFF....")), "woff");
  t.is(sniffFontFormat(magic("OTTO....")), "otf");
  t.is(sniffFontFormat(magic("\x00\x01\x00\x00")), "ttf");
  t.is(sniffFontFormat(magic("true")), "ttf");
  t.is(sniffFontFormat(magic("ttcf")), "ttc");
  t.is(sniffFontFormat(magic("GIF8")), null);
  t.is(sniffFontFormat(magic("wO")), null);
});

test("sha256Hex matches node:crypto over the same bytes", (t) => {
  const bytes = fontsource("inter", "inter-latin-400-normal.woff2");
  t.is(sha256Hex(bytes), createHash("sha256").update(bytes).digest("hex"));
  t.is(sha256Hex(bytes.subarray(10, 20)), createHash("sha256").update(bytes.subarray(10, 20)).digest("hex"));
});
