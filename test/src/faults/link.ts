/**
 * What a directed link between two nodes does to the bytes one sends the
 * other. Pure values; the proxy (proxy.ts) applies them.
 *
 * A TCP stream has no packets to lose one at a time: "dropping" means
 * holding, discarding or cutting whole connections, never removing bytes
 * from the middle of a frame (the receiver would see garbage, which TCP's
 * checksums make as good as impossible). The one deliberate exception is
 * `corrupt`, which writes a malformed frame header at a frame boundary: the
 * receiver must refuse that frame and close only that connection.
 */
export type LinkCut =
  /** Bytes flow (subject to the shaping below). */
  | 'none'
  /** Bytes are read and discarded, connections stay open (a firewall that drops): silence, then a reset when healed. */
  | 'blackhole'
  /** Connections are reset at once, new ones right after their hello (a firewall that rejects). */
  | 'refuse'
  /** New connections get a malformed frame header right after their hello; open ones are reset first. */
  | 'corrupt';

export interface LinkFault {
  readonly cut: LinkCut;
  /** Added to every chunk's delivery, order kept. */
  readonly delayMs: number;
  /** Bytes per second through the link, null: unbounded. */
  readonly bytesPerSecMax: number | null;
  /** Chance per second that each connection on the link is reset (lossy links: whole connections are lost). */
  readonly resetChancePerSec: number;
}

export const LINK_OK: LinkFault = { cut: 'none', delayMs: 0, bytesPerSecMax: null, resetChancePerSec: 0 };

export function isHealthy(f: LinkFault): boolean {
  return f.cut === 'none' && f.delayMs === 0 && f.bytesPerSecMax === null && f.resetChancePerSec === 0;
}

export function describeLinkFault(f: LinkFault): string {
  if (isHealthy(f)) return 'ok';
  const parts: string[] = [];
  if (f.cut !== 'none') parts.push(f.cut);
  if (f.delayMs > 0) parts.push(`+${f.delayMs} ms`);
  if (f.bytesPerSecMax !== null) parts.push(`${Math.round(f.bytesPerSecMax / 1024)} KiB/s`);
  if (f.resetChancePerSec > 0) parts.push(`resets ${f.resetChancePerSec}/s`);
  return parts.join(', ');
}
