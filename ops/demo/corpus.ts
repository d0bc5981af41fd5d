/**
 * A local corpus of small sites that use real fonts (the installed @fontsource packages), for the
 * demo and the end-to-end tests. One node:http server answers every site, routing on the Host
 * header; Chromium reaches `siteNN.test` through `--host-resolver-rules`. Each site declares its
 * fonts in one of five ways, and its ground truth comes from the bytes actually served.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { crc32, deflateSync } from "node:zlib";

export type CorpusVariant = "inline-style" | "link" | "import" | "script-inserted" | "font-face-api";
export const VARIANTS: readonly CorpusVariant[] = [
  "inline-style",
  "link",
  "import",
  "script-inserted",
  "font-face-api",
];

export type CorpusSite = {
  /** Its own registrable domain, e.g. "site07.test". */
  domain: string;
  url: string;
  variant: CorpusVariant;
  expectedUsedFamilies: string[];
  /** Declared (CSS or FontFace API) but never rendered, so never fetched. */
  expectedDeclaredOnlyFamilies: string[];
  /**
   * Files the page fetches; url is absolute (or the data: URI itself), family the CSS name,
   * fontFamily the family the file's own name table gives (e.g. "Open Sans").
   */
  expectedFiles: Array<{ sha256: string; family: string; url: string; fontFamily: string }>;
};

export type Corpus = {
  port: number;
  hostResolverRules: string;
  sites: CorpusSite[];
  /** Requests served so far, by kind: lets tests check that images never reach the server. */
  hits: Readonly<Record<"page" | "css" | "font" | "image", number>>;
  close(): Promise<void>;
};

const PACKAGES = ["roboto", "open-sans", "lato", "inter", "merriweather", "fira-sans"] as const;
/** The latin subset range as @fontsource writes it; Chromium re-serialises it (U+0-FF, …). */
const LATIN_RANGE =
  "U+0000-00FF,U+0131,U+0152-0153,U+02BB-02BC,U+02C6,U+02DA,U+02DC,U+0304,U+0308,U+0329,U+2000-206F,U+20AC,U+2122,U+2191,U+2193,U+2212,U+2215,U+FEFF,U+FFFD";

type FontAsset = { name: string; bytes: Buffer; sha256: string; mime: string; format: string; fontFamily: string };
type Face = { family: string; weight: number; asset: FontAsset; used: boolean; dataUri?: boolean };
type Site = CorpusSite & { html: string; sheets: Record<string, string>; assets: Map<string, FontAsset> };

const fontCache = new Map<string, FontAsset>();
function fontAsset(pkg: string, weight: number, ext: "woff2" | "woff"): FontAsset {
  const name = `${pkg}-latin-${weight}-normal.${ext}`;
  let asset = fontCache.get(name);
  if (!asset) {
    const bytes = readFileSync(fileURLToPath(import.meta.resolve(`@fontsource/${pkg}/files/${name}`)));
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const fontFamily = pkg.replace(/(^|-)(\w)/g, (_, dash: string, c: string) => (dash ? " " : "") + c.toUpperCase());
    asset = { name, bytes, sha256, mime: `font/${ext}`, format: ext, fontFamily };
    fontCache.set(name, asset);
  }
  return asset;
}

/** A valid solid-colour PNG, built here so the corpus ships no binary images. */
function png(size: number, rgb: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), body.length + 4);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(size * 3).map((_, i) => rgb[i % 3]!)]);
  const idat = deflateSync(Buffer.concat(Array.from({ length: size }, () => row)));
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", Buffer.alloc(0))]);
}
const IMAGES = [png(48, [200, 40, 40]), png(64, [40, 120, 200])];

const fontFaceRule = (f: Face, src: string): string =>
  `@font-face {\n  font-family: "${f.family}";\n  font-style: normal;\n  font-weight: ${f.weight};\n` +
  `  src: ${src};\n  unicode-range: ${LATIN_RANGE};\n}\n`;

