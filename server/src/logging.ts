// The node's root logger: JSON lines for machines, or pino-pretty for a person at a terminal.
import { pino, type DestinationStream } from 'pino';
import { prettyLogDestination } from '@flotilla/shards';

/** What `--log-format` accepts: one JSON object per line, or pino-pretty's coloured lines. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What `--log-level` accepts: pino's levels, most to least severe, and `silent`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** A log level or format option that is not one of the accepted words (the CLI maps it to a usage error). */
export class LogOptionError extends Error {
  readonly code = 'LOG_OPTION_INVALID';
}

/** The level, checked; throws LogOptionError naming the accepted ones. */
export function parseLogLevel(value: string): LogLevel {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) throw new LogOptionError(`log level "${value}" is not one of ${LOG_LEVELS.join(', ')}`);
  return value as LogLevel;
}

/** The format, checked; throws LogOptionError naming the accepted ones. */
export function parseLogFormat(value: string): LogFormat {
  if (!(LOG_FORMATS as readonly string[]).includes(value)) throw new LogOptionError(`log format "${value}" is not one of ${LOG_FORMATS.join(', ')}`);
  return value as LogFormat;
}

/**
 * Where the root logger records its format. The Host's worker cores make
 * their own root loggers (one per thread) and must write the same format;
 * FlotillaNode reads it from here (children inherit it through pino's
 * prototype chain) so that no caller has to pass the format twice.
 */
export const LOG_FORMAT = Symbol('flotilla.logFormat');

/** The format a logger made by createNodeLogger writes; 'json' for any other logger. */
export function logFormatOf(logger: object): LogFormat {
  return (logger as { [LOG_FORMAT]?: LogFormat })[LOG_FORMAT] ?? 'json';
}

export interface NodeLoggerOptions {
  /** One of LOG_LEVELS (checked). */
  readonly level: string;
  /** One of LOG_FORMATS (checked). */
  readonly format: string;
  /**
   * Bound once here, on the root, and on every line of this node's main
   * thread: components under it do not bind it again (a repeated key is two
   * keys in a JSON line).
   */
  readonly nodeId?: number;
  /** A file descriptor (default 2, stderr: stdout carries the CLI's ready line) or a stream (tests). */
  readonly destination?: number | DestinationStream;
}

/**
 * The root logger of one node's main thread. Both formats write each line
 * before the call returns (a crash loses none): JSON through pino's
 * synchronous destination, pretty through pino-pretty's formatter
 * (prettyLogDestination, which the worker cores use too), coloured only on
 * a terminal.
 */
export function createNodeLogger(options: NodeLoggerOptions): pino.Logger {
  const level = parseLogLevel(options.level);
  const format = parseLogFormat(options.format);
  const destination = options.destination ?? 2;
  // No hostname: one machine's logs all carry the same one; pid tells processes apart.
  const base = options.nodeId === undefined ? { pid: process.pid } : { pid: process.pid, nodeId: options.nodeId };
  const stream: DestinationStream =
    format === 'pretty'
      ? prettyLogDestination(destination)
      : typeof destination === 'number'
        ? pino.destination({ dest: destination, sync: true })
        : destination;
  const logger = pino({ level, base }, stream);
  Object.defineProperty(logger, LOG_FORMAT, { value: format, enumerable: false });
  return logger;
}
