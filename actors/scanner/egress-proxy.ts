/**
 * The browser's only way out: Chromium runs with --proxy-server pointing here, so every request a
 * page makes (document, redirect hop, script, stylesheet, font, XHR/fetch, iframe, worker,
 * WebSocket) arrives as an absolute-URI request (http) or a CONNECT (https, wss). Each one is
 * resolved through the SSRF guard and the connection goes to the very address the guard approved:
 * Chromium never resolves a site's name itself, so a DNS answer that flips from public to private
 * between check and connect (DNS rebinding) cannot reach the private address. Refusals answer 403
 * with an `x-glyphscan-refused` header (http) or fail the tunnel (https); either way the reason is
 * kept so the scan that made the request can record it.
 *
 * Plain-http responses are also capped at maxResponseBytes while they stream (a 50 MB "font" is
 * cut, never held whole in Chromium or here), and so is what they decode to: Chromium undoes a
 * Content-Encoding itself, so a 1 MB gzip body would become gigabytes inside it. A copy of each
 * encoded chunk is decoded here first and the chunk is passed on only while the decoded total
 * stays under the cap. Tunnelled https bytes are opaque and only piped.
 */
import http from "node:http";
import net from "node:net";
import type { Duplex, Transform } from "node:stream";
import { createBrotliDecompress, createGunzip, createInflate, createInflateRaw, createZstdDecompress } from "node:zlib";
import { resolvePublicAddress, type AddressCheck, type AddressPolicy } from "./ssrf.ts";

export type EgressProxyOptions = {
  policy: AddressPolicy;
  /** A plain-http response larger than this is refused (declared) or cut (streamed). */
  maxResponseBytes: number;
  /** An encoded (gzip, deflate, br, zstd) response decoding past this is cut. Default maxResponseBytes. */
  maxDecodedBytes?: number;
  /** Reuse of one host's check; short, so a long scan still re-resolves. Default 30 s. */
  checkTtlMs?: number;
  /** An upstream connection idle this long is closed. Default 120 s. */
  idleTimeoutMs?: number;
};

export const REFUSED_HEADER = "x-glyphscan-refused";

const MAX_REMEMBERED = 2_000;
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "upgrade",
]);

export class EgressProxy {
  readonly #opts: EgressProxyOptions;
  readonly #server: http.Server;
  readonly #checks = new Map<string, { at: number; check: Promise<AddressCheck> }>();
  /** Recent refusals by URL (http) and by `host:port` authority (both). */
  readonly #refusals = new Map<string, string>();
  readonly #sockets = new Set<Duplex>();
  readonly #agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  #port = 0;

