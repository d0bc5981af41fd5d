/**
 * Failure is a type: the class of an error decides what happens to the message.
 * Never match on message text.
 */

/** Worth retrying later (a server away, a timeout): the message is nak'ed with backoff. */
export class TransientError extends Error {
  override name = "TransientError";
}

/** Will never succeed (invalid content): the message is dead-lettered at once. */
export class PoisonError extends Error {
  override name = "PoisonError";
  readonly code: "invalid-message" | "rejected-input" | "poison" | "oversized";
  constructor(message: string, code: PoisonError["code"] = "poison") {
    super(message);
    this.code = code;
  }
}

/** The node cannot go on (bad config, incompatible server): stop it. */
export class FatalError extends Error {
  override name = "FatalError";
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
