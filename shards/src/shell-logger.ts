import type { Logger } from '@flotilla/core';

/**
 * Logging as the shell needs it: the core's interface plus error and child
 * bindings (pino satisfies it). A leaf, so that every part of the shell —
 * host, replica, snapshot — can take one without importing another.
 */
export interface ShellLogger extends Logger {
  error(fields: Record<string, unknown>, message: string): void;
  child(bindings: Record<string, unknown>): ShellLogger;
}
