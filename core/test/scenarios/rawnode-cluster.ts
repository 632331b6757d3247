// A cluster of RawNodes for scenario tests. Every replica runs the real shell
// loop of the core's contract (README "Contract", raw-node.ts `Ready`): send
// `messages`, persist snapshot / entries / hard state into its MemoryStorage,
// send `messagesAfterPersist`, apply committed entries (conf changes through
// `applyConfChange`), collect read states, `advance()`. A deterministic
// in-memory network carries the messages; rules drop or hold them.
//
// Safety checks run after every Ready: at most one leader per term (Election
// Safety, §5.2) and no two replicas ever apply different entries at the same
// index (State Machine Safety, §5.4.3).
import { StepPeerNotFoundError } from '../../src/errors.js';
import { MemoryStorage } from '../../src/log/storage.js';
import { decodeConfChange } from '../../src/membership/codec.js';
import type { RaftConfig } from '../../src/raft.js';
import { RawNode, type Ready } from '../../src/raw-node.js';
import { SeededRng } from '../../src/rng.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type LogIndex,
  type Message,
  type NodeId,
  type ReadContext,
  type ReadState,
  type Term,
  nodeId,
} from '../../src/types.js';
import { bytes, storageWith, text } from '../helpers.js';

/** Options a test may set per replica; identity, storage and randomness belong to the cluster. */
export type ReplicaConfig = Partial<Omit<RaftConfig, 'id' | 'storage' | 'rng' | 'applied'>>;

export interface Replica {
  readonly id: NodeId;
  node: RawNode;
  readonly storage: MemoryStorage;
  config: ReplicaConfig;
  /** The state machine: payloads of applied non-empty normal entries, in log order. */
  stateMachine: string[];
  appliedIndex: LogIndex;
  /** The configuration as last applied (conf change, snapshot or restart). */
  confState: ConfState;
  /** Every ConfState that applying a conf change returned, in order. */
  confHistory: ConfState[];
  readStates: ReadState[];
  droppedReads: ReadContext[];
  /** Stopped replicas are not ticked and messages to them are lost. */
  up: boolean;
}

export type Fate = 'delivered' | 'dropped' | 'held';

export interface SentMessage {
  readonly message: Message;
  readonly fate: Fate;
}

interface Rule {
  readonly match: (m: Message) => boolean;
  readonly action: 'drop' | 'hold';
}

/** Bounds a stabilize() loop: far above any scenario here, low enough that a livelock fails fast. */
const STABILIZE_ROUNDS_MAX = 10_000;

export class Cluster {
  readonly replicas = new Map<NodeId, Replica>();
  /** Every message any replica sent, with what the network did to it. */
  trace: SentMessage[] = [];
  /** Responses from peers the receiver no longer knows (RawNode refuses them); counted, not fatal. */
  stepErrors: { message: Message; code: string }[] = [];
  /** Per replica: an entry whose apply must wait (the shell calls holdApply at it); cleared with resumeApply. */
  applyHold = new Map<NodeId, (e: Entry) => boolean>();
  /** Called with every Ready before it is handled; lets a test look at Ready-level batching. */
  onReady: ((id: NodeId, rd: Ready) => void) | undefined;

  private inFlight: Message[] = [];
  private held: Message[] = [];
  private rules: Rule[] = [];
  private readonly rng: SeededRng;
  private readonly leaderOfTerm = new Map<Term, NodeId>();
  /** Index → identity of the entry applied there by the first replica that applied it. */
  private readonly appliedAt = new Map<LogIndex, string>();

  constructor(options: { voters: number[]; learners?: number[]; config?: ReplicaConfig; configFor?: (id: number) => ReplicaConfig; seed?: number }) {
    this.rng = new SeededRng(options.seed ?? 1);
    const members = [...options.voters, ...(options.learners ?? [])].sort((a, b) => a - b);
    for (const id of members) {
      const storage = storageWith({ voters: options.voters, learners: options.learners ?? [] });
      this.addReplica(id, { storage, config: { ...options.config, ...options.configFor?.(id) } });
    }
  }

  /**
   * Starts a replica over `storage` (default: empty, a node that joins through a
   * conf change and learns everything from the leader).
   */
  addReplica(id: number, options: { storage?: MemoryStorage; config?: ReplicaConfig } = {}): Replica {
    const storage = options.storage ?? new MemoryStorage();
    const config = options.config ?? {};
    const replica: Replica = {
      id: nodeId(id),
      node: undefined as unknown as RawNode,
      storage,
      config,
      stateMachine: [],
      appliedIndex: 0,
      confState: storage.initialState().confState,
      confHistory: [],
      readStates: [],
      droppedReads: [],
      up: true,
    };
    this.replicas.set(replica.id, replica);
    this.boot(replica);
    return replica;
  }

