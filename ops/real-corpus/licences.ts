/**
 * Which licence each package declares for the font files it ships, as read from its package.json
 * `license` and its LICENSE/OFL files (the `read` line says where). A file is matched by its path
 * under node_modules; the longest matching prefix wins, so a vendored copy (sb-admin-2's
 * vendor/fontawesome-free) carries the vendored package's font licence, not the template's.
 */

export type FontLicence = { where: string; licence: string; read: string };

export const FONT_LICENCES: readonly FontLicence[] = [
  {
    where: "@fortawesome/fontawesome-free/",
    licence: "OFL-1.1",
    read: "LICENSE.txt: '# Fonts: SIL OFL 1.1 License … applies to all icons packaged as web and desktop font files'",
  },
  {
    where: "startbootstrap-sb-admin-2/vendor/fontawesome-free/",
    licence: "OFL-1.1",
    read: "vendor/fontawesome-free/LICENSE.txt: '# Fonts: SIL OFL 1.1 License' (the template's MIT covers its own code)",
  },
  {
    where: "reveal.js/",
    licence: "OFL-1.1",
    read: "css/theme/fonts/source-sans-pro/LICENSE and league-gothic/LICENSE: SIL Open Font License (dist themes inline them)",
  },
  { where: "@mdi/font/", licence: "Apache-2.0", read: "LICENSE: '# Fonts: Apache 2.0 … All web and desktop fonts'" },
  {
    where: "katex/dist/fonts/",
    licence: "OFL-1.1",
    read: "the font files' own licence URL (name ID 14) http://scripts.sil.org/OFL; package.json and LICENSE (MIT) cover the code",
  },
  {
    where: "@mathjax/mathjax-newcm-font/",
    licence: "Apache-2.0",
    read: "package.json license Apache-2.0 (mathjax's dependency; no separate font licence file)",
  },
  {
    where: "@fontsource/",
    licence: "OFL-1.1",
    read: "package.json license OFL-1.1; LICENSE: SIL Open Font License 1.1",
  },
  {
    where: "@fontsource-variable/",
    licence: "OFL-1.1",
    read: "package.json license OFL-1.1; LICENSE: SIL Open Font License 1.1",
  },
  { where: "bootstrap-icons/", licence: "MIT", read: "package.json license MIT; LICENSE: The MIT License" },
  {
    where: "remixicon/",
    licence: "Remix-Icon-License-1.0",
    read: "License: 'Remix Icon License v1.0' covering 'font files' (package.json still says Apache-2.0)",
  },
  {
    where: "bootstrap3/",
    licence: "MIT",
    read: "LICENSE: The MIT License; README: 'Fonts from Glyphicons are included' (dist/fonts, no other licence)",
  },
  {
    where: "material-design-icons-iconfont/",
    licence: "Apache-2.0",
    read: "package.json license Apache-2.0; LICENSE: Apache License 2.0",
  },
  {
    where: "typeface-roboto/",
    licence: "Apache-2.0",
    read: "the font files' own licence URL (name ID 14) apache.org/licenses/LICENSE-2.0; package.json MIT, no licence file",
  },
];

/** The entry for a path under node_modules ("katex/dist/fonts/…"), or null when none ships fonts there. */
export function fontLicenceOf(path: string): FontLicence | null {
  let best: FontLicence | null = null;
  for (const entry of FONT_LICENCES)
    if (path.startsWith(entry.where) && (!best || entry.where.length > best.where.length)) best = entry;
  return best;
}
