/**
 * A small HTTP GET for the static fast path. Every hop (the first request and each redirect) is
 * resolved through the SSRF guard and the connection goes to the address the guard approved, so
 * a DNS answer cannot change between the check and the connect. Bodies are capped while they
 * stream, and decompressed (gzip, deflate, brotli) under the same cap.
 */
import http from "node:http";
import https from "node:https";
import { createBrotliDecompress, createGunzip, createInflate } from "node:zlib";
import type { Readable } from "node:stream";
import { resolvePublicAddress, type AddressPolicy } from "./ssrf.ts";

export type FetchOptions = {
  policy: AddressPolicy;
  maxBytes: number;
  /** Deadline (epoch ms) for the whole fetch, redirects included. */
  deadline: number;
  maxRedirects?: number;
  accept?: string;
};

export type Fetched = { status: number; url: string; contentType: string | null; body: Buffer };

/** Why a fetch gave no usable answer; the static path escalates on any of these. */
export class FetchError extends Error {
  override name = "FetchError";
}

const USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/148.0 Safari/537.36";

/** GET with the SSRF guard on every hop; rejects with a FetchError that names the URL. */
export async function fetchPinned(url: string, opts: FetchOptions): Promise<Fetched> {
  try {
    return await fetchHops(url, opts);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new FetchError(`${url.startsWith("data:") ? url.slice(0, 40) : url.slice(0, 300)}: ${message}`);
  }
}

async function fetchHops(url: string, opts: FetchOptions): Promise<Fetched> {
  let current = url;
  for (let hop = 0; hop <= (opts.maxRedirects ?? 5); hop++) {
    const u = new URL(current);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new FetchError(`scheme ${u.protocol}`);
    const check = await resolvePublicAddress(u.hostname, opts.policy);
    if (!check.ok) throw new FetchError(check.reason);
    const res = await requestOnce(u, check.address, opts);
    if (res.status >= 300 && res.status < 400 && res.location !== null) {
      current = new URL(res.location, u).href;
      continue;
    }
    return { status: res.status, url: current, contentType: res.contentType, body: res.body };
  }
  throw new FetchError(`more than ${opts.maxRedirects ?? 5} redirects`);
}

type Raw = { status: number; location: string | null; contentType: string | null; body: Buffer };

function requestOnce(u: URL, address: string, opts: FetchOptions): Promise<Raw> {
  const ms = opts.deadline - Date.now();
  if (ms <= 0) return Promise.reject(new FetchError("deadline passed"));
  const lib = u.protocol === "https:" ? https : http;
  return new Promise<Raw>((resolve, reject) => {
    const req = lib.request(
      {
        host: address, // IPv6 unbracketed: Node brackets it itself
        port: u.port || (u.protocol === "https:" ? 443 : 80),
        path: u.pathname + u.search,
        method: "GET",
        servername: u.hostname, // SNI and certificate checks for the name, not the pinned address
        headers: {
          host: u.host,
          "user-agent": USER_AGENT,
          accept: opts.accept ?? "*/*",
          "accept-encoding": "gzip, deflate, br",
        },
        timeout: ms,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const location = typeof res.headers.location === "string" ? res.headers.location : null;
        const contentType = res.headers["content-type"] ?? null;
        if (status >= 300 && status < 400) {
          res.resume();
          return resolve({ status, location, contentType, body: Buffer.alloc(0) });
        }
        const declared = Number(res.headers["content-length"]);
        if (declared > opts.maxBytes) {
          res.destroy();
          return reject(new FetchError(`body of ${declared} bytes exceeds ${opts.maxBytes}`));
        }
        res.on("error", (err) => reject(new FetchError(err.message)));
        readCapped(decoded(res, res.headers["content-encoding"]), opts.maxBytes).then(
          (body) => resolve({ status, location: null, contentType, body }),
          (err: Error) => {
            reject(err);
            res.destroy(); // a bomb cut at the cap: drop the connection rather than leave it paused
          },
        );
      },
    );
    const timer = setTimeout(() => req.destroy(new FetchError(`no answer within ${ms} ms`)), ms);
    req.on("timeout", () => req.destroy(new FetchError(`idle for ${ms} ms`)));
    req.on("error", (err) => reject(err instanceof FetchError ? err : new FetchError(err.message)));
    req.on("close", () => clearTimeout(timer));
    req.end();
  });
}

function decoded(res: http.IncomingMessage, encoding: string | undefined): Readable {
  switch ((encoding ?? "").trim().toLowerCase()) {
    case "gzip":
    case "x-gzip":
      return res.pipe(createGunzip());
    case "deflate":
      return res.pipe(createInflate());
    case "br":
      return res.pipe(createBrotliDecompress());
    default:
      return res;
  }
}

function readCapped(stream: Readable, maxBytes: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        // Counted after decoding: a 1 MB gzip body stops here, at the cap, not at 1 GiB.
        const err = new FetchError(`body exceeds ${maxBytes} bytes`);
        reject(err); // before any error the cut itself causes (a reset connection)
        stream.destroy(err);
        return;
      }
      chunks.push(chunk);
    });
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", (err) => reject(err instanceof FetchError ? err : new FetchError(err.message)));
  });
}