  private constructor(opts: EgressProxyOptions) {
    this.#opts = opts;
    this.#server = http.createServer((req, res) => void this.#forward(req, res));
    this.#server.on("connect", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.#tunnel(req, socket, head);
    });
    // Chromium tunnels ws:// through CONNECT; a raw upgrade request is not expected.
    this.#server.on("upgrade", (_req: http.IncomingMessage, socket: Duplex) => {
      socket.end("HTTP/1.1 501 Not Implemented\r\nconnection: close\r\n\r\n");
    });
    this.#server.on("connection", (socket: net.Socket) => this.#track(socket));
    this.#server.on("clientError", (_err, socket: Duplex) => socket.destroy());
  }

  static async start(opts: EgressProxyOptions): Promise<EgressProxy> {
    const proxy = new EgressProxy(opts);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(0, "127.0.0.1", () => resolve());
    });
    proxy.#port = (proxy.#server.address() as net.AddressInfo).port;
    return proxy;
  }

  /** `http://127.0.0.1:<port>`, for --proxy-server. */
  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Why the proxy refused (or cut) this URL or its host recently, or null. */
  refusalFor(url: string): string | null {
    if (!URL.canParse(url)) return null;
    const u = new URL(url);
    return this.#refusals.get(stripHash(u.href)) ?? this.#refusals.get(authority(u)) ?? null;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#agent.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #track(socket: Duplex): void {
    this.#sockets.add(socket);
    socket.once("close", () => this.#sockets.delete(socket));
  }

  #remember(keys: string[], reason: string): void {
    for (const key of keys) {
      this.#refusals.delete(key);
      this.#refusals.set(key, reason);
    }
    while (this.#refusals.size > MAX_REMEMBERED) {
      const oldest = this.#refusals.keys().next().value;
      if (oldest === undefined) break;
      this.#refusals.delete(oldest);
    }
  }

  /** The guard's answer for a host, reused for checkTtlMs; the connection goes to `address`. */
  #check(host: string): Promise<AddressCheck> {
    const now = Date.now();
    const ttl = this.#opts.checkTtlMs ?? 30_000;
    const hit = this.#checks.get(host);
    if (hit && now - hit.at < ttl) return hit.check;
    const check = resolvePublicAddress(host, this.#opts.policy);
    this.#checks.set(host, { at: now, check });
    if (this.#checks.size > MAX_REMEMBERED) {
      for (const [key, value] of this.#checks) if (now - value.at >= ttl) this.#checks.delete(key);
    }
    return check;
  }

  async #forward(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url !== undefined && URL.canParse(req.url) ? new URL(req.url) : null;
    if (!target || target.protocol !== "http:") {
      refuse(res, `not a proxy request: ${String(req.url).slice(0, 200)}`);
      return;
    }
    const keys = [stripHash(target.href), authority(target)];
    const check = await this.#check(target.hostname);
    if (!check.ok) {
      this.#remember(keys, check.reason);
      refuse(res, check.reason);
      req.resume();
      return;
    }
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(name)) headers[name] = value;
    headers.host = target.host;
    const cap = this.#opts.maxResponseBytes;
    const upstream = http.request(
      {
        host: check.address,
        port: target.port || 80,
        path: target.pathname + target.search,
        method: req.method,
        headers,
        agent: this.#agent,
        timeout: this.#opts.idleTimeoutMs ?? 120_000,
      },
      (up) => {
        const declared = Number(up.headers["content-length"]);
        if (declared > cap) {
          const reason = `response of ${declared} bytes exceeds ${cap}`;
          this.#remember([keys[0]!], reason);
          up.destroy();
          refuse(res, reason);
          return;
        }
        this.#relay(up, res, keys[0]!);
      },
    );
    upstream.on("timeout", () => upstream.destroy(new Error("upstream idle")));
    upstream.on("error", (err) => {
      const reason = `connect: ${(err as NodeJS.ErrnoException).code ?? err.message} for ${target.host}`;
      if (!res.headersSent) refuse(res, reason, 502);
      else res.destroy();
    });
    // The browser gave up (page closed, navigation timeout): drop the upstream request with it.
    res.on("close", () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  /**
   * Streams an upstream response to the browser, cut past maxResponseBytes on the wire and, when
   * it is encoded, past maxDecodedBytes decoded. Chunks go one at a time through the meter, so
   * the browser never holds a chunk whose decoded bytes were not counted first.
   */
  #relay(up: http.IncomingMessage, res: http.ServerResponse, key: string): void {
    const cap = this.#opts.maxResponseBytes;
    const decodedCap = this.#opts.maxDecodedBytes ?? cap;
    const encoding = up.headers["content-encoding"];
    const meter = encoding === undefined ? null : decodedMeter(encoding, decodedCap);
    if (meter === "unsupported") {
      const reason = `decoded-size: content-encoding ${headerSafe(String(encoding)).slice(0, 100)} cannot be bounded`;
      this.#remember([key], reason);
      up.destroy();
      refuse(res, reason);
      return;
    }
    const out: string[] = [];
    for (let i = 0; i + 1 < up.rawHeaders.length; i += 2) {
      const name = up.rawHeaders[i]!;
      if (!HOP_BY_HOP.has(name.toLowerCase())) out.push(name, up.rawHeaders[i + 1]!);
    }
    res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
    const cut = (reason: string): void => {
      this.#remember([key], reason);
      meter?.destroy();
      up.destroy();
      res.destroy();
    };
    let size = 0;
    let chain = Promise.resolve();
    const forward = async (chunk: Buffer): Promise<void> => {
      if (res.destroyed) return;
      size += chunk.length;
      if (size > cap) return cut(`response exceeded ${cap} bytes`);
      if (meter && !(await meter.admit(chunk))) {
        return cut(`decoded-size: response decodes to over ${decodedCap} bytes (${encoding})`);
      }
      if (!res.write(chunk)) await drained(res);
    };
    up.on("data", (chunk: Buffer) => {
      up.pause();
      chain = chain.then(() => forward(chunk)).then(() => void (res.destroyed || up.resume()));
    });
    up.on("end", () => void chain.then(() => (res.destroyed ? undefined : res.end())));
    up.on("error", () => {
      meter?.destroy();
      res.destroy();
    });
    res.on("close", () => meter?.destroy());
  }

  async #tunnel(req: http.IncomingMessage, client: Duplex, head: Buffer): Promise<void> {
    this.#track(client);
    client.on("error", () => undefined);
    const target = URL.canParse(`http://${req.url}`) ? new URL(`http://${req.url}`) : null;
    if (!target || !target.port) {
      client.end(`HTTP/1.1 400 Bad Request\r\n${REFUSED_HEADER}: bad CONNECT target\r\n\r\n`);
      return;
    }
    const check = await this.#check(target.hostname);
    if (!check.ok) {
      this.#remember([authority(target)], check.reason);
      client.end(`HTTP/1.1 403 Forbidden\r\n${REFUSED_HEADER}: ${headerSafe(check.reason)}\r\n\r\n`);
      return;
    }
    const upstream = net.connect({ host: check.address, port: Number(target.port) });
    this.#track(upstream);
    upstream.setTimeout(this.#opts.idleTimeoutMs ?? 120_000, () => upstream.destroy());
    upstream.once("connect", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (upstream.readyState === "opening" || !upstream.remoteAddress) {
        const reason = `connect: ${err.code ?? err.message} for ${target.host}`;
        this.#remember([authority(target)], reason);
        client.end(`HTTP/1.1 502 Bad Gateway\r\n${REFUSED_HEADER}: ${headerSafe(reason)}\r\n\r\n`);
      } else client.destroy();
    });
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
  }
}

