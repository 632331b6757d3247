/** Injected randomness for reconnect jitter: never Math.random, so a seed replays a run. */
export interface JitterRng {
  /** Uniform integer in [0, bound). */
  intBelow(bound: number): number;
}

/**
 * mulberry32 (Tommy Ettinger): 32-bit state, fast, good enough for spreading
 * reconnect attempts. Not for anything that needs statistical quality.
 */
export class Mulberry32Rng implements JitterRng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  intBelow(bound: number): number {
    if (!(bound > 0)) throw new RangeError(`intBelow bound must be positive, got ${bound}`);
    return Math.floor((this.nextUint32() / 4294967296) * bound);
  }
}
