import { NONE, type GroupId, type LogIndex, type NodeId } from '@flotilla/core';
import type { ShellLogger } from '../shell-logger.js';
import type { CoreStats } from './core-protocol.js';
import type { CoreOutputBuffer } from './core-output.js';
import type { Group } from './group.js';

/** What quiescence needs of its core. */
export interface QuiescencePort {
  readonly self: NodeId;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'outbox'>;
  /** Every replica of the core: a peer's going down or coming back may concern any of them. */
  readonly groups: ReadonlyMap<GroupId, Group>;
  /** Idle, fully replicated groups stop ticking (ShardCoreOptions.quiesce). */
  readonly quiesce: boolean;
  /** Queued groups campaigned, and queued groups woken, per tick (ShardCoreOptions.wakeCountPerTickMax). */
  readonly wakeCountPerTickMax: number;
  /** The group may have a Ready now. */
  touch(g: Group): void;
}

/**
 * Which of the core's groups tick. An idle, fully replicated leader
 * quiesces with one last heartbeat that tells its followers to stop ticking
 * too; a quiesced group wakes on traffic, on a request, or — a few per tick,
 * so a node's failure starts no election storm — when a peer it depends on
 * goes down or comes back. Groups a restart left dormant, and new ones that
 * should elect soon, campaign a few per tick as well.
 */
/**
 * How many times wakeCountPerTickMax a tick wakes for a peer gone down. Those wakes are what re-elects the
 * ranges it led, and at 64 a tick they paced a failover far below what the CPUs could do (host-bench
 * failover, 3 nodes × 30,000 shards, 1 core each: the dead node's 10,141 leaders all re-elected after
 * 19.5 s at 64 a tick and 7.1 s at 256, survivors at 22 and 34 % of a core).
 */
const PEER_DOWN_WAKE_FACTOR = 4;

/**
 * How many times wakeCountPerTickMax a tick wakes for a peer back up: our leaders that include it, whose
 * heartbeats tell its restarted replicas their leader (and catch them up). Campaigns stay at the budget.
 * A restarted node's replicas all hear from their leaders this way or by campaigning once, and its
 * burst is what overloads: at 100,000 shards per node (same bench, ACTIVE_GROUPS_WAKING_MAX in force),
 * every leader known after 84 s at 1×, 42–43 s at 2× (two runs, no check-quorum step-down), 23 s at 4×
 * in one run of two — the other, like one at 8×, ended in check-quorum step-downs on every node.
 */
const PEER_UP_WAKE_FACTOR = 2;

/**
 * Groups ticking on a core past which queued wakes wait: a group woken to elect ticks until it quiesces
 * again, and waking faster than elections finish only adds groups to tick (a node with 30,000 leaders
 * dying leaves 30,000 followers to wake on each survivor).
 */
const ACTIVE_GROUPS_WAKING_MAX = 8_192;

export class Quiescence {
  /** Groups that tick: not quiesced. */
  private readonly active = new Set<Group>();
  private readonly down = new Set<NodeId>();
  /**
   * Quiesced groups to wake a few per tick: after a peer went down (its followers elect, our leaders
   * re-check their quorum) or came back (our leaders catch it up). An entry whose cause was undone
   * meanwhile (the peer is back up, or down again) is skipped. Keyed by group and peer, the later
   * cause replacing the earlier: a flapping peer never grows it past groups × peers.
   */
  private readonly wakeQueue = new Map<string, { group: Group; peer: NodeId; cause: 'down' | 'up' }>();
  /** Groups whose campaign is still to come, wakeCountPerTickMax per tick (new ones, and those a restart left dormant), with the campaigns each may still try. */
  private readonly campaignQueue: { readonly g: Group; readonly attemptsLeft: number }[] = [];

  constructor(private readonly port: QuiescencePort) {}

  /** The groups that tick now. */
  get ticking(): ReadonlySet<Group> {
    return this.active;
  }

