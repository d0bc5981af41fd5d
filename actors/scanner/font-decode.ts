/**
 * Bounded unwrapping of WOFF and WOFF2 before fontkitten sees them. A site controls every length
 * in these containers: fontkitten's own inflate (tiny-inflate) spins forever on a truncated zlib
 * stream, and neither it nor its brotli decoder has an output limit, so a 1 KB file can ask for
 * gigabytes. Here the declared sizes are checked against a cap before anything is decoded, and
 * node:zlib decodes with `maxOutputLength`, so a stream that lies about its size stops at the lie.
 */
import { brotliDecompressSync, inflateSync } from "node:zlib";

/** A font whose declared or actual decoded size is over the cap; recorded as `oversized`. */
export class FontOversizedError extends Error {
  override name = "FontOversizedError";
}

/** A container whose structure is broken (offsets outside the file, streams that lie). */
export class FontContainerError extends Error {
  override name = "FontContainerError";
}

type WoffTable = { tag: string; offset: number; compLength: number; origLength: number; checksum: number };

const WOFF_HEADER = 44;
const WOFF_ENTRY = 20;
const SFNT_HEADER = 12;
const SFNT_ENTRY = 16;
const pad4 = (n: number): number => (n + 3) & ~3;

/** An unwrapped WOFF: the sfnt, and why each table left out of it was broken. */
export type Unwrapped = { sfnt: Uint8Array; dropped: string[] };

/**
 * The sfnt (TTF/OTF) inside a WOFF 1.0 file, every table inflated by node:zlib to exactly its
 * declared origLength. Refuses before inflating when the declared sizes exceed maxDecodedBytes.
 * A table outside the file or with a broken stream is left out, as fontkitten skips tables it
 * cannot decode: a font with a damaged glyf table still has a readable name table.
 */
export function woffToSfnt(bytes: Uint8Array, maxDecodedBytes: number): Unwrapped {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < WOFF_HEADER) throw new FontContainerError("woff header truncated");
  const numTables = view.getUint16(12);
  const totalSfntSize = view.getUint32(16);
  if (numTables === 0 || WOFF_HEADER + numTables * WOFF_ENTRY > bytes.length) {
    throw new FontContainerError(`woff directory of ${numTables} tables does not fit the file`);
  }
  if (totalSfntSize > maxDecodedBytes) {
    throw new FontOversizedError(`woff declares ${totalSfntSize} decoded bytes, over the cap of ${maxDecodedBytes}`);
  }
  const tables: WoffTable[] = [];
  let sfntSize = SFNT_HEADER + numTables * SFNT_ENTRY;
  for (let i = 0; i < numTables; i++) {
    const at = WOFF_HEADER + i * WOFF_ENTRY;
    const table: WoffTable = {
      tag: String.fromCharCode(bytes[at]!, bytes[at + 1]!, bytes[at + 2]!, bytes[at + 3]!),
      offset: view.getUint32(at + 4),
      compLength: view.getUint32(at + 8),
      origLength: view.getUint32(at + 12),
      checksum: view.getUint32(at + 16),
    };
    sfntSize += pad4(table.origLength);
    // Summed before any table is inflated: many tables each under the cap must not add up past it.
    if (sfntSize > maxDecodedBytes) {
      throw new FontOversizedError(`woff tables decode to over ${maxDecodedBytes} bytes (cap)`);
    }
    tables.push(table);
  }
  const decoded: Array<{ table: WoffTable; data: Uint8Array }> = [];
  const dropped: string[] = [];
  for (const table of tables) {
    try {
      decoded.push({ table, data: tableData(bytes, table) });
    } catch (err) {
      if (!(err instanceof FontContainerError)) throw err;
      dropped.push(err.message);
    }
  }
  return { sfnt: assembleSfnt(view.getUint32(4), decoded), dropped };
}

function assembleSfnt(flavor: number, tables: Array<{ table: WoffTable; data: Uint8Array }>): Uint8Array {
  const size = tables.reduce((sum, t) => sum + pad4(t.table.origLength), SFNT_HEADER + tables.length * SFNT_ENTRY);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  const n = tables.length;
  const entrySelector = Math.floor(Math.log2(n));
  const searchRange = 2 ** entrySelector * 16;
  view.setUint32(0, flavor);
  view.setUint16(4, n);
  view.setUint16(6, searchRange);
  view.setUint16(8, entrySelector);
  view.setUint16(10, n * 16 - searchRange);
  let offset = SFNT_HEADER + n * SFNT_ENTRY;
  tables.forEach(({ table: t, data }, i) => {
    const entry = SFNT_HEADER + i * SFNT_ENTRY;
    for (let k = 0; k < 4; k++) out[entry + k] = t.tag.charCodeAt(k);
    view.setUint32(entry + 4, t.checksum);
    view.setUint32(entry + 8, offset);
    view.setUint32(entry + 12, t.origLength);
    out.set(data, offset);
    offset += pad4(t.origLength);
  });
  return out;
}