function buildSite(i: number, port: number, tag: string | undefined): Site {
  const n = String(i + 1).padStart(2, "0");
  const domain = tag ? `site${n}-${tag}.test` : `site${n}.test`;
  const origin = `http://${domain}:${port}`;
  const assetsOrigin = `http://assets.${domain}:${port}`;
  const variant = VARIANTS[i % VARIANTS.length]!;
  const pkg = PACKAGES[i % PACKAGES.length]!;
  const ext = i % 4 === 3 ? "woff" : "woff2";
  const label = pkg.replace(/(^|-)(\w)/g, (_, dash: string, c: string) => (dash ? " " : "") + c.toUpperCase());
  const family = `S${n} ${label}`;
  const regular = i % 2 === 0 ? 400 : 300;
  const faces: Face[] = [
    { family, weight: regular, asset: fontAsset(pkg, regular, ext), used: true },
    { family, weight: 700, asset: fontAsset(pkg, 700, ext), used: true },
  ];
  // Every third site declares a family it never renders; every other one names it in a stack.
  if (i % 3 === 0)
    faces.push({ family: `S${n} Spare`, weight: 400, asset: fontAsset("merriweather", 900, "woff2"), used: false });
  // Some inline-style sites also embed a font as a data: URI.
  if (variant === "inline-style" && i % 2 === 1)
    faces.push({
      family: `S${n} Inline`,
      weight: 400,
      asset: fontAsset("lato", 400, "woff2"),
      used: true,
      dataUri: true,
    });

  const base = variant === "import" ? assetsOrigin : origin;
  const fileUrl = (f: Face) =>
    f.dataUri ? `data:${f.asset.mime};base64,${f.asset.bytes.toString("base64")}` : `${base}/files/${f.asset.name}`;
  const srcOf = (f: Face) =>
    f.dataUri
      ? `url(${fileUrl(f)}) format("${f.asset.format}")`
      : `url("files/${f.asset.name}") format("${f.asset.format}")`;
  const css = faces.map((f) => fontFaceRule(f, srcOf(f))).join("\n");
  const sheets: Record<string, string> = {};
  let head = "";
  let script = "";
  if (variant === "inline-style") head = `<style>\n${css}</style>`;
  if (variant === "link") [head, sheets["/fonts.css"]] = [`<link rel="stylesheet" href="/fonts.css">`, css];
  if (variant === "import") {
    head = `<link rel="stylesheet" href="${assetsOrigin}/main.css">`;
    sheets["/main.css"] = `/* site theme */\n@import url("fonts.css");\nbody { margin: 2em; }\n`;
    sheets["/fonts.css"] = css;
  }
  if (variant === "script-inserted") {
    // Half the sites inject a <style>, half load a stylesheet from script.
    const inject =
      i % 2 === 0
        ? `const s = document.createElement("style"); s.textContent = ${JSON.stringify(css)}; document.head.append(s);`
        : `const l = document.createElement("link"); l.rel = "stylesheet"; l.href = "/fonts.css"; document.head.append(l);`;
    sheets["/fonts.css"] = css;
    script = `<script>document.addEventListener("DOMContentLoaded", () => { ${inject} });</script>`;
  }
  if (variant === "font-face-api") {
    const adds = faces.map((f) => {
      const make = `new FontFace(${JSON.stringify(f.family)}, ${JSON.stringify(`url(/files/${f.asset.name})`)}, { weight: "${f.weight}" })`;
      return f.used
        ? `(async () => { const f = ${make}; await f.load(); document.fonts.add(f); })();`
        : `document.fonts.add(${make});`;
    });
    script = `<script>\n${adds.join("\n")}\n</script>`;
  }
  // Naming the spare family in the stack is safe only where the used family exists from the first
  // render: a FontFace-API page adds its used faces after they load, so until then Chromium falls
  // through to the spare face and really fetches it (site25 of a 50-site corpus did, now and then).
  const spareInStack = i % 6 === 0 && variant !== "font-face-api";
  const stack = spareInStack ? `"${family}", "S${n} Spare", sans-serif` : `"${family}", sans-serif`;
  const inline = faces.find((f) => f.dataUri);
  const html = `<!doctype html>
<html><head><meta charset="utf-8"><title>Site ${n}</title>${head}${script}</head>
<body style='font-family: ${stack}'>
<h1 style="font-weight: 700">Site ${n}: ${label}</h1>
<p style="font-weight: ${regular}">The quick brown fox jumps over the lazy dog.</p>
${inline ? `<p style='font-family: "${inline.family}"'>Embedded as a data URI.</p>` : ""}
<img src="/img/0.png" alt=""><img src="/img/1.png" alt="">
</body></html>`;

  const assets = new Map(faces.filter((f) => !f.dataUri).map((f) => [`/files/${f.asset.name}`, f.asset]));
  const used = faces.filter((f) => f.used);
  return {
    domain,
    url: `${origin}/`,
    variant,
    expectedUsedFamilies: [...new Set(used.map((f) => f.family))],
    expectedDeclaredOnlyFamilies: [...new Set(faces.filter((f) => !f.used).map((f) => f.family))],
    expectedFiles: used.map((f) => ({
      sha256: f.asset.sha256,
      family: f.family,
      url: fileUrl(f),
      fontFamily: f.asset.fontFamily,
    })),
    html,
    sheets,
    assets,
  };
}

/**
 * @param opts.tag  appended to every domain (`site01-<tag>.test`), so a run's sites are new to a
 *   cluster that has seen earlier runs (its dedupe windows would otherwise drop them).
 */
export async function startCorpus(opts: { sites?: number; port?: number; tag?: string } = {}): Promise<Corpus> {
  const hits = { page: 0, css: 0, font: 0, image: 0 };
  let sites: Site[] = [];
  const byHost = new Map<string, Site>();
  const server = http.createServer((req, res) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    const site = byHost.get(host.replace(/^assets\./, ""));
    const path = new URL(req.url ?? "/", "http://corpus").pathname;
    const send = (status: number, type: string, body: string | Buffer, extra: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store", ...extra });
      res.end(body);
    };
    if (!site) return send(404, "text/plain", "unknown site\n");
    const image = /^\/img\/(\d)\.png$/.exec(path);
    const asset = site.assets.get(path);
    const sheet = site.sheets[path];
    if (image) {
      hits.image++;
      return send(200, "image/png", IMAGES[Number(image[1]) % IMAGES.length]!);
    }
    // Fonts are CORS resources: the import variant loads them from its assets. subdomain.
    if (asset) {
      hits.font++;
      return send(200, asset.mime, asset.bytes, { "access-control-allow-origin": "*" });
    }
    if (sheet !== undefined) {
      hits.css++;
      return send(200, "text/css; charset=utf-8", sheet);
    }
    if (path === "/favicon.ico") return send(404, "text/plain", "none\n");
    hits.page++;
    send(200, "text/html; charset=utf-8", site.html);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", resolve);
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  sites = Array.from({ length: opts.sites ?? 24 }, (_, i) => buildSite(i, port, opts.tag));
  for (const s of sites) byHost.set(s.domain, s);
  let closed: Promise<void> | null = null;
  return {
    port,
    hostResolverRules: "MAP *.test 127.0.0.1",
    sites: sites.map(({ domain, url, variant, expectedUsedFamilies, expectedDeclaredOnlyFamilies, expectedFiles }) => ({
      domain,
      url,
      variant,
      expectedUsedFamilies,
      expectedDeclaredOnlyFamilies,
      expectedFiles,
    })),
    hits,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
