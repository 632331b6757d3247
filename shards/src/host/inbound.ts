import { InvalidMessageError, StepPeerNotFoundError, groupId, type GroupId, type Message, type NodeId } from '@flotilla/core';
import { isInitialized } from '../kv/range.js';
import type { ShellLogger } from '../shell-logger.js';
import type { CoreStats } from './core-protocol.js';
import type { CoreOutputBuffer } from './core-output.js';
import type { Group } from './group.js';
import { invalidNetworkMessage } from './input-checks.js';
import { decodeBatch } from './message-codec.js';
import { HEARTBEAT_RESPONSE_TUPLE_LENGTH, HEARTBEAT_TUPLE_LENGTH, type Segment } from './node-batch.js';
import type { Quiescence } from './quiescence.js';

/** A shard this core lacks is reported to the Host at most this often (its leader heartbeats every few ticks). */
const UNKNOWN_REPORT_TICKS = 20;
/** Bounds the memory a flood of unknown shard ids could take. */
const UNKNOWN_REPORTED_COUNT_MAX = 4096;
/** Messages only a leader sends: the traffic for an unknown shard that may make the Host adopt it. */
const LEADER_TRAFFIC: ReadonlySet<Message['type']> = new Set(['append', 'snapshot']);

/** What inbound traffic needs of its core. */
export interface InboundTrafficPort {
  readonly self: NodeId;
  readonly stats: CoreStats;
  readonly log: ShellLogger;
  readonly out: Pick<CoreOutputBuffer, 'event' | 'outbox'>;
  readonly groups: ReadonlyMap<GroupId, Group>;
  /** Traffic wakes a quiesced group; a leader's quiescing heartbeat quiesces its follower. */
  readonly quiescence: Pick<Quiescence, 'wake' | 'maybeQuiesceFollower'>;
  /** The core's ticks so far: the clock that paces unknown-shard reports. */
  tickCount(): number;
  /** The group may have a Ready now. */
  touch(g: Group): void;
}

/**
 * The Raft traffic peers send this core: a segment of heartbeats, their
 * responses, shard message batches and wake requests, each checked and
 * stepped into its group. Bad network input is refused and counted
 * (messagesRejected), never asserted on.
 */
export class InboundTraffic {
  /** Shards reported unknown, with the tick of the report. */
  private readonly unknownReported = new Map<number, number>();

  constructor(private readonly port: InboundTrafficPort) {}

  onSegment(from: NodeId, s: Segment): void {
    const { self, quiescence } = this.port;
    // First: the sender answered before it sent anything else here (a leadership it won after answering
    // comes in this segment's heartbeats and sections, or later), so a follower never forgets a leader
    // it learned of after the answer.
    for (let i = 0; i < s.notLeading.length; i += 2) {
      const g = this.port.groups.get(groupId(s.notLeading[i]!));
      const term = s.notLeading[i + 1]!;
      // g.leader, not g.raw: a replica whose Raft node is not built yet knows no leader to forget, and is not built for it.
      if (g === undefined || g.leader !== from || (term !== 0 && g.raw.raft.term > term)) continue;
      g.raw.raft.forgetLeader();
      this.port.touch(g);
    }
    for (let i = 0; i < s.heartbeats.length; i += HEARTBEAT_TUPLE_LENGTH) {
      const g = this.inboundGroup(s.heartbeats[i]!, from, { reportUnknown: true });
      if (g === undefined) continue;
      const term = s.heartbeats[i + 1]!;
      const commit = s.heartbeats[i + 2]!;
      const quiesce = s.heartbeats[i + 4] === 1;
      // A leader never sends a commit past what it knows the follower holds (min(match, commit)):
      // a larger one is bad input or a follower that lost its log, and Raft would assert on it.
      if (commit > g.raw.raft.log.lastIndex()) {
        this.reject({ rangeId: g.id, from, commit, lastIndex: g.raw.raft.log.lastIndex() }, 'heartbeat commit beyond the local log');
        continue;
      }
      if (!quiesce) quiescence.wake(g, { notifyLeader: false });
      this.step(g, { type: 'heartbeat', from, to: self, term, commit, round: s.heartbeats[i + 3]! });
      if (quiesce) quiescence.maybeQuiesceFollower(g, from, term, commit);
    }
    for (let i = 0; i < s.heartbeatResponses.length; i += HEARTBEAT_RESPONSE_TUPLE_LENGTH) {
      const g = this.inboundGroup(s.heartbeatResponses[i]!, from);
      if (g === undefined) continue;
      const term = s.heartbeatResponses[i + 1]!;
      // The answers to a quiescing leader's last heartbeat must not wake it again.
      if (term !== g.raw.raft.term) quiescence.wake(g, { notifyLeader: true });
      this.step(g, { type: 'heartbeatResponse', from, to: self, term, round: s.heartbeatResponses[i + 2]! });
    }
    for (let i = 0; i < s.sections.length; i += 2) this.onSection(from, s.sections[i] as number, s.sections[i + 1] as Uint8Array);
    for (const shard of s.wakes) {
      const g = this.inboundGroup(shard, from);
      if (g !== undefined) quiescence.wake(g, { notifyLeader: false });
      // A follower that takes us for its leader, promised to our node (node leases), holds its group from
      // electing anyone else: unless our replica leads, tell it so, and it forgets us and can elect.
      if (g === undefined || !g.isLeader) this.port.out.outbox.notLeading(from, groupId(shard), g?.raw.raft.term ?? 0);
    }
  }

