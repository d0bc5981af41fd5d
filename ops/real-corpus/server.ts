/**
 * Serves the real corpus (sites.ts) on loopback: one node:http server, routed on the Host header,
 * each site `<id>.test` with its package's files as they ship. `/node_modules/…` is served too,
 * for our own pages, which use installed packages as a self-hosting site does. Nothing is
 * rewritten except the one-line `modified` changes sites.ts declares; a CDN the package only
 * names stays unreachable (the scanner's egress proxy and the reference's resolver rules both
 * map only `*.test` here).
 */
import { readFile, stat } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { SITES, type SiteDef } from "./sites.ts";

export const NODE_MODULES = fileURLToPath(new URL("../../node_modules/", import.meta.url));
export const PAGES = fileURLToPath(new URL("./pages/", import.meta.url));

export type RealSite = SiteDef & { host: string; url: string };

export type RealCorpus = {
  port: number;
  /** Chromium's --host-resolver-rules for the corpus. */
  hostResolverRules: string;
  /** The scanner's address policy for the corpus. */
  policy: { allowHosts: string[]; hostMap: Record<string, string> };
  sites: RealSite[];
  close(): Promise<void>;
};

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".md": "text/markdown; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".eot": "application/vnd.ms-fontobject",
  ".webmanifest": "application/manifest+json",
  ".txt": "text/plain; charset=utf-8",
  ".map": "application/json",
};

/** `base` joined with a URL path, or null when the path climbs out of it. */
function inside(base: string, urlPath: string): string | null {
  const file = normalize(join(base, decodeURIComponent(urlPath)));
  return file.startsWith(base.endsWith(sep) ? base : base + sep) ? file : null;
}

/** The file a request names on a site, or null for none. */
function fileFor(site: SiteDef, path: string): string | null {
  if (site.ours && (path === "/" || path === `/${site.page}`)) return join(PAGES, site.ours);
  for (const [prefix, dir] of Object.entries(site.mounts ?? {})) {
    if (path.startsWith(prefix)) return inside(join(NODE_MODULES, dir), path.slice(prefix.length));
  }
  if (path.startsWith("/node_modules/")) return inside(NODE_MODULES, path.slice("/node_modules/".length));
  if (site.ours) return null;
  return inside(join(NODE_MODULES, site.pkg, site.root), path === "/" ? site.page : path.slice(1));
}

async function body(site: SiteDef, file: string, path: string): Promise<Buffer | null> {
  const info = await stat(file).catch(() => null);
  if (!info?.isFile()) return null;
  const bytes = await readFile(file);
  const isLanding = path === "/" || path === `/${site.page}`;
  if (!isLanding || !site.modified) return bytes;
  const [from, to] = site.modified;
  const html = bytes.toString("utf8");
  if (!html.includes(from)) throw new Error(`${site.id}: the page no longer contains ${from}`);
  return Buffer.from(html.replace(from, to), "utf8");
}

export async function startRealCorpus(opts: { port?: number; only?: readonly string[] } = {}): Promise<RealCorpus> {
  const wanted = opts.only ? SITES.filter((s) => opts.only!.includes(s.id)) : SITES;
  if (opts.only && wanted.length !== opts.only.length) {
    const known = new Set(SITES.map((s) => s.id));
    throw new Error(`unknown corpus sites: ${opts.only.filter((id) => !known.has(id)).join(", ")}`);
  }
  const byHost = new Map(wanted.map((s) => [`${s.id}.test`, s]));
  const server = http.createServer((req, res) => {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    const site = byHost.get(host);
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const file = site ? fileFor(site, path) : null;
    const send = (status: number, type: string, data: Buffer | string) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : data);
    };
    if (!site || !file) return send(404, "text/plain", "not found");
    body(site, file, path).then(
      (data) =>
        data
          ? send(200, TYPES[extname(file).toLowerCase()] ?? "application/octet-stream", data)
          : send(404, "text/plain", "not found"),
      (err: unknown) => send(500, "text/plain", String(err)),
    );
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    hostResolverRules: "MAP *.test 127.0.0.1",
    policy: { allowHosts: ["*.test"], hostMap: { "*.test": "127.0.0.1" } },
    sites: wanted.map((s) => ({ ...s, host: `${s.id}.test`, url: `http://${s.id}.test:${port}/${s.page}` })),
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}

// `node ops/real-corpus/server.ts [--port N]`: serve the corpus until interrupted, listing the sites.
if (import.meta.main) {
  const port = process.argv.includes("--port") ? Number(process.argv[process.argv.indexOf("--port") + 1]) : 0;
  const corpus = await startRealCorpus({ port });
  for (const site of corpus.sites) console.log(site.url);
  console.log(`scan one: glyphscan scan <url> --allow-host '*.test=127.0.0.1'`);
  process.once("SIGINT", () => void corpus.close());
  process.once("SIGTERM", () => void corpus.close());
}
