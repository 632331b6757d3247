// Parent side of the crash tests: spawn the child (test-support/crash-child.ts,
// built to dist-support/), SIGKILL it at a seeded moment, reopen its store and
// check the store against what the child acknowledged.
//
// The parent models the store from the child's stdout (test-support/protocol.ts):
// `acked` is the state after every acknowledged operation; `pending` is the one
// operation announced but not acknowledged when the kill came — the one the
// kill interrupted, numbered across the loop. After a kill the store must equal
// `acked` (before it) or `acked` + `pending` (after it: all of it, for every
// shard it touches) — nothing older, nothing in between. The child writes the
// way the Host does: each round is one NodeStore.persist whose transaction
// also holds the state machine's staged apply, so "in between" includes a log
// written without its apply and an apply without its log.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SeededRng } from '@flotilla/core';
import { NodeStore } from '../../src/index.js';
import { ACK_KINDS, INTENT_KINDS, parseLine, type HardStateLine, type Intent, type Line } from '../../test-support/protocol.js';
import { ReplayOracle, WORKLOADS, entryDataOf, keyOf, shardRange, valueOf, type CrashMode, type WorkloadSpec } from '../../test-support/workload.js';

const HERE = dirname(fileURLToPath(import.meta.url));
export const CHILD_ENTRY = resolve(HERE, '../../dist-support/crash-child.js');

/** Kill cycles per test in CI; FLOTILLA_CRASH_CYCLES raises it for a long run. The issue asks for at least 50. */
export const CRASH_CYCLES_DEFAULT = 50;
/** The seed used when FLOTILLA_CRASH_SEED is not set: CI runs the same schedule every time. */
export const CRASH_SEED_DEFAULT = 20_240_603;
/** Node start, module load and LMDB open take ~100 ms here; 20 s means the child is stuck, not slow. */
const CHILD_TRIGGER_TIMEOUT_MS = 20_000;
/** After SIGKILL the pipe drains and `close` fires within milliseconds; 10 s means something is wrong. */
const CHILD_CLOSE_TIMEOUT_MS = 10_000;
/** The issue's window: kill 20–150 ms after the first acknowledgement. */
const KILL_DELAY_MS_MIN = 20;
const KILL_DELAY_MS_MAX = 150;
/** Some kills land in startup instead (store open, staging cleanup, shard creation): up to this long after `start`. */
const STARTUP_KILL_PROBABILITY = 0.15;
const STARTUP_KILL_DELAY_MS_MAX = 25;
/**
 * Snapshot mode: some kills are timed from the child's announcement that it starts an install, so they
 * land in the install (or just after it) on any machine. Timed from the first acknowledgement only, a
 * loaded CI machine spent the whole window in the steps before (not one of 50 kills hit an install).
 */
const INSTALL_KILL_PROBABILITY = 0.3;
const INSTALL_KILL_DELAY_MS_MAX = 5;

export function crashSettings(): { seed: number; cycles: number } {
  const seedText = process.env.FLOTILLA_CRASH_SEED;
  const cyclesText = process.env.FLOTILLA_CRASH_CYCLES;
  const seed = seedText === undefined || seedText === '' ? CRASH_SEED_DEFAULT : Number(seedText);
  const cycles = cyclesText === undefined || cyclesText === '' ? CRASH_CYCLES_DEFAULT : Number(cyclesText);
  if (!Number.isSafeInteger(seed)) throw new Error(`FLOTILLA_CRASH_SEED must be an integer, got "${seedText}"`);
  if (!Number.isSafeInteger(cycles) || cycles < 1) throw new Error(`FLOTILLA_CRASH_CYCLES must be a positive integer, got "${cyclesText}"`);
  return { seed, cycles };
}

// ---------------------------------------------------------------- child processes

/** Children alive right now, so afterEach can end exactly the processes this file started. */
const liveChildren = new Set<ChildProcess>();

export function killLeftoverChildren(): number {
  let killed = 0;
  for (const child of liveChildren) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      killed++;
    }
  }
  liveChildren.clear();
  return killed;
}

