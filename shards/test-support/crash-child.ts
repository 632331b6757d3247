// Crash-test child: `node dist-support/crash-child.js <dir> <log|snapshot|receive> <seed>`.
//
// Writes a deterministic workload (workload.ts) into a NodeStore at <dir>
// until it is killed, announcing every durable step on stdout (protocol.ts).
// It keeps no state of its own between runs: each start continues from
// whatever the store holds, as a restarted node would.
import { writeSync } from 'node:fs';
import { join } from 'node:path';
import { NONE, SeededRng, assert, type GroupId, type HardState, type NodeId } from '@flotilla/core';
import { KvStateMachine, NodeStore, SnapshotInstaller, readSnapshot, type ApplyBatch, type ShardStorage, type ShardWrite } from '@flotilla/shards';
import { formatLine, type ApplyTarget, type Line, type WriteIntent } from './protocol.js';
import { RECEIVE_LAYOUT, WORKLOADS, entryDataOf, neighbourRecords, shardRange, type CrashMode, type WorkloadSpec } from './workload.js';

/** A child the parent forgot must not run forever: it exits on its own after this long. */
const CHILD_LIFETIME_MS_MAX = 120_000;
/** Shards written by the log workload; several, so one persist spans shards (group commit). */
const LOG_SHARD_COUNT = 4;
/** Entries per shard write in the log workload; up to 4 × 16 per commit. */
const LOG_WRITE_ENTRY_COUNT_MAX = 16;
/** Chance that a round applies committed entries without writing any log (the Host's later apply segments). */
const LOG_APPLY_ONLY_PROBABILITY = 0.15;
/** Chance per round of compacting one shard up to a random applied index. */
const LOG_COMPACT_PROBABILITY = 0.15;
/** Log tail records between checkpoints in log mode: small, so many kills fall in a round that checkpoints. */
const LOG_TAIL_RECORDS_MAX = 6;
/** Snapshot mode: the shard that receives snapshots and the bystander whose range must never change. */
const SNAPSHOT_SHARD = 1;
const BYSTANDER_SHARD = 2;
const BYSTANDER_ENTRY_COUNT = 30;
/** Snapshot mode uses one term throughout, so the source's log and the target's are the same pure log. */
const SNAPSHOT_MODE_TERM = 1;
/** First snapshot index: by then every key was written, so a snapshot spans more than one chunk. */
const SNAPSHOT_INDEX_MIN = 1200;
/** Entries per source commit while the source catches up. */
const SOURCE_BATCH_ENTRY_COUNT_MAX = 256;
const TARGET_NODE = 1;
const SOURCE_NODE = 2;

const emitBuffer = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes lines to fd 1 synchronously: an intent must be in the pipe before
 * the operation it announces can reach the disk, and SIGKILL loses nothing
 * already written to a pipe.
 */
function emit(...lines: Line[]): void {
  const bytes = Buffer.from(lines.map((l) => `${formatLine(l)}\n`).join(''));
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(1, bytes, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(emitBuffer, 0, 0, 1); // pipe full: the parent is busy; wait a millisecond
    }
  }
}

interface ShardView {
  readonly storage: ShardStorage;
  readonly hardState: HardState;
  readonly lastIndex: number;
  readonly snapshotIndex: number;
  readonly applied: number;
}

function view(store: NodeStore, shard: number): ShardView {
  const storage = store.storage(shard as GroupId);
  return {
    storage,
    hardState: storage.initialState().hardState,
    lastIndex: storage.lastIndex(),
    snapshotIndex: storage.firstIndex() - 1,
    applied: storage.applied,
  };
}

function entriesOf(shard: number, from: number, last: number, term: number, spec: WorkloadSpec): ShardWrite['entries'] {
  const entries = [];
  for (let index = from; index <= last; index++) entries.push({ term, index, type: 'normal' as const, data: entryDataOf(shard, index, term, spec) });
  return entries;
}

function hardStateOf(w: WriteIntent): HardState {
  return { term: w.hardState.term, vote: w.hardState.vote as NodeId, commit: w.hardState.commit };
}

