/** JSON logs; one logger per node, children per actor. */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, bindings: Record<string, string>): Logger {
  return pino({ level, base: bindings, timestamp: pino.stdTimeFunctions.isoTime });
}
