// Parsers of option and argument values. Each throws commander's InvalidArgumentError, which commander
// prints naming the option and the value ("option '--nodes <count>' argument 'x' is invalid. …"): a
// usage error, exit code 2.
import { InvalidArgumentError } from 'commander';
import { AddressError, hostPortProblem, parseHostPort, type HostPort } from '@flotilla/core';
import { advertiseExample, advertiseProblem } from '../advertise.js';

/** Where client commands send their requests unless --url (or FLOTILLA_URL) says otherwise: node 1 of `flotilla dev`. */
export const URL_DEFAULT = 'http://127.0.0.1:8101';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('Expected a positive integer.');
  return n;
}

/**
 * The node's INITIAL_RANGE_COUNT_MAX (node.ts): importing node.ts would load the whole node for
 * `--help`. cli-format.test.ts checks the two agree.
 */
export const RANGE_COUNT_MAX_SHOWN = 1_000;

/** A static bootstrap's range count: 1 to RANGE_COUNT_MAX_SHOWN (more come from splits). */
export function rangeCount(value: string): number {
  const n = positiveInt(value);
  if (n > RANGE_COUNT_MAX_SHOWN) throw new InvalidArgumentError(`At most ${RANGE_COUNT_MAX_SHOWN} ranges at the start; more come from splits.`);
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

/** HOST:PORT (core's address.ts: an IPv6 host in brackets), as the value of an option; the value is kept as text (what the node records), checked here. */
export function hostPortText(value: string): string {
  hostPortOf(value);
  return value;
}

/**
 * --advertise and --advertise-http: HOST:PORT that others dial, so never a wildcard host (0.0.0.0, [::]),
 * port 0, nor an IPv6 zone (advertise.ts says why).
 */
export function advertiseHostPortText(value: string): string {
  const problem = advertiseProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(`${problem}. Advertise the address others reach this node at, e.g. ${advertiseExample(value)}.`);
  return value;
}

/** HOST:PORT split, the host bare ([::1]:7101 is ::1 and 7101); throws InvalidArgumentError saying what is wrong. */
export function hostPortOf(value: string): HostPort {
  try {
    return parseHostPort(value);
  } catch (err) {
    if (err instanceof AddressError) throw new InvalidArgumentError(`${err.message}.`);
    throw err;
  }
}

/** --peers: ID=HOST:PORT,... of the other members (empty: a one-node cluster, or a joining node). */
export function peerList(value: string): Record<number, string> {
  const peers: Record<number, string> = {};
  for (const entry of value.split(',').filter((e) => e.length > 0)) {
    const m = /^(\d+)=(.+)$/.exec(entry);
    const id = m === null ? NaN : Number(m[1]);
    if (m === null || !Number.isSafeInteger(id) || id < 1) throw new InvalidArgumentError(`Expected ID=HOST:PORT,... of the other members; "${entry}" is not ID=HOST:PORT.`);
    const problem = advertiseProblem(m[2]!);
    if (problem !== undefined) throw new InvalidArgumentError(`Node ${id} at ${m[2]}: ${problem}; name the address node ${id} advertises (its --advertise, else its --listen).`);
    if (peers[id] !== undefined) throw new InvalidArgumentError(`Node ${id} is listed twice.`);
    peers[id] = m[2]!;
  }
  return peers;
}

/**
 * A node's HTTP address: http(s)://HOST:PORT, an IPv6 host in brackets (http://[::1]:8101); a bare
 * HOST:PORT means http. Returned without a trailing slash.
 */
export function nodeUrl(value: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    // Say what is wrong with HOST:PORT when the parser knows (an IPv6 host without brackets, say).
    const authority = withScheme.slice(withScheme.indexOf('//') + 2).split(/[/?#]/)[0]!;
    const problem = hostPortProblem(authority);
    const zoned = problem === undefined && authority.includes('%');
    const why = problem !== undefined ? ` ${problem}.` : zoned ? ' A URL cannot carry an IPv6 zone (%eth0): use an address without one, or a host name.' : '';
    throw new InvalidArgumentError(`Expected a node's HTTP address, e.g. http://127.0.0.1:8101 or http://[::1]:8101.${why}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError("Expected an http:// or https:// address of a node's HTTP API.");
  if (url.search !== '' || url.hash !== '') throw new InvalidArgumentError("Expected a node's HTTP address without a query or fragment.");
  return url.toString().replace(/\/+$/, '');
}
