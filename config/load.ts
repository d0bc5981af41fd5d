/**
 * Resolves the configuration once, in this order (later wins): schema defaults, a JSON file,
 * environment variables, explicit overrides (CLI flags). The result is validated and frozen.
 * The environment is a parameter, so tests never touch `process.env`.
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { z } from "zod";
import { configSchema, type Config } from "./schema.ts";

export class ConfigError extends Error {
  override name = "ConfigError";
}

const ENV_PREFIX = "GLYPHSCAN_";

/** One settable leaf of the schema. */
export interface ConfigField {
  path: string[];
  env: string;
  schema: z.ZodType;
  description: string;
  defaultValue: unknown;
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodPrefault) {
    s = s.unwrap() as z.ZodType;
  }
  return s;
}

/** Every leaf field with its environment variable name, for parsing and for the docs. */
export function configFields(): ConfigField[] {
  const out: ConfigField[] = [];
  const walk = (shape: Record<string, z.ZodType>, path: string[]) => {
    for (const [key, field] of Object.entries(shape)) {
      const inner = unwrap(field);
      const here = [...path, key];
      if (inner instanceof z.ZodObject) {
        walk(inner.shape, here);
        continue;
      }
      const env = ENV_PREFIX + here.map((p) => p.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()).join("_");
      const parsedDefault = field.safeParse(undefined);
      out.push({
        path: here,
        env,
        schema: field,
        description: field.description ?? inner.description ?? "",
        defaultValue: parsedDefault.success ? parsedDefault.data : undefined,
      });
    }
  };
  walk(configSchema.shape, []);
  return out;
}

/** Environment strings become typed values by the field's type: lists split on commas. */
function fromEnv(field: ConfigField, raw: string): unknown {
  const inner = unwrap(field.schema);
  if (inner instanceof z.ZodNumber) return raw.trim() === "" ? raw : Number(raw);
  if (inner instanceof z.ZodBoolean) return raw === "true" ? true : raw === "false" ? false : raw;
  if (inner instanceof z.ZodArray) {
    const element = unwrap(inner.element as z.ZodType);
    const parts = raw
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    return element instanceof z.ZodNumber ? parts.map(Number) : parts;
  }
  if (inner instanceof z.ZodRecord) {
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      throw new ConfigError(`${field.env}: expected JSON object, got ${JSON.stringify(raw)}`);
    }
  }
  return raw;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown) {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== "object" || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? merge(out[k], v) : v;
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

export interface LoadConfigOptions {
  /** JSON file path; default: `GLYPHSCAN_CONFIG` from `env`, else none. */
  file?: string | undefined;
  env?: Readonly<Record<string, string | undefined>>;
  /** Highest-precedence values, e.g. CLI flags, as a partial config. */
  overrides?: Record<string, unknown>;
}

export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? {};
  let input: Record<string, unknown> = {};
  const file = opts.file ?? env["GLYPHSCAN_CONFIG"];
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new ConfigError(`config file ${file}: ${(err as Error).message}`);
    }
    if (!isPlainObject(parsed)) throw new ConfigError(`config file ${file}: expected a JSON object`);
    input = parsed;
  }
  const fromEnvironment: Record<string, unknown> = {};
  for (const field of configFields()) {
    const raw = env[field.env];
    if (raw !== undefined) setPath(fromEnvironment, field.path, fromEnv(field, raw));
  }
  input = merge(merge(input, fromEnvironment), opts.overrides ?? {});
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.join(".");
      const field = configFields().find((f) => f.path.join(".") === key);
      return `${key || "(root)"}${field ? ` (${field.env})` : ""}: ${issue.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  const config = result.data;
  if (!config.regions.includes(config.region)) {
    throw new ConfigError(`region: "${config.region}" is not one of regions [${config.regions.join(", ")}]`);
  }
  config.nodeId ??= `${hostname()
    .replace(/[^\w-]/g, "-")
    .slice(0, 40)}-${process.pid}`;
  return deepFreeze(config);
}