  /** Steps a message from the network into its group: refused and counted, not asserted, when Raft rejects it. */
  step(g: Group, m: Message): void {
    try {
      g.raw.step(m);
      this.port.stats.messagesStepped++;
    } catch (err) {
      if (err instanceof InvalidMessageError || err instanceof StepPeerNotFoundError) {
        this.reject({ rangeId: g.id, from: m.from, type: m.type, code: err.code }, 'message refused by raft');
        return;
      }
      throw err;
    }
    this.port.touch(g);
  }

  private onSection(from: NodeId, shard: number, body: Uint8Array): void {
    const g = this.inboundGroup(shard, from);
    if (g === undefined && !this.reportDue(shard)) return;
    let envelopes;
    try {
      envelopes = decodeBatch(body);
    } catch (err) {
      this.reject({ rangeId: shard, from, err }, 'undecodable range messages from the network');
      return;
    }
    if (g === undefined) {
      if (envelopes.some((e) => e.message.from === from && LEADER_TRAFFIC.has(e.message.type))) this.reportUnknown(shard, from);
      return;
    }
    for (const { shardId, message } of envelopes) {
      if (shardId !== shard || message.from !== from || message.to !== this.port.self) {
        this.reject({ rangeId: shardId, from, to: message.to, type: message.type }, 'range message with crossed wires');
        continue;
      }
      const invalid = invalidNetworkMessage(message);
      if (invalid !== undefined) {
        this.reject({ rangeId: shardId, from, type: message.type, invalid }, 'range message refused');
        continue;
      }
      // A replica waiting for its first snapshot (created empty for a move) has no log and no
      // configuration: its vote would count for any candidate whose configuration still names this
      // node — a stale one, from before this node was removed and re-added as a learner: a restarted
      // replica at an old epoch could win a term with such a vote, beside the real leader of that
      // term. It votes once it holds the range.
      if ((message.type === 'vote' || message.type === 'preVote') && !isInitialized(g.bounds)) {
        this.reject({ rangeId: shardId, from, type: message.type }, 'vote request to a replica that holds no range yet');
        continue;
      }
      this.port.quiescence.wake(g, { notifyLeader: message.from !== g.leader });
      this.step(g, message);
    }
  }

  /**
   * The group a message from the network is for. A shard this node has no
   * replica of is reported to the Host (at most once per UNKNOWN_REPORT_TICKS
   * per shard, see reportUnknown) when a leader sends the traffic.
   */
  private inboundGroup(shard: number, from: NodeId, options: { reportUnknown?: boolean } = {}): Group | undefined {
    const g = this.port.groups.get(shard as GroupId);
    if (g === undefined || g.removed) {
      this.reject({ rangeId: shard, from }, 'message for a range not on this node');
      if (options.reportUnknown === true && g === undefined) this.reportUnknown(shard, from);
      return undefined;
    }
    return g;
  }

  private reportDue(shard: number): boolean {
    const last = this.unknownReported.get(shard);
    return last === undefined || this.port.tickCount() - last >= UNKNOWN_REPORT_TICKS;
  }

  /**
   * Tells the Host a leader keeps sending traffic for a shard this node has
   * no replica of; it may create an empty replica for that leader to catch
   * up: how a replica that got the left half of a split by snapshot — past
   * the split entry — gets the right half (TiKV does the same). Only a
   * leader's traffic counts. A candidate's does not: an empty replica
   * refuses votes, so it cannot help one, and made while this node's replica
   * of the parent range has yet to apply the split, it would take the right
   * half's place and that split's data would be dropped — a right half whose
   * only other holders are candidates then never elects (sim seed 76109).
   * Answers are for replicas this node had.
   */
  private reportUnknown(shard: number, from: NodeId): void {
    if (!this.reportDue(shard)) return;
    if (this.unknownReported.size >= UNKNOWN_REPORTED_COUNT_MAX) this.unknownReported.clear();
    this.unknownReported.set(shard, this.port.tickCount());
    this.port.out.event({ kind: 'unknownShard', shardId: shard, from });
  }

  private reject(fields: Record<string, unknown>, message: string): void {
    this.port.stats.messagesRejected++;
    this.port.log.debug(fields, message);
  }
}