  /** (Re)creates the RawNode from what the replica persisted, as after a crash. */
  private boot(replica: Replica): void {
    const snapshot = replica.storage.snapshot();
    replica.stateMachine = snapshot.data.byteLength > 0 ? (JSON.parse(text(snapshot.data)) as string[]) : [];
    replica.appliedIndex = snapshot.metadata.index;
    replica.confState = snapshot.metadata.confState;
    replica.node = new RawNode({
      electionTimeoutTicks: 10,
      heartbeatIntervalTicks: 1,
      ...replica.config,
      id: replica.id,
      storage: replica.storage,
      rng: this.rng.fork(),
      applied: snapshot.metadata.index,
    });
    replica.up = true;
  }

  replica(id: number): Replica {
    const r = this.replicas.get(nodeId(id));
    if (r === undefined) throw new Error(`no replica ${id}`);
    return r;
  }

  node(id: number): RawNode {
    return this.replica(id).node;
  }

  raft(id: number): RawNode['raft'] {
    return this.replica(id).node.raft;
  }

  /** The leader with the highest term, if any replica is leading. */
  leader(): NodeId | undefined {
    let best: RawNode['raft'] | undefined;
    for (const r of this.replicas.values()) {
      if (!r.up || r.node.raft.role !== 'leader') continue;
      if (best === undefined || r.node.raft.term > best.term) best = r.node.raft;
    }
    return best?.id;
  }

  // ---------------------------------------------------------------------------
  // Inputs

  campaign(id: number, options: { stabilize?: boolean } = {}): void {
    this.node(id).campaign();
    if (options.stabilize ?? true) this.stabilize();
  }

  propose(id: number, data: string, options: { stabilize?: boolean } = {}): void {
    this.node(id).propose(bytes(data));
    if (options.stabilize ?? true) this.stabilize();
  }

  resumeApply(id: number, options: { stabilize?: boolean } = {}): void {
    this.applyHold.delete(nodeId(id));
    this.node(id).resumeApply();
    if (options.stabilize ?? true) this.stabilize();
  }

  proposeConfChange(id: number, cc: ConfChange, options: { stabilize?: boolean } = {}): void {
    this.node(id).proposeConfChange(cc);
    if (options.stabilize ?? true) this.stabilize();
  }

  readIndex(id: number, context: ReadContext, options: { stabilize?: boolean } = {}): void {
    this.node(id).readIndex(context);
    if (options.stabilize ?? true) this.stabilize();
  }

  transferLeader(id: number, transferee: number, options: { stabilize?: boolean } = {}): void {
    this.node(id).transferLeader(nodeId(transferee));
    if (options.stabilize ?? true) this.stabilize();
  }

  /** `count` ticks of every running replica in `ids` (default all), the network settling after each. */
  tick(options: { ids?: number[]; count?: number; stabilize?: boolean } = {}): void {
    const ids = options.ids?.map(nodeId) ?? [...this.replicas.keys()];
    for (let i = 0; i < (options.count ?? 1); i++) {
      for (const id of ids) {
        const r = this.replicas.get(id)!;
        if (r.up) r.node.tick();
      }
      if (options.stabilize ?? true) this.stabilize();
      else this.processReadys();
    }
  }

  /** Crashes a replica: it stops ticking and messages to it are lost. Its storage survives. */
  stop(id: number): void {
    this.replica(id).up = false;
  }

  /** Restarts a replica from its storage (state machine from the latest snapshot, then replay). */
  restart(id: number, config?: ReplicaConfig): void {
    const r = this.replica(id);
    if (config !== undefined) r.config = config;
    this.boot(r);
  }

  /** Snapshots the state machine at the applied index and discards the log up to it. */
  compact(id: number): void {
    const r = this.replica(id);
    r.storage.createSnapshot(r.appliedIndex, r.confState, bytes(JSON.stringify(r.stateMachine)));
    r.storage.compact(r.appliedIndex);
  }

  // ---------------------------------------------------------------------------
  // Network rules

  /** Messages matching `match` are lost until heal() (or the returned function) removes the rule. */
  drop(match: (m: Message) => boolean): () => void {
    return this.addRule({ match, action: 'drop' });
  }

  /** Messages matching `match` are kept aside until release(). */
  hold(match: (m: Message) => boolean): () => void {
    return this.addRule({ match, action: 'hold' });
  }

  dropType(...types: Message['type'][]): () => void {
    return this.drop((m) => types.includes(m.type));
  }

  cut(a: number, b: number): () => void {
    return this.drop((m) => (m.from === a && m.to === b) || (m.from === b && m.to === a));
  }

