/** What every command needs: the resolved config and a logger. */
import { loadConfig, type Config } from "../../config/mod.ts";
import { createLogger, type Logger } from "../../cluster/mod.ts";

export interface GlobalOptions {
  config?: string;
  region?: string;
  roles?: string;
  logLevel?: string;
}

export function commandContext(
  opts: GlobalOptions,
  extra: Record<string, unknown> = {},
): { config: Config; log: Logger } {
  const overrides: Record<string, unknown> = { ...extra };
  if (opts.region) overrides["region"] = opts.region;
  if (opts.roles) overrides["roles"] = opts.roles.split(",").map((r) => r.trim());
  if (opts.logLevel) overrides["logLevel"] = opts.logLevel;
  const config = loadConfig({ file: opts.config, env: process.env, overrides });
  const log = createLogger(config.logLevel, { nodeId: config.nodeId!, region: config.region });
  return { config, log };
}
