/**
 * `npm run corpus:manifest`: writes manifest.json, what each real-corpus site is made of: the
 * package and version it came from (as installed from the lockfile), the page, whether the page is
 * ours or changed, whether it runs scripts, the package's licence and the licence declared for
 * the fonts of every package the page draws on (licences.ts). `--check` fails when the file is
 * out of date instead of writing it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { format, resolveConfig } from "prettier";
import { FONT_LICENCES } from "./licences.ts";
import { NODE_MODULES, PAGES } from "./server.ts";
import { SITES, type SiteDef } from "./sites.ts";

export const MANIFEST = fileURLToPath(new URL("./manifest.json", import.meta.url));

export type ManifestSite = {
  id: string;
  kind: SiteDef["kind"];
  package: string;
  version: string;
  /** The directory it is installed under, when that is an alias (bootstrap3 for bootstrap@3.4.1). */
  installedAs?: string;
  page: string;
  ours: boolean;
  modified?: string;
  runsScripts: boolean;
  packageLicense: string;
  /** Licences declared for the fonts of the packages the page draws on: package → licence (where read). */
  fontLicences: Array<{ package: string; licence: string; read: string }>;
};

function landingHtml(site: SiteDef): string {
  const file = site.ours ? join(PAGES, site.ours) : join(NODE_MODULES, site.pkg, site.root, site.page);
  return readFileSync(file, "utf8");
}

/** The packages a page draws files from: its own, and those it names under /node_modules/. */
function packagesOf(site: SiteDef, html: string): string[] {
  const named = [...html.matchAll(/\/node_modules\/(@[^/"']+\/[^/"']+|[^/"'@]+)\//g)].map((m) => m[1]!);
  return [...new Set([site.pkg, ...named, ...(site.fontsFrom ?? [])])];
}

export function manifestOf(site: SiteDef): ManifestSite {
  const pkgJson = JSON.parse(readFileSync(join(NODE_MODULES, site.pkg, "package.json"), "utf8")) as {
    name: string;
    version: string;
    license?: string;
  };
  const html = landingHtml(site);
  const fontLicences = packagesOf(site, html).flatMap((pkg) =>
    FONT_LICENCES.filter(
      (e) => e.where.startsWith(`${pkg}/`) || (e.where.endsWith("/") && `${pkg}/`.startsWith(e.where)),
    ).map((e) => ({ package: pkg, licence: e.licence, read: e.read })),
  );
  return {
    id: site.id,
    kind: site.kind,
    package: pkgJson.name,
    version: pkgJson.version,
    ...(pkgJson.name === site.pkg ? {} : { installedAs: site.pkg }),
    page: site.ours ? `ops/real-corpus/pages/${site.ours} (ours)` : join(site.root, site.page),
    ours: site.ours !== undefined,
    ...(site.modified ? { modified: `${site.modified[0]} → ${site.modified[1]}: ${site.modified[2]}` } : {}),
    runsScripts: /<script\b/i.test(html),
    packageLicense: pkgJson.license ?? "none declared",
    fontLicences,
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { check: { type: "boolean", default: false } } });
  // Written as the repository formats JSON, so the file passes the format check as generated.
  const text = await format(JSON.stringify({ sites: SITES.map(manifestOf) }), {
    ...(await resolveConfig(MANIFEST)),
    filepath: MANIFEST,
  });
  if (values.check) {
    const same = readFileSync(MANIFEST, "utf8") === text;
    console.log(same ? "manifest.json is up to date" : "manifest.json is out of date: run npm run corpus:manifest");
    if (!same) process.exitCode = 1;
  } else {
    writeFileSync(MANIFEST, text);
    const ours = SITES.filter((s) => s.ours).length;
    const scripts = SITES.map(manifestOf).filter((s) => s.runsScripts).length;
    console.log(`${SITES.length} sites (${ours} pages of ours), ${scripts} run scripts; written to ${MANIFEST}`);
  }
}
