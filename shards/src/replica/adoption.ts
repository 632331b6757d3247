import { nodeId, type Term } from '@flotilla/core';
import { ShardExistsError } from '../errors.js';
import type { ClaimAnswer, CoreRequest } from '../host/core-protocol.js';
import type { ShardTable } from '../host/shard-table.js';
import type { ShellLogger } from '../shell-logger.js';
import { laterTombstone, type Tombstone } from '../storage/node-store.js';

/**
 * Ticks a shard's traffic must keep arriving before this node makes an empty replica for it: two
 * seconds at the default tick, two election timeouts: time enough for a follower only a little
 * behind the split that creates the shard to apply it. Cores report such traffic every 20 ticks per shard.
 */
const ADOPT_AFTER_TICKS = 20;
/** Bounds what traffic for unknown shards can make the Host remember. */
const UNKNOWN_SHARDS_TRACKED_MAX = 4096;

/** What adoption needs of the Host: its requests to cores, its shard table, and its peers. */
export interface ReplicaAdoptionPort {
  readonly nodeId: number;
  readonly log: ShellLogger;
  readonly coreCount: number;
  /** A request to core `core`, answered by its reply (the Host's request path: bounded, with a deadline). */
  request<T>(shardId: number, make: (id: number) => CoreRequest, core: number): Promise<T>;
  /** Which core holds which shard: where a new replica goes, and recording it there. */
  readonly shards: Pick<ShardTable, 'has' | 'place' | 'assign' | 'unassign'>;
  /** Whether this node knows the peer (traffic from strangers creates nothing). */
  hasPeer(id: number): boolean;
  nowTick(): number;
}

/**
 * The Host's side of a replica's lifecycle: creating an empty replica that
 * the group's leader catches up (asked for, or adopted because the shard's
 * traffic keeps arriving), and remembering which shards were removed here
 * so their stale leaders' traffic creates nothing.
 */
export class ReplicaAdoption {
  /** Shards whose traffic arrived with no replica here, and the tick it was first seen (see `onUnknownShard`). */
  private readonly unknownSince = new Map<number, number>();
  /** Shards being adopted (see adopt): their traffic is dropped meanwhile. */
  private readonly adopting = new Set<number>();
  /** Shards whose replica was removed from this node: their leaders' traffic is stale and creates nothing. */
  private readonly removedShards = new Set<number>();
  /** Per shard, the tail of its creations and removals here (see `serially`). */
  private readonly lifecycle = new Map<number, Promise<unknown>>();

  constructor(private readonly port: ReplicaAdoptionPort) {}

  /** An empty replica asked for (createShard with `join`); SHARD_EXISTS if a core already holds the shard. */
  async join(shardId: number, options: { colocateWith?: number } = {}): Promise<void> {
    if ((await this.serially(shardId, () => this.adopt(shardId, { explicit: true, ...options }))) === 'here') throw new ShardExistsError(shardId, this.port.nodeId);
  }

  /**
   * Destroys this node's replica (`destroy`: the core request), in turn with
   * the shard's creations here: a replica the placement driver collects and
   * at once asks for again (a move back onto this node) is created after the
   * removal, not found still present and then destroyed under its new leader.
   */
  async remove(shardId: number, destroy: () => Promise<void>): Promise<void> {
    await this.serially(shardId, async () => {
      await destroy();
      this.onRemoved(shardId);
    });
  }

  /** The replica was destroyed here (removeShard, or it applied its own removal). */
  onRemoved(shardId: number): void {
    this.removedShards.add(shardId);
  }