  /** Peers the Host declared down and not yet up again. */
  get downPeers(): ReadonlySet<NodeId> {
    return this.down;
  }

  /** The group ticks from now on. */
  start(g: Group): void {
    this.active.add(g);
  }

  /**
   * A replica the store held when the core started: quiesced (when
   * quiescence is on) until a message or request wakes it, so a node coming
   * back does not start an election storm (its peers still have leaders).
   */
  startDormant(g: Group): void {
    g.quiesced = this.port.quiesce;
    if (!g.quiesced) this.active.add(g);
  }

  /** The group no longer ticks (it is being destroyed). */
  stop(g: Group): void {
    this.active.delete(g);
  }

  /**
   * The group campaigns within a few ticks (wakeCountPerTickMax per tick),
   * and again on each of the next `attempts - 1` ticks while it has no
   * leader. A group every replica creates at about the same time (a new
   * shard, a split's right half) needs the retries: its first pre-vote can
   * reach peers that have no replica yet to answer with, and would then wait
   * out a whole election timeout. Pre-votes that fail bump no term.
   */
  campaignSoon(g: Group, attempts = 1): void {
    this.campaignQueue.push({ g, attemptsLeft: attempts });
  }

  /**
   * A leader with nothing to do tells its followers to stop ticking, with
   * one last heartbeat, and stops too. Checked before the group's tick: a
   * leader's tick queues a heartbeat, and a queued message is work. True if
   * it quiesced (it does not tick).
   */
  maybeQuiesceLeader(g: Group): boolean {
    if (!this.port.quiesce || !g.canQuiesce(this.down)) return false;
    g.quiesced = true;
    g.releaseIdle();
    this.active.delete(g);
    this.port.stats.quiesces++;
    // The heartbeats of this beat carry the quiesce flag (see ShardCore.route).
    g.raw.raft.step({ type: 'beat', from: this.port.self, to: this.port.self, term: 0 });
    this.port.touch(g);
    return true;
  }

  /** A follower told to quiesce by its leader's heartbeat stops ticking, if it holds what that leader committed. */
  maybeQuiesceFollower(g: Group, from: NodeId, term: number, commit: LogIndex): void {
    if (!this.port.quiesce || g.quiesced) return;
    const r = g.raw.raft;
    // Only a follower that holds exactly what its leader committed may stop listening for it.
    if (r.role !== 'follower' || r.lead !== from || r.term !== term) return;
    if (r.log.lastIndex() !== commit || r.log.committed !== commit || g.hasPendingRequests()) return;
    g.quiesced = true;
    g.releaseIdle();
    this.active.delete(g);
    this.port.stats.quiesces++;
  }

  /** Resumes ticking. A follower woken by anything but its leader asks the leader to wake too. */
  wake(g: Group, options: { notifyLeader: boolean }): void {
    if (!g.quiesced) return;
    g.quiesced = false;
    this.active.add(g);
    this.port.stats.wakes++;
    const leader = g.leader;
    if (options.notifyLeader && leader !== NONE && leader !== this.port.self) this.port.out.outbox.wake(leader, g.id);
  }

