// HOST:PORT, the one spelling of a network address in Flotilla: the transport's listen and dial, every
// address flag of `flotilla start`, the meta range's node records, cluster.json and peers.json, and the
// join call. It lives here, in the package every other imports, so that all of them read the same
// text the same way: placement validates node records, transport dials, the server parses flags.
//
// An IPv6 host goes in brackets ([::1]:7101, RFC 3986 §3.2.2), as in a URL: without them the last
// colon cannot be told from the address's own (is ::1:7101 the host ::1 on port 7101, or the host
// ::1:7101 with no port?), so an unbracketed one is refused as ambiguous rather than guessed.
import { FlotillaError } from './errors.js';

/** A parsed address: `host` bare (an IPv6 host without brackets, its zone kept: fe80::1%eth0), `port` in [1, 65535]. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** An address that is not HOST:PORT; the message says which part is wrong and how to write it. */
export class AddressError extends FlotillaError {
  readonly code = 'ADDRESS_INVALID';
  readonly retryable = false;
}

/** The longest host name DNS can carry (RFC 1035 §2.3.4: 255 octets on the wire, 253 as text). */
export const HOST_NAME_CHARS_MAX = 253;

/** Decimal without a sign or a leading zero: the one text of each port, so that equal ports are equal text. */
const PORT_TEXT = /^[1-9][0-9]{0,4}$/;
const PORT_MAX = 65_535;

/** An IPv4 address in dotted-quad form, each octet decimal without a leading zero. */
const IPV4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$/;
const IPV6_GROUP = /^[0-9A-Fa-f]{1,4}$/;
/**
 * An IPv6 zone (RFC 6874): an interface name or index. Linux names are at most 15 characters (IFNAMSIZ
 * 16 with the NUL), in practice letters, digits, '.', '_' and '-'.
 */
const IPV6_ZONE = /^[A-Za-z0-9._-]{1,15}$/;
/**
 * What a host name may not hold: whitespace, controls, and the code points a URL's host may not
 * (WHATWG URL's forbidden host code points, with '%'): a node's HTTP address becomes http://HOST:PORT.
 */
