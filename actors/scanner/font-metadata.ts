/**
 * Reads identity and licence fields from font bytes (name and OS/2 tables) with fontkitten.
 * Never throws: bytes come from arbitrary sites, so malformed input becomes a parseError.
 * WOFF and WOFF2 are unwrapped or size-checked first (font-decode.ts), so no declared length
 * is trusted. This runs synchronously: the scanner calls it only inside the worker pool
 * (font-parse-pool.ts), which adds the time and heap limits a parser bug would need.
 */
import { createHash } from "node:crypto";
import { create, type Font } from "fontkitten";
import type { FontMetadata, ParseLimit } from "../../protocol/messages.ts";
import { checkWoff2, firstFaceOfCollection, FontOversizedError, woffToSfnt } from "./font-decode.ts";

export type MetadataResult = { metadata: FontMetadata | null; parseError: string | null; parseLimit?: ParseLimit };

/** Default of scanner.fontParse.maxDecodedBytes: a font decoding to more is recorded `oversized`. */
export const DEFAULT_MAX_DECODED_BYTES = 32 * 1024 * 1024;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Container format from the first four bytes, or null when they are no font magic. */
export function sniffFontFormat(bytes: Uint8Array): string | null {
  if (bytes.length < 4) return null;
  const magic = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!);
  switch (magic) {
    case "wOF2":
      return "woff2";
    case "wOFF":
      return "woff";
    case "OTTO":
      return "otf";
    case "\x00\x01\x00\x00":
    case "true":
      return "ttf";
    case "ttcf":
      return "ttc";
    default:
      return null;
  }
}

/**
 * Metadata of one font file. For a collection (`format: "ttc"`) the fields describe its first
 * face: the protocol has one metadata record per file.
 */
export function readFontMetadata(bytes: Uint8Array, maxDecodedBytes = DEFAULT_MAX_DECODED_BYTES): MetadataResult {
  const format = sniffFontFormat(bytes);
  if (!format) return { metadata: null, parseError: `unknown font format (magic ${hexHead(bytes)})` };
  try {
    let sfnt = bytes;
    let dropped: string[] = [];
    if (format === "woff") ({ sfnt, dropped } = woffToSfnt(bytes, maxDecodedBytes));
    if (format === "woff2") checkWoff2(bytes, maxDecodedBytes);
    if (format === "ttc") sfnt = firstFaceOfCollection(bytes);
    const parsed = create(Buffer.from(sfnt.buffer, sfnt.byteOffset, sfnt.byteLength));
    const font = parsed.isCollection ? parsed.fonts[0] : parsed;
    if (!font) return { metadata: null, parseError: "font collection holds no faces" };
    const result = describe(font, format);
    // Say which tables were broken when that is why nothing could be read.
    if (result.parseError && dropped.length > 0) result.parseError += ` (${dropped.join("; ")})`.slice(0, 500);
    return result;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof FontOversizedError) {
      return { metadata: null, parseError: `oversized: ${message}`, parseLimit: "oversized" };
    }
    return { metadata: null, parseError: `${format}: ${message}` };
  }
}

function describe(font: Font, format: string): MetadataResult {
  const name = (key: string): string | null => clean(font.getName(key));
  // fontkitten decodes tables lazily and swallows table errors, so a truncated file can yield a
  // font object with nothing in it; that is a parse failure, not a font without names.
  const os2 = font["OS/2"] as Font["OS/2"] | undefined;
  const postscriptName = name("postscriptName");
  const legacyFamily = name("fontFamily");
  if (!os2 && postscriptName === null && legacyFamily === null) {
    return { metadata: null, parseError: `${format}: no readable name or OS/2 table` };
  }
  const metadata: FontMetadata = {
    format,
    // Typographic names (IDs 16/17) group weights into one family; IDs 1/2 split at four styles.
    family: name("preferredFamily") ?? legacyFamily,
    subfamily: name("preferredSubfamily") ?? name("fontSubfamily"),
    fullName: name("fullName"),
    postscriptName,
    version: name("version"),
    manufacturer: name("manufacturer"),
    designer: name("designer"),
    vendorId: os2 ? clean(os2.vendorID.replace(/\0/g, "")) : null,
    copyright: name("copyright"),
    trademark: name("trademark"),
    license: name("license"),
    licenseUrl: name("licenseURL"),
    fsType: os2 ? rawFsType(os2.fsType) : null,
    isVariable: Object.keys(font.variationAxes ?? {}).length > 0,
  };
  return { metadata, parseError: null };
}

/**
 * fontkitten decodes fsType into named flags; rebuild the uint16 from them. Reserved bits
 * (0, 4-7, 10-15) are not exposed and come back as 0, which is what a valid font has anyway.
 */
function rawFsType(flags: Font["OS/2"]["fsType"]): number {
  return (
    (flags.noEmbedding ? 0x0002 : 0) |
    (flags.viewOnly ? 0x0004 : 0) |
    (flags.editable ? 0x0008 : 0) |
    (flags.noSubsetting ? 0x0100 : 0) |
    (flags.bitmapOnly ? 0x0200 : 0)
  );
}

function clean(value: string | null | undefined): string | null {
  const v = typeof value === "string" ? value.trim() : "";
  return v === "" ? null : v;
}

function hexHead(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join(" ") || "empty";
}
