// Three RawNodes from @flotilla/core, each with its own NodeStore in its own
// directory, driven by a small loop that follows the Ready contract
// (core/README.md): send messages, persist durably, send messagesAfterPersist,
// apply, advance. Snapshots travel as readSnapshot chunks into a
// SnapshotInstaller on the receiver. The last scenarios run it under seeded
// faults (drops, delays, reordering, held Readys, restarts, compaction):
// the real storage under the interleavings the test package's simulation
// gives its in-memory shell.
import {
  ProposalDroppedError,
  RawNode,
  SeededRng,
  decodeConfChange,
  nodeId,
  type ConfState,
  type Message,
  type NodeId,
  type Ready,
  type SnapshotMessage,
} from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { KvStateMachine, isBatchResult } from '../src/kv/state-machine.js';
import { decodeCommand, encodeCommand, type KvResult } from '../src/kv/command.js';
import type { NodeStore } from '../src/storage/node-store.js';
import type { RangeBounds } from '../src/storage/codec.js';
import { SnapshotInstaller } from '../src/snapshot/installer.js';
import { readSnapshot } from '../src/snapshot/reader.js';
import { SHARD, bytes, closeStore, confState, openStore, tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

/** The shard owns the whole key space (keys are non-empty, so 0x00 is the smallest). */
const BOUNDS: RangeBounds = { start: Uint8Array.of(0x00), end: null };
const VOTERS = [1, 2, 3];
const SEED = 20_240_611;
/** Rounds of the loop without progress before a scenario step is declared stuck. */
const SETTLE_ROUNDS_MAX = 10_000;
const TICKS_MAX = 500;

interface Replica {
  readonly id: NodeId;
  readonly dir: string;
  store: NodeStore;
  node: RawNode;
  /** A snapshot's chunks staged on delivery, installed when the Ready carrying the snapshot is handled. */
  installer: SnapshotInstaller | undefined;
}

class Cluster {
  readonly replicas = new Map<NodeId, Replica>();
  readonly down = new Set<NodeId>();
  private queue: Message[] = [];
  private readonly chunksOf = new WeakMap<SnapshotMessage, Uint8Array[]>();
  /** Apply results by index, as reported on the node that proposed. */
  readonly results = new Map<number, KvResult>();
  snapshotsSent = 0;
  snapshotsInstalled = 0;
  /** Snapshot messages to this node stay in flight (in `parked`) until the test releases them. */
  parkSnapshotsTo: NodeId | undefined;
  readonly parked: Message[] = [];
  /** Replicas whose Ready is not handled: their RawNode steps what arrives, nothing is written or sent. */
  readonly held = new Set<NodeId>();
  /**
   * Seeded faults, off when undefined: each round every message may be dropped (a dropped snapshot is
   * reported failed to its sender, as a broken stream is) or delayed a round, the rest arrive in a
   * shuffled order, and each replica's Ready may wait a round while its RawNode steps more.
   */
  faults: { readonly rng: SeededRng; readonly dropChance: number; readonly delayChance: number; readonly holdChance: number } | undefined;
  /** Per key, the highest command number a leader applied successfully (acknowledged to its client). */
  readonly ackedMax = new Map<string, number>();

  static async start(): Promise<Cluster> {
    const cluster = new Cluster();
    for (const id of VOTERS.map(nodeId)) {
      const dir = tempDir();
      const store = await openStore(dir, id);
      await store.createShard(SHARD, { confState: confState({ voters: VOTERS }) });
      cluster.replicas.set(id, { id, dir, store, node: Cluster.rawNode(id, store), installer: undefined });
    }
    return cluster;
  }

  private static rawNode(id: NodeId, store: NodeStore): RawNode {
    const storage = store.storage(SHARD);
    return new RawNode({ id, storage, applied: storage.applied, rng: new SeededRng(SEED + id), electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 });
  }

  get(id: number): Replica {
    return this.replicas.get(nodeId(id))!;
  }

  live(): Replica[] {
    return [...this.replicas.values()].filter((r) => !this.down.has(r.id));
  }

  leader(): Replica | undefined {
    return this.live().find((r) => r.node.status().softState.role === 'leader');
  }

  /** Stops a replica as a crash would between two loop rounds: its store closes, its RawNode is dropped. */
  async stop(id: number): Promise<void> {
    const r = this.get(id);
    this.down.add(r.id);
    r.installer = undefined;
    await closeStore(r.store);
  }

  /** Restarts from what is on disk: a new NodeStore and a new RawNode with applied = storage.applied. */
  async restart(id: number): Promise<void> {
    const r = this.get(id);
    if (!this.down.has(r.id)) await closeStore(r.store);
    r.store = await openStore(r.dir, r.id);
    r.node = Cluster.rawNode(r.id, r.store);
    this.down.delete(r.id);
  }

  /** One pass: every live replica's Ready handled in contract order, then the network delivered. Returns whether anything happened. */
  async round(): Promise<boolean> {
    let busy = false;
    const f = this.faults;
    for (const r of this.live()) {
      if (!r.node.hasReady() || this.held.has(r.id)) continue;
      busy = true;
      if (f?.rng.chance(f.holdChance) === true) continue;
      await this.handleReady(r, r.node.ready());
    }
    const inbox = this.queue;
    this.queue = [];
    if (f !== undefined) {
      for (let i = inbox.length - 1; i > 0; i--) {
        const j = f.rng.intBelow(i + 1);
        [inbox[i], inbox[j]] = [inbox[j]!, inbox[i]!];
      }
    }
    for (const m of inbox) {
      if (m.type === 'snapshot' && m.to === this.parkSnapshotsTo) {
        this.parked.push(m);
        continue;
      }
      busy = true;
      if (f !== undefined && f.rng.chance(f.dropChance)) {
        if (m.type === 'snapshot') this.snapshotFailed(m);
        continue;
      }
      if (f !== undefined && f.rng.chance(f.delayChance)) {
        this.queue.push(m);
        continue;
      }
      await this.deliver(m);
    }
    return busy;
  }

  private async handleReady(r: Replica, rd: Ready): Promise<void> {
    // 1. Messages that do not depend on this Ready's writes.
    this.send(r, rd.messages);
    // 2. Durable writes: the snapshot first, then entries and hard state in one group commit.
    if (rd.snapshot !== undefined) {
      const installer = r.installer;
      expect(installer, `node ${r.id} restored a snapshot whose chunks never arrived`).toBeDefined();
      const header = await installer!.install(rd.hardState ?? r.store.storage(SHARD).initialState().hardState);
      expect({ index: header.index, term: header.term }).toEqual({ index: rd.snapshot.metadata.index, term: rd.snapshot.metadata.term });
      r.installer = undefined;
      this.snapshotsInstalled++;
    }
    if (rd.entries.length > 0 || rd.hardState !== undefined) {
      await r.store.persist([{ shardId: SHARD, entries: rd.entries, hardState: rd.hardState }]);
    }
    // 3. Votes and acknowledgements promise what was just written.
    this.send(r, rd.messagesAfterPersist);
    // 4. Apply: conf changes through the RawNode, everything through the state machine in one transaction.
    if (rd.committedEntries.length > 0) {
      let conf: ConfState | undefined;
      for (const e of rd.committedEntries) if (e.type === 'confChange') conf = r.node.applyConfChange(decodeConfChange(e.data));
      const results = await new KvStateMachine(r.store).apply([{ shardId: SHARD, entries: rd.committedEntries, confState: conf }]);
      if (r.node.status().softState.role === 'leader') {
        // This harness proposes one command per entry: no batch entries, so every result is a single one.
        const applied = new Map<number, KvResult>();
        for (const [index, result] of results.get(SHARD) ?? []) {
          if (isBatchResult(result)) throw new Error(`entry ${index} applied as a batch`);
          applied.set(index, result);
          this.results.set(index, result);
        }
        for (const e of rd.committedEntries) {
          if (e.type !== 'normal' || e.data.length === 0 || applied.get(e.index)?.ok !== true) continue;
          const c = decodeCommand(e.index, e.data);
          if (c.op !== 'put') continue;
          const key = Buffer.from(c.key).toString();
          this.ackedMax.set(key, Math.max(this.ackedMax.get(key) ?? 0, commandNumberOf(c.value)));
        }
      }
    }
    r.node.advance();
  }

  private send(from: Replica, messages: readonly Message[]): void {
    for (const m of messages) {
      if (m.type === 'snapshot') {
        // The snapshot's data leaves with it, read from the sender's store at the snapshot's point.
        const chunks = [...readSnapshot(from.store, SHARD, BOUNDS)];
        this.chunksOf.set(m, chunks);
        this.snapshotsSent++;
      }
      this.queue.push(m);
    }
  }

  private async deliver(m: Message): Promise<void> {
    const to = this.replicas.get(m.to);
    if (to === undefined || this.down.has(m.to) || this.down.has(m.from)) {
      // Dropped (node 4 is a learner with no replica); a snapshot's sender hears its stream broke.
      if (m.type === 'snapshot') this.snapshotFailed(m);
      return;
    }
    if (m.type !== 'snapshot') return to.node.step(m);
    // As ShardCore does: a snapshot accepted but not installed yet owns the staging area, so another
    // is refused; one Raft does not take is cleared from staging.
    if (to.installer !== undefined) return this.snapshotFailed(m);
    const installer = new SnapshotInstaller(to.store, SHARD);
    for (const chunk of this.chunksOf.get(m)!) await installer.addChunk(chunk);
    to.node.step(m);
    if (to.node.raft.log.unstable.snapshot?.metadata.index === m.snapshot.metadata.index) to.installer = installer;
    else await installer.clear();
    this.get(m.from).node.reportSnapshot(to.id, 'finished');
  }

  private snapshotFailed(m: SnapshotMessage): void {
    if (!this.down.has(m.from)) this.get(m.from).node.reportSnapshot(m.to, 'failed');
  }

  /** Puts messages back in flight (parked ones, or ones a test made). */
  release(messages: readonly Message[]): void {
    this.queue.push(...messages);
  }

  /** Rounds until nothing is left to do (no Ready, no message in flight). */
  async settle(): Promise<void> {
    for (let i = 0; i < SETTLE_ROUNDS_MAX; i++) {
      if (!(await this.round())) return;
    }
    throw new Error(`cluster did not settle within ${SETTLE_ROUNDS_MAX} rounds`);
  }

  async tickUntil(done: () => boolean, what: string): Promise<void> {
    for (let t = 0; t < TICKS_MAX; t++) {
      await this.settle();
      if (done()) return;
      for (const r of this.live()) r.node.tick();
    }
    throw new Error(`${what} did not happen within ${TICKS_MAX} ticks`);
  }

  /** Proposes on the leader and waits until every live replica applied it. */
  async proposeAndApply(payloads: readonly Uint8Array[]): Promise<void> {
    const leader = this.leader();
    expect(leader, 'no leader to propose to').toBeDefined();
    try {
      leader!.node.proposeBatch(payloads);
    } catch (err) {
      if (err instanceof ProposalDroppedError) throw new Error(`proposal dropped: ${err.reason}`);
      throw err;
    }
    const target = leader!.node.status().lastIndex;
    await this.tickUntil(() => this.live().every((r) => r.store.storage(SHARD).applied >= target), `applying up to ${target}`);
  }
}

/** The command number a put's value carries (`value-<i>-…`). */
function commandNumberOf(value: Uint8Array): number {
  return Number(Buffer.from(value).toString().split('-')[1]);
}

/** Put i writes `key-(i mod 150)` (so later puts overwrite earlier ones); every 17th command is a delete. */
function command(i: number): Uint8Array {
  const key = bytes(`key-${String(i % 150).padStart(3, '0')}`);
  if (i % 17 === 16) return encodeCommand({ op: 'delete', key });
  return encodeCommand({ op: 'put', key, value: bytes(`value-${i}-${'x'.repeat(i % 40)}`) });
}

function dataOf(store: NodeStore): string[] {
  const kv = new KvStateMachine(store);
  return [...kv.scan({ start: BOUNDS.start, limit: Number.MAX_SAFE_INTEGER })].map((r) => `${r.key.toString()}=${r.value.toString()}@${r.version}`);
}

/** What replicas that applied the same log must agree on, and what a reopened store must still hold. */
function stateOf(r: Replica) {
  const s = r.store.storage(SHARD);
  return { applied: s.applied, last: s.lastIndex(), commit: s.initialState().hardState.commit, conf: s.initialState().confState, data: dataOf(r.store) };
}

/** Log matching (§5.3): wherever every replica's log holds an index, they hold the same term there. */
function expectLogsMatch(replicas: readonly Replica[]): void {
  const first = Math.max(...replicas.map((r) => r.store.storage(SHARD).firstIndex()));
  const last = Math.min(...replicas.map((r) => r.store.storage(SHARD).lastIndex()));
  const termsOf = (r: Replica) => Array.from({ length: Math.max(0, last - first + 1) }, (_, i) => r.store.storage(SHARD).term(first + i));
  for (const r of replicas.slice(1)) expect(termsOf(r), `node ${r.id}'s log against node ${replicas[0]!.id}'s`).toEqual(termsOf(replicas[0]!));
}

describe('Raft over LMDB', () => {
  it('elects, commits 200 commands, compacts, and a restarted follower catches up by snapshot to identical data', async () => {
    const cluster = await Cluster.start();
    cluster.get(1).node.campaign();
    await cluster.tickUntil(() => cluster.leader() !== undefined, 'an election');
    expect(cluster.leader()!.id).toBe(1);

    let proposed = 0;
    const proposeCommands = async (count: number) => {
      for (let end = proposed + count; proposed < end; ) {
        const batch: Uint8Array[] = [];
        for (let i = 0; i < 10 && proposed < end; i++) batch.push(command(proposed++));
        await cluster.proposeAndApply(batch);
      }
    };

    await proposeCommands(100);
    // Node 3 goes down; the others change the configuration and go on without it.
    await cluster.stop(3);
    cluster.leader()!.node.proposeConfChange({ changes: [{ type: 'addLearner', nodeId: nodeId(4) }], transition: 'auto' });
    const confIndex = cluster.leader()!.node.status().lastIndex;
    await cluster.tickUntil(() => cluster.live().every((r) => r.store.storage(SHARD).applied >= confIndex), 'the conf change');
    await proposeCommands(50);
    // Node 2 restarts from its store (a follower restart with nothing missing); commits need it again at once.
    await cluster.restart(2);
    await proposeCommands(50);
    expect(proposed).toBe(200);

    const leader = cluster.get(1);
    const compactTo = leader.store.storage(SHARD).applied;
    await leader.store.compact(SHARD, compactTo);
    await cluster.get(2).store.compact(SHARD, cluster.get(2).store.storage(SHARD).applied - 20);
    expect(leader.store.storage(SHARD).firstIndex()).toBe(compactTo + 1);

    // Node 3 restarts far behind the leader's first index: only a snapshot can catch it up.
    await cluster.restart(3);
    const lastBeforeCatchUp = cluster.get(3).store.storage(SHARD).lastIndex();
    expect(lastBeforeCatchUp).toBeLessThan(compactTo);
    await cluster.tickUntil(() => cluster.get(3).store.storage(SHARD).applied >= compactTo, 'node 3 catching up');
    expect(cluster.snapshotsSent).toBeGreaterThanOrEqual(1);
    expect(cluster.snapshotsInstalled).toBe(1);
    expect(cluster.get(3).store.storage(SHARD).firstIndex()).toBeGreaterThan(lastBeforeCatchUp + 1); // its log restarts after the snapshot point

    // The log goes on after the snapshot point on every replica.
    await proposeCommands(20);

    // Every put and delete was applied successfully on the leader.
    const outcomes = [...cluster.results.values()].filter((r) => !('membership' in r));
    expect(outcomes).toHaveLength(220);
    expect(outcomes.every((r) => r.ok)).toBe(true);

    const replicas = [1, 2, 3].map((id) => cluster.get(id));
    const [s1, s2, s3After] = replicas.map(stateOf);
    expect(s1!.data.length).toBeGreaterThan(100);
    expect(s1!.conf).toEqual({ ...confState({ voters: VOTERS, learners: [4] }) });
    expect(s2).toEqual(s1);
    expect(s3After).toEqual(s1);
    expectLogsMatch(replicas);

    // And all of it is on disk: reopened stores hold the same.
    for (const id of [1, 2, 3]) await cluster.restart(id);
    expect(replicas.map((r) => cluster.get(r.id)).map(stateOf)).toEqual([s1, s1, s1]);
  });
});

describe('a snapshot and the entries after it in one Ready', () => {
  it('installs the snapshot committed at its own point, then appends the entries and commit the same Ready carries', async () => {
    const cluster = await Cluster.start();
    cluster.get(1).node.campaign();
    await cluster.tickUntil(() => cluster.leader() !== undefined, 'an election');
    const leader = cluster.get(1);
    let proposed = 0;
    /** Proposes `count` commands on the leader and waits until the replicas in `on` applied them. */
    const propose = async (count: number, on: readonly number[]) => {
      leader.node.proposeBatch(Array.from({ length: count }, () => command(proposed++)));
      const target = leader.node.status().lastIndex;
      await cluster.tickUntil(() => on.every((id) => cluster.get(id).store.storage(SHARD).applied >= target), `applying up to ${target} on ${on.join(', ')}`);
    };
    await propose(30, [1, 2, 3]);
    await cluster.stop(3);
    await propose(30, [1, 2]);
    await leader.store.compact(SHARD, leader.store.storage(SHARD).applied);

    // Node 3 comes back behind the compacted log; the leader's snapshot to it stays in flight while the
    // leader commits more with node 2, so the append that follows the snapshot carries entries past it.
    cluster.parkSnapshotsTo = nodeId(3);
    await cluster.restart(3);
    await cluster.tickUntil(() => cluster.parked.length > 0, 'a snapshot sent to node 3');
    await propose(5, [1, 2]);
    // The snapshot arrives and the leader hears it finished; then a heartbeat response node 3 sent
    // before the snapshot reaches the leader late, so it sends the rest at once, and node 3 steps that
    // append before its next Ready is taken (what crashed a node in the placement test: its core ran
    // other tasks between stepping the snapshot and the round that installs it).
    cluster.held.add(nodeId(3));
    cluster.parkSnapshotsTo = undefined;
    cluster.release(cluster.parked.splice(0));
    await cluster.settle();
    const term = leader.node.status().hardState.term;
    leader.node.step({ type: 'heartbeatResponse', from: nodeId(3), to: leader.id, term, round: 0 });
    await cluster.settle();
    const node3 = cluster.get(3);
    const snapshotIndex = node3.installer?.stagedHeader?.index;
    expect(snapshotIndex, 'the snapshot was staged on node 3').toBeDefined();
    expect(node3.node.status().hardState.commit, 'node 3 committed past the snapshot before its Ready').toBeGreaterThan(snapshotIndex!);
    expect(node3.node.status().lastIndex).toBe(leader.node.status().lastIndex);

    // Now the Ready: snapshot, entries after it, a commit among them — installed, written, applied.
    cluster.held.delete(nodeId(3));
    await cluster.settle();
    expect(cluster.snapshotsInstalled).toBe(1);
    expect(node3.store.storage(SHARD).firstIndex()).toBe(snapshotIndex! + 1);
    await propose(5, [1, 2, 3]);
    const s1 = stateOf(leader);
    expect(s1.data.length).toBeGreaterThan(50);
    expect(stateOf(node3)).toEqual(s1);
    await cluster.restart(3);
    expect(stateOf(cluster.get(3))).toEqual(s1);
  });
});

describe('Raft over LMDB under seeded faults', () => {
  /** Steps of proposing, ticking and delivering per seed; each step may also stop or restart a node, or compact a log. */
  const STEPS = 250;
  const put = (i: number) => encodeCommand({ op: 'put', key: bytes(`key-${String(i % 50).padStart(2, '0')}`), value: bytes(`value-${i}`) });

  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: drops, delays, reordering, held Readys, restarts and compaction lose no acknowledged write, and the replicas converge`, async () => {
      const rng = new SeededRng(SEED * 7 + seed);
      const cluster = await Cluster.start();
      cluster.faults = { rng: rng.fork(), dropChance: 0.25, delayChance: 0.2, holdChance: 0.3 };
      let proposed = 0;
      let restarts = 0;
      let compactions = 0;
      for (let step = 0; step < STEPS; step++) {
        const leader = cluster.leader();
        if (leader !== undefined && rng.chance(0.7)) {
          try {
            leader.node.proposeBatch(Array.from({ length: 1 + rng.intBelow(5) }, () => put(proposed++)));
          } catch (err) {
            if (!(err instanceof ProposalDroppedError)) throw err; // e.g. a leader transfer in progress: the client would retry
          }
        }
        for (const r of cluster.live()) r.node.tick();
        await cluster.settle();
        const roll = rng.nextFloat();
        if (roll < 0.05) {
          // One node at a time stops (as a crash between rounds would) and later comes back from its store.
          const id = 1 + rng.intBelow(3);
          if (cluster.down.has(nodeId(id))) {
            await cluster.restart(id);
            restarts++;
          } else if (cluster.down.size === 0) await cluster.stop(id);
        } else if (roll < 0.1) {
          // A replica compacts its log up to what it applied: a replica behind that needs a snapshot.
          const live = cluster.live();
          const r = live[rng.intBelow(live.length)]!;
          const s = r.store.storage(SHARD);
          if (s.applied > s.firstIndex()) {
            await r.store.compact(SHARD, s.applied);
            compactions++;
          }
        }
      }

      // Heal: no faults, every node up; one more write must commit and every replica apply it.
      cluster.faults = undefined;
      for (const id of [1, 2, 3]) if (cluster.down.has(nodeId(id))) await cluster.restart(id);
      await cluster.tickUntil(() => cluster.leader() !== undefined, 'a leader after healing');
      await cluster.proposeAndApply([put(proposed++)]);

      const replicas = [1, 2, 3].map((id) => cluster.get(id));
      const [s1, s2, s3] = replicas.map(stateOf);
      expect(s2).toEqual(s1);
      expect(s3).toEqual(s1);
      expectLogsMatch(replicas);
      // No acknowledged write lost: each key holds its last acknowledged put or a later one (log order is proposal order).
      const values = new Map(s1!.data.map((line) => [line.slice(0, line.indexOf('=')), Number(line.slice(line.indexOf('=') + 1).split('@')[0]!.split('-')[1])]));
      expect(cluster.ackedMax.size).toBeGreaterThan(10);
      for (const [key, acked] of cluster.ackedMax) expect(values.get(key), `${key}: acknowledged put ${acked}`).toBeGreaterThanOrEqual(acked);
      const acknowledged = [...cluster.results.values()].filter((r) => !('membership' in r) && r.ok).length;
      const terms = cluster.leader()!.node.status().hardState.term;
      console.log(`raft over lmdb, seed ${seed}: ${proposed} proposed, ${acknowledged} acknowledged, term ${terms} at the end, ${restarts} restarts, ${compactions} compactions, ${cluster.snapshotsInstalled} snapshots installed`);
    }, 120_000);
  }
});
