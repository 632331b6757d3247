// Where a node tells others it is: its advertised transport and HTTP addresses. A node records both in
// the meta range and answers them to joiners and on /cluster, and its peers dial the transport one. A
// wildcard listen address (0.0.0.0) names every interface of this host, and on any other host it names
// that host: recorded, it would send a peer's traffic to the peer itself. So a wildcard listen needs an
// explicit advertise address, and a wildcard is never advertised (etcd's --advertise-client-urls and
// CockroachDB's --advertise-addr make the same split).

/**
 * Whether `host` names no single address but every interface: 0.0.0.0 and the IPv6 wildcard (which
 * HOST:PORT cannot spell today, kept for when it can), and "0", which the resolver takes for 0.0.0.0.
 */
export function isWildcardHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return bare === '0.0.0.0' || bare === '0' || bare === '::' || bare === '0:0:0:0:0:0:0:0' || bare === '*';
}

/** The host of "host:port" (or "[v6]:port"). */
export function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}

/** The port of "host:port" (or "[v6]:port"), as a number (NaN if there is none). */
export function portOf(address: string): number {
  const i = address.lastIndexOf(':');
  return i < 0 ? NaN : Number(address.slice(i + 1));
}

/**
 * Why `address` cannot be advertised (a wildcard host, or port 0, which the listener replaces by one it
 * picks: the port is only known once bound), or undefined if it can.
 */
export function advertiseProblem(address: string): string | undefined {
  const host = hostOf(address);
  if (isWildcardHost(host)) return `${host} is a wildcard (every interface of this host); on another host it names that host`;
  const port = portOf(address);
  if (!Number.isSafeInteger(port) || port < 1 || port > 65_535) return `port ${address.slice(address.lastIndexOf(':') + 1)} is not a port in [1, 65535] that others can dial`;
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
    if (problem !== undefined) throw new AdvertiseError(`${o.flags.advertise} ${o.advertise} cannot be advertised: ${problem}. Advertise the address others reach this node at, e.g. ${o.flags.advertise} 10.0.0.1:${portShown(o.advertise, o.listen)}`);
    return o.advertise;
  }
  const problem = advertiseProblem(o.listen);
  if (problem !== undefined) {
    throw new AdvertiseError(`${o.flags.listen} ${o.listen} cannot be advertised to other nodes and clients: ${problem}. Add ${o.flags.advertise} HOST:PORT with the address they reach this node at, e.g. ${o.flags.advertise} 10.0.0.1:${portShown(o.listen, o.listen)}`);
  }
  return o.listen;
}

/** The port to show in an example: the address's own if it has a usable one, else the listen address's. */
function portShown(address: string, listen: string): string {
  const port = portOf(address);
  if (Number.isSafeInteger(port) && port >= 1 && port <= 65_535) return String(port);
  const listenPort = portOf(listen);
  return Number.isSafeInteger(listenPort) && listenPort >= 1 && listenPort <= 65_535 ? String(listenPort) : 'PORT';
}

/** An address a node would advertise that others cannot use: the CLI turns it into a usage error (exit 2). */
export class AdvertiseError extends Error {
  readonly code = 'ADVERTISE_INVALID';
}
