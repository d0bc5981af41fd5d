/** Anything a node starts and stops: actors, timers, watchers. */
export type ServiceState = "starting" | "running" | "draining" | "stopped" | "failed";

export interface Service {
  readonly name: string;
  start(): Promise<void>;
  /** Safe to call twice; resolves when the service has stopped. */
  stop(): Promise<void>;
}
