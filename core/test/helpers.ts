// Test helpers shared by the core's tests: building replicas over MemoryStorage
// and a synchronous in-memory network in the style of etcd-raft's raft_test.go.
import { MemoryStorage } from '../src/log/storage.js';
import { Raft, type RaftConfig } from '../src/raft.js';
import { RawNode } from '../src/raw-node.js';
import { SeededRng } from '../src/rng.js';
import { type ConfState, type Message, type NodeId, nodeId } from '../src/types.js';

export const ids = (...ns: number[]): NodeId[] => ns.map(nodeId);

export function storageWith(options: { voters: number[]; learners?: number[] }): MemoryStorage {
  const s = new MemoryStorage();
  const confState: ConfState = {
    voters: ids(...options.voters),
    votersOutgoing: [],
    learners: ids(...(options.learners ?? [])),
    learnersNext: [],
    autoLeave: false,
  };
  s.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
  return s;
}

export function newRaft(
  id: number,
  options: { voters?: number[]; learners?: number[]; storage?: MemoryStorage; election?: number; heartbeat?: number; seed?: number } & Partial<RaftConfig> = {},
): Raft {
  const storage = options.storage ?? storageWith({ voters: options.voters ?? [id], learners: options.learners ?? [] });
  return new Raft({
    checkQuorum: false,
    preVote: false,
    ...options,
    id: nodeId(id),
    storage,
    rng: new SeededRng(options.seed ?? id),
    electionTimeoutTicks: options.election ?? 10,
    heartbeatIntervalTicks: options.heartbeat ?? 1,
  });
}

/** Takes every outbound message (both immediate and after-persist), as etcd's readMessages. */
export function readMessages(r: Raft): Message[] {
  const out = [...r.msgs, ...r.msgsAfterPersist];
  r.msgs = [];
  r.msgsAfterPersist = [];
  return out;
}

/**
 * Persists everything unstable into the replica's MemoryStorage and lets the
 * leader count itself, as a shell does between ready() and advance().
 */
export function persist(r: Raft): void {
  const storage = r.log.storage as MemoryStorage;
  const snap = r.log.unstable.snapshot;
  if (snap !== undefined) {
    storage.applySnapshot(snap);
    r.log.stableSnapTo(snap.metadata.index);
  }
  const entries = [...r.log.unstableEntries()];
  if (entries.length > 0) {
    storage.append(entries);
    const last = entries[entries.length - 1]!;
    r.log.stableTo(last.index, last.term);
    r.onPersisted(last.index, last.term);
  }
  storage.setHardState(r.hardState());
}

export const encoder = new TextEncoder();
export const bytes = (s: string): Uint8Array => encoder.encode(s);
export const text = (b: Uint8Array): string => new TextDecoder().decode(b);

/**
 * A synchronous network of Raft replicas: `send` delivers messages breadth-first
 * until quiet, persisting each replica's writes before its after-persist
 * messages leave. Links can be cut and messages of a type ignored.
 */
export class Network {
  readonly peers = new Map<NodeId, Raft>();
  private readonly dropped = new Set<string>();
  private readonly ignored = new Set<Message['type']>();

  constructor(rafts: Raft[]) {
    for (const r of rafts) this.peers.set(r.id, r);
  }

  static of(count: number, configure: (id: number, voters: number[]) => Raft = (id, voters) => newRaft(id, { voters })): Network {
    const voters = Array.from({ length: count }, (_, i) => i + 1);
    return new Network(voters.map((id) => configure(id, voters)));
  }

  get(id: number): Raft {
    const r = this.peers.get(nodeId(id));
    if (r === undefined) throw new Error(`no peer ${id}`);
    return r;
  }

  cut(a: number, b: number): void {
    this.dropped.add(`${a}->${b}`);
    this.dropped.add(`${b}->${a}`);
  }

  isolate(id: number): void {
    for (const other of this.peers.keys()) if (other !== id) this.cut(id, other);
  }

  ignore(type: Message['type']): void {
    this.ignored.add(type);
  }

  recover(): void {
    this.dropped.clear();
    this.ignored.clear();
  }

  private filter(messages: Message[]): Message[] {
    return messages.filter((m) => !this.dropped.has(`${m.from}->${m.to}`) && !this.ignored.has(m.type) && this.peers.has(m.to));
  }

  /** Steps the messages and everything they cause until the network is quiet. */
  send(...messages: Message[]): void {
    let queue = [...messages];
    let steps = 0;
    while (queue.length > 0) {
      if (++steps > 100_000) throw new Error('network did not quiesce');
      const m = queue.shift()!;
      const r = this.peers.get(m.to);
      if (r === undefined) continue;
      try {
        r.step(m);
      } catch (err) {
        if ((err as { code?: string }).code !== 'PROPOSAL_DROPPED') throw err;
      }
      persist(r);
      queue.push(...this.filter(readMessages(r)));
      // Leaders' self-acks may produce more messages.
      for (const peer of this.peers.values()) if (peer !== r) {
        const more = readMessages(peer);
        if (more.length > 0) queue.push(...this.filter(more));
      }
    }
  }

  /** Elects `id` by a hup. */
  campaign(id: number): void {
    this.send({ type: 'hup', from: nodeId(id), to: nodeId(id), term: 0, transfer: false });
  }

  propose(id: number, data: string): void {
    this.send({ type: 'propose', from: nodeId(id), to: nodeId(id), term: 0, entries: [{ term: 0, index: 0, type: 'normal', data: bytes(data) }] });
  }
}

export function newRawNode(id: number, options: { voters: number[]; seed?: number } & Partial<RaftConfig>): RawNode {
  return new RawNode({
    checkQuorum: true,
    preVote: true,
    ...options,
    id: nodeId(id),
    storage: options.storage ?? storageWith({ voters: options.voters }),
    rng: new SeededRng(options.seed ?? id),
  });
}
