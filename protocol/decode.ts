/**
 * Turning bytes from the wire into a typed message, or into a reason why not.
 * Never throws: an actor turns a failed decode into a dead letter.
 */
import { z } from "zod";
import { parseSchemaHeader, schemas, type SchemaName } from "./messages.ts";

/** Why a message could not be read, as a code the reader branches on; `reason` says it in words. */
export type DecodeFailure = "oversized" | "invalid-message";

export type Decoded<T> = { ok: true; value: T; schema: string } | { ok: false; code: DecodeFailure; reason: string };

const invalid = (reason: string) => ({ ok: false, code: "invalid-message", reason }) as const;

/** The message type a reader gets for the kinds it accepts. */
export type MessageOf<N extends SchemaName> = z.infer<(typeof schemas)[N][keyof (typeof schemas)[N]]>;

/**
 * Decodes a message whose header names one of `accept`. A message of a known kind but an
 * unknown (newer) version is refused with a reason rather than misread.
 */
export function decodeMessage<N extends SchemaName>(
  accept: readonly N[],
  schemaHeader: string | undefined,
  data: Uint8Array,
  maxBytes: number,
): Decoded<MessageOf<N>> {
  if (data.byteLength > maxBytes) {
    return { ok: false, code: "oversized", reason: `oversized: ${data.byteLength} bytes, limit ${maxBytes}` };
  }
  const parsed = parseSchemaHeader(schemaHeader);
  if (!parsed) return invalid(`missing or malformed Glyphscan-Schema header: ${JSON.stringify(schemaHeader ?? null)}`);
  if (!(accept as readonly string[]).includes(parsed.name)) {
    return invalid(`unexpected message kind "${parsed.name}", expected ${accept.join(" or ")}`);
  }
  const versions = schemas[parsed.name as N] as Record<number, z.ZodType>;
  const schema = versions[parsed.version];
  if (!schema) {
    return invalid(
      `unsupported version ${parsed.version} of "${parsed.name}" (known: ${Object.keys(versions).join(", ")})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (err) {
    return invalid(`not UTF-8 JSON: ${(err as Error).message}`);
  }
  const result = schema.safeParse(json);
  if (!result.success) {
    return invalid(
      `invalid ${parsed.name}.v${parsed.version}: ${z.prettifyError(result.error).replaceAll("\n", "; ")}`,
    );
  }
  return { ok: true, value: result.data as MessageOf<N>, schema: `${parsed.name}.v${parsed.version}` };
}