/** One shard's entries from applied + 1 to `to`, with the terms its log has once `write` (if any) is persisted. */
function entriesToApply(storage: ShardStorage, to: number, write: WriteIntent | undefined, spec: WorkloadSpec): ShardWrite['entries'] {
  const shard = storage.shardId as number;
  const entries = [];
  for (let index = storage.applied + 1; index <= to; index++) {
    // A write truncates from `from` (above the commit, so above every applied entry) and ends at `last`,
    // at or above the commit it carries: every index up to that commit is in the log after the round.
    const rewritten = write !== undefined && write.from <= write.last && index >= write.from;
    assert(!rewritten || index <= write!.last, () => `shard ${shard}: apply target ${to} beyond the round's last index ${write!.last}`);
    const term = rewritten ? write!.term : storage.term(index);
    entries.push({ term, index, type: 'normal' as const, data: entryDataOf(shard, index, term, spec) });
  }
  return entries;
}

/**
 * One round as the Host makes it (ShardCore.round): the state machine stages
 * its apply, then one NodeStore.persist writes the log entries and hard
 * states and, inside the same transaction (`alsoInTransaction`), the staged
 * apply's data and applied indexes; `committed()` once it returned. Announced
 * as one intent; acknowledged per write and per apply target.
 */
async function roundAnnounced(store: NodeStore, machine: KvStateMachine, writes: readonly WriteIntent[], targets: readonly ApplyTarget[], spec: WorkloadSpec, compact: readonly number[] = []): Promise<void> {
  assert(writes.length > 0 || targets.length > 0, 'a round with nothing to write');
  const batches: ApplyBatch[] = targets.map((t) => {
    const storage = store.storage(t.shard as GroupId);
    return { shardId: t.shard as GroupId, entries: entriesToApply(storage, t.to, writes.find((w) => w.shard === t.shard), spec) };
  });
  const apply = machine.stage(batches);
  // A checkpoint may compact the shards in `compact` to what they applied before this round, as the
  // core lets it compact its quiesced replicas (ShardCore.checkpointCompaction).
  const checkpoint = store.checkpointDue();
  store.setCheckpointCompaction(checkpoint && compact.length > 0 ? (id) => (compact.includes(id) ? store.storage(id).applied : undefined) : undefined);
  emit(checkpoint ? { kind: 'round', writes, targets, checkpoint: true, ...(compact.length > 0 ? { compact } : {}) } : { kind: 'round', writes, targets });
  const shardWrites = writes.map((w): ShardWrite => ({ shardId: w.shard as GroupId, entries: entriesOf(w.shard, w.from, w.last, w.term, spec), hardState: hardStateOf(w) }));
  await store.persist(shardWrites, { alsoInTransaction: () => void apply.write() });
  apply.committed();
  emit(
    ...writes.map((w): Line => {
      const storage = store.storage(w.shard as GroupId);
      return { kind: 'ack', shard: w.shard, lastIndex: storage.lastIndex(), lastTerm: storage.term(storage.lastIndex()), commit: w.hardState.commit };
    }),
    ...targets.map((t): Line => ({ kind: 'applied', shard: t.shard, index: store.storage(t.shard as GroupId).applied })),
  );
}

/** Creates a shard; with `range`, its descriptor says it owns that range at epoch 1 (snapshots check what other shards own). */
async function createAnnounced(store: NodeStore, shard: number, range?: { start: Uint8Array; end: Uint8Array }): Promise<void> {
  emit({ kind: 'create', shard });
  const confState = { voters: [TARGET_NODE as NodeId], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };
  await store.createShard(shard as GroupId, { confState, ...(range === undefined ? {} : { descriptor: [range.start, range.end, 1] }) });
  emit({ kind: 'created', shard });
}

