/**
 * Scores scan results against a corpus's ground truth: recall and precision of the font files
 * reported (by SHA-256) against the used files, of the files behind the faces reported as used
 * (used-face files), and of the used families, and how many declared-only families came back as
 * declared but unused. Summed over sites (micro averages), so a site with more fonts weighs more.
 */
import type { FontFace, FontFile } from "../../protocol/messages.ts";

/** What one scanner said about one site; null when it produced nothing (failed or timed out). */
export type Found = {
  faces: Pick<FontFace, "family" | "used" | "fileSha256">[];
  files: Pick<FontFile, "sha256">[];
} | null;

/** A site with its ground truth (the demo corpus's CorpusSite is one; the real corpus builds them). */
export type ScoredSite = {
  domain: string;
  expectedUsedFamilies: readonly string[];
  expectedDeclaredOnlyFamilies: readonly string[];
  expectedFiles: ReadonlyArray<{ sha256: string }>;
};

export type Score = {
  sites: number;
  failedSites: number;
  /** Used font files found / expected, by SHA-256 (any reported file counts). */
  fileRecall: number;
  /** Reported files that are expected used files / reported files. */
  filePrecision: number;
  /** Files behind the faces reported as used, against the expected used files. */
  usedFaceRecall: number;
  usedFacePrecision: number;
  familyRecall: number;
  familyPrecision: number;
  /** Declared-only families reported as declared and unused / expected declared-only families. */
  declaredOnlyRecall: number;
  /** Sites whose used files and used families match exactly. */
  exactSites: number;
};

/** How one site's answer differs from its ground truth (empty lists: it matches). */
export type SiteDiff = {
  domain: string;
  failed: boolean;
  missingFamilies: string[];
  extraFamilies: string[];
  missingFiles: number;
  extraFiles: number;
};

const ratio = (num: number, den: number): number => (den === 0 ? 1 : num / den);

type Tally = { hit: number; expected: number; reported: number };
const tally = (): Tally => ({ hit: 0, expected: 0, reported: 0 });

function count(t: Tally, got: ReadonlySet<string>, expected: ReadonlySet<string>): number {
  const hits = [...got].filter((x) => expected.has(x)).length;
  t.hit += hits;
  t.reported += got.size;
  return hits;
}

const usedFiles = (f: NonNullable<Found>) => new Set(f.faces.filter((x) => x.used).flatMap((x) => x.fileSha256));
const usedFamilies = (f: NonNullable<Found>) => new Set(f.faces.filter((x) => x.used).map((x) => x.family));

export function score(sites: readonly ScoredSite[], found: ReadonlyMap<string, Found>): Score {
  let failed = 0;
  let exact = 0;
  const files = tally();
  const faceFiles = tally();
  const families = tally();
  const declared = { hit: 0, expected: 0 };
  for (const site of sites) {
    const f = found.get(site.domain) ?? null;
    const expectedFiles = new Set(site.expectedFiles.map((x) => x.sha256));
    const expectedFamilies = new Set(site.expectedUsedFamilies);
    files.expected += expectedFiles.size;
    faceFiles.expected += expectedFiles.size;
    families.expected += expectedFamilies.size;
    declared.expected += site.expectedDeclaredOnlyFamilies.length;
    if (!f) {
      failed++;
      continue;
    }
    const gotFiles = new Set(f.files.map((x) => x.sha256));
    const gotFamilies = usedFamilies(f);
    const unused = new Set(f.faces.filter((x) => !x.used).map((x) => x.family));
    const fileHits = count(files, gotFiles, expectedFiles);
    count(faceFiles, usedFiles(f), expectedFiles);
    const familyHits = count(families, gotFamilies, expectedFamilies);
    declared.hit += site.expectedDeclaredOnlyFamilies.filter((x) => unused.has(x) && !gotFamilies.has(x)).length;
    const same = (a: Set<string>, b: Set<string>, hits: number) => a.size === hits && b.size === hits;
    if (same(gotFiles, expectedFiles, fileHits) && same(gotFamilies, expectedFamilies, familyHits)) exact++;
  }
  return {
    sites: sites.length,
    failedSites: failed,
    fileRecall: ratio(files.hit, files.expected),
    filePrecision: ratio(files.hit, files.reported),
    usedFaceRecall: ratio(faceFiles.hit, faceFiles.expected),
    usedFacePrecision: ratio(faceFiles.hit, faceFiles.reported),
    familyRecall: ratio(families.hit, families.expected),
    familyPrecision: ratio(families.hit, families.reported),
    declaredOnlyRecall: ratio(declared.hit, declared.expected),
    exactSites: exact,
  };
}

/** Per site, what the answer got wrong: the sites to name when a score is below 1. */
export function siteDiffs(sites: readonly ScoredSite[], found: ReadonlyMap<string, Found>): SiteDiff[] {
  return sites.flatMap((site) => {
    const f = found.get(site.domain) ?? null;
    const expectedFiles = new Set(site.expectedFiles.map((x) => x.sha256));
    const expectedFamilies = new Set(site.expectedUsedFamilies);
    if (!f) {
      const missingFamilies = [...expectedFamilies];
      return [
        {
          domain: site.domain,
          failed: true,
          missingFamilies,
          extraFamilies: [],
          missingFiles: expectedFiles.size,
          extraFiles: 0,
        },
      ];
    }
    const gotFiles = usedFiles(f);
    const gotFamilies = usedFamilies(f);
    const diff: SiteDiff = {
      domain: site.domain,
      failed: false,
      missingFamilies: [...expectedFamilies].filter((x) => !gotFamilies.has(x)),
      extraFamilies: [...gotFamilies].filter((x) => !expectedFamilies.has(x)),
      missingFiles: [...expectedFiles].filter((x) => !gotFiles.has(x)).length,
      extraFiles: [...gotFiles].filter((x) => !expectedFiles.has(x)).length,
    };
    const clean = diff.missingFamilies.length + diff.extraFamilies.length + diff.missingFiles + diff.extraFiles === 0;
    return clean ? [] : [diff];
  });
}
