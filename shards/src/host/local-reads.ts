import type { GroupId, NodeId } from '@flotilla/core';
import type { RangeBounds } from '../storage/codec.js';
import { coversSpan, inRange } from '../kv/range.js';
import { readSpan, readStored, type DataDb, type StoredValue } from '../kv/data-reads.js';

/**
 * Local reads: a linearizable read of a shard this node leads, served on the
 * Host's thread from its core's LMDB data under the node lease, without a
 * hop to the core and back (TiKV's LocalReader and ReadDelegate). The core
 * publishes, per shard, what such a read relies on into memory shared with
 * the Host; the Host checks the leases itself, with its own lease table.
 *
 * **Why a read served so is linearizable.** The core's lease read (Raft's
 * leaseValid, core/src/read/node-leases.ts) serves a leader's applied state
 * once every committed entry is applied, when the voters whose node leases
 * hold are a majority. A local read checks the same at the moment it reads:
 * - The core publishes a shard only when Raft says such a read would be
 *   linearizable apart from the leases (Raft.nodeLeaseReadVoters: leader, no
 *   transfer and the lease not revoked, an entry of its term committed,
 *   every committed entry applied, not joint), with each voter's lease mark;
 *   and only after the round's LMDB transaction committed what it applied.
 * - It withdraws the shard at the start of every round the shard takes part
 *   in, before anything the round sends, unless the shard is still
 *   publishable then: a commit index not yet applied reaches no one (no
 *   append carrying it, no ReadIndex answer) while the shard is published.
 *   Raft state changes only by stepping, and a round follows every step
 *   before anything it produced goes out.
 * - The Host counts the published voters against its own lease table, which
 *   is ahead of the core's copy (a lapse or a restart ends an epoch there
 *   first; core-leases.ts).
 * - The Host renews its LMDB read transaction (lmdb-js keeps one for a whole
 *   event-loop turn) whenever a core's output arrives: whatever that output
 *   reveals, a read after it sees.
 * - The range is the one the core published with the shard (a version the
 *   core sends with the bounds): a read of a key a split moved away goes to
 *   the core, which refuses it.
 *
 * Anything short of that (a slot another shard took, a bounds version the
 * Host has not received, a lease lapsed, a scan past the range) serves the
 * read the ordinary way, through the core.
 */

/** Slots per core: shards map onto them by id (a later shard takes a slot over; the displaced one reads through its core). */
export const LOCAL_READ_SLOTS = 8_192;
/** A configuration of more voters is not published (its reads go through the core). */
const VOTERS_MAX = 7;
/** Per slot, Int32: seq (odd while written), shard id, bounds version, voter count (0: withdrawn), then [voter, mark] pairs. */
const SLOT_INTS = 4 + 2 * VOTERS_MAX;

export function localReadBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(LOCAL_READ_SLOTS * SLOT_INTS * Int32Array.BYTES_PER_ELEMENT);
}

function slotOf(shardId: GroupId): number {
  return (shardId % LOCAL_READ_SLOTS) * SLOT_INTS;
}

/** The core's side: one writer per buffer. Every access is atomic, and a sequence number makes a slot's fields one unit. */
export class LocalReadPublisher {
  private readonly slots: Int32Array;
  /** Each published shard's bounds, by the version they were sent under. */
  private readonly sentBounds = new Map<GroupId, { bounds: RangeBounds; version: number }>();
  private boundsVersion = 0;

  constructor(
    buffer: SharedArrayBuffer,
    /** Sends a shard's bounds to the Host (an output event, ahead of any read that needs them). */
    private readonly sendBounds: (shardId: GroupId, version: number, bounds: RangeBounds) => void,
  ) {
    this.slots = new Int32Array(buffer);
  }

  /** Publishes a shard (`voters` from Raft.nodeLeaseReadVoters), or withdraws it (undefined). */
  set(shardId: GroupId, bounds: RangeBounds, voters: readonly (readonly [NodeId, number])[] | undefined): void {
    if (voters === undefined || voters.length > VOTERS_MAX || shardId > 0x7fffffff) return this.withdraw(shardId);
    let sent = this.sentBounds.get(shardId);
    if (sent === undefined || sent.bounds !== bounds) {
      // Never 0: version 0 tells the Host to forget the shard.
      this.boundsVersion = this.boundsVersion === 0x7fffffff ? 1 : this.boundsVersion + 1;
      sent = { bounds, version: this.boundsVersion };
      this.sentBounds.set(shardId, sent);
      this.sendBounds(shardId, sent.version, bounds);
    }
    const s = this.slots;
    const at = slotOf(shardId);
    const seq = Atomics.load(s, at);
    Atomics.store(s, at, (seq + 1) | 0);
    Atomics.store(s, at + 1, shardId);
    Atomics.store(s, at + 2, sent.version);
    Atomics.store(s, at + 3, voters.length);
    voters.forEach(([voter, mark], i) => {
      Atomics.store(s, at + 4 + 2 * i, voter);
      Atomics.store(s, at + 5 + 2 * i, mark);
    });
    Atomics.store(s, at, (seq + 2) | 0);
  }

  /** Withdraws a shard (a no-op unless its slot holds it published). */
  withdraw(shardId: GroupId): void {
    const s = this.slots;
    const at = slotOf(shardId);
    if (Atomics.load(s, at + 1) !== shardId || Atomics.load(s, at + 3) === 0) return;
    const seq = Atomics.load(s, at);
    Atomics.store(s, at, (seq + 1) | 0);
    Atomics.store(s, at + 3, 0);
    Atomics.store(s, at, (seq + 2) | 0);
  }

