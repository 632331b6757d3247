import { assert } from '../assert.js';
import type { LogIndex } from '../types.js';

const NO_SLOTS: readonly number[] = Object.freeze([]);

/**
 * The append messages sent to one follower and not yet acknowledged, as a ring
 * buffer of (last index, bytes). Bounded both in count and in bytes so a slow
 * follower costs the leader a fixed amount of memory and bandwidth.
 */
export class Inflights {
  private start = 0;
  private count = 0;
  private bytes = 0;
  /**
   * Ring storage, grown on demand up to countMax: most followers never fill the window (etcd-raft grows it too).
   * Until the first add, both are the one frozen empty array every Inflights shares (a leader's progress of a
   * follower it never sent entries to, and every progress a follower keeps: ~60 B each); grow() replaces it
   * before anything is written, and a write to it would throw.
   */
  private indexes: LogIndex[] = NO_SLOTS as LogIndex[];
  private sizes: number[] = NO_SLOTS as number[];

  constructor(
    readonly countMax: number,
    readonly bytesMax: number,
  ) {
    assert(countMax > 0, `inflight countMax must be positive, got ${countMax}`);
    assert(bytesMax > 0, `inflight bytesMax must be positive, got ${bytesMax}`);
  }

  clone(): Inflights {
    const c = new Inflights(this.countMax, this.bytesMax);
    for (let i = 0; i < this.count; i++) {
      const at = (this.start + i) % this.indexes.length;
      c.add(this.indexes[at]!, this.sizes[at]!);
    }
    return c;
  }

  /** Records an append whose last entry is `index`; indexes must increase. */
  add(index: LogIndex, bytes: number): void {
    assert(!this.full(), () => `inflights full (${this.count}/${this.countMax}, ${this.bytes}/${this.bytesMax} B)`);
    if (this.count > 0) {
      const last = this.indexes[(this.start + this.count - 1) % this.indexes.length]!;
      assert(index > last, () => `inflight index ${index} not above previous ${last}`);
    }
    if (this.count === this.indexes.length) this.grow();
    const at = (this.start + this.count) % this.indexes.length;
    this.indexes[at] = index;
    this.sizes[at] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Doubles the ring (up to countMax), unrolling it so the oldest entry is at slot 0. */
  private grow(): void {
    const capacity = Math.min(this.countMax, Math.max(4, this.indexes.length * 2));
    const indexes: LogIndex[] = new Array<LogIndex>(capacity);
    const sizes: number[] = new Array<number>(capacity);
    for (let i = 0; i < this.count; i++) {
      const from = (this.start + i) % this.indexes.length;
      indexes[i] = this.indexes[from]!;
      sizes[i] = this.sizes[from]!;
    }
    this.indexes = indexes;
    this.sizes = sizes;
    this.start = 0;
  }

  /** Frees every inflight append up to and including `index` (acknowledged). */
  freeLE(index: LogIndex): void {
    while (this.count > 0 && this.indexes[this.start]! <= index) {
      this.bytes -= this.sizes[this.start]!;
      this.start = (this.start + 1) % this.indexes.length;
      this.count--;
    }
    if (this.count === 0) this.start = 0;
  }

  /** Frees the oldest inflight append: the leader assumes it (or its ack) was lost. */
  freeFirstOne(): void {
    if (this.count > 0) this.freeLE(this.indexes[this.start]!);
  }

  /** Full in count, or at/over the byte budget (one message may overshoot it; the next waits). */
  full(): boolean {
    return this.count === this.countMax || this.bytes >= this.bytesMax;
  }

  get size(): number {
    return this.count;
  }

  get sizeBytes(): number {
    return this.bytes;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
    this.bytes = 0;
  }
}
