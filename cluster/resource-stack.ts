/**
 * What a node opened, closed in the reverse order of opening: whatever was opened later may use
 * what was opened before it (a store on a connection), so it goes first. Each close has a
 * deadline, and a close that fails or hangs is recorded, never thrown midway, so one stuck
 * resource cannot keep the others open.
 */
import { withTimeout } from "./async.ts";
import { FatalError } from "./errors.ts";

export interface ClosingFailure {
  name: string;
  error: unknown;
}

export interface ResourceStackOptions {
  /** Most milliseconds one close may take before it counts as failed and the next one starts. */
  closeDeadlineMs: number;
  /** Told of each close that failed or ran past its deadline. */
  onCloseError?: (failure: ClosingFailure) => void;
}

export class ResourceStack {
  readonly #o: ResourceStackOptions;
  readonly #entries: Array<{ name: string; close: () => unknown }> = [];
  #closing: Promise<ClosingFailure[]> | null = null;

  constructor(options: ResourceStackOptions) {
    this.#o = options;
  }

  /** Registers `resource` to be closed by `close`; returns the resource, so opening reads as one line. */
  use<T>(name: string, resource: T, close: (resource: T) => unknown): T {
    // A resource opened after closing began would never be closed: a wiring bug.
    if (this.#closing) throw new FatalError(`resource stack already closed; cannot take ${name}`);
    this.#entries.push({ name, close: () => close(resource) });
    return resource;
  }

  /** Registers something to run at closing time that has no resource of its own (stop observing, uninstall). */
  defer(name: string, close: () => unknown): void {
    this.use(name, undefined, close);
  }

  /** Names of what is open, in the order it was opened. */
  get names(): string[] {
    return this.#entries.map((e) => e.name);
  }

  /** Closes everything, last opened first; resolves with what failed. Safe to call twice. */
  close(): Promise<ClosingFailure[]> {
    this.#closing ??= this.#closeAll();
    return this.#closing;
  }

  async #closeAll(): Promise<ClosingFailure[]> {
    const failures: ClosingFailure[] = [];
    for (const { name, close } of this.#entries.splice(0).reverse()) {
      try {
        await withTimeout(Promise.resolve().then(close), this.#o.closeDeadlineMs, `closing ${name}`);
      } catch (error) {
        const failure = { name, error };
        failures.push(failure);
        try {
          this.#o.onCloseError?.(failure);
        } catch {
          // A failing reporter must not stop the closing either.
        }
      }
    }
    return failures;
  }
}
