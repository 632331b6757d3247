// Fixtures shared by the shards package's deterministic tests: temp data
// directories that are always removed, stores that are always closed, and
// small builders for entries, conf states and KV commands.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupId, nodeId, type ConfState, type Entry, type GroupId, type HardState, type LogIndex, type Term } from '@flotilla/core';
import { afterEach } from 'vitest';
import { encodeCommand } from '../../src/kv/command.js';
import { KvStateMachine } from '../../src/kv/state-machine.js';
import { NodeStore } from '../../src/storage/node-store.js';

const dirs: string[] = [];
const stores = new Set<NodeStore>();

/**
 * Registers cleanup for the calling test file: every store opened through
 * `openStore` is closed and every directory from `tempDir` removed after each
 * test, whether it passed or not.
 */
export function useTempStores(): void {
  afterEach(async () => {
    for (const store of stores) await store.close();
    stores.clear();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
}

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-shards-test-'));
  dirs.push(dir);
  return dir;
}

export async function openStore(dir: string, id = 1): Promise<NodeStore> {
  const store = await NodeStore.open({ dir, nodeId: id });
  stores.add(store);
  return store;
}

export async function closeStore(store: NodeStore): Promise<void> {
  await store.close();
  stores.delete(store);
}

export async function reopen(store: NodeStore): Promise<NodeStore> {
  await closeStore(store);
  return openStore(store.dir, store.nodeId);
}

export const SHARD = groupId(1);

export function confState(options: { voters: number[]; learners?: number[] }): ConfState {
  return { voters: options.voters.map(nodeId), votersOutgoing: [], learners: (options.learners ?? []).map(nodeId), learnersNext: [], autoLeave: false };
}

/** A normal entry whose payload is `payloadBytes` bytes derived from its index and term (so replacements are visible). */
export function entry(index: LogIndex, term: Term, payloadBytes = 8): Entry {
  const data = new Uint8Array(payloadBytes);
  for (let i = 0; i < payloadBytes; i++) data[i] = (index * 31 + term * 7 + i) & 0xff;
  return { index, term, type: 'normal', data };
}

/** Entries for [from, from + terms.length) with the given terms. */
export function entries(from: LogIndex, terms: readonly Term[], payloadBytes = 8): Entry[] {
  return terms.map((term, i) => entry(from + i, term, payloadBytes));
}

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

export function putEntry(index: LogIndex, term: Term, key: Uint8Array, value: Uint8Array, ifVersion?: number): Entry {
  return { index, term, type: 'normal', data: encodeCommand({ op: 'put', key, value, ...(ifVersion === undefined ? {} : { ifVersion }) }) };
}

export function deleteEntry(index: LogIndex, term: Term, key: Uint8Array, ifVersion?: number): Entry {
  return { index, term, type: 'normal', data: encodeCommand({ op: 'delete', key, ...(ifVersion === undefined ? {} : { ifVersion }) }) };
}

/**
 * What a shell does for committed entries: persist them with a hard state
 * committing them, then apply them. Returns the apply results.
 */
export async function commitAndApply(store: NodeStore, shardId: GroupId, batch: readonly Entry[], options: { confState?: ConfState } = {}) {
  const last = batch[batch.length - 1]!;
  const storage = store.storage(shardId);
  const previous = storage.initialState().hardState;
  const hardState: HardState = { term: Math.max(previous.term, last.term), vote: previous.vote, commit: Math.max(previous.commit, last.index) };
  await store.persist([{ shardId, entries: batch, hardState }]);
  const results = await new KvStateMachine(store).apply([{ shardId, entries: batch, confState: options.confState }]);
  return results.get(shardId) ?? new Map();
}

/**
 * Commits and applies the stored entries up to `upTo`, so they may be
 * compacted. The log tests' payloads are opaque bytes, not KV commands: they
 * are applied as empty entries, which moves only the applied index.
 */
export async function commitAndApplyStored(store: NodeStore, shardId: GroupId, upTo: LogIndex): Promise<void> {
  const storage = store.storage(shardId);
  if (upTo <= storage.applied) return;
  const stored = storage.entries(storage.applied + 1, upTo + 1, Number.POSITIVE_INFINITY).map((e) => ({ ...e, data: new Uint8Array(0) }));
  const previous = storage.initialState().hardState;
  await store.persist([{ shardId, entries: [], hardState: { ...previous, commit: Math.max(previous.commit, upTo) } }]);
  await new KvStateMachine(store).apply([{ shardId, entries: stored }]);
}

/** The stable fields of an error, for comparisons that should not depend on message text. */
export function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
  return undefined;
}

export async function asyncErrorCode(fn: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await fn();
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
  return undefined;
}