export interface KillPlan {
  /** The first line of this kind starts the kill timer. */
  readonly after: 'start' | 'firstAck' | 'install' | 'stage' | 'staged' | 'ready';
  readonly delayMs: number;
}

/**
 * Receive mode: most kills are timed from a transfer's first chunk — its
 * announcement or its acknowledgement — so they land inside a transfer
 * (within a chunk's transaction, or between chunks with records already
 * written) on any machine; the rest from `ready`, anywhere in the loop.
 */
const STAGE_KILL_PROBABILITY = 0.5;
const STAGE_KILL_DELAY_MS_MAX = 8;

export function planKill(rng: SeededRng, mode: CrashMode): KillPlan {
  if (rng.chance(STARTUP_KILL_PROBABILITY)) return { after: 'start', delayMs: rng.intBelow(STARTUP_KILL_DELAY_MS_MAX) };
  if (mode === 'receive') {
    if (rng.chance(STAGE_KILL_PROBABILITY)) return { after: rng.chance(0.5) ? 'stage' : 'staged', delayMs: rng.intBelow(STAGE_KILL_DELAY_MS_MAX) };
    if (rng.chance(INSTALL_KILL_PROBABILITY)) return { after: 'install', delayMs: rng.intBelow(INSTALL_KILL_DELAY_MS_MAX) };
    // The receive child acknowledges little (installs); `ready` comes once per start.
    return { after: 'ready', delayMs: KILL_DELAY_MS_MIN + rng.intBelow(KILL_DELAY_MS_MAX - KILL_DELAY_MS_MIN + 1) };
  }
  if (mode === 'snapshot' && rng.chance(INSTALL_KILL_PROBABILITY)) return { after: 'install', delayMs: rng.intBelow(INSTALL_KILL_DELAY_MS_MAX) };
  return { after: 'firstAck', delayMs: KILL_DELAY_MS_MIN + rng.intBelow(KILL_DELAY_MS_MAX - KILL_DELAY_MS_MIN + 1) };
}

export interface ChildRun {
  readonly lines: string[];
  readonly stderr: string;
}

