/**
 * The real corpus: sites assembled from pages that installed npm packages ship, served as they
 * ship (ops/real-corpus/server.ts). Where a package ships fonts but no page, a small page of ours
 * in ops/real-corpus/pages/ uses them the way the package's README says; `ours` marks those.
 * Every byte comes from the lockfile-pinned packages or from files checked in here, so the
 * corpus is the same on every checkout.
 */

export type SiteKind = "admin" | "landing" | "docs" | "slides" | "maths" | "icons" | "script-loaded" | "text-fonts";

export type SiteDef = {
  /** Host label: the site is `http://<id>.test:<port>/<page>`. */
  id: string;
  /** The installed package (directory under node_modules) the site comes from. */
  pkg: string;
  /** Directory inside the package served as the site's root ("" for the package root). */
  root: string;
  /** Landing page, relative to the root (for `ours`, the URL path the page is served at). */
  page: string;
  /** Our page (file name under ops/real-corpus/pages/) instead of one the package ships. */
  ours?: string;
  /** A one-line change to the shipped page, and why: [from, to, why]. */
  modified?: readonly [string, string, string];
  /**
   * URL prefix → directory under node_modules, for pages written against a deployment layout the
   * package does not reproduce (a GitHub Pages base path).
   */
  mounts?: Readonly<Record<string, string>>;
  kind: SiteKind;
  /** Packages whose fonts the page's scripts load without naming them in the page (MathJax's font package). */
  fontsFrom?: readonly string[];
};

const sbAdmin2 = (page: string): SiteDef => ({
  id: `sb-admin-2-${page.replace(/\.html$/, "")}`,
  pkg: "startbootstrap-sb-admin-2",
  root: "",
  page,
  kind: "admin",
});
const sbAdmin = (page: string): SiteDef => ({
  id: `sb-admin-${page.replace(/\.html$/, "")}`,
  pkg: "startbootstrap-sb-admin",
  root: "dist",
  page,
  kind: "admin",
});
const gentelella = (page: string): SiteDef => ({
  id: `gentelella-${page.replace(/^production\//, "").replace(/\.html$/, "")}`,
  pkg: "gentelella",
  root: "dist",
  page,
  kind: "admin",
});
const revealTheme = (page: string, theme: string): SiteDef => ({
  id: `reveal-${page.replace(/\.html$/, "")}-${theme}`,
  pkg: "reveal.js",
  root: "",
  page,
  kind: "slides",
  ...(theme === "black"
    ? {}
    : {
        modified: [
          "dist/theme/black.css",
          `dist/theme/${theme}.css`,
          "the theme switched to another the package ships, as its README says to choose one",
        ] as const,
      }),
});
const ours = (id: string, pkg: string, kind: SiteKind): SiteDef => ({
  id,
  pkg,
  root: "",
  page: "index.html",
  ours: `${id}.html`,
  kind,
});

export const SITES: readonly SiteDef[] = [
  ...["index.html", "buttons.html", "cards.html", "charts.html", "tables.html", "login.html", "register.html"].map(
    sbAdmin2,
  ),
  ...["404.html", "blank.html", "utilities-color.html", "utilities-other.html"].map(sbAdmin2),
  ...["index.html", "tables.html", "login.html"].map(sbAdmin),
  { id: "sb-resume", pkg: "startbootstrap-resume", root: "dist", page: "index.html", kind: "landing" },
  { id: "sb-creative", pkg: "startbootstrap-creative", root: "dist", page: "index.html", kind: "landing" },
  ...["production/index.html", "production/icons.html", "production/typography.html"].map(gentelella),
  revealTheme("index.html", "black"),
  revealTheme("demo.html", "black"),
  revealTheme("demo.html", "league"),
  revealTheme("demo.html", "moon"),
  revealTheme("demo.html", "white"),
  revealTheme("demo.html", "serif"),
  { id: "mdi-preview", pkg: "@mdi/font", root: "", page: "preview.html", kind: "icons" },
  { id: "ionicons-cheatsheet", pkg: "ionicons", root: "dist", page: "cheatsheet.html", kind: "icons" },
  {
    id: "material-icons-docs",
    pkg: "material-design-icons-iconfont",
    root: "docs",
    page: "index.html",
    // The docs are built for GitHub Pages under /material-design-icons-iconfont/.
    mounts: { "/material-design-icons-iconfont/": "material-design-icons-iconfont/docs/" },
    kind: "icons",
  },
  ours("katex-auto-render", "katex", "maths"),
  ours("katex-render", "katex", "maths"),
  { ...ours("mathjax-tex-chtml", "mathjax", "maths"), fontsFrom: ["@mathjax/mathjax-newcm-font"] },
  { ...ours("mathjax-mml-chtml", "mathjax", "maths"), fontsFrom: ["@mathjax/mathjax-newcm-font"] },
  ours("docsify-readme", "docsify", "docs"),
  ours("webfontloader-custom", "webfontloader", "script-loaded"),
  ours("fontface-fetch", "@fontsource/merriweather", "script-loaded"),
  ours("fontawesome-free", "@fortawesome/fontawesome-free", "icons"),
  ours("bootstrap-icons", "bootstrap-icons", "icons"),
  ours("remixicon", "remixicon", "icons"),
  ours("bootstrap3-glyphicons", "bootstrap3", "icons"),
  ours("admin-lte", "admin-lte", "admin"),
  ours("tabler", "@tabler/core", "admin"),
  ours("fontsource-roboto", "@fontsource/roboto", "text-fonts"),
  ours("fontsource-variable-inter", "@fontsource-variable/inter", "text-fonts"),
  ours("typeface-roboto", "typeface-roboto", "text-fonts"),
];