  isolate(id: number): () => void {
    return this.drop((m) => (m.from === id) !== (m.to === id));
  }

  /** Splits the cluster: only messages within one group pass. */
  partition(...groups: number[][]): () => void {
    const groupOf = new Map<number, number>();
    groups.forEach((g, i) => g.forEach((id) => groupOf.set(id, i)));
    return this.drop((m) => groupOf.get(m.from) !== groupOf.get(m.to));
  }

  heal(): void {
    this.rules = [];
  }

  /** Puts held messages back on the wire (they arrive in the next delivery). */
  release(match: (m: Message) => boolean = () => true): Message[] {
    const released = this.held.filter(match);
    this.held = this.held.filter((m) => !match(m));
    this.inFlight.push(...released);
    return released;
  }

  /** Puts a message on the wire as if a replica had sent it (a delayed or duplicated message). */
  inject(m: Message): void {
    this.inFlight.push(m);
  }

  private addRule(rule: Rule): () => void {
    this.rules.push(rule);
    return () => {
      this.rules = this.rules.filter((r) => r !== rule);
    };
  }

  private send(messages: readonly Message[]): void {
    for (const m of messages) {
      let fate: Fate = 'delivered';
      for (const rule of this.rules) {
        if (rule.match(m)) {
          fate = rule.action === 'drop' ? 'dropped' : 'held';
          break;
        }
      }
      this.trace.push({ message: m, fate });
      if (fate === 'delivered') this.inFlight.push(m);
      else if (fate === 'held') this.held.push(m);
    }
  }

  /** Messages sent so far (whatever their fate) that match `match`. */
  sent<T extends Message>(match: (m: Message) => m is T): T[];
  sent(match?: (m: Message) => boolean): Message[];
  sent(match: (m: Message) => boolean = () => true): Message[] {
    return this.trace.filter((s) => match(s.message)).map((s) => s.message);
  }

  clearTrace(): void {
    this.trace = [];
  }

  get inFlightCount(): number {
    return this.inFlight.length;
  }

  // ---------------------------------------------------------------------------
  // The loop

  /** Delivers and handles Readys until no message is in flight and no replica has a Ready. */
  stabilize(): void {
    for (let round = 0; ; round++) {
      if (round > STABILIZE_ROUNDS_MAX) throw new Error(`cluster did not settle after ${STABILIZE_ROUNDS_MAX} rounds`);
      this.processReadys();
      if (this.inFlight.length === 0) return;
      this.deliver();
    }
  }

  /** Delivers every message now in flight (one network hop); returns how many were stepped. */
  deliver(): number {
    const batch = this.inFlight;
    this.inFlight = [];
    let stepped = 0;
    for (const m of batch) {
      const r = this.replicas.get(m.to);
      if (r === undefined || !r.up) continue;
      try {
        r.node.step(m);
        stepped++;
      } catch (err) {
        if (!(err instanceof StepPeerNotFoundError)) throw err;
        this.stepErrors.push({ message: m, code: err.code });
      }
    }
    return stepped;
  }

  /** Handles Readys of all running replicas until none has one; returns how many were handled. */
  processReadys(): number {
    let handled = 0;
    for (let progress = true; progress; ) {
      progress = false;
      for (const r of [...this.replicas.values()].sort((a, b) => a.id - b.id)) {
        if (r.up && r.node.hasReady()) {
          this.handleReady(r);
          handled++;
          progress = true;
        }
      }
    }
    return handled;
  }

