/**
 * Open licences: what a font's own name fields claim (IDs 13, 14 and 0), and a catalogue of open
 * families from data that ships with `google-font-metadata` (every Google Fonts family and its
 * licence) and the installed `@fontsource/*` packages. A claim is a claim: when fields name two licences, or a claim disagrees with the
 * catalogue, nothing is guessed.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FontMetadata } from "../../protocol/mod.ts";
import { nameKey } from "./license-record.ts";

export const OPEN_LICENCES = ["OFL-1.1", "Apache-2.0", "UFL-1.0"] as const;
export type OpenLicence = (typeof OPEN_LICENCES)[number];

/** The name fields a licence claim is read from, as FontMetadata names them (IDs 13, 14, 0). */
export const CLAIM_FIELDS = ["license", "licenseUrl", "copyright"] as const;
export type ClaimField = (typeof CLAIM_FIELDS)[number];

const PATTERNS: ReadonlyArray<[OpenLicence, RegExp]> = [
  ["OFL-1.1", /open font licen[cs]e|scripts\.sil\.org\/ofl|openfontlicense\.org|\bofl\b/],
  ["Apache-2.0", /apache license,? version 2\.0|apache\.org\/licenses\/license-2\.0/],
  ["UFL-1.0", /ubuntu font licen[cs]e|font\.ubuntu\.com\/ufl|ubuntu\.com\/legal\/terms-and-policies\/font-licence/],
];

export type Claim =
  | { kind: "none" }
  | { kind: "open"; licence: OpenLicence; fields: ClaimField[] }
  | { kind: "ambiguous"; licences: OpenLicence[]; fields: ClaimField[] };

/** The open licence a font's name fields claim, if exactly one. */
export function claimedLicence(metadata: Pick<FontMetadata, ClaimField> | null): Claim {
  if (!metadata) return { kind: "none" };
  const found = new Map<OpenLicence, ClaimField[]>();
  for (const field of CLAIM_FIELDS) {
    const text = metadata[field]?.toLowerCase().replace(/\s+/g, " ");
    if (!text) continue;
    for (const [licence, pattern] of PATTERNS)
      if (pattern.test(text)) found.set(licence, [...(found.get(licence) ?? []), field]);
  }
  if (found.size === 0) return { kind: "none" };
  const fields = [...new Set([...found.values()].flat())];
  const [only] = found.keys();
  return found.size === 1 && only
    ? { kind: "open", licence: only, fields }
    : { kind: "ambiguous", licences: [...found.keys()], fields };
}

/**
 * Free licences that are not open-source licences, recognised so they are never mistaken for OFL:
 * Fontshare (Indian Type Foundry) fonts carry the ITF Free Font License.
 */
export function freeNonOpenLicence(
  metadata: Pick<FontMetadata, ClaimField> | null,
  provider: string | null,
): string | null {
  if (provider === "fontshare") return "ITF-FFL";
  const text = CLAIM_FIELDS.map((f) => metadata?.[f] ?? "")
    .join(" ")
    .toLowerCase();
  return /itf free font licen[cs]e|fontshare\.com\/licen[cs]e/.test(text) ? "ITF-FFL" : null;
}

/**
 * Font families licensed by their publisher's statement though their files may say nothing (or
 * only "all rights reserved"), most of them icon fonts shipped inside a framework under the
 * framework's licence. Each row names where the statement is made. Pro families are commercial
 * and do not match. Remix Icon's licence is free for websites but not an open-source licence.
 */
export const PUBLISHER_STATEMENTS: ReadonlyArray<{ family: RegExp; licence: string; source: string }> = [
  {
    family: /^(font ?awesome( \d+)? (free|brands)\b|fontawesome$|font awesome v4 compatibility$)/i,
    licence: "OFL-1.1",
    source: "Font Awesome Free (fonts under SIL OFL 1.1, its LICENSE.txt)",
  },
  {
    family: /^glyphicons halflings$/i,
    licence: "MIT",
    source: "Glyphicons Halflings as bundled with Bootstrap 3 (under Bootstrap's MIT licence, its README)",
  },
  { family: /^bootstrap-icons$/i, licence: "MIT", source: "Bootstrap Icons (MIT, its LICENSE)" },
  {
    family: /^material design icons$/i,
    licence: "Apache-2.0",
    source: "Material Design Icons by Pictogrammers (fonts under Apache 2.0, its LICENSE)",
  },
  {
    family: /^material icons( outlined| round| sharp| two tone)?$/i,
    licence: "Apache-2.0",
    source: "Google's Material Icons (Apache 2.0, its LICENSE)",
  },
  {
    family: /^mjx-ncm-[a-z0-9-]+$/i,
    licence: "Apache-2.0",
    source: "MathJax's New Computer Modern web fonts (@mathjax/mathjax-newcm-font, Apache 2.0)",
  },
  {
    family: /^remixicon$/i,
    licence: "Remix-Icon-License-1.0",
    source: "Remix Icon (Remix Icon License v1.0: free for websites and apps, not an open-source licence)",
  },
];

