// Parsers of option and argument values. Each throws commander's InvalidArgumentError, which commander
// prints naming the option and the value ("option '--nodes <count>' argument 'x' is invalid. …"): a
// usage error, exit code 2.
import { InvalidArgumentError } from 'commander';
import { advertiseProblem } from '../advertise.js';

/** Where client commands send their requests unless --url (or FLOTILLA_URL) says otherwise: node 1 of `flotilla dev`. */
export const URL_DEFAULT = 'http://127.0.0.1:8101';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('Expected a positive integer.');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('Expected a non-negative integer.');
  return n;
}

/** A TCP port, 1 to 65535. */
export function port(value: string): number {
  const n = positiveInt(value);
  if (n > 65_535) throw new InvalidArgumentError('Expected a port, 1 to 65535.');
  return n;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** HOST:PORT, as the value of an option; the value is kept as text (what the node records), checked here. */
export function hostPortText(value: string): string {
  hostPortOf(value);
  return value;
}

/**
 * --advertise and --advertise-http: HOST:PORT that others dial, so never a wildcard host (0.0.0.0) nor
 * port 0 (advertise.ts says why).
 */
export function advertiseHostPortText(value: string): string {
  if (/^[^:\s/]+:0+$/.test(value)) throw new InvalidArgumentError('Port 0 lets the listener pick a port, which others cannot know: advertise the port they dial, e.g. 10.0.0.1:7101.');
  hostPortOf(value);
  const problem = advertiseProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(`${problem}. Advertise the address others reach this node at, e.g. 10.0.0.1:${value.slice(value.lastIndexOf(':') + 1)}.`);
  return value;
}

/** HOST:PORT split; throws InvalidArgumentError. */
export function hostPortOf(value: string): HostPort {
  const m = /^([^:\s/]+):(\d{1,5})$/.exec(value);
  const n = m === null ? NaN : Number(m[2]);
  if (m === null || n < 1 || n > 65_535) throw new InvalidArgumentError('Expected HOST:PORT, e.g. 127.0.0.1:7101.');
  return { host: m[1]!, port: n };
}

/** --peers: ID=HOST:PORT,... of the other members (empty: a one-node cluster, or a joining node). */
export function peerList(value: string): Record<number, string> {
  const peers: Record<number, string> = {};
  for (const entry of value.split(',').filter((e) => e.length > 0)) {
    const m = /^(\d+)=(.+)$/.exec(entry);
    const id = m === null ? NaN : Number(m[1]);
    if (m === null || !Number.isSafeInteger(id) || id < 1) throw new InvalidArgumentError(`Expected ID=HOST:PORT,... of the other members; "${entry}" is not ID=HOST:PORT.`);
    try {
      hostPortOf(m[2]!);
    } catch {
      throw new InvalidArgumentError(`Expected ID=HOST:PORT,... of the other members; "${m[2]}" is not HOST:PORT.`);
    }
    const problem = advertiseProblem(m[2]!);
    if (problem !== undefined) throw new InvalidArgumentError(`Node ${id} at ${m[2]}: ${problem}; name the address node ${id} advertises (its --advertise, else its --listen).`);
    if (peers[id] !== undefined) throw new InvalidArgumentError(`Node ${id} is listed twice.`);
    peers[id] = m[2]!;
  }
  return peers;
}

/** A node's HTTP address: http(s)://HOST:PORT; a bare HOST:PORT means http. Returned without a trailing slash. */
export function nodeUrl(value: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new InvalidArgumentError("Expected a node's HTTP address, e.g. http://127.0.0.1:8101.");
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError("Expected an http:// or https:// address of a node's HTTP API.");
  if (url.search !== '' || url.hash !== '') throw new InvalidArgumentError("Expected a node's HTTP address without a query or fragment.");
  return url.toString().replace(/\/+$/, '');
}