/** Runs one child until the kill plan fires; rejects if it dies any other way or gets stuck. */
export function runChildUntilKilled(options: { dir: string; mode: CrashMode; childSeed: number; kill: KillPlan }): Promise<ChildRun> {
  if (!existsSync(CHILD_ENTRY)) throw new Error(`${CHILD_ENTRY} is missing; run \`npm run build\` in shards/ first`);
  const child = spawn(process.execPath, [CHILD_ENTRY, options.dir, options.mode, String(options.childSeed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  let killTimer: NodeJS.Timeout | undefined;
  let killedByUs = false;
  const killNow = (): void => {
    killedByUs = true;
    child.kill('SIGKILL');
  };
  const armKill = (): void => {
    if (killTimer === undefined) killTimer = setTimeout(killNow, options.kill.delayMs);
  };
  const triggerTimer = setTimeout(killNow, CHILD_TRIGGER_TIMEOUT_MS);
  let triggered = false;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    for (const text of parts) {
      lines.push(text);
      const kind = text.split(' ', 1)[0]!;
      const trigger = options.kill.after === 'firstAck' ? ACK_KINDS.has(kind) : kind === options.kill.after;
      if (!triggered && trigger) {
        triggered = true;
        clearTimeout(triggerTimer);
        armKill();
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise<ChildRun>((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(triggerTimer);
      if (killTimer !== undefined) clearTimeout(killTimer);
      liveChildren.delete(child);
      // A line cut by the kill never reached the pipe whole; the child writes each line with one write(2).
      if (partial !== '') reject(new Error(`child ${child.pid} left a partial line "${partial}"`));
      else if (!killedByUs) reject(new Error(`child ${child.pid} exited by itself (code ${code}, signal ${signal}):\n${stderr}`));
      else if (!triggered) reject(new Error(`child ${child.pid} never reached its kill trigger (${options.kill.after}) within ${CHILD_TRIGGER_TIMEOUT_MS} ms:\n${stderr}`));
      else if (signal !== 'SIGKILL') reject(new Error(`child ${child.pid} ended with code ${code}, signal ${signal}, expected SIGKILL:\n${stderr}`));
      else resolvePromise({ lines, stderr });
    });
    setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, CHILD_TRIGGER_TIMEOUT_MS + CHILD_CLOSE_TIMEOUT_MS).unref();
  });
}

// ---------------------------------------------------------------- the model

export interface ShardModel {
  /** terms[i] is the term of entry i for i ≤ lastIndex (also below the compaction point: committed, never changes). */
  terms: number[];
  lastIndex: number;
  snapshotIndex: number;
  snapshotTerm: number;
  applied: number;
  hardState: HardStateLine;
  /** The log tail holds a write of this shard since the last checkpoint: a checkpoint moves (and may compact) it. */
  inTail: boolean;
}

export type StoreModel = Map<number, ShardModel>;

function cloneModel(model: StoreModel): StoreModel {
  const copy: StoreModel = new Map();
  for (const [shard, s] of model) copy.set(shard, { ...s, terms: s.terms.slice(), hardState: { ...s.hardState } });
  return copy;
}

function shardOf(model: StoreModel, shard: number, intent: Intent): ShardModel {
  const s = model.get(shard);
  if (s === undefined) throw new Error(`intent ${intent.kind} for shard ${shard}, which was never created`);
  return s;
}

/** The effect of one operation on the model: what the store must hold once the operation is durable. */
export function applyIntent(model: StoreModel, intent: Intent): void {
  switch (intent.kind) {
    case 'create':
      model.set(intent.shard, { terms: [0], lastIndex: 0, snapshotIndex: 0, snapshotTerm: 0, applied: 0, hardState: { term: 0, vote: 0, commit: 0 }, inTail: false });
      return;
    case 'round':
      // The checkpoint first, in the round's transaction before its own record: each shard the tail holds
      // that the round lets it compact goes up to what it applied before the round.
      if (intent.checkpoint === true) {
        for (const [shard, s] of model) {
          if (s.inTail && intent.compact?.includes(shard) === true && s.applied > s.snapshotIndex) {
            s.snapshotIndex = s.applied;
            s.snapshotTerm = s.terms[s.applied]!;
          }
          s.inTail = false;
        }
      }
      // The log part first: an apply target may reach entries this round writes.
      for (const w of intent.writes) {
        const s = shardOf(model, w.shard, intent);
        if (w.from <= w.last) {
          if (w.from > s.lastIndex + 1) throw new Error(`round writes shard ${w.shard} from ${w.from}, leaving a gap after ${s.lastIndex}`);
          s.terms.length = w.from;
          for (let i = w.from; i <= w.last; i++) s.terms[i] = w.term;
          s.lastIndex = w.last;
        }
        s.hardState = { ...w.hardState };
        s.inTail = true;
      }
      for (const t of intent.targets) {
        const s = shardOf(model, t.shard, intent);
        if (t.to <= s.applied || t.to > s.hardState.commit) throw new Error(`round applies shard ${t.shard} to ${t.to}, outside (applied ${s.applied}, commit ${s.hardState.commit}]`);
        s.applied = t.to;
      }
      return;
    case 'compact': {
      const s = shardOf(model, intent.shard, intent);
      s.snapshotIndex = intent.upTo;
      s.snapshotTerm = s.terms[intent.upTo]!;
      return;
    }
    case 'install': {
      const s = shardOf(model, intent.shard, intent);
      // The snapshot replaces entries 1..index with the sender's log; the crash
      // workload sends snapshots only from single-term logs, so that log is known.
      for (let i = 1; i <= Math.min(s.lastIndex, intent.index); i++) {
        if (s.terms[i] !== intent.term) throw new Error(`install at ${intent.index} term ${intent.term} over entry ${i} of term ${s.terms[i]}: the model needs a single-term log`);
      }
      s.terms.length = intent.index + 1;
      s.terms.fill(intent.term, s.lastIndex + 1);
      s.terms[0] = 0;
      s.lastIndex = intent.index;
      s.snapshotIndex = intent.index;
      s.snapshotTerm = intent.term;
      s.applied = intent.index;
      s.hardState = { ...intent.hardState };
      // An install's tail floor: replay skips the shard's records before it, and nothing of it waits in the tail.
      s.inTail = false;
      return;
    }
  }
}

/** One announced operation, numbered across the whole loop (every child's intents in order, from 1). */
export interface NumberedIntent {
  readonly op: number;
  readonly intent: Intent;
}

/** What the parent learned from one child's output. */
export interface ChildOutcome {
  /** The operation announced but not acknowledged at the kill, if any: the one the kill interrupted. */
  readonly pending: NumberedIntent | undefined;
  /** The last operation this child had acknowledged before the kill, if any. */
  readonly lastCompleted: NumberedIntent | undefined;
  /** What the child was doing when killed: the pending operation's phase name, staging a chunk, starting up, or between operations. */
  readonly phase: string;
  /** Staged snapshot chunks acknowledged but never installed: garbage the next open must clear. */
  readonly stagedLeftover: number;
  readonly ackCount: number;
  /** Operations this child announced (the next child's numbering continues after them). */
  readonly intentCount: number;
}

/**
 * A phase name per kind of operation; rounds by their shape (ShardCore makes
 * all three), so the report shows kills inside the combined log + apply
 * transaction apart from the rest.
 */
export function phaseOf(intent: Intent): string {
  if (intent.kind !== 'round') return intent.kind;
  if (intent.checkpoint === true) return 'round:checkpoint';
  if (intent.writes.length > 0 && intent.targets.length > 0) return 'round:log+apply';
  return intent.writes.length > 0 ? 'round:log' : 'round:apply';
}

/** One operation in words, for failure messages. */
export function describeIntent(n: NumberedIntent): string {
  const i = n.intent;
  const body = ((): string => {
    switch (i.kind) {
      case 'create':
        return `shard ${i.shard}`;
      case 'round': {
        const writes = i.writes.map((w) => `shard ${w.shard} ${w.from <= w.last ? `entries ${w.from}..${w.last} term ${w.term}` : 'hard state only'}, commit ${w.hardState.commit}`);
        const targets = i.targets.map((t) => `shard ${t.shard} to ${t.to}`);
        return `log [${writes.join('; ')}] apply [${targets.join('; ')}]`;
      }
      case 'compact':
        return `shard ${i.shard} up to ${i.upTo}`;
      case 'install':
        return `shard ${i.shard} at ${i.index} term ${i.term}`;
    }
  })();
  return `operation #${n.op} ${phaseOf(i)} (${body})`;
}

/**
 * Folds a child's lines into `model` (acknowledged operations only) and
 * cross-checks each acknowledgement against the model, so an ack that lies
 * about what the child wrote fails here rather than looking like data loss.
 */
export function foldLines(model: StoreModel, texts: readonly string[], firstOp: number): ChildOutcome {
  let pending: NumberedIntent | undefined;
  let pendingApplied = false;
  let lastCompleted: NumberedIntent | undefined;
  let stagedLeftover = 0;
  let ackCount = 0;
  let intentCount = 0;
  let lastKind = 'none';
  for (const text of texts) {
    const line: Line = parseLine(text);
    lastKind = line.kind;
    if (INTENT_KINDS.has(line.kind)) {
      if (pending !== undefined && !pendingApplied) throw new Error(`intent "${text}" while ${describeIntent(pending)} is still unacknowledged`);
      pending = { op: firstOp + intentCount, intent: line as Intent };
      intentCount++;
      pendingApplied = false;
      continue;
    }
    if (line.kind === 'staged') stagedLeftover = line.seq + 1;
    if (!ACK_KINDS.has(line.kind)) continue;
    ackCount++;
    if (pending === undefined) throw new Error(`acknowledgement "${text}" without an intent`);
    // The first acknowledgement proves the whole operation durable (one transaction).
    if (!pendingApplied) {
      applyIntent(model, pending.intent);
      pendingApplied = true;
      lastCompleted = pending;
      if (pending.intent.kind === 'install') stagedLeftover = 0;
    }
    checkAck(model, line as Extract<Line, { kind: 'created' | 'ack' | 'applied' | 'compacted' | 'installed' }>, pending.intent, text);
  }
  const open = pendingApplied ? undefined : pending;
  const phase = open !== undefined ? phaseOf(open.intent) : lastKind === 'stage' ? 'stage' : lastKind === 'none' || lastKind === 'start' ? 'startup' : 'idle';
  return { pending: open, lastCompleted, phase, stagedLeftover, ackCount, intentCount };
}

function checkAck(model: StoreModel, ack: Extract<Line, { kind: 'created' | 'ack' | 'applied' | 'compacted' | 'installed' }>, intent: Intent, text: string): void {
  const s = model.get(ack.shard);
  const fail = (why: string): never => {
    throw new Error(`acknowledgement "${text}" does not match intent ${intent.kind}: ${why}`);
  };
  if (s === undefined) return fail('unknown shard');
  switch (ack.kind) {
    case 'created':
      if (intent.kind !== 'create') fail('wrong kind');
      return;
    case 'ack': {
      if (intent.kind !== 'round' || !intent.writes.some((w) => w.shard === ack.shard)) fail('not a write of this round');
      const lastTerm = s.lastIndex === s.snapshotIndex ? s.snapshotTerm : s.terms[s.lastIndex];
      if (ack.lastIndex !== s.lastIndex || ack.lastTerm !== lastTerm || ack.commit !== s.hardState.commit) {
        fail(`model has last ${s.lastIndex} term ${lastTerm} commit ${s.hardState.commit}`);
      }
      return;
    }
    case 'applied':
      if (intent.kind !== 'round' || !intent.targets.some((t) => t.shard === ack.shard)) fail('not an apply target of this round');
      if (ack.index !== s.applied) fail(`model applied ${s.applied}`);
      return;
    case 'compacted':
      if (intent.kind !== 'compact' || ack.upTo !== s.snapshotIndex) fail(`model compaction point ${s.snapshotIndex}`);
      return;
    case 'installed':
      if (intent.kind !== 'install' || ack.index !== s.snapshotIndex) fail(`model snapshot index ${s.snapshotIndex}`);
      return;
  }
}

// ---------------------------------------------------------------- reading the store back

export interface ShardOnDisk {
  readonly hardState: HardStateLine;
  readonly applied: number;
  readonly snapshotIndex: number;
  readonly snapshotTerm: number;
  readonly lastIndex: number;
  /** Stored log entries in key order, straight from the `log` sub-database. */
  readonly log: readonly { index: number; term: number; data: Uint8Array }[];
  /** The shard's key range, straight from the `data` sub-database. */
  readonly data: ReadonlyMap<string, { version: number; value: Buffer }>;
}

export interface StoreOnDisk {
  readonly shards: ReadonlyMap<number, ShardOnDisk>;
  readonly stagedCount: number;
}

/** Opens the store as a restarted node would and reads every shard back. */
export async function readStore(dir: string, nodeId: number): Promise<StoreOnDisk> {
  const store = await NodeStore.open({ dir, nodeId });
  try {
    const shards = new Map<number, ShardOnDisk>();
    for (const shardId of store.shardIds()) {
      const shard = shardId as number;
      const storage = store.storage(shardId);
      const hardState = storage.initialState().hardState;
      const snapshotIndex = storage.firstIndex() - 1;
      const log: { index: number; term: number; data: Uint8Array }[] = [];
      // Through the store's own reads: after a reopen the entry cache holds only what the log tail replayed from disk.
      for (const e of storage.entries(snapshotIndex + 1, storage.lastIndex() + 1, Number.POSITIVE_INFINITY)) log.push({ index: e.index, term: e.term, data: e.data });
      const data = new Map<string, { version: number; value: Buffer }>();
      for (const { key, value } of store.data.getRange(shardRange(shard))) {
        const [version, bytes] = value as [number, Buffer];
        data.set(key.toString('latin1'), { version, value: Buffer.from(bytes) });
      }
      shards.set(shard, {
        hardState: { term: hardState.term, vote: hardState.vote, commit: hardState.commit },
        applied: storage.applied,
        snapshotIndex,
        snapshotTerm: snapshotIndex === 0 ? 0 : storage.term(snapshotIndex),
        lastIndex: storage.lastIndex(),
        log,
        data,
      });
    }
    return { shards, stagedCount: store.staging.getKeysCount() };
  } finally {
    await store.close();
  }
}

// ---------------------------------------------------------------- checks

/** Invariants that hold whatever was acknowledged; each names the shard and the numbers. */
export function checkInvariants(disk: StoreOnDisk, spec: WorkloadSpec): string[] {
  const problems: string[] = [];
  if (disk.stagedCount !== 0) problems.push(`${disk.stagedCount} staged snapshot chunks are visible after open`);
  for (const [shard, s] of disk.shards) {
    const at = `shard ${shard}`;
    if (s.applied > s.hardState.commit) problems.push(`${at}: applied ${s.applied} exceeds commit ${s.hardState.commit}`);
    if (s.applied < s.snapshotIndex) problems.push(`${at}: applied ${s.applied} below the compaction point ${s.snapshotIndex}`);
    if (s.hardState.commit > s.lastIndex) problems.push(`${at}: commit ${s.hardState.commit} exceeds last index ${s.lastIndex}`);
    // Contiguity: exactly the keys firstIndex..lastIndex, no leftovers below, no holes, nothing above.
    const expectedCount = s.lastIndex - s.snapshotIndex;
    if (s.log.length !== expectedCount) problems.push(`${at}: ${s.log.length} stored entries, expected ${expectedCount} (first ${s.snapshotIndex + 1}, last ${s.lastIndex})`);
    let previousTerm = s.snapshotTerm;
    for (let k = 0; k < s.log.length; k++) {
      const e = s.log[k]!;
      if (e.index !== s.snapshotIndex + 1 + k) {
        problems.push(`${at}: log not contiguous: found entry ${e.index} where ${s.snapshotIndex + 1 + k} belongs`);
        break;
      }
      if (e.term < previousTerm) problems.push(`${at}: entry ${e.index} has term ${e.term} below its predecessor's ${previousTerm}`);
      previousTerm = e.term;
      const expected = entryDataOf(shard, e.index, e.term, spec);
      if (Buffer.compare(Buffer.from(e.data), Buffer.from(expected)) !== 0) problems.push(`${at}: entry ${e.index} (term ${e.term}) holds bytes of another command`);
    }
  }
  return problems;
}

/** Every difference between the store and one candidate model, excluding user data (checked by replay). */
export function diffAgainst(disk: StoreOnDisk, model: StoreModel): string[] {
  const diffs: string[] = [];
  for (const shard of disk.shards.keys()) if (!model.has(shard)) diffs.push(`shard ${shard} exists but was never created`);
  for (const [shard, m] of model) {
    const s = disk.shards.get(shard);
    const at = `shard ${shard}`;
    if (s === undefined) {
      diffs.push(`${at} is missing`);
      continue;
    }
    const hs = (h: HardStateLine): string => `term ${h.term} vote ${h.vote} commit ${h.commit}`;
    if (hs(s.hardState) !== hs(m.hardState)) diffs.push(`${at}: hard state ${hs(s.hardState)}, expected ${hs(m.hardState)}`);
    if (s.applied !== m.applied) diffs.push(`${at}: applied ${s.applied}, expected ${m.applied}`);
    if (s.snapshotIndex !== m.snapshotIndex || s.snapshotTerm !== m.snapshotTerm) {
      diffs.push(`${at}: compaction point ${s.snapshotIndex}/${s.snapshotTerm}, expected ${m.snapshotIndex}/${m.snapshotTerm}`);
    }
    if (s.lastIndex !== m.lastIndex) diffs.push(`${at}: last index ${s.lastIndex}, expected ${m.lastIndex}`);
    for (const e of s.log) {
      if (e.index <= m.lastIndex && m.terms[e.index] !== e.term) {
        diffs.push(`${at}: entry ${e.index} has term ${e.term}, expected ${m.terms[e.index]}`);
        break;
      }
    }
  }
  return diffs;
}

/** User data of one shard against the naive replay of its log up to the applied index. */
export function diffData(shard: number, disk: ShardOnDisk, oracle: ReplayOracle): string[] {
  const diffs: string[] = [];
  const at = `shard ${shard} (applied ${oracle.applied})`;
  const expectedKeys = new Set<string>();
  for (const [keyNo, v] of oracle.values) {
    const key = keyOf(shard, keyNo).toString('latin1');
    expectedKeys.add(key);
    const stored = disk.data.get(key);
    if (stored === undefined) {
      diffs.push(`${at}: key ${key} is missing; expected the value of entry ${v.index} (term ${v.term})`);
    } else if (stored.version !== v.index || !stored.value.equals(valueOf(shard, v.index, v.term, oracle.spec))) {
      diffs.push(`${at}: key ${key} holds version ${stored.version} "${stored.value.subarray(0, 24).toString()}…"; expected entry ${v.index} (term ${v.term})`);
    }
    if (diffs.length >= 5) return diffs;
  }
  for (const key of disk.data.keys()) {
    if (!expectedKeys.has(key)) diffs.push(`${at}: key ${key} should not exist`);
    if (diffs.length >= 5) return diffs;
  }
  return diffs;
}

// ---------------------------------------------------------------- the kill loop

/** Where the store stood after a kill relative to the operation the kill interrupted. */
export interface InterruptedCounts {
  /** Exactly as before the operation: its transaction never committed. */
  before: number;
  /** Exactly as after it: it committed, the kill came before the acknowledgement. */
  after: number;
  /** Before and after are the same state (an operation that rewrote what the store held). */
  same: number;
}

export interface CrashReport {
  readonly cycles: number;
  readonly acks: number;
  /** Operations announced over the whole loop. */
  readonly operations: number;
  /** Kills per phase: the interrupted operation's phase, or "idle", "stage", "startup". */
  readonly killedDuring: Record<string, number>;
  /** Per phase of an interrupted operation: where the reopened store stood relative to it. */
  readonly interrupted: Record<string, InterruptedCounts>;
  /** Kills that left acknowledged staged chunks, all cleared on open. */
  readonly stagedLeftoverCycles: number;
  readonly durationMs: number;
}

export interface CrashLoopOptions {
  readonly mode: CrashMode;
  readonly seed: number;
  readonly cycles: number;
  /** The store the parent checks: the child's <dir> in log mode, <dir>/target in snapshot mode. */
  readonly storeDir: (dir: string) => string;
  readonly nodeId: number;
}

export class CrashFailure extends Error {}

/**
 * Runs `cycles` kill cycles on one directory. Each cycle continues from the
 * state the previous one left; a failure names the seed, the cycle, the
 * child's seed, the operation the kill interrupted and the kept directory.
 *
 * After each kill the reopened store must be exactly at one point of the
 * operation sequence: if the kill interrupted operation #n (announced, not
 * acknowledged), just before #n or just after it; otherwise just after the
 * last acknowledged one. Log entries, hard state, applied index, compaction
 * point and the applied data are all checked against that one point, so a
 * round that left its log written and its apply not (or the reverse) fails.
 */
export async function runCrashLoop(options: CrashLoopOptions): Promise<CrashReport> {
  const spec = WORKLOADS[options.mode];
  const started = performance.now();
  const rng = new SeededRng(options.seed);
  const dir = mkdtempSync(join(tmpdir(), `flotilla-crash-${options.mode}-`));
  let model: StoreModel = new Map();
  const oracles = new Map<number, ReplayOracle>();
  const killedDuring: Record<string, number> = {};
  const interrupted: Record<string, InterruptedCounts> = {};
  let stagedLeftoverCycles = 0;
  let acks = 0;
  let nextOp = 1;
  for (let cycle = 0; cycle < options.cycles; cycle++) {
    const childSeed = rng.nextUint32();
    const kill = planKill(rng, options.mode);
    const where = (): string =>
      `[mode ${options.mode}, FLOTILLA_CRASH_SEED=${options.seed}, cycle ${cycle}, child seed ${childSeed}, kill ${kill.delayMs} ms after ${kill.after}, dir ${dir} (kept)]`;
    let outcome: ChildOutcome;
    let lastLines: string[] = [];
    try {
      const run = await runChildUntilKilled({ dir, mode: options.mode, childSeed, kill });
      lastLines = run.lines.slice(-6);
      outcome = foldLines(model, run.lines, nextOp);
    } catch (err) {
      throw new CrashFailure(`${(err as Error).message}\n${where()}`);
    }
    nextOp += outcome.intentCount;
    acks += outcome.ackCount;
    killedDuring[outcome.phase] = (killedDuring[outcome.phase] ?? 0) + 1;
    if (outcome.stagedLeftover > 0) stagedLeftoverCycles++;
    const pending = outcome.pending;
    const killedAt =
      pending !== undefined
        ? `the kill interrupted ${describeIntent(pending)}`
        : outcome.lastCompleted !== undefined
          ? `the kill came after ${describeIntent(outcome.lastCompleted)} was acknowledged, in phase ${outcome.phase}`
          : `the kill came before this child acknowledged anything, in phase ${outcome.phase}`;
    const context = (): string => `${killedAt}\nlast lines: ${lastLines.join(' | ')}\n${where()}`;

    let disk: StoreOnDisk;
    try {
      disk = await readStore(options.storeDir(dir), options.nodeId);
    } catch (err) {
      throw new CrashFailure(`store does not reopen after the kill: ${(err as Error).stack}\n${context()}`);
    }
    const problems = checkInvariants(disk, spec);
    if (problems.length > 0) throw new CrashFailure(`invariants broken after the kill:\n  ${problems.join('\n  ')}\n${context()}`);

    // Exactly before the interrupted operation or exactly after it; with none in flight, exactly the acknowledged state.
    const candidates: { name: 'before' | 'after'; model: StoreModel }[] = [{ name: pending === undefined ? 'after' : 'before', model }];
    if (pending !== undefined) {
      const withPending = cloneModel(model);
      applyIntent(withPending, pending.intent);
      candidates.push({ name: 'after', model: withPending });
    }
    const diffs = candidates.map((c) => diffAgainst(disk, c.model));
    const match = diffs.findIndex((d) => d.length === 0);
    if (match < 0) {
      const detail = candidates.map((c, k) => `  vs ${c.name} it:\n    ${diffs[k]!.slice(0, 8).join('\n    ')}`).join('\n');
      const what = pending === undefined ? 'the store is not exactly at the acknowledged state' : 'the store is neither exactly before nor exactly after that operation';
      throw new CrashFailure(`${what}:\n${detail}\n${context()}`);
    }
    const chosen = candidates[match]!;
    if (pending !== undefined) {
      const phase = phaseOf(pending.intent);
      const counts = (interrupted[phase] ??= { before: 0, after: 0, same: 0 });
      if (diffs.every((d) => d.length === 0)) counts.same++;
      else counts[chosen.name]++;
    }
    model = chosen.model;

    for (const [shard, m] of model) {
      let oracle = oracles.get(shard);
      if (oracle === undefined) {
        oracle = new ReplayOracle(shard, spec);
        oracles.set(shard, oracle);
      }
      oracle.advanceTo(m.applied, (i) => m.terms[i]!);
      const dataDiffs = diffData(shard, disk.shards.get(shard)!, oracle);
      if (dataDiffs.length > 0) {
        throw new CrashFailure(`log, hard state and applied index are ${chosen.name} the operation, the data is not (it does not match a replay of the log):\n  ${dataDiffs.join('\n  ')}\n${context()}`);
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return { cycles: options.cycles, acks, operations: nextOp - 1, killedDuring, interrupted, stagedLeftoverCycles, durationMs: Math.round(performance.now() - started) };
}

export function describeReport(mode: CrashMode, seed: number, r: CrashReport): string {
  const phases = Object.entries(r.killedDuring)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([phase, n]) => {
      const c = r.interrupted[phase];
      return c === undefined ? `${phase} ${n}` : `${phase} ${n} (store before it ${c.before}, after it ${c.after}, same either way ${c.same})`;
    })
    .join(', ');
  return `crash ${mode}: ${r.cycles} cycles in ${r.durationMs} ms (seed ${seed}), ${r.operations} operations, ${r.acks} acks checked; killed during: ${phases}; staged chunks left by a kill ${r.stagedLeftoverCycles}×`;
}