/** One shard's next write in the log workload: append, overwrite an uncommitted suffix, or hard state only. */
function nextLogWrite(rng: SeededRng, shard: number, v: ShardView): WriteIntent {
  const commit = v.hardState.commit;
  let term = Math.max(v.hardState.term, 1);
  let vote = v.hardState.vote === 0 ? 1 : v.hardState.vote;
  let from = v.lastIndex + 1;
  let count: number;
  const roll = rng.nextFloat();
  if (roll < 0.15 && v.lastIndex > commit) {
    // A new leader's log replaces this replica's uncommitted suffix (§5.3).
    term++;
    vote = 1 + rng.intBelow(3);
    from = commit + 1 + rng.intBelow(v.lastIndex - commit);
    count = 1 + rng.intBelow(8);
  } else if (roll < 0.25) {
    // An election or a commit-only update: hard state without entries.
    if (rng.chance(0.5)) {
      term++;
      vote = 1 + rng.intBelow(3);
    }
    count = 0;
  } else {
    count = 1 + rng.intBelow(LOG_WRITE_ENTRY_COUNT_MAX);
  }
  const last = count > 0 ? from + count - 1 : v.lastIndex;
  return { shard, from, last, term, hardState: { term, vote, commit: commit + rng.intBelow(last - commit + 1) } };
}

async function runLog(dir: string, rng: SeededRng): Promise<never> {
  const spec = WORKLOADS.log;
  emit({ kind: 'start' });
  const store = await NodeStore.open({ dir, nodeId: TARGET_NODE, tail: { recordsMax: LOG_TAIL_RECORDS_MAX } });
  const machine = new KvStateMachine(store);
  for (let shard = 1; shard <= LOG_SHARD_COUNT; shard++) {
    if (!store.hasShard(shard as GroupId)) await createAnnounced(store, shard);
  }
  emit({ kind: 'ready' });
  const shards = Array.from({ length: LOG_SHARD_COUNT }, (_, i) => i + 1);
  for (;;) {
    // Most rounds write some shards' logs and apply what is committed, as the Host's first segment does;
    // some only apply, as a checksum segment after the first does. A round may apply entries it writes.
    const writes: WriteIntent[] = [];
    if (!rng.chance(LOG_APPLY_ONLY_PROBABILITY)) {
      const chosen = shards.filter(() => rng.chance(0.6));
      if (chosen.length === 0) chosen.push(shards[rng.intBelow(shards.length)]!);
      for (const shard of chosen) writes.push(nextLogWrite(rng, shard, view(store, shard)));
    }
    const targets: ApplyTarget[] = [];
    for (const shard of shards) {
      const v = view(store, shard);
      const commit = writes.find((w) => w.shard === shard)?.hardState.commit ?? v.hardState.commit;
      if (v.applied < commit && rng.chance(0.8)) targets.push({ shard, to: v.applied + 1 + rng.intBelow(commit - v.applied) });
    }
    // Shards a checkpoint in this round may compact (the Host's quiesced replicas): any of them, about half the time.
    const compact = rng.chance(0.5) ? shards.filter(() => rng.chance(0.5)) : [];
    if (writes.length > 0 || targets.length > 0) await roundAnnounced(store, machine, writes, targets, spec, compact);

    if (rng.chance(LOG_COMPACT_PROBABILITY)) {
      const shard = shards[rng.intBelow(shards.length)]!;
      const v = view(store, shard);
      if (v.applied > v.snapshotIndex) {
        const upTo = v.snapshotIndex + 1 + rng.intBelow(v.applied - v.snapshotIndex);
        emit({ kind: 'compact', shard, upTo });
        await store.compact(shard as GroupId, upTo);
        emit({ kind: 'compacted', shard, upTo });
      }
    }
  }
}

/**
 * The source's shard 1 is the leader's copy of the same pure log the target
 * receives; it is not announced (the parent checks only the target), but it
 * is killed like everything else and must reopen.
 */