  /** One pass of the shell's loop for one replica, in the order the contract prescribes. */
  handleReady(r: Replica): Ready {
    let rd = r.node.ready();
    const hold = this.applyHold.get(r.id);
    const held = hold === undefined ? undefined : rd.committedEntries.find(hold);
    if (held !== undefined) rd = r.node.holdApply(held.index);
    this.onReady?.(r.id, rd);
    this.send(rd.messages);
    if (rd.snapshot !== undefined) r.storage.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) r.storage.append(rd.entries);
    if (rd.hardState !== undefined) r.storage.setHardState(rd.hardState);
    this.send(rd.messagesAfterPersist);
    if (rd.snapshot !== undefined) {
      r.stateMachine = rd.snapshot.data.byteLength > 0 ? (JSON.parse(text(rd.snapshot.data)) as string[]) : [];
      r.appliedIndex = rd.snapshot.metadata.index;
      r.confState = rd.snapshot.metadata.confState;
      this.checkApplied(r, rd.snapshot.metadata.index, rd.snapshot.metadata.term, undefined);
    }
    for (const e of rd.committedEntries) this.apply(r, e);
    r.readStates.push(...rd.readStates);
    r.droppedReads.push(...rd.droppedReads);
    r.node.advance();
    this.checkElectionSafety();
    return rd;
  }

  private apply(r: Replica, e: Entry): void {
    if (e.index !== r.appliedIndex + 1) {
      throw new Error(`replica ${r.id} applies entry ${e.index} after ${r.appliedIndex}: a gap or a repeat`);
    }
    this.checkApplied(r, e.index, e.term, e);
    r.appliedIndex = e.index;
    if (e.type === 'confChange') {
      r.confState = r.node.applyConfChange(decodeConfChange(e.data));
      r.confHistory.push(r.confState);
    }
    else if (e.data.byteLength > 0) r.stateMachine.push(text(e.data));
  }

  /** State Machine Safety: whatever was applied at an index anywhere is what everyone applies there. */
  private checkApplied(r: Replica, index: LogIndex, term: Term, e: Entry | undefined): void {
    const identity = e === undefined ? undefined : `${e.term}/${e.type}/${text(e.data)}`;
    const seen = this.appliedAt.get(index);
    if (identity === undefined) {
      // A snapshot: only its term is known; compare against the term of what was applied there.
      if (seen !== undefined && !seen.startsWith(`${term}/`)) {
        throw new Error(`replica ${r.id} restored a snapshot at ${index} term ${term}, but ${seen} was applied there`);
      }
      return;
    }
    if (seen === undefined) this.appliedAt.set(index, identity);
    else if (seen !== identity) throw new Error(`replica ${r.id} applied ${identity} at ${index}, another replica applied ${seen}`);
  }

  /** Election Safety (§5.2): at most one leader per term, over the whole run. */
  private checkElectionSafety(): void {
    for (const r of this.replicas.values()) {
      const raft = r.node.raft;
      if (raft.role !== 'leader') continue;
      const known = this.leaderOfTerm.get(raft.term);
      if (known === undefined) this.leaderOfTerm.set(raft.term, raft.id);
      else if (known !== raft.id) throw new Error(`two leaders in term ${raft.term}: ${known} and ${raft.id}`);
    }
  }

  // ---------------------------------------------------------------------------
  // Views

  /** The replica's whole log (persisted and unstable) from its first available index. */
  entries(id: number): Entry[] {
    const log = this.raft(id).log;
    const first = log.firstIndex();
    return log.slice(first, log.lastIndex() + 1, Number.MAX_SAFE_INTEGER);
  }

  /** Terms of the replica's log from index 1; compacted entries show as 0. */
  terms(id: number): Term[] {
    const log = this.raft(id).log;
    const out: Term[] = [];
    for (let i = 1; i <= log.lastIndex(); i++) out.push(log.term(i) ?? 0);
    return out;
  }

  /** Append rejections sent by `from` (to anyone) in the trace. */
  rejections(from: number): Message[] {
    return this.sent((m) => m.type === 'appendResponse' && m.reject && m.from === from);
  }
}

/** A conf change of single steps, e.g. `confChange('auto', ['addNode', 4], ['removeNode', 1])`. */
export function confChange(transition: ConfChange['transition'], ...changes: [ConfChange['changes'][number]['type'], number][]): ConfChange {
  return { transition, changes: changes.map(([type, id]) => ({ type, nodeId: nodeId(id) })) };
}

/** A compact, stable rendering of a message for failure output and scenario scripts. */
export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'append':
      return `${head} index=${m.index} logTerm=${m.logTerm} commit=${m.commit} entries=[${m.entries.map((e) => `${e.term}/${e.index}${e.type === 'confChange' ? 'cc' : ''}`).join(' ')}]`;
    case 'appendResponse':
      return m.reject ? `${head} index=${m.index} reject hint=${m.rejectHint}/${m.logTerm}` : `${head} index=${m.index}`;
    case 'vote':
    case 'preVote':
      return `${head} index=${m.index} logTerm=${m.logTerm}${m.transfer ? ' transfer' : ''}`;
    case 'voteResponse':
    case 'preVoteResponse':
      return `${head}${m.reject ? ' reject' : ''}`;
    case 'heartbeat':
      return `${head} commit=${m.commit} round=${m.round}`;
    case 'heartbeatResponse':
      return `${head} round=${m.round}`;
    case 'snapshot':
      return `${head} snapshot=${m.snapshot.metadata.term}/${m.snapshot.metadata.index}`;
    case 'propose':
      return `${head} entries=${m.entries.length}`;
    case 'readIndex':
      return `${head} contexts=[${m.contexts.join(' ')}]`;
    case 'readIndexResponse':
      return `${head} index=${m.index} contexts=[${m.contexts.join(' ')}]`;
    case 'transferLeader':
      return `${head} transferee=${m.transferee}`;
    default:
      return head;
  }
}