  /** A core got Raft traffic for a shard it does not have (the `unknownShard` core event). */
  onUnknownShard(shardId: number, from: number): void {
    const { port } = this;
    if (port.shards.has(shardId) || this.adopting.has(shardId) || this.removedShards.has(shardId) || !port.hasPeer(from)) return;
    // Not at the first message: a replica a little behind is about to apply the split that creates
    // this shard with its data, and an empty one made now would make that split drop the data and
    // wait for a snapshot. Only traffic that keeps coming for ADOPT_AFTER_TICKS is from a shard
    // this node will not create by itself (it missed the split, or is being added).
    const nowTick = port.nowTick();
    const first = this.unknownSince.get(shardId);
    if (first === undefined || nowTick - first > ADOPT_AFTER_TICKS * 4) {
      if (this.unknownSince.size >= UNKNOWN_SHARDS_TRACKED_MAX) this.unknownSince.clear();
      this.unknownSince.set(shardId, nowTick);
      return;
    }
    if (nowTick - first < ADOPT_AFTER_TICKS) return;
    this.unknownSince.delete(shardId);
    this.adopting.add(shardId);
    this.serially(shardId, () => this.adopt(shardId, { explicit: false }))
      .catch((err: unknown) => port.log.warn({ rangeId: shardId, from, err }, 'could not create a replica for an unknown range'))
      .finally(() => this.adopting.delete(shardId));
  }

  /** Runs `step` after every earlier creation or removal of the shard here has settled. */
  private serially<T>(shardId: number, step: () => Promise<T>): Promise<T> {
    const run = (this.lifecycle.get(shardId) ?? Promise.resolve()).then(step, step);
    const tail = run.catch(() => undefined);
    this.lifecycle.set(shardId, tail);
    void tail.then(() => {
      if (this.lifecycle.get(shardId) === tail) this.lifecycle.delete(shardId);
    });
    return run;
  }

  /**
   * Creates an empty replica of a shard in one core's store, after every
   * core has answered a claim (core-protocol.ts `claimShard`): a core that
   * has the shard, or is creating it by applying a split, wins and nothing
   * is created; every other core marks it away first, so a split applied
   * there later skips it instead of making a second copy. A shard removed
   * here is not re-created by traffic (`explicit` false: a stale leader's
   * messages), only when asked. The replica goes into the store of a
   * replica here frozen for a merge into it (its merge gate waits for that
   * one in its own store), else next to `colocateWith` if this node still
   * holds it (two ranges merge only where one store holds both), else into
   * the store of a replica removed here, else where fewest are; it starts from the latest term and vote the removed ones' tombstones
   * kept, wherever they are (Raft's one vote per term is per node), and past their highest incarnation.
   */
  private async adopt(shardId: number, options: { explicit: boolean; colocateWith?: number }): Promise<'here' | 'removed' | 'free'> {
    const { port } = this;
    const answers = await Promise.all(Array.from({ length: port.coreCount }, (_, core) => port.request<ClaimAnswer>(shardId, (id) => ({ kind: 'claimShard', id, shardId }), core)));
    if (answers.includes('here')) return 'here';
    let tombstoneCore = -1;
    let mergeCore = -1;
    let tombstone: Tombstone | undefined;
    answers.forEach((a, core) => {
      if (typeof a !== 'object') return;
      if (a.mergeSource === true && mergeCore < 0) mergeCore = core;
      if (a.removed === undefined) return;
      if (tombstoneCore < 0) tombstoneCore = core;
      tombstone = laterTombstone(tombstone, { term: a.removed.term as Term, vote: nodeId(a.removed.vote), incarnation: a.removed.incarnation });
    });
    if (tombstone !== undefined && !options.explicit) {
      this.removedShards.add(shardId);
      port.log.info({ rangeId: shardId }, 'traffic for a range removed from this node ignored');
      return 'removed';
    }
    const colocateWith = options.colocateWith !== undefined && port.shards.has(options.colocateWith) ? options.colocateWith : undefined;
    const core = mergeCore >= 0 ? mergeCore : colocateWith !== undefined || tombstoneCore < 0 ? port.shards.place(shardId, colocateWith) : tombstoneCore;
    port.shards.assign(shardId, core);
    this.removedShards.delete(shardId);
    try {
      await port.request(
        shardId,
        (id) => ({ kind: 'createShard', id, shardId, voters: [], learners: [], bounds: { start: new Uint8Array(0), end: null }, join: true, ...(tombstone === undefined ? {} : { tombstone }) }),
        core,
      );
    } catch (err) {
      port.shards.unassign(shardId);
      throw err;
    }
    port.log.info({ rangeId: shardId, core, explicit: options.explicit }, 'empty replica created for its leader to catch up');
    return 'free';
  }
}
