import type { GroupId } from '@flotilla/core';
import { decodeShardRange, describeRange, inRange, isInitialized, type ShardRange } from '../kv/range.js';
import type { Group } from '../host/group.js';
import { RangeIndex } from '../kv/range-index.js';
import type { RangeBounds } from '../storage/codec.js';
import { boundsOverlap, type NodeStore } from '../storage/node-store.js';

/*
 * Ranges in one store are disjoint: user data is keyed by user key alone. A
 * snapshot received here must not overlap what another replica in the store
 * owns or claims (TiKV's snapshot overlap check): that replica has not
 * applied a split the snapshot's range came from, and installing now would
 * let its older entries overwrite the snapshot's data. It fits once that
 * replica applies the split or installs a snapshot of its own past it; the
 * leader retries meanwhile.
 *
 * Besides the ranges replicas own, two kinds of claims hold keys before
 * they are anyone's: a snapshot Raft accepted, installed by the next round,
 * and a snapshot being received straight into the data sub-database
 * (installer.ts, direct mode) from its first chunk's transaction until its
 * install or clear. A claim keeps every other snapshot out of its keys, so
 * no install deletes or overwrites what a transfer wrote, and a clear of a
 * transfer's records spares every key another replica owns or claims.
 */

/** A snapshot that would overlap another replica's range or claim in this store. */
export class SnapshotOverlapError extends Error {
  readonly code = 'SNAPSHOT_OVERLAP';
}

/** Keys another replica holds in this store. */
export interface RangeClaim {
  readonly shardId: GroupId;
  /** `owned`: its applied range; `installing`: a snapshot Raft accepted, installed in the next round; `receiving`: records of a snapshot received straight into the data. */
  readonly kind: 'owned' | 'installing' | 'receiving';
  readonly bounds: RangeBounds;
  /** The range's epoch (`owned` and `installing`; a receiving claim's records are no range's yet). */
  readonly epoch?: number | undefined;
}

/** Who holds which keys in one store. */
export interface RangeClaims {
  /** Every claim of a replica other than `shardId` on keys in `within`, in no particular order. */
  forEachOther(shardId: GroupId, within: RangeBounds, each: (claim: RangeClaim) => void): void;
}

/** How a snapshot's records reach the data: staged and copied by the install, or written as they arrive (installer.ts). */
export type ReceiveMode = 'staged' | 'direct';

/**
 * Whether a snapshot of `by` takes over `r`, another replica's range in the
 * same store: `by` holds `r`'s first key, at a higher epoch. A live range's
 * first key never leaves it (a split keeps the left part under the range's
 * id, a merge keeps the target's start), so a range that lost its first key
 * was taken in by a merge, and the epochs of a key's holders only grow:
 * that replica is behind, its data in `by`'s range is in the snapshot, and
 * it will never serve again. Where `r` reaches past `by` (the merged range
 * split again since: node simulation seed 47), those keys are another
 * range's now, one this node holds no live replica of (its snapshot would
 * overlap `r` as well): they go with it (IncomingSnapshots.install). A
 * lagging replica of a live range (a parent that has not applied its split
 * yet, overlapped by its right half's snapshot) keeps its first key, and is
 * waited for.
 *
 * It gives way when the snapshot installs — which a staged snapshot does in
 * one transaction. A direct one would write into the range while that
 * replica may still apply its last entries, so it never takes one over:
 * such a snapshot is received staged (installer.ts).
 */
export function staleUnder(by: ShardRange, r: ShardRange): boolean {
  return isInitialized(r) && isInitialized(by) && r.epoch < by.epoch && inRange(by, r.start);
}

/** The first claim of another replica that a snapshot of `shardId` over `range` received in `mode` would overlap, or undefined. */
export function overlappingClaim(claims: RangeClaims, shardId: GroupId, range: ShardRange, mode: ReceiveMode): RangeClaim | undefined {
  let found: RangeClaim | undefined;
  claims.forEachOther(shardId, range, (claim) => {
    if (found !== undefined) return;
    if (mode === 'staged' && claim.kind === 'owned' && staleUnder(range, { ...claim.bounds, epoch: claim.epoch! })) return;
    found = claim;
  });
  return found;
}

