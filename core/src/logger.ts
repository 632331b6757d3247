/** The tiny logging interface the core accepts; the shell adapts pino to it. */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

const noop = (): void => {};
export const SILENT_LOGGER: Logger = Object.freeze({ debug: noop, info: noop, warn: noop });
