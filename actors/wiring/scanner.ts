/**
 * The scanner role: Chromium pages behind the egress proxy, and font files parsed in worker
 * threads with time and heap limits, never on the node's event loop.
 */
import { someActor } from "../../cluster/mod.ts";
import { BrowserPool } from "../scanner/browser-pool.ts";
import { FontParsePool, installFontParsePool } from "../scanner/font-parse-pool.ts";
import { hostResolverRules, scannerActor } from "../scanner/scanner-actor.ts";
import type { RoleContext, RoleParts } from "./context.ts";

export async function scannerRole(ctx: RoleContext): Promise<RoleParts> {
  const { config, stack } = ctx;
  const s = config.scanner;
  const pool = await BrowserPool.launch({
    executablePath: s.chromiumPath,
    concurrency: s.concurrency,
    pageTimeoutMs: s.navigationTimeoutMs,
    hostResolverRules: hostResolverRules(s.hostMap),
    egress: { policy: { allowHosts: s.allowHosts, hostMap: s.hostMap }, maxResponseBytes: s.maxResponseBytes },
  });
  stack.use("browser pool", pool, (p) => p.close());
  const fontParsing = stack.use("font parse pool", new FontParsePool(s.fontParse), (p) => p.close());
  stack.defer("font parse pool install", installFontParsePool(fontParsing));
  return { actors: [someActor(scannerActor(config, pool))], services: [] };
}
