// The demo's shell around the consensus core: one Raft group of RawNodes in
// this process, an in-memory message queue as the network and a MemoryStorage
// per node as its disk. The caller owns time: it calls tick() from a timer.
// A crashed node loses its RawNode and state machine but keeps its storage.
import { assert, MemoryStorage, RawNode, SeededRng, type ConfState, type Entry, type Message, type NodeId, type Ready, type SoftState, type Term } from '@flotilla/core';

/** Loop turns one settle() may take; a proposal round needs about 5, an election about 8. */
const SETTLE_TURN_COUNT_MAX = 1_000;

export interface Member {
  readonly id: NodeId;
  /** Survives a crash: the node's "disk". */
  readonly storage: MemoryStorage;
  /** Undefined while crashed. */
  node: RawNode | undefined;
  /** The state machine: applied proposals in log order. Lost in a crash, rebuilt by re-applying the log. */
  values: string[];
  appliedIndex: number;
  /** Entries up to here were committed before the last restart: applying them replays the node's own log. */
  replayIndexMax: number;
}

export interface ClusterEvents {
  roleChanged(member: Member, softState: SoftState, term: Term): void;
  /** Committed entries with a payload that `member` just applied (the leader's empty entries are left out). */
  applied(member: Member, entries: readonly Entry[]): void;
}

export interface DemoClusterOptions {
  readonly nodeIds: readonly NodeId[];
  readonly seed: number;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly events: ClusterEvents;
}

const decoder = new TextDecoder();

export class DemoCluster {
  readonly members: Member[];
  droppedMessageCount = 0;
  private queue: Message[] = [];
  private readonly rng: SeededRng;

  constructor(private readonly options: DemoClusterOptions) {
    this.rng = new SeededRng(options.seed);
    const confState: ConfState = { voters: [...options.nodeIds], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
    this.members = options.nodeIds.map((id) => {
      const storage = new MemoryStorage();
      storage.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
      const member: Member = { id, storage, node: undefined, values: [], appliedIndex: 0, replayIndexMax: 0 };
      member.node = this.newNode(member);
      return member;
    });
  }

  member(id: NodeId): Member {
    const m = this.members.find((candidate) => candidate.id === id);
    assert(m !== undefined, () => `no member ${id}`);
    return m;
  }

  live(): Member[] {
    return this.members.filter((m) => m.node !== undefined);
  }

  /** The live leader with the highest term (an isolated old leader may still think it leads). */
  leader(): Member | undefined {
    let best: { member: Member; term: Term } | undefined;
    for (const member of this.live()) {
      const status = member.node!.status();
      if (status.softState.role !== 'leader') continue;
      if (best === undefined || status.hardState.term > best.term) best = { member, term: status.hardState.term };
    }
    return best?.member;
  }

  /** One clock tick for every live node, then everything it causes. */
  tick(): void {
    for (const m of this.live()) m.node!.tick();
    this.settle();
  }

  /** Proposes on the leader and settles. Returns false when there is no leader to take it. */
  propose(value: string): boolean {
    const leader = this.leader();
    if (leader === undefined) return false;
    leader.node!.propose(new TextEncoder().encode(value));
    this.settle();
    return true;
  }

  /** Drops the node's volatile state: its RawNode, its state machine and messages on their way to it. */
  crash(id: NodeId): void {
    const m = this.member(id);
    assert(m.node !== undefined, () => `node ${id} is already down`);
    assert(!m.node.isProcessingReady, () => `node ${id} crashed mid-Ready; settle() first`);
    m.node = undefined;
    m.values = [];
    m.appliedIndex = 0;
  }

  /** Starts a fresh RawNode on the crashed node's storage. It re-applies its committed log, then catches up. */
  restart(id: NodeId): void {
    const m = this.member(id);
    assert(m.node === undefined, () => `node ${id} is running`);
    m.replayIndexMax = m.storage.initialState().hardState.commit;
    m.node = this.newNode(m);
    this.settle();
  }

  /** Handles Readies and delivers messages until nothing is left to do. */
  settle(): void {
    for (let turn = 0; ; turn++) {
      assert(turn < SETTLE_TURN_COUNT_MAX, () => `cluster did not settle within ${SETTLE_TURN_COUNT_MAX} turns`);
      let busy = false;
      for (const m of this.members) {
        if (m.node === undefined || !m.node.hasReady()) continue;
        busy = true;
        this.handleReady(m, m.node, m.node.ready());
      }
      if (this.queue.length > 0) {
        busy = true;
        const queue = this.queue;
        this.queue = [];
        for (const message of queue) {
          const to = this.member(message.to).node;
          if (to === undefined) this.droppedMessageCount++;
          else to.step(message);
        }
      }
      if (!busy) return;
    }
  }

  private newNode(m: Member): RawNode {
    return new RawNode({
      id: m.id,
      storage: m.storage,
      rng: this.rng.fork(),
      electionTimeoutTicks: this.options.electionTimeoutTicks,
      heartbeatIntervalTicks: this.options.heartbeatIntervalTicks,
    });
  }

  /** In the order the Ready contract asks for: send, persist, send after persist, apply, advance. */
  private handleReady(m: Member, node: RawNode, rd: Ready): void {
    if (rd.softState !== undefined) this.options.events.roleChanged(m, rd.softState, node.status().hardState.term);
    this.queue.push(...rd.messages);
    if (rd.snapshot !== undefined) m.storage.applySnapshot(rd.snapshot);
    m.storage.append(rd.entries);
    if (rd.hardState !== undefined) m.storage.setHardState(rd.hardState);
    this.queue.push(...rd.messagesAfterPersist);
    const withPayload: Entry[] = [];
    for (const e of rd.committedEntries) {
      assert(e.type === 'normal', () => `entry ${e.index} is a ${e.type}: the demo proposes no conf changes`);
      assert(e.index === m.appliedIndex + 1, () => `node ${m.id} applies ${e.index} after ${m.appliedIndex}`);
      m.appliedIndex = e.index;
      if (e.data.length === 0) continue;
      m.values.push(decoder.decode(e.data));
      withPayload.push(e);
    }
    if (withPayload.length > 0) this.options.events.applied(m, withPayload);
    node.advance();
  }
}
