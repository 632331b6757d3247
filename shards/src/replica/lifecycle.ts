import { EMPTY_CONF_STATE, decodeConfChange, groupId, nodeId, type ConfState, type Entry, type GroupId, type NodeId, type Term } from '@flotilla/core';
import { DiskFullError, RangeMergingError, ShardExistsError, ShardNotFoundError, ShardRemovingError } from '../errors.js';
import { INITIAL_LOG_INDEX, INITIAL_LOG_TERM } from '../kv/command.js';
import { UNINITIALIZED, decodeShardRange, encodeShardRange, isInitialized, overlaps, type ShardRange } from '../kv/range.js';
import type { KvStateMachine } from '../kv/state-machine.js';
import type { ClaimAnswer, CoreRequest } from '../host/core-protocol.js';
import type { CoreOutputBuffer } from '../host/core-output.js';
import { replicaFrozenInto, type Group } from '../host/group.js';
import type { Quiescence } from '../host/quiescence.js';
import type { ShardRequests } from '../host/shard-requests.js';
import type { ShellLogger } from '../shell-logger.js';
import type { IncomingSnapshots } from '../snapshot/incoming.js';
import type { OutgoingSnapshots } from '../snapshot/outgoing.js';
import { isOutOfSpace } from '../storage/disk-space.js';
import type { RangeBounds } from '../storage/codec.js';
import { boundsOutside, type NodeStore } from '../storage/node-store.js';
import { claimsWithin, type RangeClaims } from '../snapshot/claims.js';

type CreateShardRequest = Extract<CoreRequest, { kind: 'createShard' }>;

/** What the lifecycle needs of its core. */
export interface ReplicaLifecyclePort {
  readonly self: NodeId;
  readonly store: NodeStore;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'reply' | 'fail' | 'event' | 'outbox'>;
  /** The core's replicas, removed ones included until their destroy is durable. */
  readonly groups: ReadonlyMap<GroupId, Group>;
  /** The keys each of them owns or claims. */
  readonly claims: RangeClaims;
  readonly sm: Pick<KvStateMachine, 'isCreating'>;
  readonly requests: Pick<ShardRequests, 'failPending'>;
  readonly snapshotsOut: Pick<OutgoingSnapshots, 'endAll'>;
  readonly snapshotsIn: Pick<IncomingSnapshots, 'forget'>;
  /** A replica opened at start ticks only once woken, or campaigns a few per tick. */
  readonly quiescence: Pick<Quiescence, 'startDormant' | 'campaignSoon'>;
  /** Runs a store write in the core's loop, between rounds. */
  schedule(task: () => Promise<void>): void;
  /** A replica of `shardId` joins the core (its store data exists), not ticking yet. */
  addGroup(shardId: GroupId, bounds: ShardRange): Group;
  /** A new replica ticks; with `campaignSoon` it also campaigns, a few per tick (the core's campaign queue). */
  start(g: Group, options: { campaignSoon: boolean }): void;
  /** The core stops driving a replica being destroyed: no ticks, no rounds, no consistency checks. */
  stop(g: Group): void;
  /** The replica's store data is gone: the core forgets it. */
  forget(g: Group): void;
}

/**
 * The core's side of a replica's life: opened from the store at start,
 * created on request (in batches that share one transaction), claimed
 * before the Host creates it in another core's store, removed on request or
 * by applying a membership change that drops this node, and destroyed
 * behind a tombstone.
 */
export class ReplicaLifecycle {
  /** createShard requests waiting for their shared transaction. */
  private readonly creating: CreateShardRequest[] = [];
  /** Groups whose applied configuration no longer has this node (destroyed after the round). */
  private readonly removedByApply = new Set<Group>();
  /** Groups a merge took in (destroyed after the round, their data kept: it is the target's now), with keys of theirs to delete all the same (IncomingSnapshots.install). */
  private readonly mergedAway = new Map<Group, readonly RangeBounds[]>();

  constructor(private readonly port: ReplicaLifecyclePort) {}

