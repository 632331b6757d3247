// A synchronous, in-memory shell for many Raft groups, built only to measure
// the core: no clock, no I/O. Each group is `replicaCount` RawNodes over
// MemoryStorage; one loop steps all groups until nothing is left to do.
import { assert, MemoryStorage, RawNode, SeededRng, nodeId, type ConfState, type Message, type NodeId, type Ready } from '@flotilla/core';

/** Loop turns one proposal round may take; a round settles in about 5 (append, ack, commit append, ack, quiet). */
const TURN_COUNT_MAX = 1_000;

/**
 * Entries a replica's MemoryStorage keeps before the shell compacts it:
 * uncompacted, the logs grow with the run, and their memory and GC work with
 * them, so a longer run would measure something else. 256 keeps them small
 * while compacting rarely.
 */
const STORED_ENTRY_COUNT_MAX = 256;

/** What applying committed entries computed: the checksum that keeps the work observable. */
export interface ApplyChecksum {
  /** Entries applied, including the leader's empty no-op entries. */
  appliedEntryCount: number;
  /** Entries with a payload: the proposals. */
  appliedProposalCount: number;
  /** Sum of applied indexes, wrapped to int32. */
  appliedIndexSum: number;
  /** XOR of every applied payload byte, each shifted by its position mod 4; totals over groups add these up. */
  payloadXor: number;
}

export function emptyChecksum(): ApplyChecksum {
  return { appliedEntryCount: 0, appliedProposalCount: 0, appliedIndexSum: 0, payloadXor: 0 };
}

/**
 * The bench's state machine: reads every payload byte, as a real apply would.
 * Sums stay int32 (`| 0`): a `>>> 0` result above 2^31 is no small integer,
 * so V8 would keep the fields as heap doubles and this loop would cost enough
 * to swamp the Raft costs it is there to measure.
 */
export function applyPayload(checksum: ApplyChecksum, index: number, bytes: Uint8Array, start: number, end: number): void {
  checksum.appliedEntryCount++;
  checksum.appliedIndexSum = (checksum.appliedIndexSum + index) | 0;
  if (end === start) return;
  checksum.appliedProposalCount++;
  let x = checksum.payloadXor | 0;
  for (let i = start; i < end; i++) x ^= bytes[i]! << (((i - start) & 3) << 3);
  checksum.payloadXor = x;
}

interface Replica {
  readonly node: RawNode;
  readonly storage: MemoryStorage;
  readonly checksum: ApplyChecksum;
  appliedIndex: number;
}

interface Group {
  /** replicas[i] has node id i + 1. */
  readonly replicas: Replica[];
  /** Messages sent and not yet stepped; the in-memory network. */
  inbox: Message[];
  leader: Replica | undefined;
}

export interface ClusterOptions {
  readonly groupCount: number;
  readonly replicaCount: number;
  readonly seed: number;
}

export class Cluster {
  readonly groups: Group[] = [];
  /** Messages delivered with RawNode.step since construction. */
  messagesSteppedCount = 0;
  readyCount = 0;