function refuse(res: http.ServerResponse, reason: string, status = 403): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain", [REFUSED_HEADER]: headerSafe(reason), connection: "close" });
  res.end(`refused by glyphscan: ${reason}\n`);
}

/** Resolves when the browser took the buffered bytes, or went away. */
function drained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

function headerSafe(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, "?").slice(0, 500);
}

function authority(u: URL): string {
  const port = u.port || (u.protocol === "https:" || u.protocol === "wss:" ? "443" : "80");
  return `${u.hostname.toLowerCase()}:${port}`;
}

const stripHash = (u: string): string => (u.includes("#") ? u.slice(0, u.indexOf("#")) : u);

/** Counts what an encoded body decodes to; `admit` answers false once the total passes the cap. */
type DecodedMeter = { admit(chunk: Buffer): Promise<boolean>; destroy(): void };

/**
 * A meter for a Content-Encoding, "unsupported" for one that cannot be counted (stacked or
 * unknown codings: no decoder here, so no bound), or null for identity.
 */
function decodedMeter(header: string, cap: number): DecodedMeter | "unsupported" | null {
  const codings = header
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
  if (codings.length === 0) return null;
  if (codings.length > 1) return "unsupported";
  const coding = codings[0]!;
  if (!["gzip", "x-gzip", "deflate", "br", "zstd"].includes(coding)) return "unsupported";
  let decoder: Transform | null = null;
  let decoded = 0;
  let broken = false;
  const start = (first: Buffer): Transform => {
    // HTTP "deflate" is zlib-wrapped by the spec but raw in the wild; Chromium takes both.
    const zlibHeader = first.length >= 2 && (first[0]! & 0x0f) === 8 && (first[0]! * 256 + first[1]!) % 31 === 0;
    const d =
      coding === "br"
        ? createBrotliDecompress()
        : coding === "zstd"
          ? createZstdDecompress()
          : coding === "deflate"
            ? zlibHeader
              ? createInflate()
              : createInflateRaw()
            : createGunzip();
    d.on("data", (out: Buffer) => {
      decoded += out.length;
      if (decoded > cap) d.destroy();
    });
    // A stream the decoder rejects is one Chromium rejects too: it decodes no further.
    d.on("error", () => (broken = true));
    return d;
  };
  return {
    admit(chunk) {
      if (decoded > cap) return Promise.resolve(false);
      if (broken) return Promise.resolve(true);
      const d = (decoder ??= start(chunk));
      return new Promise<boolean>((resolve) => {
        const done = (): void => resolve(decoded <= cap);
        d.once("close", done);
        d.write(chunk, () => {
          d.off("close", done);
          done();
        });
      });
    },
    destroy() {
      decoder?.destroy();
    },
  };
}