  /**
   * The replicas the store holds at start. After a restart every group starts dormant: it wakes when a
   * message or request arrives, so a node coming back does not start an election storm (its peers
   * still have leaders).
   */
  openStored(): void {
    const { store, self, quiescence } = this.port;
    for (const shardId of store.shardIds()) {
      const g = this.port.addGroup(shardId, decodeShardRange(shardId, store.descriptor(shardId)));
      const storage = store.storage(shardId);
      const { confState } = storage.initialState();
      if (isInitialized(g.bounds) && !isMember(confState, self) && !addsBack(storage.applied < storage.lastIndex() ? storage.entries(storage.applied + 1, storage.lastIndex() + 1, Number.MAX_SAFE_INTEGER) : [], self)) {
        // It applied its own removal and stopped before destroying itself (destroyRemovedByApply runs
        // after the round's commit): finish that now, unless its log adds it back (addsBack). Nobody else
        // would (its epoch is the range's, so the placement driver does not collect it).
        this.noteRemovedByApply(g);
        continue;
      }
      if (confState.voters.length === 1 && confState.voters[0] === self) {
        // A group of one has nobody to disturb and nobody to wake it: it elects itself at once.
        this.port.start(g, { campaignSoon: false });
        g.raw.campaign();
      } else {
        quiescence.startDormant(g);
        // Still, nobody may ever wake it: its leader quiesced while this node was down (so this node
        // may hold entries it never heard were committed), or every replica restarted and none knows a
        // leader (the range then has none, records nothing in the meta range, and no router finds it).
        // So each campaigns once, a few per tick (wakeCountPerTickMax): a pre-vote wakes a live leader,
        // whose heartbeat brings it up to date, or elects one.
        if (g.quiesced && confState.voters.includes(self)) quiescence.campaignSoon(g);
      }
    }
    // A frozen replica whose target here already covers its range: the merge applied and the node stopped
    // before this replica's destroy (destroyRemovedByApply runs after the round's commit). Finish it.
    for (const g of this.port.groups.values()) {
      if (g.frozen === undefined) continue;
      const target = this.port.groups.get(g.frozen.targetShardId as GroupId);
      if (target !== undefined && overlaps(target.bounds, g.bounds)) this.noteMergedAway(g);
    }
  }

  onCreateShard(r: CreateShardRequest): void {
    const shardId = groupId(r.shardId);
    if (this.port.groups.has(shardId) || this.creating.some((c) => c.shardId === r.shardId)) return this.port.out.fail(r.id, new ShardExistsError(shardId, this.port.self));
    // Creations queued together share one durable transaction (one sync for a thousand shards).
    this.creating.push(r);
    if (this.creating.length === 1) this.port.schedule(() => this.createQueued());
  }

  private async createQueued(): Promise<void> {
    const { store, self, out } = this.port;
    const batch = this.creating.splice(0);
    const confStateOf = (r: (typeof batch)[number]): ConfState =>
      r.join ? EMPTY_CONF_STATE : { voters: r.voters.map(nodeId), votersOutgoing: [], learners: r.learners.map(nodeId), learnersNext: [], autoLeave: false };
    // Fields named, not spread from the decoded request: a spread gave every replica's range a hidden class of its own (~170 B).
    const rangeOf = (r: (typeof batch)[number]): ShardRange => (r.join ? UNINITIALIZED : { start: r.bounds.start, end: r.bounds.end, epoch: 1 });
    const initial = { index: INITIAL_LOG_INDEX, term: INITIAL_LOG_TERM };
    try {
      await store.createShards(
        batch.map((r) => ({
          shardId: groupId(r.shardId),
          confState: confStateOf(r),
          descriptor: encodeShardRange(rangeOf(r)),
          ...(r.join ? {} : { startAt: initial }),
          ...(r.tombstone === undefined ? {} : { tombstone: { term: r.tombstone.term as Term, vote: nodeId(r.tombstone.vote), incarnation: r.tombstone.incarnation } }),
        })),
      );
    } catch (err) {
      if (!isOutOfSpace(err, store.dir)) throw err;
      for (const r of batch) out.fail(r.id, new DiskFullError(`node ${self} has no disk space to create shard ${r.shardId}`));
      return;
    }
    for (const r of batch) {
      const shardId = groupId(r.shardId);
      const g = this.port.addGroup(shardId, rangeOf(r));
      // One voter campaigns soon so a new group has a leader within a few ticks; which one rotates
      // with the shard id, so a batch of new shards spreads its leaders over the nodes. Campaigns
      // start at most wakeCountPerTickMax per tick: thousands of elections at once would delay
      // every group's heartbeats past their election timeouts.
      this.port.start(g, { campaignSoon: !r.join && r.voters[shardId % r.voters.length] === self });
      out.reply(r.id, null);
    }
    // Per core and per batch: a node's start creates its ranges on every core (/ranges lists them).
    this.port.log.debug({ replicaCount: batch.length, firstRangeId: batch[0]!.shardId }, 'replicas created');
  }

