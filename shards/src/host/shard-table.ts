import { assert } from '@flotilla/core';

/**
 * Which core holds each of this node's replicas, and the leader each replica
 * last reported. A shard stays on the core (and in the LMDB environment) it
 * was created on; the table is rebuilt at start from what each core's store
 * holds.
 */
export class ShardTable {
  private readonly cores = new Map<number, number>();
  private readonly leaders = new Map<number, number>();

  constructor(private readonly o: { readonly nodeId: number; readonly coreCount: number }) {}

  /** The core that owns a shard. Unknown shards map by id so their traffic still reaches a core that counts and drops it. */
  coreOf(shardId: number): number {
    return this.cores.get(shardId) ?? shardId % this.o.coreCount;
  }

  has(shardId: number): boolean {
    return this.cores.has(shardId);
  }

  /** Where a new shard goes: where it already is, next to `colocateWith` (a split's halves share their data's environment), else the core with fewest shards. */
  place(shardId: number, colocateWith: number | undefined): number {
    const existing = this.cores.get(shardId);
    if (existing !== undefined) return existing;
    if (colocateWith !== undefined) {
      const core = this.cores.get(colocateWith);
      assert(core !== undefined, () => `shard ${colocateWith} to colocate shard ${shardId} with is not on node ${this.o.nodeId}`);
      return core;
    }
    const counts = new Array<number>(this.o.coreCount).fill(0);
    for (const core of this.cores.values()) counts[core]!++;
    return counts.indexOf(Math.min(...counts));
  }

  /** A replica core `core`'s store held at start. */
  loaded(shardId: number, core: number): void {
    assert(!this.cores.has(shardId), () => `shard ${shardId} is stored by cores ${this.cores.get(shardId)} and ${core} of node ${this.o.nodeId}`);
    this.cores.set(shardId, core);
  }

  /** Applying a split created the shard on `core`. */
  createdBySplit(shardId: number, core: number): void {
    const known = this.cores.get(shardId);
    // ReplicaAdoption's claims make a split skip a shard another core holds; two copies would be a bug.
    assert(known === undefined || known === core, () => `shard ${shardId} created by a split on core ${core} of node ${this.o.nodeId}, but it is on core ${known}`);
    this.cores.set(shardId, core);
  }

  /** The replica is being created on `core`: requests and traffic for it go there from now on. */
  assign(shardId: number, core: number): void {
    this.cores.set(shardId, core);
  }

  /** Creating the replica failed. */
  unassign(shardId: number): void {
    this.cores.delete(shardId);
  }

  /** The replica was destroyed: its core and its leader are forgotten. */
  removed(shardId: number): void {
    this.cores.delete(shardId);
    this.leaders.delete(shardId);
  }

  setLeader(shardId: number, leader: number): void {
    this.leaders.set(shardId, leader);
  }

  /** The leader last reported by this node's replica (0: unknown, undefined: no replica here). */
  leaderOf(shardId: number): number | undefined {
    return this.leaders.get(shardId);
  }
}