/** What a clear of `shardId`'s received records in `bounds` must spare: every other replica's claim on keys there. */
export function claimsWithin(claims: RangeClaims, shardId: GroupId, bounds: RangeBounds): RangeBounds[] {
  const within: RangeBounds[] = [];
  claims.forEachOther(shardId, bounds, (claim) => within.push(claim.bounds));
  return within;
}

export function describeClaim(c: RangeClaim): string {
  const what = c.kind === 'owned' ? `shard ${c.shardId}'s` : c.kind === 'installing' ? `the snapshot shard ${c.shardId} installs next,` : `the snapshot shard ${c.shardId} is receiving,`;
  return `${what} ${describeRange(c.bounds)}${c.epoch === undefined ? '' : ` (epoch ${c.epoch})`}`;
}

function receivingClaims(store: NodeStore, shardId: GroupId, within: RangeBounds, each: (claim: RangeClaim) => void): void {
  for (const [id, bounds] of store.receiving()) if (id !== shardId && boundsOverlap(bounds, within)) each({ shardId: id, kind: 'receiving', bounds });
}

/**
 * A core's claims: its replicas' ranges (a removed one's too, until its
 * destroy, which deletes its range's data, is durable), the snapshots they
 * accepted, and the store's receiving markers (those of a destroyed
 * replica too, until cleared). Asked for every snapshot chunk, so the
 * ranges are indexed (kv/range-index.ts): a pass over every replica took
 * 21 ms a chunk at 100,000. The core keeps it current: every group it adds
 * is tracked, a group's range or accepted snapshot changing tracks it
 * again (GroupOptions.claimsChanged), and a group it forgets is forgotten.
 */
export class CoreClaims implements RangeClaims {
  private readonly owned = new RangeIndex<Group>();
  /** Groups holding a snapshot Raft accepted, installed by the next round: a handful at most. */
  private readonly installing = new Set<Group>();

  constructor(private readonly store: NodeStore) {}

  /** Takes in the group's range and accepted snapshot as they are now. */
  track(g: Group): void {
    if (isInitialized(g.bounds)) this.owned.set(g, g.bounds);
    else this.owned.delete(g);
    if (g.accepted !== undefined) this.installing.add(g);
    else this.installing.delete(g);
  }

  forget(g: Group): void {
    this.owned.delete(g);
    this.installing.delete(g);
  }

  /** Every group whose range shares a key with `within` (a removed one's too, until forgotten). */
  forEachOwner(within: RangeBounds, each: (other: Group) => void): void {
    this.owned.forEachOverlapping(within, each);
  }

  forEachOther(shardId: GroupId, within: RangeBounds, each: (claim: RangeClaim) => void): void {
    this.owned.forEachOverlapping(within, (other) => {
      if (other.id !== shardId) each({ shardId: other.id, kind: 'owned', bounds: other.bounds, epoch: other.bounds.epoch });
    });
    for (const other of this.installing) {
      if (other.id === shardId) continue;
      const pending = other.accepted?.stagedHeader;
      if (pending !== undefined && boundsOverlap(pending.bounds, within)) each({ shardId: other.id, kind: 'installing', bounds: pending.bounds, epoch: pending.epoch });
    }
    receivingClaims(this.store, shardId, within, each);
  }
}

/**
 * The claims a store holds by itself, without a core: every other shard's
 * range by its stored descriptor (one read per shard) and the receiving
 * markers. For an installer used on its own (tools, tests); a core knows
 * more (CoreClaims: the snapshots its replicas accepted).
 */
export function storeClaims(store: NodeStore): RangeClaims {
  return {
    forEachOther(shardId, within, each) {
      for (const id of store.shardIds()) {
        if (id === shardId) continue;
        const range = decodeShardRange(id, store.descriptor(id));
        if (isInitialized(range) && boundsOverlap(range, within)) each({ shardId: id, kind: 'owned', bounds: range, epoch: range.epoch });
      }
      receivingClaims(store, shardId, within, each);
    },
  };
}