  onClaimShard(id: number, shardId: GroupId): void {
    const { store, out } = this.port;
    const g = this.port.groups.get(shardId);
    // Applied its own removal (or was merged away) and not destroyed yet: a replica created after the destroy
    // is wanted, and "here" would have the caller believe it exists (its peers' traffic then meets the tombstone).
    if (g !== undefined && (g.removed || this.removedByApply.has(g) || this.mergedAway.has(g))) return out.fail(id, new ShardRemovingError(shardId, this.port.self));
    if (g !== undefined || this.creating.some((c) => c.shardId === shardId) || this.port.sm.isCreating(shardId)) return out.reply(id, 'here' satisfies ClaimAnswer);
    const tombstone = store.tombstone(shardId);
    // A replica here frozen into the shard is a merge source, which the
    // target's replica must share a store with (its merge gate waits for it there: node simulation seed 91385).
    const mergeSource = replicaFrozenInto(this.port.groups, shardId) !== undefined;
    const answer: ClaimAnswer =
      tombstone === undefined && !mergeSource ? 'free' : { ...(tombstone === undefined ? {} : { removed: { term: tombstone.term, vote: tombstone.vote, incarnation: tombstone.incarnation } }), ...(mergeSource ? { mergeSource: true as const } : {}) };
    // Marked in memory now, before any later apply can run; answered once durable. A removed replica's
    // store is marked too: the new one may go to another core's store (next to a neighbour it merges with).
    const marked = store.markAway(shardId);
    // Handled here at once: the scheduled step awaits it later, and a failed write (a dying disk) must
    // reach it, and so the core's fatal path, not end the process as an unhandled rejection first.
    marked.catch(() => undefined);
    this.port.schedule(async () => {
      await marked;
      out.reply(id, answer);
    });
  }

  onRemoveShard(id: number, shardId: GroupId): void {
    const g = this.port.groups.get(shardId);
    if (g === undefined || g.removed) return this.port.out.fail(id, new ShardNotFoundError(shardId, this.port.self));
    // Its target's replica here waits for it to catch up (merge-gate.ts): the merge removes it. With no
    // target replica here (moved off), nothing here needs it.
    if (g.frozen !== undefined && this.port.groups.has(g.frozen.targetShardId as GroupId)) return this.port.out.fail(id, new RangeMergingError(`shard ${shardId} on node ${this.port.self} is frozen for a merge into shard ${g.frozen.targetShardId}; the merge removes it`));
    // Keys another replica here claims are not this one's to delete: a stale replica of a range merged
    // away, collected by the placement driver, may sit under the range that took its keys in.
    const others = isInitialized(g.bounds) ? claimsWithin(this.port.claims, shardId, g.bounds) : [];
    this.destroyGroup(g, () => this.port.out.reply(id, null), others.length === 0 ? {} : { keepData: true, deleteAlso: boundsOutside(g.bounds, others) });
  }

