// How the dashboard writes numbers, keys and addresses (no DOM). Everything
// here returns plain text: the page puts it in with textContent, never as
// markup, so a key or an address from the cluster cannot become HTML.

/**
 * @param {number | null | undefined} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes) || bytes < 0) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Requests per second: one decimal below 10, whole numbers above.
 * @param {number | null | undefined} perSec
 * @returns {string}
 */
export function formatRate(perSec) {
  if (typeof perSec !== 'number' || !Number.isFinite(perSec) || perSec < 0) return '–';
  return perSec < 10 ? perSec.toFixed(1) : Math.round(perSec).toLocaleString('en-US');
}

/**
 * A latency in milliseconds, to about three significant digits.
 * @param {number | null | undefined} ms
 * @returns {string}
 */
export function formatMs(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 10_000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * A duration in milliseconds as a person reads it: 850 ms, 4.2 s, 3 min.
 * @param {number | null | undefined} ms
 * @returns {string}
 */
export function formatAge(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

/** Keys longer than this are cut in the table (the full key is the cell's title). */
const KEY_CHARS_SHOWN_MAX = 24;

/**
 * A range bound (hex, as /cluster and /placement give keys) as text: the
 * bytes themselves when all are printable ASCII, else 0x and the hex. The
 * start of the key space is "(start)", a null end "(end)".
 * @param {string | null} hex
 * @param {'start' | 'end'} side
 * @returns {{ text: string, full: string }}
 */
export function keyText(hex, side) {
  if (hex === null) return { text: '(end)', full: '(end)' };
  if (hex === '') return side === 'start' ? { text: '(start)', full: '(start)' } : { text: '(empty)', full: '(empty)' };
  if (!/^(?:[0-9a-f]{2})+$/i.test(hex)) return { text: '?', full: hex };
  const bytes = hex.match(/../g)?.map((b) => parseInt(b, 16)) ?? [];
  const printable = bytes.every((b) => b >= 0x20 && b < 0x7f);
  const full = printable ? JSON.stringify(String.fromCharCode(...bytes)) : `0x${hex.toLowerCase()}`;
  return { text: full.length > KEY_CHARS_SHOWN_MAX ? `${full.slice(0, KEY_CHARS_SHOWN_MAX - 1)}…` : full, full };
}

/**
 * The base URL of a node's HTTP API from the "host:port" it recorded, or
 * null if it is not one: only http:// with a plain host name, IPv4 or
 * bracketed IPv6 and a port, so nothing from the cluster can make a link
 * or a navigation go anywhere else (no javascript:, no path, no user info).
 * @param {unknown} hostPort
 * @returns {string | null}
 */
export function nodeBaseUrl(hostPort) {
  if (typeof hostPort !== 'string' || hostPort.length > 300) return null;
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(hostPort);
  if (m === null) return null;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return null;
  return `http://${m[1]}:${port}`;
}