  /** After the groups ticked: the next wakeCountPerTickMax queued campaigns, then queued wakes (PEER_DOWN_WAKE_FACTOR times as many for a peer down, PEER_UP_WAKE_FACTOR for one back up). */
  wakeQueued(): void {
    const { wakeCountPerTickMax } = this.port;
    const again: { g: Group; attemptsLeft: number }[] = [];
    for (let n = 0; n < wakeCountPerTickMax && this.campaignQueue.length > 0; ) {
      const { g, attemptsLeft } = this.campaignQueue.shift()!;
      if (g.removed || g.leader !== NONE || !g.raw.raft.promotable()) continue;
      // A candidate has won its pre-vote and has its votes out: campaigning again would only bump its term.
      if (g.raw.raft.role === 'candidate') continue;
      // Ticking from now: a pre-vote nobody answers (peers in a live leader's lease stay silent) is tried again.
      this.wake(g, { notifyLeader: false });
      g.raw.campaign();
      this.port.touch(g);
      n++;
      if (attemptsLeft > 1) again.push({ g, attemptsLeft: attemptsLeft - 1 });
    }
    this.campaignQueue.push(...again);
    // Wakes for a peer that went down re-elect the ranges it led: they get PEER_DOWN_WAKE_FACTOR times the
    // budget; wakes for a peer back up PEER_UP_WAKE_FACTOR times, within that.
    let woken = 0;
    let wokenForUp = 0;
    for (const [key, { group, peer, cause }] of this.wakeQueue) {
      if (woken >= wakeCountPerTickMax * PEER_DOWN_WAKE_FACTOR) break;
      // Groups already ticking bound what more wakes would add: past ACTIVE_GROUPS_WAKING_MAX they only add tick work.
      if (this.active.size >= ACTIVE_GROUPS_WAKING_MAX) break;
      if (cause === 'up' && wokenForUp >= wakeCountPerTickMax * PEER_UP_WAKE_FACTOR) continue;
      this.wakeQueue.delete(key);
      if (group.removed || !group.quiesced || this.down.has(peer) !== (cause === 'down')) continue;
      this.wake(group, { notifyLeader: false });
      woken++;
      if (cause === 'up') wokenForUp++;
    }
  }

  /** Quiesced followers of a dead node's leaders wake (rate-limited per tick) and elect new leaders. */
  onPeerDown(peer: NodeId): void {
    const { groups, self, log } = this.port;
    this.down.add(peer);
    let queued = 0;
    for (const g of groups.values()) {
      // Followers of its leaders elect new ones; our leaders with it as a voter tick again, so
      // check-quorum steps them down if they lost their quorum (instead of taking writes that time out).
      // A leader whose voters not known down still form a quorum stays quiesced: waking it would only
      // re-check a quorum it has, and would take wake slots from the shards that have no leader (a
      // third of the queue in a 3-node cluster; host-bench's failover section measured re-election
      // twice as fast without them).
      const ledByPeer = g.leader === peer;
      const ledHereWithPeer = g.leader === self && g.raw.raft.tracker.progress.has(peer) && !this.hasLiveQuorum(g);
      if (g.quiesced && (ledByPeer || ledHereWithPeer)) {
        this.wakeQueue.set(`${g.id}/${peer}`, { group: g, peer, cause: 'down' });
        queued++;
      }
    }
    if (queued > 0) log.info({ peer, rangeCount: queued }, 'peer down; waking the ranges it led');
  }

  /** Whether the group's voters that are not known down form a quorum (a joint configuration counts as not: it is rare, and waking is the safe side). */
  private hasLiveQuorum(g: Group): boolean {
    const conf = g.raw.raft.tracker.confState();
    if (conf.votersOutgoing.length > 0) return false;
    let live = 0;
    for (const id of conf.voters) if (!this.down.has(id)) live++;
    return live * 2 > conf.voters.length;
  }

  /**
   * Leaders that quiesced while the peer was away wake (rate-limited) for a round of heartbeats: one
   * that left the peer's replica behind catches it up now, not at the shard's next write, and one the
   * others deposed meanwhile (cut off, it quiesced as leader and never heard of the new term) learns it
   * and steps down. Its dormant replicas wake on their leaders' messages.
   */
  onPeerUp(peer: NodeId): void {
    this.down.delete(peer);
    let queued = 0;
    for (const g of this.port.groups.values()) {
      if (!g.quiesced || !g.isLeader) continue;
      if (g.raw.raft.tracker.progress.has(peer)) {
        this.wakeQueue.set(`${g.id}/${peer}`, { group: g, peer, cause: 'up' });
        queued++;
      }
    }
    if (queued > 0) this.port.log.info({ peer, rangeCount: queued }, 'peer up; waking the ranges led here that include it');
  }
}