function tableData(bytes: Uint8Array, t: WoffTable): Uint8Array {
  if (t.offset + t.compLength > bytes.length) {
    throw new FontContainerError(`woff table ${t.tag} runs past the end of the file`);
  }
  const stored = bytes.subarray(t.offset, t.offset + t.compLength);
  // Equal lengths mean stored uncompressed (WOFF 1.0 §5); a longer stored copy is cut to size.
  if (t.compLength >= t.origLength) return stored.subarray(0, t.origLength);
  if (t.compLength < 2) throw new FontContainerError(`woff table ${t.tag} has an empty zlib stream`);
  let inflated: Buffer;
  try {
    inflated = inflateSync(stored, { maxOutputLength: t.origLength });
  } catch (err) {
    // A stream that outgrows its declared length is a bomb, not damage: refuse the whole file.
    if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      throw new FontOversizedError(`woff table ${t.tag} inflates past its declared ${t.origLength} bytes`);
    }
    throw new FontContainerError(`woff table ${t.tag} is not a complete zlib stream (${t.origLength} bytes)`);
  }
  if (inflated.length !== t.origLength) {
    throw new FontContainerError(`woff table ${t.tag} inflates to ${inflated.length} of ${t.origLength} bytes`);
  }
  return inflated;
}

const WOFF2_HEADER = 48;

/**
 * Checks a WOFF2 file's declared and actual decoded sizes before fontkitten's pure-JS brotli
 * decoder (no output limit) runs: the header's totalSfntSize, the table directory's lengths, and
 * the brotli stream decoded natively with maxOutputLength set to what the directory declares.
 */
export function checkWoff2(bytes: Uint8Array, maxDecodedBytes: number): void {
  if (bytes.length < WOFF2_HEADER) throw new FontContainerError("woff2 header truncated");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const totalSfntSize = view.getUint32(16);
  const totalCompressedSize = view.getUint32(20);
  if (totalSfntSize > maxDecodedBytes) {
    throw new FontOversizedError(`woff2 declares ${totalSfntSize} decoded bytes, over the cap of ${maxDecodedBytes}`);
  }
  const { end, streamLength, sfntLength } = woff2Directory(bytes, view.getUint16(12));
  if (streamLength > maxDecodedBytes || sfntLength > maxDecodedBytes) {
    throw new FontOversizedError(`woff2 tables decode to over ${maxDecodedBytes} bytes (cap)`);
  }
  if (end + totalCompressedSize > bytes.length) {
    throw new FontContainerError("woff2 compressed data runs past the end of the file");
  }
  let decoded: Buffer;
  try {
    decoded = brotliDecompressSync(bytes.subarray(end, end + totalCompressedSize), { maxOutputLength: streamLength });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ERR_BUFFER_TOO_LARGE") {
      throw new FontOversizedError(`woff2 brotli stream decodes past its declared ${streamLength} bytes`);
    }
    throw new FontContainerError("woff2 brotli stream is corrupt");
  }
  if (decoded.length !== streamLength) {
    throw new FontContainerError(`woff2 brotli stream decodes to ${decoded.length} of ${streamLength} bytes`);
  }
}

/** The WOFF2 table directory (§5.2): where it ends, the brotli stream's and the sfnt's sizes. */
function woff2Directory(bytes: Uint8Array, numTables: number) {
  let pos = WOFF2_HEADER;
  const byte = (): number => {
    if (pos >= bytes.length) throw new FontContainerError("woff2 table directory truncated");
    return bytes[pos++]!;
  };
  const base128 = (): number => {
    let value = 0;
    for (let i = 0; i < 5; i++) {
      const b = byte();
      if (i === 0 && b === 0x80) throw new FontContainerError("woff2 UIntBase128 with a leading zero");
      value = value * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) return value;
    }
    throw new FontContainerError("woff2 UIntBase128 longer than 5 bytes");
  };
  let streamLength = 0;
  let sfntLength = SFNT_HEADER + numTables * SFNT_ENTRY;
  for (let i = 0; i < numTables; i++) {
    const flags = byte();
    const known = flags & 0x3f;
    let glyfOrLoca = known === 10 || known === 11;
    if (known === 0x3f) {
      const tag = String.fromCharCode(byte(), byte(), byte(), byte());
      glyfOrLoca = tag === "glyf" || tag === "loca";
    }
    const version = flags >>> 6;
    const origLength = base128();
    const transformed = glyfOrLoca ? version === 0 : version !== 0;
    streamLength += transformed ? base128() : origLength;
    sfntLength += pad4(origLength);
  }
  return { end: pos, streamLength, sfntLength };
}

/**
 * A TrueType collection narrowed to its first face: fontkitten's `fonts` builds every face the
 * header lists, and a 130 KB file listing one face 20 000 times keeps it busy for seconds.
 */
export function firstFaceOfCollection(bytes: Uint8Array): Uint8Array {
  if (bytes.length < 16) throw new FontContainerError("ttc header truncated");
  const copy = new Uint8Array(bytes);
  const view = new DataView(copy.buffer);
  if (view.getUint32(8) > 1) view.setUint32(8, 1);
  return copy;
}