  /** The group applied a configuration without this node: it is destroyed once the round has committed (destroyRemovedByApply). */
  noteRemovedByApply(g: Group): void {
    this.removedByApply.add(g);
  }

  /**
   * A merge took the replica's range into its target's: destroyed after the round's commit, its data kept
   * but for `outside` (keys a stale replica held past the range that took it over: claims.ts staleUnder).
   */
  noteMergedAway(g: Group, outside: readonly RangeBounds[] = []): void {
    this.mergedAway.set(g, outside);
  }

  /** Whether the replica was taken in by a merge and waits for its destroy. */
  isMergedAway(g: Group): boolean {
    return this.mergedAway.has(g);
  }

  /**
   * Replicas that applied their own removal destroy themselves (TiKV does
   * the same): the rest of the group goes on without them, and a tombstone
   * keeps a stale leader's traffic from re-creating them. The Host hears
   * `shardRemoved`.
   */
  destroyRemovedByApply(): void {
    for (const g of this.removedByApply) {
      if (g.removed) continue;
      this.port.log.info({ rangeId: g.id }, 'replica removed from its range by a membership change');
      this.destroyGroup(g, () => this.port.out.event({ kind: 'shardRemoved', shardId: g.id }));
    }
    this.removedByApply.clear();
    for (const [g, outside] of this.mergedAway) {
      if (g.removed) continue;
      this.destroyGroup(g, () => this.port.out.event({ kind: 'shardRemoved', shardId: g.id }), { keepData: true, deleteAlso: outside });
    }
    this.mergedAway.clear();
  }

  /**
   * Stops a group and destroys its replica (log, metadata, data) with a
   * tombstone keeping its last term and vote: a replica created here again
   * must not vote twice in a term.
   */
  private destroyGroup(g: Group, then: () => void, options: { keepData?: boolean; deleteAlso?: readonly RangeBounds[] } = {}): void {
    const { self, store, out } = this.port;
    const shardId = g.id;
    g.removed = true;
    this.port.stop(g);
    this.port.schedule(async () => {
      this.port.requests.failPending(g, () => new ShardNotFoundError(shardId, self));
      this.port.snapshotsOut.endAll(g, 'shard removed');
      this.port.snapshotsIn.forget(g);
      // The other replicas may be quiesced, following us: wake them, so they notice our silence and elect.
      const config = g.raw.raft.tracker.confState();
      for (const peer of new Set([...config.voters, ...config.votersOutgoing, ...config.learners])) if (peer !== self) out.outbox.wake(peer, shardId);
      // A Ready taken but not advanced cannot exist here: rounds run inside the loop, and so do tasks.
      const bounds = isInitialized(g.bounds) && options.keepData !== true ? [{ start: g.bounds.start, end: g.bounds.end }] : (options.deleteAlso ?? []);
      await store.destroyShard(shardId, bounds, { tombstone: g.raw.raft.hardState() });
      this.port.forget(g);
      this.port.log.info({ rangeId: shardId }, 'replica removed');
      then();
    });
  }
}

/**
 * Whether `entries` (a replica's log past the removal it applied) hold a
 * configuration change adding `node` back. Such a replica is not destroyed:
 * it may have acknowledged entries past that change, which its leader counts
 * toward a quorum once the change applies there, and destroying it would
 * lose them. It applies the change next and stays a member. Should a
 * later leader cut that change from its log, it stays until the range's
 * epoch moves past the one it applied and the placement driver collects it.
 */
export function addsBack(entries: readonly Entry[], node: NodeId): boolean {
  return entries.some((e) => e.type === 'confChange' && decodeConfChange(e.data).changes.some((c) => c.nodeId === node && c.type !== 'removeNode'));
}

/** Whether the configuration has `node` in any role. */
export function isMember(c: ConfState, node: NodeId): boolean {
  return c.voters.includes(node) || c.votersOutgoing.includes(node) || c.learners.includes(node) || c.learnersNext.includes(node);
}
