/**
 * Hostile fonts built from real ones, for the bounds tests and the fuzz run: the shapes that froze
 * or exhausted a scanner node (a WOFF table cut mid-stream, decompression bombs, a name table
 * that outgrows any heap) and the container writers they need. Nothing here is a mock: each
 * output is bytes a site could serve.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Transform } from "node:stream";
import { constants, crc32, createBrotliCompress, createDeflateRaw } from "node:zlib";

export type Table = { tag: string; data: Uint8Array };

const FONT_FILE = /\.(?:woff2?|ttf|otf|ttc)$/i;
const FONT_DIRS = [
  "@fontsource/roboto/files",
  "@fontsource/lato/files",
  "@fontsource/inter/files",
  "@fontsource/open-sans/files",
  "@fontsource/merriweather/files",
  "@fontsource/fira-sans/files",
  "@fontsource-variable/inter/files",
  "katex/dist/fonts",
  "@fortawesome/fontawesome-free/webfonts",
  "bootstrap-icons/font/fonts",
  "@mdi/font/fonts",
];

/** Real font files shipped in node_modules, and Debian's under /usr/share/fonts when present. */
export function realFontFiles(): string[] {
  const root = fileURLToPath(new URL("../../node_modules/", import.meta.url));
  const files = FONT_DIRS.flatMap((dir) => listFonts(join(root, dir)));
  return [...files, ...listFonts("/usr/share/fonts")].sort();
}

function listFonts(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return listFonts(path);
    return FONT_FILE.test(name) ? [path] : [];
  });
}

const pad4 = (n: number): number => (n + 3) & ~3;

/** An sfnt (TrueType) file holding these tables, in order, 4-byte aligned. */
export function sfnt(tables: Table[]): Buffer {
  const head = Buffer.alloc(12 + 16 * tables.length);
  head.writeUInt32BE(0x00010000, 0);
  head.writeUInt16BE(tables.length, 4);
  const parts: Buffer[] = [head];
  let offset = head.length;
  tables.forEach(({ tag, data }, i) => {
    head.write(tag, 12 + 16 * i, "latin1");
    head.writeUInt32BE(offset, 12 + 16 * i + 8);
    head.writeUInt32BE(data.length, 12 + 16 * i + 12);
    const padded = Buffer.alloc(pad4(data.length));
    padded.set(data);
    parts.push(padded);
    offset += padded.length;
  });
  return Buffer.concat(parts);
}

/** A WOFF 1.0 file; each table is stored as given: `stream` (zlib) with its declared origLength. */
export function woff(tables: Array<{ tag: string; stream: Uint8Array; origLength: number }>): Buffer {
  const head = Buffer.alloc(44 + 20 * tables.length);
  head.write("wOFF", 0, "latin1");
  head.writeUInt32BE(0x00010000, 4);
  head.writeUInt16BE(tables.length, 12);
  const totalSfnt = tables.reduce((n, t) => n + pad4(t.origLength), 12 + 16 * tables.length);
  head.writeUInt32BE(Math.min(totalSfnt, 0xffffffff), 16);
  const parts: Buffer[] = [head];
  let offset = head.length;
  tables.forEach((t, i) => {
    const at = 44 + 20 * i;
    head.write(t.tag, at, "latin1");
    head.writeUInt32BE(offset, at + 4);
    head.writeUInt32BE(t.stream.length, at + 8);
    head.writeUInt32BE(t.origLength, at + 12);
    const padded = Buffer.alloc(pad4(t.stream.length));
    padded.set(t.stream);
    parts.push(padded);
    offset += padded.length;
  });
  const out = Buffer.concat(parts);
  out.writeUInt32BE(out.length, 8);
  return out;
}

/**
 * The shape that froze a node: a real WOFF cut inside one table's compressed bytes, its
 * directory (and so the declared compLength and origLength) intact. fontkitten's inflate reads
 * past the end as zero bits and never reaches an end-of-block code.
 */
export function cutWoffTable(woffBytes: Uint8Array, tag = "name"): Buffer {
  const b = Buffer.from(woffBytes);
  for (let i = 0; i < b.readUInt16BE(12); i++) {
    const at = 44 + 20 * i;
    if (b.toString("latin1", at, at + 4) !== tag) continue;
    const offset = b.readUInt32BE(at + 4);
    return b.subarray(0, offset + Math.floor(b.readUInt32BE(at + 8) / 2));
  }
  throw new Error(`no ${tag} table in this WOFF`);
}

