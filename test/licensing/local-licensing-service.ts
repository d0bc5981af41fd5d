/**
 * A small licensing service on loopback for tests: answers `POST /v1/check` from an in-memory set
 * of licensed (domain, sha256) pairs, and can be made slow, failing, or down and back up on the
 * same port.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Socket } from "node:net";
import type { LicensingDeps } from "../../actors/licensing/compliance.ts";
import { LicensingClient } from "../../actors/licensing/licensing-client.ts";
import { openCatalogue } from "../../actors/licensing/open-licence.ts";
import { LicenseRegistry } from "../../actors/licensing/registry.ts";
import type { Collections } from "../../actors/store/database.ts";

export class LocalLicensingService {
  readonly licensed = new Map<string, Map<string, string>>();
  /** Delay before each answer. */
  delayMs = 0;
  /** Status of the next answers (one per request) instead of a real answer. */
  failures: number[] = [];
  token: string | null = null;
  requests = 0;
  #server: http.Server | null = null;
  #sockets = new Set<Socket>();
  #port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** What the results writer checks licences with: the registry, open catalogue and this service (no retries, no caching). */
  deps(collections: Pick<Collections, "licenses" | "licenseDomains">): LicensingDeps {
    const client = new LicensingClient({
      url: this.url,
      timeoutMs: 1_000,
      retries: 0,
      retryBaseMs: 10,
      breakerFailures: 100,
      breakerResetMs: 1_000,
      cacheTtlMs: 1,
    });
    return {
      registry: new LicenseRegistry(collections),
      catalogue: openCatalogue(),
      external: client.check.bind(client),
    };
  }

  grant(domain: string, sha256: string, reference: string) {
    const m = this.licensed.get(domain) ?? new Map<string, string>();
    m.set(sha256, reference);
    this.licensed.set(domain, m);
  }

  async start(): Promise<void> {
    const server = http.createServer((req, res) => void this.#handle(req, res));
    server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", resolve);
    });
    this.#port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Down: the port refuses connections until start() again. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse) {
    this.requests++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (res.destroyed) return;
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    const failure = this.failures.shift();
    if (failure !== undefined) return send(failure, { error: "induced" });
    if (this.token && req.headers.authorization !== `Bearer ${this.token}`) return send(401, { error: "token" });
    if (req.method !== "POST" || req.url !== "/v1/check") return send(404, { error: "not found" });
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { domain: string; fonts: Array<{ sha256: string }> };
    const granted = this.licensed.get(body.domain);
    send(200, {
      results: body.fonts.map((f) => {
        const reference = granted?.get(f.sha256);
        return reference ? { sha256: f.sha256, licensed: true, reference } : { sha256: f.sha256, licensed: false };
      }),
    });
  }
}
