// Where a node tells others it is: its advertised transport and HTTP addresses. A node records both in
// the meta range and answers them to joiners and on /cluster, and its peers dial the transport one. A
// wildcard listen address (0.0.0.0) names every interface of this host, and on any other host it names
// that host: recorded, it would send a peer's traffic to the peer itself. So a wildcard listen needs an
// explicit advertise address, and a wildcard is never advertised (etcd's --advertise-client-urls and
// CockroachDB's --advertise-addr make the same split). Addresses are HOST:PORT as core's address.ts reads
// them, an IPv6 host in brackets: [::1]:7101, and [::] the IPv6 wildcard.
import { formatHost, hostPortProblem, isIpv6Address, parseHostPort } from '@flotilla/core';

/**
 * Whether `host` (bare or in brackets) names no single address but every interface: the IPv4 wildcard as
 * the resolver reads it (0.0.0.0, and 0 or 0.0), the IPv6 one in any spelling ([::], [0:0:0:0:0:0:0:0],
 * [::0.0.0.0]), and "*".
 */
export function isWildcardHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (bare === '*' || /^0+(?:\.0+){0,3}$/.test(bare)) return true;
  // An IPv6 address of zeros alone is the unspecified address, ::.
  return isIpv6Address(bare) && /^[0:.]+$/.test(bare);
}

/**
 * Why `address` cannot be advertised, or undefined if it can: it is not HOST:PORT (core's address.ts: an
 * IPv6 host in brackets; port 0, which a listener replaces by one it picks, is no port others can know),
 * its host is a wildcard, or an IPv6 host carries a zone (%eth0: an interface of this host, which on
 * another host names that host's own, or none).
 */
export function advertiseProblem(address: string): string | undefined {
  const problem = hostPortProblem(address);
  if (problem !== undefined) return problem;
  const { host } = parseHostPort(address);
  if (isWildcardHost(host)) return `${formatHost(host)} is a wildcard (every interface of this host); on another host it names that host`;
  const zone = host.indexOf('%');
  if (zone >= 0) return `${formatHost(host)} carries a zone (${host.slice(zone)}), an interface of this host that another host does not share; advertise an address without one`;
  return undefined;
}

/**
 * The address to advertise for a listener: `advertise` when given, else the listen address itself.
 * Throws AdvertiseError when the result is a wildcard or has no port others can dial; `flags` name the
 * options (or fields) the message points at.
 */
export function advertisedAddress(o: { listen: string; advertise: string | undefined; flags: { listen: string; advertise: string } }): string {
  if (o.advertise !== undefined) {
    const problem = advertiseProblem(o.advertise);
    if (problem !== undefined) throw new AdvertiseError(`${o.flags.advertise} ${o.advertise} cannot be advertised: ${problem}. Advertise the address others reach this node at, e.g. ${o.flags.advertise} ${advertiseExample(o.advertise, o.listen)}`);
    return o.advertise;
  }
  const problem = advertiseProblem(o.listen);
  if (problem !== undefined) {
    throw new AdvertiseError(`${o.flags.listen} ${o.listen} cannot be advertised to other nodes and clients: ${problem}. Add ${o.flags.advertise} HOST:PORT with the address they reach this node at, e.g. ${o.flags.advertise} ${advertiseExample(o.listen)}`);
  }
  return o.listen;
}

/**
 * An address to show as an example of what to advertise: IPv6 if any of `addresses` looks it (brackets,
 * or colons without them), with the port of the first that parses, else with the placeholder PORT.
 */
export function advertiseExample(...addresses: string[]): string {
  const ipv6 = addresses.some((a) => a.startsWith('[') || a.split(':').length > 2);
  const parsed = addresses.find((a) => hostPortProblem(a) === undefined);
  return `${ipv6 ? '[2001:db8::1]' : '10.0.0.1'}:${parsed === undefined ? 'PORT' : parseHostPort(parsed).port}`;
}

/** An address a node would advertise that others cannot use: the CLI turns it into a usage error (exit 2). */
export class AdvertiseError extends Error {
  readonly code = 'ADVERTISE_INVALID';
}
