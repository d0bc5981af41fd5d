/**
 * Seeded mutations of real fonts for the parser fuzz (font-fuzz.ts and the fuzz test). A plan is
 * plain data drawn by fast-check from a seed, so a failing case is replayed from its seed and
 * index. Mutations aim where a hostile file would: the container's lengths and offsets, the
 * compressed streams, and (re-compressed, so the streams stay valid) the tables inside them.
 */
import fc from "fast-check";
import { brotliCompressSync, brotliDecompressSync, constants, deflateSync, inflateSync } from "node:zlib";

export const MUTATIONS = [
  "flip",
  "truncate",
  "table-length",
  "table-offset",
  "header",
  "duplicate",
  "zero",
  "inner",
] as const;
export type MutationKind = (typeof MUTATIONS)[number];
export type Mutation = { file: number; kind: MutationKind; a: number; b: number; c: number; count: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  file: fc.nat(),
  kind: fc.constantFrom(...MUTATIONS),
  a: fc.nat(),
  b: fc.nat(),
  c: fc.nat(),
  count: fc.integer({ min: 1, max: 8 }),
});

/** `cases` mutation plans drawn from `seed`: the same seed gives the same plans. */
export function mutationPlans(seed: number, cases: number): Mutation[] {
  return fc.sample(mutationArb, { seed, numRuns: cases });
}

/** Applies one plan to a copy of `font`; the input is never changed. */
export function applyMutation(font: Uint8Array, m: Mutation): Buffer {
  const b = Buffer.from(font);
  if (b.length < 16) return b;
  const at = (x: number): number => x % b.length;
  switch (m.kind) {
    case "flip":
      for (let i = 0; i < m.count; i++) {
        const pos = at(m.a + i * (m.b + 1));
        b[pos] = b[pos]! ^ (1 << ((m.c + i) % 8));
      }
      return b;
    case "truncate":
      return b.subarray(0, at(m.a));
    case "table-length":
    case "table-offset":
      return corruptDirectory(b, m);
    case "header":
      b.writeUInt32BE(nasty(b.readUInt32BE(4 + 4 * (m.a % 5)), m.c), 4 + 4 * (m.a % 5));
      return b;
    case "duplicate": {
      const len = 1 + (m.c % 4096);
      const from = at(m.a);
      b.copy(b, at(m.b), from, Math.min(b.length, from + len));
      return b;
    }
    case "zero": {
      const from = at(m.a);
      return b.fill(0, from, Math.min(b.length, from + 1 + (m.c % 4096)));
    }
    case "inner":
      return mutateInner(b, m);
  }
}

/** A boundary value, or a value near the original, chosen by `c`. */
function nasty(original: number, c: number): number {
  const choices = [0, 1, 0xffffffff, 0x7fffffff, 0x80000000, original + 1, original - 1, original * 2, c];
  return (choices[c % choices.length]! >>> 0) % 2 ** 32;
}

type Entry = { at: number; offset: number; length: number; comp?: number };

/** Directory entries of an sfnt or WOFF file (where their offset and length fields are). */
function directory(b: Buffer): { entries: Entry[]; format: "sfnt" | "woff" | "other" } {
  const magic = b.toString("latin1", 0, 4);
  if (magic === "wOFF") {
    const n = Math.min(b.readUInt16BE(12), Math.floor((b.length - 44) / 20));
    const entries = Array.from({ length: n }, (_, i) => ({ at: 44 + 20 * i, offset: 4, comp: 8, length: 12 }));
    return { entries, format: "woff" };
  }
  if (magic === "OTTO" || magic === "true" || b.readUInt32BE(0) === 0x00010000) {
    const n = Math.min(b.readUInt16BE(4), Math.floor((b.length - 12) / 16));
    return {
      entries: Array.from({ length: n }, (_, i) => ({ at: 12 + 16 * i, offset: 8, length: 12 })),
      format: "sfnt",
    };
  }
  return { entries: [], format: "other" };
}

function corruptDirectory(b: Buffer, m: Mutation): Buffer {
  const { entries } = directory(b);
  const entry = entries[m.a % Math.max(1, entries.length)];
  if (!entry) {
    // WOFF2 and collections: their header's sizes and counts instead.
    const field = 8 + 4 * (m.b % 4);
    b.writeUInt32BE(nasty(b.readUInt32BE(field), m.c), field);
    return b;
  }
  const field =
    m.kind === "table-offset" ? entry.offset : entry.comp !== undefined && m.b % 2 === 0 ? entry.comp : entry.length;
  b.writeUInt32BE(nasty(b.readUInt32BE(entry.at + field), m.c), entry.at + field);
  return b;
}

/** Flips bytes inside one decompressed WOFF table, or the WOFF2 brotli stream, and re-compresses. */
function mutateInner(b: Buffer, m: Mutation): Buffer {
  const flip = (data: Buffer): Buffer => {
    const out = Buffer.from(data);
    if (out.length === 0) return out;
    for (let i = 0; i < m.count; i++) out[(m.b + i * 7919) % out.length] = (m.c >>> (i % 4)) & 0xff;
    return out;
  };
  const magic = b.toString("latin1", 0, 4);
  try {
    if (magic === "wOFF") return rewrapWoffTable(b, m.a, flip);
    if (magic === "wOF2") return rewrapWoff2(b, flip);
  } catch {
    // The stream was not valid to begin with: fall back to flipping its bytes.
  }
  return applyMutation(b, { ...m, kind: "flip" });
}

function rewrapWoffTable(b: Buffer, pick: number, flip: (data: Buffer) => Buffer): Buffer {
  const { entries } = directory(b);
  const entry = entries[pick % entries.length]!;
  const offset = b.readUInt32BE(entry.at + 4);
  const comp = b.readUInt32BE(entry.at + 8);
  const orig = b.readUInt32BE(entry.at + 12);
  const stored = b.subarray(offset, offset + comp);
  const data = flip(comp < orig ? inflateSync(stored) : stored);
  const stream = comp < orig ? deflateSync(data) : data;
  const out = Buffer.concat([b.subarray(0, offset), stream, b.subarray(offset + comp)]);
  out.writeUInt32BE(stream.length, entry.at + 8);
  for (const e of entries) {
    const o = out.readUInt32BE(e.at + 4);
    if (o > offset) out.writeUInt32BE(o + stream.length - comp, e.at + 4);
  }
  out.writeUInt32BE(out.length, 8);
  return out;
}

/** The WOFF2 brotli stream ends the file (up to 3 bytes of padding) when there is no metadata block. */
function rewrapWoff2(b: Buffer, flip: (data: Buffer) => Buffer): Buffer {
  const compressed = b.readUInt32BE(20);
  const pad = [0, 1, 2, 3].find((p) => {
    try {
      brotliDecompressSync(b.subarray(b.length - p - compressed, b.length - p), { maxOutputLength: 64 * 1024 * 1024 });
      return true;
    } catch {
      return false;
    }
  });
  if (pad === undefined) throw new Error("no brotli stream at the end");
  const start = b.length - pad - compressed;
  const stored = b.subarray(start, start + compressed);
  const data = flip(brotliDecompressSync(stored, { maxOutputLength: 64 * 1024 * 1024 }));
  const stream = brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } });
  const out = Buffer.concat([b.subarray(0, start), stream]);
  out.writeUInt32BE(stream.length, 20);
  out.writeUInt32BE(out.length, 8);
  return out;
}
