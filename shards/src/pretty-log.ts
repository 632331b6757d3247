import { writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import type { DestinationStream } from 'pino';
import { prettyFactory } from 'pino-pretty';

/**
 * pino-pretty's formatting as a synchronous pino destination, for a person
 * at a terminal (`--log-format pretty`): one line per record, the message
 * first, the fields after it; colours only on a terminal. pino-pretty's
 * own stream formats asynchronously, so the last lines before a crash —
 * the ones that matter — could be lost; this formats and writes each line
 * before the logging call returns, as the JSON destination does. Both the
 * main thread (server/src/logging.ts) and each worker core use it.
 */
export function prettyLogDestination(destination: number | { write(text: string): unknown }): DestinationStream {
  const pretty = prettyFactory({
    colorize: typeof destination === 'number' && isatty(destination),
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    singleLine: true,
  });
  return {
    write(line: string) {
      const text = pretty(line);
      if (typeof destination === 'number') writeSync(destination, text);
      else destination.write(text);
    },
  };
}
