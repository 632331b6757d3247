// How the CLI shows data to a person (tables, sizes, keys) and to a program (`-o json`). Pure functions.

/** The output formats of the commands that print data. */
export const OUTPUT_FORMATS = ['table', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

/**
 * Control characters (C0, DEL, C1): they move the cursor, ring bells or change colours, so a key holding
 * one is not shown as text. In values, tab and line breaks are fine.
 */
const CONTROL_IN_KEY = /\p{Cc}/u;
const CONTROL_IN_VALUE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/u;

/** The bytes as text when they are valid UTF-8 without control characters (in a key: none at all), else undefined. */
export function printableText(bytes: Uint8Array, o: { multiline: boolean }): string | undefined {
  let text: string;
  try {
    text = utf8Fatal.decode(bytes);
  } catch {
    return undefined;
  }
  return (o.multiline ? CONTROL_IN_VALUE : CONTROL_IN_KEY).test(text) ? undefined : text;
}

/** The prefix that marks bytes shown in hex because they are not printable text. */
export const HEX_MARK = '0x';

/** A key for a person: its text when printable UTF-8, else `0x` and its hex. The empty key is `""`. */
export function keyText(bytes: Uint8Array): string {
  if (bytes.byteLength === 0) return '""';
  return printableText(bytes, { multiline: false }) ?? `${HEX_MARK}${Buffer.from(bytes).toString('hex')}`;
}

/** A value for a person: as keyText, but tabs and line breaks are text. */
export function valueText(bytes: Uint8Array): string {
  return printableText(bytes, { multiline: true }) ?? `${HEX_MARK}${Buffer.from(bytes).toString('hex')}`;
}

/**
 * Bytes for `-o json`: `{ <name>: "text" }` when printable UTF-8, else `{ <name>Hex: "00ff" }`, so a
 * program never has to guess which one it got. `null` (an unbounded range end) stays `{ <name>: null }`.
 */
export function bytesJson(name: string, bytes: Uint8Array | null, o: { multiline: boolean } = { multiline: false }): Record<string, string | null> {
  if (bytes === null) return { [name]: null };
  const text = printableText(bytes, o);
  return text === undefined ? { [`${name}Hex`]: Buffer.from(bytes).toString('hex') } : { [name]: text };
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** A byte count in binary units with one decimal: 512 B, 1.5 KiB, 79.4 GiB. */
export function bytesText(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return String(bytes);
  let value = bytes;
  let unit = 0;
  // 1023.95 KiB would round to "1024.0 KiB": move up a unit when the rounded value reaches 1024.
  while (unit < BYTE_UNITS.length - 1 && Math.round(value * 10) / 10 >= 1024) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** A duration for a person: 850 ms, 12.5 s, 3.2 min, 1.5 h. */
export function durationText(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** A header line and rows, in columns padded to their widest cell and two spaces apart. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  return columns([headers, ...rows]);
}

/** Rows in columns padded to their widest cell and two spaces apart; the last column is not padded. */
export function columns(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return rows.map(line).join('\n');
}

/** Text cut to `charsMax` characters with an ellipsis, for a table cell (the JSON output has it whole). */
export function cut(text: string, charsMax: number): string {
  return text.length <= charsMax ? text : `${text.slice(0, charsMax - 1)}…`;
}

/** One argument for a POSIX shell: as is when it has nothing the shell would read, else single-quoted. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_\-.,/:=@%+]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
