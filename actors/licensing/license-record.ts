/**
 * A licence record as an operator writes it (one CSV row or JSON object), its validation, and
 * the stored shape. Names are normalised once here so lookups compare plain keys.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { LicenseDoc } from "../store/documents.ts";

export const LICENSE_TYPES = ["web", "app", "desktop"] as const;
export type LicenseType = (typeof LICENSE_TYPES)[number];

/** Family and foundry names compared without case, spaces or punctuation ("Open Sans" = "open-sans"). */
export function nameKey(name: string): string {
  return name
    .normalize("NFKD")
    .toLowerCase()
    .replace(/[^a-z0-9]/g, "");
}

/** A domain as licences name it: lower case, no scheme, no trailing dot, no leading `*.` or `www.`. */
export function licenceDomain(value: string): string {
  return value
    .trim()
    .toLowerCase()
    .replace(/^[a-z]+:\/\//, "")
    .split(/[/:]/, 1)[0]!
    .replace(/\.$/, "")
    .replace(/^\*\./, "")
    .replace(/^www\./, "");
}

/** Whether a licence for `licensed` covers a scan of `domain` (the domain itself or a subdomain). */
export function domainCovers(licensed: string, domain: string): boolean {
  return domain === licensed || domain.endsWith(`.${licensed}`);
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$/;

/** Lists arrive as arrays (JSON) or as `;`, `,` or space separated text (CSV). */
const list = z
  .union([z.array(z.string()), z.string()])
  .transform((v) => (Array.isArray(v) ? v : v.split(/[;,\s]+/)).map((s) => s.trim()).filter((s) => s !== ""));

const emptyToUndefined = (v: unknown) => (v === "" || v === null ? undefined : v);
const optionalText = z.preprocess(emptyToUndefined, z.string().trim().min(1).max(300).optional());
const optionalCount = z.preprocess(
  (v) => (typeof v === "string" && v.trim() !== "" ? Number(v.replaceAll("_", "")) : emptyToUndefined(v)),
  z.number().int().positive().optional(),
);
const optionalDate = z.preprocess(
  emptyToUndefined,
  z
    .union([z.iso.date(), z.iso.datetime({ offset: true })])
    .transform((s) => new Date(s))
    .optional(),
);

export const licenseInputSchema = z
  .strictObject({
    id: z
      .string()
      .trim()
      .regex(/^[A-Z0-9][\w.:/-]{0,99}$/i, "a stable id of letters, digits and . _ : / -"),
    licensee: z.string().trim().min(1).max(300),
    domains: list.pipe(
      z
        .array(z.string().transform(licenceDomain).pipe(z.string().regex(DOMAIN, "not a domain name")))
        .min(1, "at least one domain"),
    ),
    family: z.string().trim().min(1).max(200),
    foundry: optionalText,
    sha256: z.preprocess(
      emptyToUndefined,
      list
        .pipe(
          z.array(
            z
              .string()
              .toLowerCase()
              .regex(/^[0-9a-f]{64}$/, "not a SHA-256"),
          ),
        )
        .optional(),
    ),
    type: z.enum(LICENSE_TYPES),
    pageViews: optionalCount,
    maxDomains: optionalCount,
    validFrom: optionalDate,
    validTo: optionalDate,
  })
  .refine((r) => !r.validFrom || !r.validTo || r.validFrom <= r.validTo, {
    message: "validTo is before validFrom",
    path: ["validTo"],
  });
export type LicenseInput = z.input<typeof licenseInputSchema>;

/** A readable one-line reason from a validation failure: `field: message; field: message`. */
export function describeIssues(error: z.ZodError): string {
  // One line per message: three bad entries of one list read "domains.0, domains.2: not a domain name".
  const byMessage = new Map<string, string[]>();
  for (const i of error.issues) {
    const at = i.path.length > 0 ? i.path.join(".") : "row";
    byMessage.set(i.message, [...(byMessage.get(i.message) ?? []), at]);
  }
  return [...byMessage].map(([message, at]) => `${at.join(", ")}: ${message}`).join("; ");
}

/** The stored document for a valid record; `contentHash` says whether a re-import changes anything. */
export function toLicenseDoc(
  record: z.output<typeof licenseInputSchema>,
): Omit<LicenseDoc, "importedAt" | "updatedAt"> {
  const body = {
    _id: record.id,
    licensee: record.licensee,
    domains: [...new Set(record.domains)].sort(),
    family: record.family,
    familyKey: nameKey(record.family),
    foundry: record.foundry ?? null,
    foundryKey: record.foundry ? nameKey(record.foundry) : null,
    sha256: [...new Set(record.sha256 ?? [])].sort(),
    type: record.type,
    pageViews: record.pageViews ?? null,
    maxDomains: record.maxDomains ?? null,
    validFrom: record.validFrom ?? null,
    validTo: record.validTo ?? null,
  };
  const contentHash = createHash("sha256").update(JSON.stringify(body)).digest("hex");
  return { ...body, contentHash };
}