async function advanceSource(source: NodeStore, machine: KvStateMachine, target: number, spec: WorkloadSpec, shardNo = SNAPSHOT_SHARD): Promise<void> {
  const shard = shardNo as GroupId;
  for (;;) {
    const storage = source.storage(shard);
    if (storage.applied < storage.initialState().hardState.commit) {
      const entries = storage.entries(storage.applied + 1, storage.initialState().hardState.commit + 1, Number.POSITIVE_INFINITY);
      await machine.apply([{ shardId: shard, entries }]);
      continue;
    }
    if (storage.lastIndex() >= target) return;
    const from = storage.lastIndex() + 1;
    const last = Math.min(target, from + SOURCE_BATCH_ENTRY_COUNT_MAX - 1);
    await source.persist([{ shardId: shard, entries: entriesOf(shardNo, from, last, SNAPSHOT_MODE_TERM, spec), hardState: { term: SNAPSHOT_MODE_TERM, vote: SOURCE_NODE as NodeId, commit: last } }]);
  }
}

async function runSnapshot(dir: string, rng: SeededRng): Promise<never> {
  const spec = WORKLOADS.snapshot;
  emit({ kind: 'start' });
  const target = await NodeStore.open({ dir: join(dir, 'target'), nodeId: TARGET_NODE });
  const source = await NodeStore.open({ dir: join(dir, 'source'), nodeId: SOURCE_NODE });
  const targetMachine = new KvStateMachine(target);
  const sourceMachine = new KvStateMachine(source);
  if (!source.hasShard(SNAPSHOT_SHARD as GroupId)) {
    await source.createShard(SNAPSHOT_SHARD as GroupId, { confState: { voters: [SOURCE_NODE as NodeId], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } });
  }
  for (const shard of [SNAPSHOT_SHARD, BYSTANDER_SHARD]) {
    if (!target.hasShard(shard as GroupId)) await createAnnounced(target, shard, shardRange(shard));
  }
  // The bystander's range is written once and must survive every install next door.
  const bystander = view(target, BYSTANDER_SHARD);
  const bystanderWrites: WriteIntent[] = [];
  if (bystander.lastIndex < BYSTANDER_ENTRY_COUNT) {
    const hardState = { term: SNAPSHOT_MODE_TERM, vote: TARGET_NODE, commit: BYSTANDER_ENTRY_COUNT };
    bystanderWrites.push({ shard: BYSTANDER_SHARD, from: bystander.lastIndex + 1, last: BYSTANDER_ENTRY_COUNT, term: SNAPSHOT_MODE_TERM, hardState });
  }
  const bystanderTargets = bystander.applied < BYSTANDER_ENTRY_COUNT ? [{ shard: BYSTANDER_SHARD, to: BYSTANDER_ENTRY_COUNT }] : [];
  if (bystanderWrites.length > 0 || bystanderTargets.length > 0) await roundAnnounced(target, targetMachine, bystanderWrites, bystanderTargets, spec);
  emit({ kind: 'ready' });

  for (;;) {
    // The target's own log between snapshots: what an install must wipe.
    const localRounds = rng.intBelow(3);
    for (let round = 0; round < localRounds; round++) {
      const v = view(target, SNAPSHOT_SHARD);
      const last = v.lastIndex + 1 + rng.intBelow(20);
      const commit = v.hardState.commit + rng.intBelow(last - v.hardState.commit + 1);
      const hardState = { term: SNAPSHOT_MODE_TERM, vote: TARGET_NODE, commit };
      const targets = commit > v.applied && rng.chance(0.7) ? [{ shard: SNAPSHOT_SHARD, to: v.applied + 1 + rng.intBelow(commit - v.applied) }] : [];
      await roundAnnounced(target, targetMachine, [{ shard: SNAPSHOT_SHARD, from: v.lastIndex + 1, last, term: SNAPSHOT_MODE_TERM, hardState }], targets, spec);
    }

    const v = view(target, SNAPSHOT_SHARD);
    // Above everything either log holds: a kill may have left the source with persisted, unapplied entries.
    const sourceLast = source.storage(SNAPSHOT_SHARD as GroupId).lastIndex();
    const index = Math.max(SNAPSHOT_INDEX_MIN, sourceLast, v.lastIndex) + 1 + rng.intBelow(200);
    await advanceSource(source, sourceMachine, index, spec);

    const range = shardRange(SNAPSHOT_SHARD);
    const chunks = readSnapshot(source, SNAPSHOT_SHARD as GroupId, { start: range.start, end: range.end });
    const installer = new SnapshotInstaller(target, SNAPSHOT_SHARD as GroupId);
    let seq = 0;
    for (let next = chunks.next(); ; next = chunks.next()) {
      if (next.done === true) {
        assert(next.value.index === index, () => `source snapshot at ${next.value.index}, expected ${index}`);
        break;
      }
      emit({ kind: 'stage', shard: SNAPSHOT_SHARD, index, seq });
      await installer.addChunk(next.value);
      emit({ kind: 'staged', shard: SNAPSHOT_SHARD, index, seq });
      seq++;
    }
    // Raft's hard state when it restores the snapshot: at least the snapshot's term (a follower takes
    // the term of the leader's message; with no local rounds since a restart the target may still be at
    // term 0), committed at the snapshot point.
    const current = view(target, SNAPSHOT_SHARD).hardState;
    const term = Math.max(current.term, SNAPSHOT_MODE_TERM);
    const hardState: HardState = { term, vote: term === current.term ? current.vote : NONE, commit: Math.max(current.commit, index) };
    emit({ kind: 'install', shard: SNAPSHOT_SHARD, index, term: SNAPSHOT_MODE_TERM, hardState });
    await installer.install(hardState);
    emit({ kind: 'installed', shard: SNAPSHOT_SHARD, index });

    // Keep the source small: it only needs entries above its last snapshot.
    const sourceStorage = source.storage(SNAPSHOT_SHARD as GroupId);
    if (sourceStorage.applied > sourceStorage.firstIndex()) await source.compact(SNAPSHOT_SHARD as GroupId, sourceStorage.applied);
  }
}

