/**
 * The verdict engine: for one font file used on one domain, is its use licensed, and on what
 * evidence. Pure: every input (licences covering the domain, the open catalogue, an answer from
 * the external licensing service) is passed in, so the rules are tested without servers.
 *
 * Order of the rules, first that applies wins:
 *  1. a valid web licence in the registry for this domain and font → licensed;
 *  2. a subscription provider served it (Adobe Fonts, Monotype, MyFonts, H&Co) → licensed through its kit;
 *  3. the external licensing service says licensed → licensed;
 *  4. an open licence, from the font's claim and the catalogue agreeing (or either alone when the
 *     other is silent), from an open-font provider, or a publisher's statement (Font Awesome Free);
 *     Fontshare's ITF Free Font License is free but not open: it is named as such;
 *  5. the external licensing service could not be asked → pending (never guessed);
 *  6. contradicting claims, or nothing readable → unknown;
 *  7. commercial signs (a non-open licence field, "all rights reserved", or a licence record that
 *     does not cover this use) and no licence → unlicensed.
 */
import { VERDICT_KINDS, type FontMetadata } from "../../protocol/mod.ts";
import type { FontVerdict, LicenseDoc, NameFieldEvidence, Verdict, VerdictEvidence } from "../store/documents.ts";
import { domainCovers, nameKey } from "./license-record.ts";
import { claimedLicence, freeNonOpenLicence, knownOpenFamily, type OpenCatalogue } from "./open-licence.ts";

/** The verdicts, as the `compliance-verdict` message names them. */
export const VERDICTS = VERDICT_KINDS;
export type { FontVerdict, NameFieldEvidence, Verdict, VerdictEvidence };

/** Providers whose delivery is itself the licence: the customer's kit or project pays for the use. */
export const SUBSCRIPTION_PROVIDERS: Readonly<Record<string, string>> = {
  "adobe-fonts": "Adobe Fonts",
  monotype: "Monotype Fonts",
  myfonts: "MyFonts",
  "hoefler-co": "Hoefler&Co. Cloud.typography",
};
/** Providers that serve only open-licensed fonts. */
export const OPEN_PROVIDERS: Readonly<Record<string, string>> = {
  "google-fonts": "Google Fonts",
  "bunny-fonts": "Bunny Fonts",
  "fontsource-cdn": "Fontsource",
};

export interface FontUse {
  sha256: string;
  url: string;
  /** CSS family names the page gave this file. */
  cssFamilies: string[];
  metadata: FontMetadata | null;
  /** Delivery service id from the scanner (`google-fonts`, `adobe-fonts`, `self-hosted`, …), if known. */
  provider: string | null;
}

/** What the external licensing service said about this font on this domain, when it was asked. */
export type ExternalAnswer =
  { status: "licensed"; reference: string } | { status: "not-licensed" } | { status: "unavailable"; reason: string };

export interface VerdictInput {
  domain: string;
  now: Date;
  /** Licences in the registry covering the domain (more do no harm: each is checked here). */
  licences: readonly LicenseDoc[];
  catalogue: OpenCatalogue;
  external?: ExternalAnswer | undefined;
}

/** Why a licence record does not cover this font here and now, or null when it does. */
export function licenceMismatch(licence: LicenseDoc, use: FontUse, domain: string, now: Date): string | null {
  if (!licence.domains.some((d) => domainCovers(d, domain))) return `does not cover ${domain}`;
  if (licence.sha256.length > 0) {
    if (!licence.sha256.includes(use.sha256)) return "names other files";
  } else {
    const family = use.metadata?.family ?? null;
    const names = family ? [family] : use.cssFamilies;
    if (!names.some((n) => nameKey(n) === licence.familyKey)) return "names another family";
    if (licence.foundryKey && use.metadata) {
      const m = use.metadata;
      const signs = [m.manufacturer, m.copyright, m.designer].filter((s): s is string => !!s).map(nameKey);
      const vendor = m.vendorId ? nameKey(m.vendorId) : null;
      if (
        (signs.length > 0 || vendor) &&
        !signs.some((s) => s.includes(licence.foundryKey!)) &&
        vendor !== licence.foundryKey
      )
        return `the file names another foundry than ${licence.foundry}`;
    }
  }
  if (licence.validFrom && licence.validFrom > now)
    return `not valid before ${licence.validFrom.toISOString().slice(0, 10)}`;
  if (licence.validTo && licence.validTo < now) return `expired ${licence.validTo.toISOString().slice(0, 10)}`;
  if (licence.type !== "web") return `a ${licence.type} licence does not cover web use`;
  return null;
}

const COMMERCIAL_SIGN =
  /all rights reserved|proprietary|\beula\b|end.user licen[cs]e|commercial|licen[cs]e required|requires a .*licen[cs]e/;