/** A WOFF whose one table inflates from about 1 MB to `decodedBytes` of zeros (default 1.1 GiB). */
export async function woffInflateBomb(decodedBytes = 1_100 * 1024 * 1024): Promise<Buffer> {
  const raw = await deflateRaw(decodedBytes);
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE(adler32Zeros(decodedBytes));
  const stream = Buffer.concat([Buffer.from([0x78, 0xda]), raw, adler]);
  return woff([{ tag: "name", stream, origLength: decodedBytes }]);
}

/** The same zeros as an HTTP gzip body (RFC 1952): a 1 MB response that decodes to 1.1 GiB. */
export async function gzipBomb(decodedBytes = 1_100 * 1024 * 1024): Promise<Buffer> {
  const raw = await deflateRaw(decodedBytes);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32Zeros(decodedBytes), 0);
  trailer.writeUInt32LE(decodedBytes % 2 ** 32, 4);
  return Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]), raw, trailer]);
}

const base128 = (n: number): number[] => {
  const out = [n & 0x7f];
  for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) out.unshift((v & 0x7f) | 0x80);
  return out;
};

/**
 * A WOFF2 with one `name` table whose brotli stream holds `decodedBytes` zeros, declaring
 * `declaredBytes` (the table length) and `totalSfntSize` in its header.
 */
export async function woff2Zeros(opts: {
  decodedBytes: number;
  declaredBytes?: number;
  totalSfntSize?: number;
}): Promise<Buffer> {
  const declared = opts.declaredBytes ?? opts.decodedBytes;
  const stream = await compressZeros(
    createBrotliCompress({ params: { [constants.BROTLI_PARAM_QUALITY]: 5 } }),
    opts.decodedBytes,
  );
  const head = Buffer.alloc(48);
  head.write("wOF2", 0, "latin1");
  head.writeUInt32BE(0x00010000, 4);
  head.writeUInt16BE(1, 12);
  head.writeUInt32BE(opts.totalSfntSize ?? Math.min(12 + 16 + pad4(declared), 0xffffffff), 16);
  head.writeUInt32BE(stream.length, 20);
  const out = Buffer.concat([head, Buffer.from([5, ...base128(declared)]), stream]);
  out.writeUInt32BE(out.length, 8);
  return out;
}

const MIB = 1024 * 1024;
const ZEROS = Buffer.alloc(MIB);

/** n zeros through a compressor, a MiB at a time: a 1 GiB bomb never needs a 1 GiB buffer. */
async function compressZeros(compressor: Transform, n: number): Promise<Buffer> {
  const out: Buffer[] = [];
  compressor.on("data", (c: Buffer) => out.push(c));
  const ended = new Promise<void>((resolve, reject) => compressor.on("end", resolve).on("error", reject));
  for (let left = n; left > 0; left -= MIB) {
    if (!compressor.write(left >= MIB ? ZEROS : ZEROS.subarray(0, left))) {
      await new Promise((resolve) => compressor.once("drain", resolve));
    }
  }
  compressor.end();
  await ended;
  return Buffer.concat(out);
}

const deflateRaw = (n: number): Promise<Buffer> => compressZeros(createDeflateRaw({ level: 9, memLevel: 9 }), n);

/** Adler-32 of n zero bytes: a stays 1, b adds 1 per byte. */
function adler32Zeros(n: number): number {
  return (((n % 65_521) << 16) | 1) >>> 0;
}

function crc32Zeros(n: number): number {
  let crc = 0;
  for (let left = n; left > 0; left -= MIB) crc = crc32(left >= MIB ? ZEROS : ZEROS.subarray(0, left), crc);
  return crc;
}

/**
 * A TrueType font whose name table has `records` records, each naming its own string of 64 KB
 * (all pointing at one shared storage area): about 850 KB on the wire, 4 GB of strings once
 * fontkitten decodes them. No decompression is involved: only a heap limit stops it.
 */
export function nameHeapBomb(records = 65_000): Buffer {
  const storage = 65_534;
  const name = Buffer.alloc(6 + 12 * records + storage);
  name.writeUInt16BE(records, 2);
  for (let i = 0; i < records; i++) {
    const at = 6 + 12 * i;
    name.writeUInt16BE(3, at); // Windows
    name.writeUInt16BE(1, at + 2); // Unicode BMP (UTF-16BE)
    name.writeUInt16BE(0x409, at + 4);
    name.writeUInt16BE(256 + (i % 65_280), at + 6); // distinct ids: every string is kept
    name.writeUInt16BE(storage, at + 8);
  }
  return sfnt([{ tag: "name", data: name }]);
}