  constructor(options: ClusterOptions) {
    const rng = new SeededRng(options.seed);
    const voters: NodeId[] = Array.from({ length: options.replicaCount }, (_, i) => nodeId(i + 1));
    const confState: ConfState = { voters, votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    for (let g = 0; g < options.groupCount; g++) {
      const replicas = voters.map((id): Replica => {
        const storage = new MemoryStorage();
        storage.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
        const node = new RawNode({ id, storage, rng: rng.fork() });
        return { node, storage, checksum: emptyChecksum(), appliedIndex: 0 };
      });
      this.groups.push({ replicas, inbox: [], leader: undefined });
    }
  }

  /** Makes replica 1 of every group campaign, runs to quiet, and checks that it won. */
  electLeaders(): void {
    for (const group of this.groups) group.replicas[0]!.node.campaign();
    this.runUntilQuiet();
    for (const [g, group] of this.groups.entries()) {
      const first = group.replicas[0]!;
      const role = first.node.status().softState.role;
      assert(role === 'leader', () => `group ${g}: node 1 did not win its election (role ${role})`);
      group.leader = first;
    }
  }

  /** Proposes `payloads` on the leader of group `g` as one batch. */
  propose(g: number, payloads: readonly Uint8Array[]): void {
    const leader = this.groups[g]!.leader;
    assert(leader !== undefined, () => `group ${g} has no leader`);
    leader.node.proposeBatch(payloads);
  }

  /** Handles every Ready and delivers every message until no replica has anything left to do. */
  runUntilQuiet(): void {
    for (let turn = 0; ; turn++) {
      assert(turn < TURN_COUNT_MAX, () => `cluster not quiet after ${TURN_COUNT_MAX} loop turns`);
      let busy = false;
      for (const group of this.groups) {
        for (const replica of group.replicas) {
          if (!replica.node.hasReady()) continue;
          busy = true;
          this.handleReady(group, replica, replica.node.ready());
        }
      }
      for (const group of this.groups) {
        if (group.inbox.length === 0) continue;
        busy = true;
        const inbox = group.inbox;
        group.inbox = [];
        for (const m of inbox) group.replicas[m.to - 1]!.node.step(m);
        this.messagesSteppedCount += inbox.length;
      }
      if (!busy) return;
    }
  }

  /** The order the Ready contract asks for: send, persist, send after persist, apply, advance. */
  private handleReady(group: Group, replica: Replica, rd: Ready): void {
    this.readyCount++;
    for (const m of rd.messages) group.inbox.push(m);
    if (rd.snapshot !== undefined) replica.storage.applySnapshot(rd.snapshot);
    replica.storage.append(rd.entries);
    if (rd.hardState !== undefined) replica.storage.setHardState(rd.hardState);
    for (const m of rd.messagesAfterPersist) group.inbox.push(m);
    for (const e of rd.committedEntries) {
      assert(e.type === 'normal', () => `unexpected ${e.type} entry ${e.index}: the bench proposes no conf changes`);
      assert(e.index === replica.appliedIndex + 1, () => `applied ${e.index} after ${replica.appliedIndex} (node ${replica.node.id})`);
      applyPayload(replica.checksum, e.index, e.data, 0, e.data.length);
      replica.appliedIndex = e.index;
    }
    replica.node.advance();
  }

  /**
   * Compacts logs that grew past STORED_ENTRY_COUNT_MAX, up to what every
   * replica of the group applied, so no leader ever needs a snapshot. Call when quiet.
   */
  compactLogs(): void {
    for (const group of this.groups) {
      let appliedMin = Infinity;
      for (const replica of group.replicas) appliedMin = Math.min(appliedMin, replica.appliedIndex);
      for (const replica of group.replicas) {
        const storage = replica.storage;
        if (storage.lastIndex() - storage.firstIndex() < STORED_ENTRY_COUNT_MAX) continue;
        if (appliedMin >= storage.firstIndex()) storage.compact(Math.min(appliedMin, storage.lastIndex()));
      }
    }
  }

  /** Checks that every replica of every group applied the same entries and `proposalCount` proposals each; returns the sum. */
  verify(proposalCount: (g: number) => number): ApplyChecksum {
    const total = emptyChecksum();
    for (const [g, group] of this.groups.entries()) {
      const first = group.replicas[0]!.checksum;
      assert(first.appliedProposalCount === proposalCount(g), () => `group ${g}: applied ${first.appliedProposalCount} proposals, proposed ${proposalCount(g)}`);
      for (const replica of group.replicas) {
        const c = replica.checksum;
        assert(c.appliedEntryCount === first.appliedEntryCount, () => `group ${g} node ${replica.node.id}: applied ${c.appliedEntryCount} entries, node 1 ${first.appliedEntryCount}`);
        assert(c.appliedIndexSum === first.appliedIndexSum, () => `group ${g} node ${replica.node.id}: index sum differs from node 1`);
        assert(c.payloadXor === first.payloadXor, () => `group ${g} node ${replica.node.id}: payload checksum differs from node 1`);
      }
      total.appliedEntryCount += first.appliedEntryCount;
      total.appliedProposalCount += first.appliedProposalCount;
      total.appliedIndexSum = (total.appliedIndexSum + first.appliedIndexSum) | 0;
      total.payloadXor = (total.payloadXor + first.payloadXor) | 0;
    }
    return total;
  }
}