export function decideVerdict(use: FontUse, input: VerdictInput): FontVerdict {
  const m = use.metadata;
  const family = m?.family ?? use.cssFamilies[0] ?? null;
  const evidence: VerdictEvidence = {
    licenseId: null,
    licensee: null,
    nameFields: [],
    provider: use.provider,
    catalogue: null,
    externalReference: null,
    rejected: [],
  };
  const out = (verdict: Verdict, licence: string | null, reason: string): FontVerdict => ({
    sha256: use.sha256,
    family,
    cssFamilies: use.cssFamilies,
    verdict,
    licence,
    reason,
    evidence,
  });

  // 1. The registry. Records naming other fonts are ignored; records naming this one but not
  // covering this use are kept as evidence (a desktop licence says the font is commercial).
  for (const licence of input.licences) {
    const why = licenceMismatch(licence, use, input.domain, input.now);
    if (why === null) {
      evidence.licenseId = licence._id;
      evidence.licensee = licence.licensee;
      return out("licensed", licence._id, `web licence ${licence._id} held by ${licence.licensee}`);
    }
    if (!/^(?:does not cover|names other files|names another family)/.test(why))
      evidence.rejected.push({ licenseId: licence._id, why });
  }

  // 2. Subscription providers license through the kit that served the file.
  const subscription = use.provider ? SUBSCRIPTION_PROVIDERS[use.provider] : undefined;
  if (subscription)
    return out("licensed", use.provider, `served by ${subscription}: licensed through the provider's kit`);

  // 3. The external licensing service.
  if (input.external?.status === "licensed") {
    evidence.externalReference = input.external.reference;
    return out("licensed", input.external.reference, "the licensing service holds a licence");
  }

  // 4. Open licences.
  const claim = claimedLicence(m);
  if (claim.kind !== "none") evidence.nameFields = claim.fields.map((field) => ({ field, value: m?.[field] ?? "" }));
  const free = freeNonOpenLicence(m, use.provider);
  if (free && (claim.kind === "none" || use.provider === "fontshare"))
    return out("open-licence", free, "Fontshare font under the ITF Free Font License (free, not OFL)");
  const known = knownOpenFamily(family);
  if (known && claim.kind !== "ambiguous") return out("open-licence", known.licence, known.source);
  const entry = input.catalogue.lookup(family);
  if (entry) evidence.catalogue = { id: entry.id, licence: entry.licence };
  const openProvider = use.provider ? OPEN_PROVIDERS[use.provider] : undefined;
  const fieldText = [m?.license, m?.licenseUrl, m?.copyright].filter(Boolean).join(" ").toLowerCase();
  const commercial = COMMERCIAL_SIGN.test(fieldText);
  if (claim.kind === "open" && (!entry || entry.licence === claim.licence)) {
    const how = entry
      ? `claimed in the name table and listed in the catalogue (${entry.id})`
      : "claimed in the name table";
    return out("open-licence", claim.licence, `${claim.licence}: ${how}`);
  }
  // An open-font provider serves nothing else; a catalogue match alone must not contradict the file.
  if (claim.kind === "none" && (openProvider || (entry && !commercial))) {
    if (entry)
      return out(
        "open-licence",
        entry.licence,
        `${entry.licence}: family listed in the open-font catalogue${openProvider ? `, served by ${openProvider}` : ""}`,
      );
    return out("open-licence", null, `served by ${openProvider}, which serves only open-licensed fonts`);
  }

  // 5. Not known to be licensed or open, and the service that might know could not be asked.
  if (input.external?.status === "unavailable")
    return out("pending", null, `the licensing service is unavailable (${input.external.reason}); to be decided later`);

  if (claim.kind === "ambiguous")
    return out("unknown", null, `the name fields claim several licences (${claim.licences.join(", ")}): not guessed`);
  if (claim.kind === "open")
    return out(
      "unknown",
      null,
      `the file claims ${claim.licence} but the catalogue lists ${entry?.id} as ${entry?.licence}`,
    );
  if (!m) return out("unknown", null, "the file could not be read; no licence fields");

  // 7. Commercial signs and no licence.
  if (commercial || evidence.rejected.length > 0 || m.license || m.licenseUrl) {
    if (m.license) evidence.nameFields.push({ field: "license", value: m.license });
    if (m.licenseUrl) evidence.nameFields.push({ field: "licenseUrl", value: m.licenseUrl });
    if (m.copyright) evidence.nameFields.push({ field: "copyright", value: m.copyright });
    const rejected = evidence.rejected.map((r) => `${r.licenseId}: ${r.why}`).join("; ");
    return out(
      "unlicensed",
      null,
      rejected
        ? `no licence covers web use on ${input.domain} (${rejected})`
        : `a commercial font with no licence for ${input.domain}`,
    );
  }
  return out("unknown", null, "no licence fields and no catalogue entry");
}
