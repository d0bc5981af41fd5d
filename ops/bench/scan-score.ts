/**
 * Scores scan results against the corpus's ground truth: recall and precision of the used font
 * files (by SHA-256) and of the used families, and how many declared-only families came back as
 * declared but unused. Summed over sites (micro averages), so a site with more fonts weighs more.
 */
import type { FontFace, FontFile } from "../../protocol/messages.ts";
import type { CorpusSite } from "../demo/corpus.ts";

/** What one scanner said about one site; null when it produced nothing (failed or timed out). */
export type Found = { faces: Pick<FontFace, "family" | "used">[]; files: Pick<FontFile, "sha256">[] } | null;

export type Score = {
  sites: number;
  failedSites: number;
  /** Used font files found / expected, by SHA-256. */
  fileRecall: number;
  /** Reported files that are expected used files / reported files. */
  filePrecision: number;
  familyRecall: number;
  familyPrecision: number;
  /** Declared-only families reported as declared and unused / expected declared-only families. */
  declaredOnlyRecall: number;
  /** Sites whose used files and used families match exactly. */
  exactSites: number;
};

const ratio = (num: number, den: number): number => (den === 0 ? 1 : num / den);

export function score(sites: readonly CorpusSite[], found: ReadonlyMap<string, Found>): Score {
  let failed = 0;
  let exact = 0;
  const files = { hit: 0, expected: 0, reported: 0 };
  const families = { hit: 0, expected: 0, reported: 0 };
  const declared = { hit: 0, expected: 0 };
  for (const site of sites) {
    const f = found.get(site.domain) ?? null;
    const expectedFiles = new Set(site.expectedFiles.map((x) => x.sha256));
    const expectedFamilies = new Set(site.expectedUsedFamilies);
    files.expected += expectedFiles.size;
    families.expected += expectedFamilies.size;
    declared.expected += site.expectedDeclaredOnlyFamilies.length;
    if (!f) {
      failed++;
      continue;
    }
    const gotFiles = new Set(f.files.map((x) => x.sha256));
    const gotFamilies = new Set(f.faces.filter((x) => x.used).map((x) => x.family));
    const unused = new Set(f.faces.filter((x) => !x.used).map((x) => x.family));
    const fileHits = [...gotFiles].filter((x) => expectedFiles.has(x)).length;
    const familyHits = [...gotFamilies].filter((x) => expectedFamilies.has(x)).length;
    files.hit += fileHits;
    files.reported += gotFiles.size;
    families.hit += familyHits;
    families.reported += gotFamilies.size;
    declared.hit += site.expectedDeclaredOnlyFamilies.filter((x) => unused.has(x) && !gotFamilies.has(x)).length;
    const same = (a: Set<string>, b: Set<string>, hits: number) => a.size === hits && b.size === hits;
    if (same(gotFiles, expectedFiles, fileHits) && same(gotFamilies, expectedFamilies, familyHits)) exact++;
  }
  return {
    sites: sites.length,
    failedSites: failed,
    fileRecall: ratio(files.hit, files.expected),
    filePrecision: ratio(files.hit, files.reported),
    familyRecall: ratio(families.hit, families.expected),
    familyPrecision: ratio(families.hit, families.reported),
    declaredOnlyRecall: ratio(declared.hit, declared.expected),
    exactSites: exact,
  };
}