export function knownOpenFamily(family: string | null): { licence: string; source: string } | null {
  if (!family) return null;
  const row = PUBLISHER_STATEMENTS.find((r) => r.family.test(family.trim()));
  return row ? { licence: row.licence, source: row.source } : null;
}

export interface CatalogueEntry {
  id: string;
  licence: OpenLicence;
  url: string;
  copyright: string | null;
}

export interface OpenCatalogue {
  /** The catalogue entry for a family name, compared without case, spaces or punctuation. */
  lookup(family: string | null): CatalogueEntry | null;
  readonly size: number;
}

const CATALOGUE_TYPES: Record<string, OpenLicence> = {
  "SIL Open Font License, 1.1": "OFL-1.1",
  "Apache License, Version 2.0": "Apache-2.0",
  "Ubuntu Font License, 1.0": "UFL-1.0",
};

interface GoogleLicenceEntry {
  id: string;
  authors?: { copyright?: string };
  license?: { type?: string; url?: string };
}

/** Words that end a family name in a file but not in a catalogue: "Merriweather Light 18pt". */
const STYLE_WORD =
  /^(?:thin|hairline|extralight|ultralight|light|book|regular|normal|medium|semibold|demibold|bold|extrabold|ultrabold|black|heavy|italic|oblique|condensed|expanded|variable|vf|\d+pt)$/i;

function buildCatalogue(entries: Iterable<CatalogueEntry & { family: string }>): OpenCatalogue {
  const byKey = new Map<string, CatalogueEntry>();
  for (const { family, ...entry } of entries) if (!byKey.has(nameKey(family))) byKey.set(nameKey(family), entry);
  const lookup = (family: string | null): CatalogueEntry | null => {
    if (!family) return null;
    const words = family.trim().split(/\s+/);
    for (let n = words.length; n >= 1; n--) {
      const hit = byKey.get(nameKey(words.slice(0, n).join(" ")));
      if (hit) return hit;
      if (!STYLE_WORD.test(words[n - 1] ?? "")) return null;
    }
    return null;
  };
  return {
    lookup,
    get size() {
      return byKey.size;
    },
  };
}

/** Entries from `google-font-metadata`'s data/licenses.json (family id → licence). */
export function googleMetadataEntries(
  data: Record<string, GoogleLicenceEntry>,
): Array<CatalogueEntry & { family: string }> {
  return Object.entries(data).flatMap(([key, entry]) => {
    const licence = CATALOGUE_TYPES[entry.license?.type ?? ""];
    const id = entry.id || key;
    return licence
      ? [{ family: id, id, licence, url: entry.license?.url ?? "", copyright: entry.authors?.copyright ?? null }]
      : [];
  });
}

/** Entries from the `metadata.json` of every installed @fontsource/* and @fontsource-variable/* package. */
export function fontsourceEntries(nodeModules: string): Array<CatalogueEntry & { family: string }> {
  const out: Array<CatalogueEntry & { family: string }> = [];
  for (const scope of ["@fontsource", "@fontsource-variable"]) {
    let names: string[];
    try {
      names = readdirSync(join(nodeModules, scope));
    } catch {
      continue;
    }
    for (const name of names) {
      try {
        const meta = JSON.parse(readFileSync(join(nodeModules, scope, name, "metadata.json"), "utf8")) as {
          id?: string;
          family?: string;
          license?: { type?: string; url?: string; attribution?: string };
        };
        const licence = OPEN_LICENCES.find((l) => l === meta.license?.type);
        if (licence && meta.family)
          out.push({
            family: meta.family,
            id: meta.id ?? name,
            licence,
            url: meta.license?.url ?? "",
            copyright: meta.license?.attribution ?? null,
          });
      } catch {
        // A package without readable metadata adds nothing.
      }
    }
  }
  return out;
}

export function catalogueFromGoogleMetadata(data: Record<string, GoogleLicenceEntry>): OpenCatalogue {
  return buildCatalogue(googleMetadataEntries(data));
}

let shared: OpenCatalogue | null = null;

/** The packaged catalogue, read once on first use (about 1,900 families). */
export function openCatalogue(): OpenCatalogue {
  if (!shared) {
    // dist/index.mjs of the package: its data/ is one level up, the node_modules it sits in two.
    const main = import.meta.resolve("google-font-metadata");
    const file = fileURLToPath(new URL("../data/licenses.json", main));
    const google = googleMetadataEntries(JSON.parse(readFileSync(file, "utf8")) as Record<string, GoogleLicenceEntry>);
    shared = buildCatalogue([...google, ...fontsourceEntries(fileURLToPath(new URL("../../", main)))]);
  }
  return shared;
}

/** The packaged catalogue behind a handle that reads it only when a verdict first needs it. */
export function lazyCatalogue(): OpenCatalogue {
  return {
    lookup: (family) => openCatalogue().lookup(family),
    get size() {
      return openCatalogue().size;
    },
  };
}