  /** The shard left the core: it is withdrawn, and its bounds forgotten here and on the Host (version 0). */
  forget(shardId: GroupId, bounds: RangeBounds): void {
    this.withdraw(shardId);
    if (this.sentBounds.delete(shardId)) this.sendBounds(shardId, 0, bounds);
  }
}

/** A core's data as the Host's thread reads it (storage/data-reader.ts). */
export interface LocalData {
  readonly data: DataDb;
  /** Drops the read transaction kept for this turn: the next read sees every commit so far. */
  renew(): void;
}

/** Reads served here, per shard, for the core's load counts and key samples (placement's signal). */
export type LocalReadCounts = Map<GroupId, { count: number; keys: Uint8Array[] }>;

/** Of the keys read locally, one in this many is sampled (Group.sampleKey keeps one in 8 of what it sees). */
const KEY_SAMPLE_EVERY = 8;
const KEY_SAMPLES_PER_REPORT_MAX = 16;

/** The Host's side. */
export class LocalReads {
  private readonly slots: Int32Array[];
  /** Per core (each core numbers its own versions): the bounds each published shard was sent with. */
  private readonly bounds: Map<GroupId, { version: number; bounds: RangeBounds }>[];
  private readonly counts: LocalReadCounts[];
  /** A copy of the slot being checked, taken under its sequence number. */
  private readonly voters = new Int32Array(2 * VOTERS_MAX);

  constructor(
    private readonly o: {
      readonly buffers: readonly SharedArrayBuffer[];
      readonly self: NodeId;
      /** Whether this node holds `voter`'s node lease now, in lease epoch `mark` (NodeLeaseTable.holdsIn). */
      readonly holds: (voter: NodeId, mark: number) => boolean;
      /** The core's data (undefined: not open, or closed). */
      readonly data: (core: number) => LocalData | undefined;
    },
  ) {
    this.slots = o.buffers.map((b) => new Int32Array(b));
    this.counts = o.buffers.map(() => new Map());
    this.bounds = o.buffers.map(() => new Map());
  }

  /** The core sent a shard's bounds (LocalReadPublisher.set). */
  onBounds(core: number, shardId: GroupId, version: number, bounds: RangeBounds): void {
    if (version === 0) this.bounds[core]?.delete(shardId);
    else this.bounds[core]?.set(shardId, { version, bounds });
  }

  /** A core's output arrived: reads from here on must see what its store committed before it. */
  onOutput(core: number): void {
    this.o.data(core)?.renew();
  }

  /** The key's record, null when absent; undefined when the read must go through the core. */
  get(core: number, shardId: GroupId, key: Uint8Array): StoredValue | null | undefined {
    const bounds = this.servable(core, shardId);
    if (bounds === undefined || !inRange(bounds, key)) return undefined;
    const v = readStored(this.o.data(core)!.data, key);
    this.count(core, shardId, key);
    return v ?? null;
  }

  /** The span's records, or undefined when the read must go through the core (also when the span is not all in the range). */
  scan(core: number, shardId: GroupId, range: { start: Uint8Array; end: Uint8Array | null; limit: number; reverse?: boolean }): { key: Uint8Array; value: Uint8Array; version: number }[] | undefined {
    const bounds = this.servable(core, shardId);
    if (bounds === undefined || !coversSpan(bounds, range.start, range.end)) return undefined;
    const pairs = readSpan(this.o.data(core)!.data, range);
    this.count(core, shardId, range.start);
    return pairs;
  }

  /** What was read locally on a core since the last call (undefined: nothing). */
  takeCounts(core: number): LocalReadCounts | undefined {
    const counts = this.counts[core]!;
    if (counts.size === 0) return undefined;
    this.counts[core] = new Map();
    return counts;
  }

  /** The shard's bounds if a linearizable read of it may be served here now. */
  private servable(core: number, shardId: GroupId): RangeBounds | undefined {
    const s = this.slots[core];
    if (s === undefined || this.o.data(core) === undefined) return undefined;
    const at = slotOf(shardId);
    const seq = Atomics.load(s, at);
    if ((seq & 1) !== 0 || Atomics.load(s, at + 1) !== shardId) return undefined;
    const version = Atomics.load(s, at + 2);
    const n = Atomics.load(s, at + 3);
    if (n === 0) return undefined;
    for (let i = 0; i < 2 * n; i++) this.voters[i] = Atomics.load(s, at + 4 + i);
    if (Atomics.load(s, at) !== seq) return undefined;
    const known = this.bounds[core]!.get(shardId);
    if (known === undefined || known.version !== version) return undefined;
    let held = 0;
    for (let i = 0; i < n; i++) {
      const voter = this.voters[2 * i]!;
      const mark = this.voters[2 * i + 1]!;
      if (voter === this.o.self || (mark >= 0 && this.o.holds(voter as NodeId, mark))) held++;
    }
    return held >= Math.floor(n / 2) + 1 ? known.bounds : undefined;
  }

  private count(core: number, shardId: GroupId, key: Uint8Array): void {
    const counts = this.counts[core]!;
    let c = counts.get(shardId);
    if (c === undefined) counts.set(shardId, (c = { count: 0, keys: [] }));
    if (c.count++ % KEY_SAMPLE_EVERY === 0 && c.keys.length < KEY_SAMPLES_PER_REPORT_MAX) c.keys.push(Uint8Array.from(key));
  }
}
