import { assert } from '@flotilla/core';

interface PeerLiveness {
  lastHeardTick: number;
  /** Whether a frame from it arrived since it was tracked (track gives it a full timeout before that). */
  everHeard: boolean;
  lastSentTick: number;
  down: boolean;
}

/**
 * Node liveness, in ticks (no clock of its own). Every frame from a peer —
 * Raft traffic or an empty liveness ping — proves it is up; a peer silent for
 * `timeoutTicks` is down. Because this is per node, not per group, the
 * followers of quiesced groups still learn that their leader's node died
 * and elect a new leader (the Host wakes them).
 */
export class Liveness {
  private readonly peers = new Map<number, PeerLiveness>();
  /** livePeers' answer until a peer is tracked, untracked, goes down or comes up: the KV router asks on every request. */
  private live: readonly number[] | undefined;

  constructor(private readonly options: { intervalTicks: number; timeoutTicks: number }) {
    assert(options.intervalTicks > 0, `liveness interval must be positive, got ${options.intervalTicks}`);
    assert(options.timeoutTicks > options.intervalTicks, () => `liveness timeout ${options.timeoutTicks} must exceed the ping interval ${options.intervalTicks}`);
  }

  /** Starts watching a peer; it gets a full timeout to be heard from. */
  track(peer: number, nowTick: number): void {
    if (this.peers.has(peer)) return;
    this.peers.set(peer, { lastHeardTick: nowTick, everHeard: false, lastSentTick: Number.NEGATIVE_INFINITY, down: false });
    this.live = undefined;
  }

  untrack(peer: number): void {
    if (this.peers.delete(peer)) this.live = undefined;
  }

  heard(peer: number, nowTick: number): void {
    const p = this.peers.get(peer);
    if (p === undefined) return;
    p.lastHeardTick = nowTick;
    p.everHeard = true;
  }

  /** Whether any frame from the peer arrived since it was tracked. */
  hasHeard(peer: number): boolean {
    return this.peers.get(peer)?.everHeard ?? false;
  }

  sent(peer: number, nowTick: number): void {
    const p = this.peers.get(peer);
    if (p !== undefined) p.lastSentTick = nowTick;
  }

  silentTicks(peer: number, nowTick: number): number {
    const p = this.peers.get(peer);
    return p === undefined ? 0 : nowTick - p.lastHeardTick;
  }

  livePeers(): readonly number[] {
    return (this.live ??= [...this.peers].filter(([, p]) => !p.down).map(([id]) => id).sort((a, b) => a - b));
  }

  /** Advances to `nowTick`: which peers to ping, and which changed state. */
  onTick(nowTick: number): { ping: number[]; down: number[]; up: number[] } {
    const ping: number[] = [];
    const down: number[] = [];
    const up: number[] = [];
    for (const [id, p] of this.peers) {
      if (nowTick - p.lastSentTick >= this.options.intervalTicks) ping.push(id);
      const silent = nowTick - p.lastHeardTick > this.options.timeoutTicks;
      if (silent && !p.down) {
        p.down = true;
        down.push(id);
      } else if (!silent && p.down) {
        p.down = false;
        up.push(id);
      }
    }
    if (down.length > 0 || up.length > 0) this.live = undefined;
    return { ping, down, up };
  }
}
