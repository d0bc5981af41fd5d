/**
 * Failure is a type: every failure kind that code branches on has a `code`, set where the failure
 * is thrown and matched by that code (or by class), never by message text. The class also says
 * what happens to a message: transient → nak with backoff, poison → dead letter at once, fatal →
 * stop the node.
 */

/** Worth retrying later. */
export type TransientCode = "transient" | "timeout" | "unavailable";
/** Will never succeed: the message is dead-lettered with this code as its reason. */
export type PoisonCode = "poison" | "invalid-message" | "rejected-input" | "oversized";
/** The node cannot go on. */
export type FatalCode = "fatal" | "bad-config" | "incompatible-server";
/** What a person gave (a flag, a file) is wrong: told to them, never retried. */
export type InputCode = "bad-input";
/** Conditions callers branch on that are no failure of the message as such. */
export type ConditionCode = "duplicate-key" | "not-found";
export type ErrorCode = TransientCode | PoisonCode | FatalCode | InputCode | ConditionCode;

/** A failure with a code; the subclasses below fix which codes go with which outcome. */
export class GlyphscanError<C extends ErrorCode = ErrorCode> extends Error {
  override name = "GlyphscanError";
  readonly code: C;
  constructor(code: C, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** Worth retrying later (a server away, a timeout): the message is nak'ed with backoff. */
export class TransientError extends GlyphscanError<TransientCode> {
  override name = "TransientError";
  constructor(message: string, code: TransientCode = "transient", options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** A wait that ran out (`withTimeout`): transient, with code `timeout`. */
export class TimeoutError extends TransientError {
  override name = "TimeoutError";
  readonly what: string;
  readonly ms: number;
  constructor(what: string, ms: number) {
    super(`${what} took over ${ms} ms`, "timeout");
    this.what = what;
    this.ms = ms;
  }
}

/** Will never succeed (invalid content): the message is dead-lettered at once. */
export class PoisonError extends GlyphscanError<PoisonCode> {
  override name = "PoisonError";
  constructor(message: string, code: PoisonCode = "poison", options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** The node cannot go on (bad config, incompatible server): stop it. */
export class FatalError extends GlyphscanError<FatalCode> {
  override name = "FatalError";
  constructor(message: string, code: FatalCode = "fatal", options?: ErrorOptions) {
    super(code, message, options);
  }
}

/** A bad flag, argument or input file of a command: the command says so and exits non-zero. */
export class InputError extends GlyphscanError<InputCode> {
  override name = "InputError";
  constructor(message: string, options?: ErrorOptions) {
    super("bad-input", message, options);
  }
}

/** The code of a failure: ours, or a driver's error code translated (MongoDB's duplicate key). */
export function errorCode(err: unknown): ErrorCode | null {
  // instanceof alone would type the code as `any` (the class is generic).
  if (err instanceof GlyphscanError) return (err as GlyphscanError).code;
  if (isDuplicateKey(err)) return "duplicate-key";
  return null;
}

/** True when `err` has the given code (see {@link errorCode}). */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return errorCode(err) === code;
}

const DUPLICATE_KEY = 11000;

/**
 * MongoDB's duplicate key (code 11000; FerretDB answers the same): a single write's error, or a
 * bulk write whose every failed document was a duplicate (`writeErrors` is one error or a list).
 */
export function isDuplicateKey(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const { code, writeErrors } = err as { code?: unknown; writeErrors?: unknown };
  if (writeErrors !== undefined) {
    const list: unknown[] = Array.isArray(writeErrors) ? writeErrors : [writeErrors];
    if (list.length > 0) return list.every((w) => (w as { code?: unknown } | null)?.code === DUPLICATE_KEY);
  }
  return code === DUPLICATE_KEY;
}

/** How the runtime treats a failure. Unknown errors are bugs or surprises: retried, then dead-lettered. */
export function classify(err: unknown): "transient" | "poison" | "fatal" {
  if (err instanceof PoisonError) return "poison";
  if (err instanceof FatalError) return "fatal";
  return "transient";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}