/** Receive mode: chance that a transfer is given up after some chunks (its records cleared), or replaced by a new one. */
const RECEIVE_ABORT_PROBABILITY = 0.2;
const RECEIVE_REPLACE_PROBABILITY = 0.2;
/** A replica waiting for its first snapshot: range epoch 0 (kv/range.ts UNINITIALIZED). */
const EMPTY_DESCRIPTOR = [new Uint8Array(0), new Uint8Array(0), 0];
const EMPTY_CONF = { voters: [], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false };

function isEmptyReplica(store: NodeStore, shard: number): boolean {
  const desc = store.descriptor(shard as GroupId) as unknown[] | undefined;
  return desc !== undefined && desc[2] === 0;
}

/**
 * Receive mode: the receiver, an empty replica, gets the source's range
 * straight into its data (SnapshotInstaller, direct mode) between two
 * neighbours, over and over: once installed it is destroyed and created
 * empty again (a move off the node and back). Some transfers are given up
 * (cleared) or replaced by a new one partway. Nothing but the receiver's
 * range may ever change, and after any kill and reopen no record of an
 * uninstalled transfer may remain (receive-crash.test.ts checks).
 */
async function runReceive(dir: string, rng: SeededRng): Promise<never> {
  const spec = WORKLOADS.receive;
  const { receiver, left, right, ranges } = RECEIVE_LAYOUT;
  const rangeOf = (shard: number) => ranges.get(shard)!;
  emit({ kind: 'start' });
  const target = await NodeStore.open({ dir: join(dir, 'target'), nodeId: TARGET_NODE });
  const source = await NodeStore.open({ dir: join(dir, 'source'), nodeId: SOURCE_NODE });
  const sourceMachine = new KvStateMachine(source);
  if (!source.hasShard(receiver as GroupId)) {
    const { start, end } = rangeOf(receiver);
    await source.createShard(receiver as GroupId, { confState: { ...EMPTY_CONF, voters: [SOURCE_NODE as NodeId] }, descriptor: [start, end, 1] });
  }
  // Setup, each step one transaction, redone from where a kill left it.
  const missing = [left, right].filter((shard) => !target.hasShard(shard as GroupId));
  if (missing.length > 0) {
    await target.createShards(missing.map((shard) => ({ shardId: shard as GroupId, confState: { ...EMPTY_CONF, voters: [TARGET_NODE as NodeId] }, descriptor: [rangeOf(shard).start, rangeOf(shard).end, 1] })));
  }
  if (target.data.get(Buffer.from('k30')) === undefined) {
    const records = neighbourRecords();
    await target.write(() => {
      for (const [key, r] of records) target.data.putSync(Buffer.from(key, 'latin1'), [r.version, r.value]);
    });
  }
  if (!target.hasShard(receiver as GroupId)) await target.createShard(receiver as GroupId, { confState: EMPTY_CONF, descriptor: EMPTY_DESCRIPTOR });
  emit({ kind: 'ready' });

  for (;;) {
    if (!isEmptyReplica(target, receiver)) {
      emit({ kind: 'destroy', shard: receiver });
      const { start, end } = rangeOf(receiver);
      await target.destroyShard(receiver as GroupId, { start, end });
      await target.createShard(receiver as GroupId, { confState: EMPTY_CONF, descriptor: EMPTY_DESCRIPTOR });
      emit({ kind: 'destroyed', shard: receiver });
    }
    const sourceLast = source.storage(receiver as GroupId).lastIndex();
    const index = Math.max(RECEIVE_LAYOUT.indexMin, sourceLast) + 1 + rng.intBelow(200);
    await advanceSource(source, sourceMachine, index, spec, receiver);

    const roll = rng.nextFloat();
    const stopAt = roll < RECEIVE_ABORT_PROBABILITY + RECEIVE_REPLACE_PROBABILITY ? 1 + rng.intBelow(2) : Number.POSITIVE_INFINITY;
    let installer = new SnapshotInstaller(target, receiver as GroupId);
    let seq = 0;
    let aborted = false;
    for (const chunk of readSnapshot(source, receiver as GroupId)) {
      emit({ kind: 'stage', shard: receiver, index, seq });
      await installer.addChunk(chunk);
      emit({ kind: 'staged', shard: receiver, index, seq });
      seq++;
      if (seq !== stopAt) continue;
      if (roll < RECEIVE_ABORT_PROBABILITY) {
        emit({ kind: 'abort', shard: receiver, index });
        await installer.clear();
        emit({ kind: 'aborted', shard: receiver, index });
        aborted = true;
        break;
      }
      // Replaced: a new transfer of the same snapshot from its first chunk (the leader retried).
      installer = new SnapshotInstaller(target, receiver as GroupId);
      seq = 0;
      for (const again of readSnapshot(source, receiver as GroupId)) {
        emit({ kind: 'stage', shard: receiver, index, seq });
        await installer.addChunk(again);
        emit({ kind: 'staged', shard: receiver, index, seq });
        seq++;
      }
      break;
    }
    if (aborted) continue;
    const hardState: HardState = { term: SNAPSHOT_MODE_TERM, vote: NONE, commit: index };
    emit({ kind: 'install', shard: receiver, index, term: SNAPSHOT_MODE_TERM, hardState });
    await installer.install(hardState);
    emit({ kind: 'installed', shard: receiver, index });
    const sourceStorage = source.storage(receiver as GroupId);
    if (sourceStorage.applied > sourceStorage.firstIndex()) await source.compact(receiver as GroupId, sourceStorage.applied);
  }
}

async function main(): Promise<void> {
  const [dir, mode, seedText] = process.argv.slice(2);
  const seed = Number(seedText);
  if (dir === undefined || (mode !== 'log' && mode !== 'snapshot' && mode !== 'receive') || !Number.isSafeInteger(seed)) {
    throw new Error(`usage: crash-child.js <dir> <log|snapshot|receive> <seed>; got ${process.argv.slice(2).join(' ')}`);
  }
  setTimeout(() => {
    process.stderr.write(`crash child ${process.pid} ran ${CHILD_LIFETIME_MS_MAX} ms without being killed; exiting\n`);
    process.exit(3);
  }, CHILD_LIFETIME_MS_MAX);
  const rng = new SeededRng(seed);
  const runs: Record<CrashMode, (dir: string, rng: SeededRng) => Promise<never>> = { log: runLog, snapshot: runSnapshot, receive: runReceive };
  const run = runs[mode as CrashMode];
  await run(dir, rng);
}

main().catch((err: unknown) => {
  process.stderr.write(`crash child failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
