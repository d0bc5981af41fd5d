/**
 * Script triage as data: what in a script's text means it may change the page's fonts (escalate
 * to the browser), and which libraries are known not to. Content rules are plain substrings of
 * the lower-cased script text (no regular expression runs over untrusted code). Libraries are
 * known by the SHA-256 of a release file, or by an exact-version URL on a public npm CDN, whose
 * content the site does not control; never by a path on the site's own host.
 */

export type ContentRule = { id: string; why: string; anyOf: readonly string[] };
/** `toggles`: classes and attributes the library may change at load by itself (data APIs). */
export type KnownLibrary = { name: string; toggles: readonly string[] };

/** Each fires when the script's lower-cased text contains any of `anyOf`. Order: most specific first. */
export const FONT_RULES: readonly ContentRule[] = [
  {
    id: "webfont-loader",
    why: "loads web fonts (a webfont loader or font service kit)",
    anyOf: [
      "webfont.load",
      "webfontconfig",
      "webfontloader",
      "fontfaceobserver",
      "typekit",
      "fonts.net",
      "fonts.com",
      "fontawesome",
      "font-awesome",
      "fonts.googleapis",
      "fonts.gstatic",
      "fonts.bunny",
      "fontshare",
      "myfonts",
      "cloud.typography",
    ],
  },
  {
    id: "font-api",
    why: "uses the CSS Font Loading API or declares @font-face",
    anyOf: ["fontface", "document.fonts", ".fonts.add", ".fonts.load", "font-face"],
  },
  { id: "font-file", why: "names a font file", anyOf: [".woff", ".ttf", ".otf", ".eot"] },
  {
    id: "style-insertion",
    why: "inserts or edits stylesheets",
    anyOf: [
      "createelement('style')",
      'createelement("style")',
      "createelement(`style`)",
      "createelement('link')",
      'createelement("link")',
      "createelement(`link`)",
      "insertrule",
      "adoptedstylesheets",
      "cssstylesheet",
      "replacesync",
      "<style",
      "<link",
      "stylesheet",
      "csstext",
    ],
  },
  {
    id: "font-style",
    why: "sets a font property from script",
    anyOf: ["fontfamily", "font-family", "fontweight", "font-weight", "fontstyle", ".style.font", "setproperty('font"],
  },
  {
    id: "css-in-js",
    why: "CSS-in-JS styles the page at run time",
    anyOf: [
      "styled-components",
      "data-styled",
      "@emotion",
      "data-emotion",
      "createglobalstyle",
      "injectglobal",
      "goober",
      "twind",
      "stitches",
    ],
  },
  { id: "canvas-text", why: "draws text on a canvas in a page font", anyOf: ["filltext", "stroketext"] },
  {
    id: "code-loading",
    why: "runs code that triage cannot read",
    anyOf: [
      "import(",
      "importscripts",
      "eval(",
      "new function(",
      "document.write",
      'settimeout("',
      "settimeout('",
      "createelement('script')",
      'createelement("script")',
    ],
  },
];

/** Scripts that write content or build elements: the text they add may take faces nothing else uses. */
export const RENDER_RULES: readonly ContentRule[] = [
  {
    id: "dom-write",
    why: "writes text or markup into the page",
    anyOf: [
      "innerhtml",
      "outerhtml",
      "insertadjacent",
      "textcontent",
      "innertext",
      "nodevalue",
      "createtextnode",
      "createelement",
      "appendchild",
      "insertbefore",
      "replacechild",
      "replacechildren",
      "replacewith",
      "clonenode",
      "createcontextualfragment",
      "domparser",
      "attachshadow",
      "customelements",
      ".append(",
      ".prepend(",
      ".after(",
      ".before(",
      ".html(",
      ".text(",
      ".wrap(",
      ".load(",
    ],
  },
  {
    id: "fetch",
    why: "fetches data that may be rendered",
    anyOf: ["fetch(", "xmlhttprequest", "$.ajax", "$.get", "$.post", "websocket", "eventsource"],
  },
  {
    id: "framework",
    why: "a client-side framework renders the page",
    anyOf: [
      "react",
      "vue",
      "angular",
      "svelte",
      "preact",
      "lit-html",
      "alpine",
      "htmx",
      "ember",
      "backbone",
      "knockout",
      "mithril",
      "solid-js",
      "stimulus",
      "handlebars",
      "mustache",
    ],
  },
];

