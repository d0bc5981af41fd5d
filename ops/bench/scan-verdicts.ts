/**
 * Verdicts on real fonts: the licence verdict engine (actors/licensing/verdict.ts, the open-font
 * catalogue and its data) over every font file the real corpus's packages ship, compared with the
 * licence each package declares for its fonts (ops/real-corpus/licences.ts). A file agrees when
 * the verdict is open-licence under the declared licence. Files are parsed by the scanner's own
 * metadata reader and given the provider a self-hosted file gets, as in production.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { lazyCatalogue } from "../../actors/licensing/open-licence.ts";
import { decideVerdict, type Verdict } from "../../actors/licensing/verdict.ts";
import { readFontMetadata, sha256Hex } from "../../actors/scanner/font-metadata.ts";
import { FONT_LICENCES, fontLicenceOf } from "../real-corpus/licences.ts";
import { NODE_MODULES } from "../real-corpus/server.ts";

export type VerdictRow = {
  sha256: string;
  path: string;
  family: string | null;
  declared: string;
  verdict: Verdict;
  licence: string | null;
  reason: string;
};
export type VerdictScore = {
  files: number;
  /** Files whose verdict is open-licence under the declared licence / files. */
  verdictAgreement: number;
  /** Files the engine called unlicensed although their package declares an open or free licence. */
  openCalledUnlicensed: number;
  disagreements: VerdictRow[];
};

const FONT_FILE = /\.(?:woff2?|ttf|otf)$/i;

function fontFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (name === "node_modules") continue;
      if (statSync(p).isDirectory()) walk(p);
      else if (FONT_FILE.test(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Every distinct font file under the licence table's directories, once each by SHA-256. */
export function corpusFontFiles(): Array<{ sha256: string; path: string; bytes: Buffer }> {
  const seen = new Map<string, { sha256: string; path: string; bytes: Buffer }>();
  for (const entry of FONT_LICENCES) {
    const dir = join(NODE_MODULES, entry.where);
    const dirs =
      entry.where.endsWith("/") && entry.where.split("/").length === 2 && entry.where.startsWith("@")
        ? readdirSync(dir).map((d) => join(dir, d)) // a scope: every package in it
        : [dir];
    for (const d of dirs)
      for (const file of fontFiles(d)) {
        const bytes = readFileSync(file);
        const sha256 = sha256Hex(bytes);
        if (!seen.has(sha256)) seen.set(sha256, { sha256, path: relative(NODE_MODULES, file), bytes });
      }
  }
  return [...seen.values()];
}

export function verdictScore(now = new Date()): VerdictScore {
  const catalogue = lazyCatalogue();
  const rows: VerdictRow[] = [];
  for (const file of corpusFontFiles()) {
    const declared = fontLicenceOf(file.path);
    if (!declared) continue;
    const { metadata } = readFontMetadata(file.bytes);
    const v = decideVerdict(
      {
        sha256: file.sha256,
        url: `http://corpus.test/${file.path}`,
        cssFamilies: [],
        metadata,
        provider: "self-hosted",
      },
      { domain: "corpus.test", now, licences: [], catalogue },
    );
    rows.push({
      sha256: file.sha256,
      path: file.path,
      family: v.family,
      declared: declared.licence,
      verdict: v.verdict,
      licence: v.licence,
      reason: v.reason,
    });
  }
  const agree = (r: VerdictRow) => r.verdict === "open-licence" && r.licence === r.declared;
  return {
    files: rows.length,
    verdictAgreement: rows.length === 0 ? 0 : rows.filter(agree).length / rows.length,
    openCalledUnlicensed: rows.filter((r) => r.verdict === "unlicensed").length,
    disagreements: rows.filter((r) => !agree(r)),
  };
}

if (import.meta.main) {
  const s = verdictScore();
  const byCause = new Map<string, number>();
  for (const d of s.disagreements) {
    const key = `${d.path
      .split("/")
      .slice(0, d.path.startsWith("@") ? 2 : 1)
      .join("/")} ${d.family}: ${d.verdict} ${d.licence ?? ""} (declared ${d.declared}) — ${d.reason}`;
    byCause.set(key, (byCause.get(key) ?? 0) + 1);
  }
  for (const [k, n] of byCause) console.log(`${n} × ${k}`);
  console.log(
    `${s.files} files; verdictAgreement ${s.verdictAgreement.toFixed(3)}; open called unlicensed ${s.openCalledUnlicensed}`,
  );
}
