/** `glyphscan lookup` prints each font file's licence verdict and the scan's compliance summary. */
import test from "ava";
import { formatLookup, type LookupResult } from "../../bin/commands/lookup.ts";
import type { DomainDoc, ScanDoc } from "../../actors/store/documents.ts";
import type { FontVerdict } from "../../actors/licensing/verdict.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);
const at = new Date("2026-11-20T10:00:00Z");

const verdict = (sha256: string, v: FontVerdict["verdict"], family: string, licence: string | null, reason: string) =>
  ({
    sha256,
    family,
    cssFamilies: [family],
    verdict: v,
    licence,
    reason,
    evidence: {
      licenseId: null,
      licensee: null,
      nameFields: [],
      provider: null,
      catalogue: null,
      externalReference: null,
      rejected: [],
    },
  }) satisfies FontVerdict;

function result(scanPatch: Partial<ScanDoc>): LookupResult {
  const scan = {
    _id: "shop.test:t2",
    domain: "shop.test",
    status: "ok",
    failure: null,
    path: "browser",
    pages: [],
    faces: [],
    files: [],
    finishedAt: at,
    ...scanPatch,
  } as unknown as ScanDoc;
  const domain = {
    _id: "shop.test",
    region: "local",
    state: "scanned",
    sources: ["cli"],
    lastScanAt: at,
    nextScanAt: at,
    latest: { status: "ok", failureKind: null, path: "browser", usedFamilies: ["Inter"], declaredOnlyFamilies: [] },
  } as unknown as DomainDoc;
  return { domain, scan, fonts: [] };
}

test("lookup prints each verdict with its licence and reason, the counts and the changes", (t) => {
  const out = formatLookup(
    result({
      verdicts: [
        verdict(SHA_A, "open-licence", "Inter", "OFL-1.1", "the name fields claim OFL-1.1"),
        verdict(SHA_B, "unlicensed", "Brand Serif", null, "commercial signs and no licence"),
      ],
      compliance: {
        counts: { licensed: 0, "open-licence": 1, pending: 0, unlicensed: 1, unknown: 0 },
        changes: { sinceJobId: "shop.test:t1", added: [SHA_B], removed: [], changed: [] },
        assessedAt: at,
      },
    }),
  );
  t.regex(out, /compliance {2}1 open-licence, 1 unlicensed \(assessed 2026-11-20T10:00:00.000Z\)/);
  t.regex(out, /changes {5}1 added since shop\.test:t1/);
  t.regex(out, /open-licence {2}aaaaaaaaaaaa {2}Inter {2}OFL-1\.1 {2}the name fields claim OFL-1\.1/);
  t.regex(out, /unlicensed {4}bbbbbbbbbbbb {2}Brand Serif {2}- {2}commercial signs and no licence/);
});

test("lookup says when a scan was never assessed", (t) => {
  t.regex(formatLookup(result({})), /compliance {2}not assessed/);
});
