// The fake network: every message sent is an envelope due at some future
// step. It can vanish (drop), arrive twice (duplicate), arrive late and so
// out of order (delay), and links can be cut in one or both directions
// (partition). All randomness comes from the simulator's seeded stream.
import type { Message, NodeId, SeededRng } from '@flotilla/core';

export interface Envelope {
  readonly message: Message;
  readonly dueStep: number;
  /** The sender's incarnation: transport feedback (snapshot status, unreachable) goes only to the process that sent. */
  readonly senderIncarnation: number;
  /**
   * Lost on the way: it still "arrives" at its due step, but only so the
   * sender's transport can learn of the loss (a snapshot stream fails
   * visibly; the shell must then call reportSnapshot).
   */
  readonly lost: boolean;
}

export interface NetworkFaults {
  readonly messageDropRate: number;
  readonly messageDuplicateRate: number;
  readonly messageDelayRate: number;
  readonly messageDelayStepsMax: number;
  readonly messageDelayLongRate: number;
}

/** A long delay is this many times messageDelayStepsMax at most. */
const LONG_DELAY_FACTOR = 10;

export const NO_NETWORK_FAULTS: NetworkFaults = Object.freeze({
  messageDropRate: 0,
  messageDuplicateRate: 0,
  messageDelayRate: 0,
  messageDelayStepsMax: 0,
  messageDelayLongRate: 0,
});

/**
 * Bounds the envelopes in flight. A 7-node cluster at full load keeps a few
 * hundred in flight; a runaway (a node answering every message with several)
 * would otherwise only show up as a slow test.
 */
export const IN_FLIGHT_ENVELOPE_COUNT_MAX = 50_000;

export class SimNetwork {
  private inFlight: Envelope[] = [];
  /** Directed links that are cut: `${from}>${to}`. */
  private readonly cut = new Set<string>();
  faults: NetworkFaults;
  sentCount = 0;
  droppedCount = 0;

  constructor(
    private readonly rng: SeededRng,
    faults: NetworkFaults,
  ) {
    this.faults = faults;
  }

  send(message: Message, options: { nowStep: number; senderIncarnation: number }): void {
    this.sentCount++;
    const f = this.faults;
    const lost = f.messageDropRate > 0 && this.rng.chance(f.messageDropRate);
    if (lost) this.droppedCount++;
    const copies = !lost && f.messageDuplicateRate > 0 && this.rng.chance(f.messageDuplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let delaySteps = 1;
      if (f.messageDelayRate > 0 && this.rng.chance(f.messageDelayRate)) {
        const long = f.messageDelayLongRate > 0 && this.rng.chance(f.messageDelayLongRate);
        delaySteps += 1 + this.rng.intBelow(f.messageDelayStepsMax * (long ? LONG_DELAY_FACTOR : 1));
      }
      this.inFlight.push({ message, dueStep: options.nowStep + delaySteps, senderIncarnation: options.senderIncarnation, lost });
    }
    if (this.inFlight.length > IN_FLIGHT_ENVELOPE_COUNT_MAX) {
      throw new Error(`network holds ${this.inFlight.length} envelopes in flight (max ${IN_FLIGHT_ENVELOPE_COUNT_MAX}): a message storm`);
    }
  }

  /** Envelopes due by `nowStep`, in a random order (reordering among messages due together). */
  takeDue(nowStep: number): Envelope[] {
    const due: Envelope[] = [];
    const later: Envelope[] = [];
    for (const e of this.inFlight) (e.dueStep <= nowStep ? due : later).push(e);
    this.inFlight = later;
    shuffle(due, this.rng);
    return due;
  }

  /** Holds an envelope back until `dueStep` (its recipient is paused). */
  postpone(envelope: Envelope, dueStep: number): void {
    this.inFlight.push({ ...envelope, dueStep });
  }

  isCut(from: NodeId, to: NodeId): boolean {
    return this.cut.size > 0 && this.cut.has(`${from}>${to}`);
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  cutLinks(): string[] {
    return [...this.cut];
  }

  get inFlightCount(): number {
    return this.inFlight.length;
  }
}

export function shuffle<T>(items: T[], rng: SeededRng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.intBelow(i + 1);
    const t = items[i]!;
    items[i] = items[j]!;
    items[j] = t;
  }
  return items;
}