/** Release files by SHA-256 (read from the packages that ship them). */
export const KNOWN_BY_HASH: Readonly<Record<string, KnownLibrary>> = {
  "42c9beb67d11f78edb63796d0d9bfb074d0fc1a20b47ad72fcb7fb0f3dc6a6fe": { name: "jquery 3.8.0 min", toggles: [] },
  fe404912036f5c5b82d2f7c54447737efeefc8f4f57acdd7f98b875f3c0e9ad0: { name: "jquery 3.8.0", toggles: [] },
  ff1523fb7389539c84c65aba19260648793bb4f5e29329d2ee8804bc37a3fe6e: { name: "jquery 3.6.0 min", toggles: [] },
  "1fe2bb5390a75e5d61e72c107cab528fc3c29a837d69aab7d200e1dbb5dcd239": { name: "jquery 3.6.0", toggles: [] },
  bbb7b9921ca2b61948753a6edb63c78443663dc45d1621d18e102e1dcb34e512: { name: "jquery 3.6.0 slim min", toggles: [] },
  "1f7723b6b9bfced0deba108df48e3287888dd986f1ff2d5133bacc9807ac0349": { name: "jquery-easing 1.4.1 min", toggles: [] },
  c212f4b505a86352aed62b24a8f16f999f821ecbe6456c7f3c8a04bc87968782: { name: "@popperjs/core 2.11.8", toggles: [] },
  fe28dc38bc057f6eb11180235bbe458b3295a39b674d889075d3d9a0b5071d9f: { name: "popper.js 1.16", toggles: [] },
  b0212543cc5a4a0a31c1b5a9d1e8973261992116b4cfde3e7dfcf33b4e81a97b: { name: "bootstrap 4.6.0 bundle", toggles: bs() },
  edd03b96ae4ff7886406c59d7dfeeaa1b624a7da297bf2f92d0cb6b7f9633cba: { name: "bootstrap 4.6.0", toggles: bs() },
  "19126b874a32753d42c12dfa6c17892bfd93820a5a5100ba1b34da4d07599b49": { name: "bootstrap 4.6.2 bundle", toggles: bs() },
  "423217abf8775cea2dc30fa1fe3e1c5e24dc359a80f1c37ad29a86094bfe81d1": { name: "bootstrap 4.6.2", toggles: bs() },
  "9ee2fcff6709e4d0d24b09ca0fc56aade12b4961ed9c43fd13b03248bfb57afe": { name: "bootstrap 3.4.1", toggles: bs() },
  "9520018fa5d81f4e4dc9d06afb576f90cbbaba209cfcc6cb60e1464647f7890b": { name: "bootstrap 5.2.3 bundle", toggles: bs() },
  "4ad2ad30a7df1fa0a615c4cfeb1aeffbe92019a8dff0262c99464acbd56dca5c": { name: "bootstrap 5.3.9 bundle", toggles: bs() },
  "56d73efb18652e2682e6daa95196442fe3b50200e283e188f8904e061d823752": { name: "bootstrap 5.3.9 bundle", toggles: bs() },
  aecf7c4f6420b9362bcac4b723f20b617835b9f2dc5b07b1e95a63000e2ceb6c: { name: "bootstrap 5.3.9", toggles: bs() },
};

/** What Bootstrap's data API changes at load (scrollspy, carousel, collapse state). */
function bs(): string[] {
  return [
    "active",
    "show",
    "collapse",
    "collapsing",
    "collapsed",
    "fade",
    "carousel-item-next",
    "carousel-item-prev",
  ].concat([
    "carousel-item-start",
    "carousel-item-end",
    "aria-expanded",
    "aria-current",
    "aria-selected",
    "data-bs-theme",
  ]);
}

/** Public npm CDNs: /npm/<package>@<exact version>/… (jsDelivr), /<package>@<version>/… (unpkg). */
export const NPM_CDN_HOSTS: Readonly<Record<string, string>> = { "cdn.jsdelivr.net": "/npm/", "unpkg.com": "/" };
/** Packages whose dist scripts cannot change fonts by themselves, at any exact version. */
export const KNOWN_NPM: Readonly<Record<string, KnownLibrary>> = {
  jquery: { name: "jquery", toggles: [] },
  "@popperjs/core": { name: "@popperjs/core", toggles: [] },
  "popper.js": { name: "popper.js", toggles: [] },
  bootstrap: { name: "bootstrap", toggles: bs() },
};

/** Third-party analytics beacons, by exact host and path: they send, they never style. */
export const ANALYTICS_URLS: ReadonlyArray<{ host: string; path: string; prefix?: boolean }> = [
  { host: "www.google-analytics.com", path: "/analytics.js" },
  { host: "www.google-analytics.com", path: "/ga.js" },
  { host: "static.cloudflareinsights.com", path: "/beacon.min.js", prefix: true },
  { host: "plausible.io", path: "/js/script", prefix: true },
  { host: "plausible.io", path: "/js/plausible", prefix: true },
  { host: "cdn.usefathom.com", path: "/script.js" },
];

/**
 * Inline snippets known whole, whitespace removed: `{id}` stands for a measurement id
 * ([A-Za-z0-9-]); the snippet must be exactly this, nothing appended.
 */
export const KNOWN_SNIPPETS: ReadonlyArray<{ name: string; template: string }> = [
  {
    name: "gtag config",
    template:
      "window.dataLayer=window.dataLayer||[];functiongtag(){dataLayer.push(arguments);}gtag('js',newDate());gtag('config','{id}');",
  },
];