const HOST_NAME_FORBIDDEN = /[\s\x00-\x1f\x7f#/:<>?@[\\\]^|%]/;

const EXAMPLES = 'e.g. 10.0.0.1:7101, node-1.example:7101 or [::1]:7101';

/** Characters of a bad address a message quotes: an address is short, and a message must stay one line. */
const SHOWN_CHARS_MAX = 80;

/** `text` quoted for a message, cut at SHOWN_CHARS_MAX, its control characters escaped. */
function shown(text: string): string {
  return JSON.stringify(text.length > SHOWN_CHARS_MAX ? `${text.slice(0, SHOWN_CHARS_MAX)}…` : text);
}

/** `text` as HOST:PORT; throws AddressError saying what is wrong with it. */
export function parseHostPort(text: string): HostPort {
  const { host, portText } = text.startsWith('[') ? splitBracketed(text) : splitUnbracketed(text);
  if (!PORT_TEXT.test(portText) || Number(portText) > PORT_MAX) {
    const why = portText === '0' ? 'port 0 lets a listener pick a port, which others cannot know' : `port ${shown(portText)} is not a decimal integer in [1, ${PORT_MAX}] without a leading zero`;
    throw new AddressError(`${shown(text)}: ${why}`);
  }
  return { host, port: Number(portText) };
}

/** Why `text` is not HOST:PORT, or undefined if it is: parseHostPort's message, for validators that build their own error. */
export function hostPortProblem(text: string): string | undefined {
  try {
    parseHostPort(text);
    return undefined;
  } catch (err) {
    if (err instanceof AddressError) return err.message;
    throw err;
  }
}

/** [IPv6]:PORT into the bare IPv6 host (checked) and the port's text. */
function splitBracketed(text: string): { host: string; portText: string } {
  const close = text.indexOf(']');
  if (close < 0) throw new AddressError(`${shown(text)} opens a bracket it does not close: expected [IPv6]:PORT, e.g. [::1]:7101`);
  const host = text.slice(1, close);
  if (!isIpv6Address(host)) throw new AddressError(`${shown(text)}: brackets hold an IPv6 address (e.g. [::1] or [fe80::1%eth0]), and ${shown(host)} is none`);
  const rest = text.slice(close + 1);
  if (rest === '') throw new AddressError(`${shown(text)} has no port: expected [IPv6]:PORT, e.g. ${text}:7101`);
  if (!rest.startsWith(':')) throw new AddressError(`${shown(text)}: expected ":PORT" after "]", e.g. [${host}]:7101`);
  return { host, portText: rest.slice(1) };
}

/** HOST:PORT (an IPv4 address or a host name) into the host (checked) and the port's text. */
function splitUnbracketed(text: string): { host: string; portText: string } {
  const colon = text.lastIndexOf(':');
  if (colon < 0) throw new AddressError(`${shown(text)} has no port: expected HOST:PORT, ${EXAMPLES}`);
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (host.includes(':')) {
    // An IPv6 address, whose own last group could be the port: ::1:7101 is ::1 on 7101, or ::1:7101 on none.
    if (isIpv6Address(host) && PORT_TEXT.test(portText)) throw new AddressError(`${shown(text)} is ambiguous: an IPv6 address with a port goes in brackets, e.g. [${host}]:${portText}`);
    if (isIpv6Address(text)) throw new AddressError(`${shown(text)} is an IPv6 address without a port: expected [IPv6]:PORT, e.g. [${text}]:7101`);
    throw new AddressError(`${shown(text)} is not HOST:PORT: an IPv6 address with a port goes in brackets, e.g. [::1]:7101`);
  }
  if (host === '') throw new AddressError(`${shown(text)} has no host: expected HOST:PORT, ${EXAMPLES}`);
  if (host.length > HOST_NAME_CHARS_MAX) throw new AddressError(`${shown(text)}: its host of ${host.length} characters is longer than a host name can be (${HOST_NAME_CHARS_MAX})`);
  const bad = HOST_NAME_FORBIDDEN.exec(host);
  if (bad !== null) throw new AddressError(`${shown(text)}: host ${shown(host)} holds ${JSON.stringify(bad[0])}, which no host name or IPv4 address does`);
  return { host, portText };
}

/** Whether `text` is an IPv4 address in dotted-quad form (10.0.0.1). */
export function isIpv4Address(text: string): boolean {
  return IPV4.test(text);
}

/**
 * Whether `text` is an IPv6 address without brackets (RFC 4291 §2.2: eight groups, one run of them
 * shortened to "::", the last two groups perhaps as dotted IPv4), with perhaps a zone ("%eth0").
 */
export function isIpv6Address(text: string): boolean {
  const percent = text.indexOf('%');
  if (percent >= 0 && !IPV6_ZONE.test(text.slice(percent + 1))) return false;
  const address = percent >= 0 ? text.slice(0, percent) : text;
  const halves = address.split('::');
  if (halves.length > 2) return false;
  const groupsOf = (half: string) => (half === '' ? [] : half.split(':'));
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  const groups = [...head, ...tail];
  // Dotted IPv4 only as the address's last text (::ffff:10.0.0.1), never before a "::".
  const ipv4Allowed = halves.length === 1 || tail.length > 0;
  let sixteenBitGroups = 0;
  for (const [i, group] of groups.entries()) {
    if (IPV6_GROUP.test(group)) sixteenBitGroups += 1;
    else if (ipv4Allowed && i === groups.length - 1 && IPV4.test(group)) sixteenBitGroups += 2;
    else return false;
  }
  // "::" stands for at least one group of zeros.
  return halves.length === 2 ? sixteenBitGroups <= 7 : sixteenBitGroups === 8;
}

/** A host as it is written before ":PORT": an IPv6 host in brackets, any other as it is. */
export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** HOST:PORT of a parsed address; parseHostPort(formatHostPort(a)) is `a`. */
export function formatHostPort(address: HostPort): string {
  return `${formatHost(address.host)}:${address.port}`;
}
