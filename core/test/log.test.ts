// The replica's log: RaftLog over MemoryStorage plus the Unstable tail
// (etcd-raft's log_test.go, log_unstable_test.go and storage_test.go).
import { describe, expect, it } from 'vitest';
import { AssertionError } from '../src/assert.js';
import { CompactedError, SnapshotOutOfDateError, UnavailableError } from '../src/errors.js';
import { RaftLog } from '../src/log/raft-log.js';
import { MemoryStorage, limitSize } from '../src/log/storage.js';
import { Unstable } from '../src/log/unstable.js';
import { SILENT_LOGGER } from '../src/logger.js';
import { ENTRY_OVERHEAD_BYTES, EMPTY_CONF_STATE, type Entry, type LogIndex, type Snapshot, type Term } from '../src/types.js';

const UNLIMITED_BYTES = Number.MAX_SAFE_INTEGER;
/** Bytes of one entry with an empty payload, as the log counts them. */
const EMPTY_ENTRY_BYTES = ENTRY_OVERHEAD_BYTES;

const entry = (index: LogIndex, term: Term, payloadBytes = 0): Entry => ({ index, term, type: 'normal', data: new Uint8Array(payloadBytes) });
/** Entries at consecutive indexes from `first`, one per term given. */
const entries = (first: LogIndex, ...terms: Term[]): Entry[] => terms.map((term, i) => entry(first + i, term));
const snapshotAt = (index: LogIndex, term: Term): Snapshot => ({ metadata: { index, term, confState: EMPTY_CONF_STATE }, data: new Uint8Array(0) });
/** (index, term) pairs: enough to compare logs in a table. */
const ids = (list: readonly Entry[]): Array<[LogIndex, Term]> => list.map((e) => [e.index, e.term]);

function storageOf(options: { snapshot?: [LogIndex, Term]; entries?: Entry[] }): MemoryStorage {
  const storage = new MemoryStorage();
  if (options.snapshot !== undefined) storage.applySnapshot(snapshotAt(...options.snapshot));
  storage.append(options.entries ?? []);
  return storage;
}

function logOf(options: { snapshot?: [LogIndex, Term]; stored?: Entry[]; unstable?: Entry[]; committed?: LogIndex; applyBytesMax?: number }): RaftLog {
  const log = new RaftLog(storageOf({ snapshot: options.snapshot, entries: options.stored }), SILENT_LOGGER, options.applyBytesMax ?? UNLIMITED_BYTES);
  if (options.unstable !== undefined) log.append(options.unstable);
  if (options.committed !== undefined) log.commitTo(options.committed);
  return log;
}

/** Every entry the log holds, storage and unstable. */
const allEntries = (log: RaftLog): Entry[] => log.slice(log.firstIndex(), log.lastIndex() + 1, UNLIMITED_BYTES);

const bytesName = (bytesMax: number): string => (bytesMax === UNLIMITED_BYTES ? 'unlimited bytes' : `${bytesMax} bytes`);

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('RaftLog.findConflict', () => {
  // The log holds terms 1, 2, 3 at indexes 1..3.
  const cases: Array<{ name: string; incoming: Entry[]; conflict: LogIndex }> = [
    { name: 'no entries', incoming: [], conflict: 0 },
    { name: 'all present', incoming: entries(1, 1, 2, 3), conflict: 0 },
    { name: 'a present suffix', incoming: entries(2, 2, 3), conflict: 0 },
    { name: 'the last entry', incoming: entries(3, 3), conflict: 0 },
    { name: 'present then new', incoming: entries(1, 1, 2, 3, 4, 4), conflict: 4 },
    { name: 'present suffix then new', incoming: entries(2, 2, 3, 4, 4), conflict: 4 },
    { name: 'last then new', incoming: entries(3, 3, 4, 4), conflict: 4 },
    { name: 'only new', incoming: entries(4, 4, 4), conflict: 4 },
    { name: 'conflict at the first entry', incoming: entries(1, 4, 4), conflict: 1 },
    { name: 'conflict in the middle', incoming: entries(2, 1, 4, 4), conflict: 2 },
    { name: 'conflict at the last entry', incoming: entries(3, 1, 2, 4, 4), conflict: 3 },
  ];
  for (const { name, incoming, conflict } of cases) it(`${name}: ${conflict}`, () => {
    expect(logOf({ stored: entries(1, 1, 2, 3) }).findConflict(incoming)).toBe(conflict);
  });
});

describe('RaftLog.findConflictByTerm', () => {
  const cases: Array<{ name: string; log: Parameters<typeof logOf>[0]; index: LogIndex; term: Term; expected: { index: LogIndex; term: Term } }> = [
    // Log 1..5 with terms 2 2 5 5 5.
    { name: 'term above ours matches our last entry', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 5, term: 6, expected: { index: 5, term: 5 } },
    { name: 'same term', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 5, term: 5, expected: { index: 5, term: 5 } },
    { name: 'skips the whole of a higher term', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 5, term: 4, expected: { index: 2, term: 2 } },
    { name: 'stops at the first entry of a lower term', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 3, term: 2, expected: { index: 2, term: 2 } },
    { name: 'nothing matches below every term', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 5, term: 1, expected: { index: 0, term: 0 } },
    { name: 'index 0', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 0, term: 0, expected: { index: 0, term: 0 } },
    { name: 'past the last index the term is unknown', log: { stored: entries(1, 2, 2, 5, 5, 5) }, index: 7, term: 3, expected: { index: 7, term: 0 } },
    // Compacted at 10 (term 3), then 11..14 with terms 3 4 4 6.
    { name: 'compacted log: last entry', log: { snapshot: [10, 3], stored: entries(11, 3, 4, 4, 6) }, index: 14, term: 6, expected: { index: 14, term: 6 } },
    { name: 'compacted log: skips a term', log: { snapshot: [10, 3], stored: entries(11, 3, 4, 4, 6) }, index: 14, term: 5, expected: { index: 13, term: 4 } },
    { name: 'compacted log: reaches the first entry', log: { snapshot: [10, 3], stored: entries(11, 3, 4, 4, 6) }, index: 14, term: 3, expected: { index: 11, term: 3 } },
    { name: 'compacted log: the snapshot entry term is known', log: { snapshot: [10, 3], stored: entries(11, 3, 4, 4, 6) }, index: 10, term: 3, expected: { index: 10, term: 3 } },
    { name: 'compacted log: stops unknown below the snapshot', log: { snapshot: [10, 3], stored: entries(11, 3, 4, 4, 6) }, index: 14, term: 2, expected: { index: 9, term: 0 } },
  ];
  for (const { name, log, index, term, expected } of cases) it(`${name}`, () => {
    expect(logOf(log).findConflictByTerm(index, term)).toEqual(expected);
  });
});

describe('RaftLog.isUpToDate (§5.4.1)', () => {
  // Our log ends at index 3, term 3.
  const cases: Array<{ index: LogIndex; term: Term; upToDate: boolean }> = [
    // A higher last term wins whatever the length.
    { index: 2, term: 4, upToDate: true },
    { index: 3, term: 4, upToDate: true },
    { index: 4, term: 4, upToDate: true },
    // A lower last term loses whatever the length.
    { index: 2, term: 2, upToDate: false },
    { index: 3, term: 2, upToDate: false },
    { index: 4, term: 2, upToDate: false },
    // The same last term: the longer log wins, ties are up to date.
    { index: 2, term: 3, upToDate: false },
    { index: 3, term: 3, upToDate: true },
    { index: 4, term: 3, upToDate: true },
  ];
  for (const { index, term, upToDate } of cases) it(`candidate log ending at (${index}, term ${term}): ${upToDate}`, () => {
    expect(logOf({ stored: entries(1, 1, 2, 3) }).isUpToDate(index, term)).toBe(upToDate);
  });
});

describe('RaftLog.append', () => {
  // Storage holds terms 1, 2 at indexes 1..2.
  const cases: Array<{ name: string; incoming: Entry[]; lastIndex: LogIndex; log: Array<[LogIndex, Term]>; unstableOffset: LogIndex }> = [
    { name: 'nothing', incoming: [], lastIndex: 2, log: [[1, 1], [2, 2]], unstableOffset: 3 },
    { name: 'after the last entry', incoming: entries(3, 2), lastIndex: 3, log: [[1, 1], [2, 2], [3, 2]], unstableOffset: 3 },
    { name: 'replacing from the first entry', incoming: entries(1, 2), lastIndex: 1, log: [[1, 2]], unstableOffset: 1 },
    { name: 'replacing from the middle', incoming: entries(2, 3, 3), lastIndex: 3, log: [[1, 1], [2, 3], [3, 3]], unstableOffset: 2 },
  ];
  for (const { name, incoming, lastIndex, log: expected, unstableOffset } of cases) it(`${name}`, () => {
    const log = logOf({ stored: entries(1, 1, 2) });
    expect(log.append(incoming)).toBe(lastIndex);
    expect(ids(allEntries(log))).toEqual(expected);
    expect(log.unstable.offset).toBe(unstableOffset);
  });

  it('replaces part of the unstable tail', () => {
    const log = logOf({ stored: entries(1, 1), unstable: entries(2, 1, 1, 1) });
    log.append(entries(3, 2));
    expect(ids(allEntries(log))).toEqual([[1, 1], [2, 1], [3, 2]]);
    expect(log.unstable.offset).toBe(2);
  });

  it('refuses to replace a committed entry', () => {
    const log = logOf({ stored: entries(1, 1, 2), committed: 2 });
    expect(() => log.append(entries(2, 3))).toThrow(AssertionError);
    expect(() => log.append(entries(1, 3))).toThrow(AssertionError);
    expect(ids(allEntries(log))).toEqual([[1, 1], [2, 2]]);
    // Right after the commit index is fine.
    expect(log.append(entries(3, 3))).toBe(3);
  });
});

describe('RaftLog.maybeAppend (§5.3 consistency check)', () => {
  // Log 1..3 with terms 1 2 3, committed 1.
  const cases: Array<{ name: string; index: LogIndex; logTerm: Term; commit: LogIndex; incoming: Entry[]; lastNew: LogIndex | undefined; committed: LogIndex }> = [
    { name: 'term mismatch at the previous entry', index: 3, logTerm: 2, commit: 3, incoming: entries(4, 4), lastNew: undefined, committed: 1 },
    { name: 'previous entry missing', index: 4, logTerm: 3, commit: 3, incoming: entries(5, 4), lastNew: undefined, committed: 1 },
    { name: 'match at the last entry, commit follows', index: 3, logTerm: 3, commit: 3, incoming: [], lastNew: 3, committed: 3 },
    { name: 'commit capped at the last new entry', index: 3, logTerm: 3, commit: 4, incoming: [], lastNew: 3, committed: 3 },
    { name: 'commit moves only as far as told', index: 3, logTerm: 3, commit: 2, incoming: [], lastNew: 3, committed: 2 },
    { name: 'commit never decreases', index: 3, logTerm: 3, commit: 0, incoming: [], lastNew: 3, committed: 1 },
    { name: 'new entry and commit', index: 3, logTerm: 3, commit: 4, incoming: entries(4, 4), lastNew: 4, committed: 4 },
    { name: 'commit capped at the new entries', index: 3, logTerm: 3, commit: 5, incoming: entries(4, 4), lastNew: 4, committed: 4 },
    { name: 'two new entries', index: 3, logTerm: 3, commit: 5, incoming: entries(4, 4, 4), lastNew: 5, committed: 5 },
    { name: 'conflict at the last entry is replaced', index: 2, logTerm: 2, commit: 3, incoming: entries(3, 4), lastNew: 3, committed: 3 },
    { name: 'conflict in the middle truncates the suffix', index: 1, logTerm: 1, commit: 3, incoming: entries(2, 4), lastNew: 2, committed: 2 },
    { name: 'conflict replaced and extended', index: 2, logTerm: 2, commit: 3, incoming: entries(3, 4, 4), lastNew: 4, committed: 3 },
    // An old, already-present prefix: appending must not truncate what follows it.
    { name: 'stale duplicate keeps the longer log', index: 1, logTerm: 1, commit: 1, incoming: entries(2, 2), lastNew: 2, committed: 1 },
    // Entry 3 was not in this append, so it may not match the leader's: commit only what was checked.
    { name: 'commit capped at the last entry checked', index: 1, logTerm: 1, commit: 3, incoming: entries(2, 2), lastNew: 2, committed: 2 },
  ];
  for (const { name, index, logTerm, commit, incoming, lastNew, committed } of cases) it(`${name}`, () => {
    const log = logOf({ stored: entries(1, 1, 2, 3), committed: 1 });
    expect(log.maybeAppend(index, logTerm, commit, incoming)).toBe(lastNew);
    expect(log.committed).toBe(committed);
    if (lastNew !== undefined) {
      for (const e of incoming) expect(log.term(e.index)).toBe(e.term);
    }
  });

  it('a stale duplicate leaves the entries after it in place', () => {
    const log = logOf({ stored: entries(1, 1, 2, 3), committed: 1 });
    log.maybeAppend(1, 1, 1, entries(2, 2));
    expect(ids(allEntries(log))).toEqual([[1, 1], [2, 2], [3, 3]]);
    expect(log.unstableEntries()).toEqual([]);
  });

  it('a conflict with a committed entry is our bug', () => {
    const log = logOf({ stored: entries(1, 1, 2, 3), committed: 1 });
    expect(() => log.maybeAppend(0, 0, 3, entries(1, 4))).toThrow(AssertionError);
  });
});

describe('RaftLog.commitTo', () => {
  const cases: Array<{ commit: LogIndex; committed: LogIndex }> = [
    { commit: 3, committed: 3 },
    { commit: 2, committed: 2 },
    // Never decreases.
    { commit: 1, committed: 2 },
  ];
  for (const { commit, committed } of cases) it(`commitTo(${commit}) from 2 gives ${committed}`, () => {
    const log = logOf({ stored: entries(1, 1, 2, 3), committed: 2 });
    log.commitTo(commit);
    expect(log.committed).toBe(committed);
  });

  it('refuses to commit past the last index', () => {
    const log = logOf({ stored: entries(1, 1, 2, 3), committed: 2 });
    expect(() => log.commitTo(4)).toThrow(AssertionError);
    expect(log.committed).toBe(2);
  });
});

describe('RaftLog.maybeCommit (§5.4.2)', () => {
  // Log 1..3 with terms 1 2 3, committed 0.
  const cases: Array<{ index: LogIndex; term: Term; committed: LogIndex }> = [
    { index: 3, term: 3, committed: 3 },
    { index: 2, term: 3, committed: 0 },
    { index: 2, term: 2, committed: 2 },
    { index: 3, term: 2, committed: 0 },
    { index: 0, term: 0, committed: 0 },
  ];
  for (const { index, term, committed } of cases) it(`index ${index} in term ${term} commits to ${committed}`, () => {
    const log = logOf({ stored: entries(1, 1, 2, 3) });
    expect(log.maybeCommit(index, term)).toBe(committed > 0);
    expect(log.committed).toBe(committed);
  });
});

describe('RaftLog.appliedTo', () => {
  it('moves forward up to the commit index only', () => {
    const log = logOf({ stored: entries(1, 1, 1, 1), committed: 2 });
    log.appliedTo(1);
    expect(log.applied).toBe(1);
    expect(() => log.appliedTo(3)).toThrow(AssertionError);
    log.appliedTo(2);
    expect(() => log.appliedTo(1)).toThrow(AssertionError);
    expect(log.applied).toBe(2);
  });
});

describe('compaction', () => {
  // Storage holds a snapshot entry at 3 and entries 4, 5.
  const cases: Array<{ compactIndex: LogIndex; outcome: 'compacted' | 'assert' | Array<[LogIndex, Term]> }> = [
    { compactIndex: 2, outcome: 'compacted' },
    { compactIndex: 3, outcome: 'compacted' },
    { compactIndex: 4, outcome: [[4, 4], [5, 5]] },
    { compactIndex: 5, outcome: [[5, 5]] },
    { compactIndex: 6, outcome: 'assert' },
  ];
  for (const { compactIndex, outcome } of cases) it(`MemoryStorage.compact(${compactIndex})`, () => {
    const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5) });
    const err = caught(() => storage.compact(compactIndex));
    if (outcome === 'compacted') {
      expect(err).toBeInstanceOf(CompactedError);
      expect(storage.firstIndex()).toBe(4);
    } else if (outcome === 'assert') {
      expect(err).toBeInstanceOf(AssertionError);
    } else {
      expect(err).toBeUndefined();
      // The entry at compactIndex survives as the dummy: its term stays readable.
      expect(outcome.map(([index]) => [index, storage.term(index)])).toEqual(outcome);
      expect(storage.firstIndex()).toBe(outcome[0]![0] + 1);
      expect(storage.lastIndex()).toBe(5);
      expect(() => storage.term(compactIndex - 1)).toThrow(CompactedError);
    }
  });

  it('reading across the compaction point fails with LOG_COMPACTED', () => {
    const storage = storageOf({ entries: entries(1, 1, 1, 2, 2, 3, 3) });
    const log = new RaftLog(storage, SILENT_LOGGER, UNLIMITED_BYTES);
    log.commitTo(6);
    log.appliedTo(6);
    storage.createSnapshot(4, EMPTY_CONF_STATE, new Uint8Array(0));
    storage.compact(4);

    expect(log.firstIndex()).toBe(5);
    const err = caught(() => log.slice(4, 6, UNLIMITED_BYTES));
    expect(err).toBeInstanceOf(CompactedError);
    expect((err as CompactedError).code).toBe('LOG_COMPACTED');
    expect((err as CompactedError).index).toBe(4);
    expect((err as CompactedError).firstIndex).toBe(5);
    expect(() => log.entries(3, UNLIMITED_BYTES)).toThrow(CompactedError);
    // From the first index on, reads work as before.
    expect(ids(log.entries(5, UNLIMITED_BYTES))).toEqual([[5, 3], [6, 3]]);
  });

  it('storage reads outside its range fail with a stable code', () => {
    const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5) });
    const below = caught(() => storage.entries(3, 5, UNLIMITED_BYTES));
    expect((below as CompactedError).code).toBe('LOG_COMPACTED');
    const above = caught(() => storage.entries(4, 7, UNLIMITED_BYTES));
    expect(above).toBeInstanceOf(UnavailableError);
    expect((above as UnavailableError).code).toBe('LOG_UNAVAILABLE');
    expect(() => storage.term(2)).toThrow(CompactedError);
    expect(() => storage.term(6)).toThrow(UnavailableError);
  });
});

describe('RaftLog.term at the boundaries', () => {
  // Snapshot at 100 (term 5); stored 101..103 with terms 5 6 6; unstable 104 with term 7.
  const cases: Array<{ index: LogIndex; term: Term | undefined }> = [
    { index: 98, term: undefined },
    { index: 99, term: undefined },
    { index: 100, term: 5 },
    { index: 101, term: 5 },
    { index: 103, term: 6 },
    { index: 104, term: 7 },
    { index: 105, term: undefined },
  ];
  for (const { index, term } of cases) it(`term(${index}) is ${term}`, () => {
    const log = logOf({ snapshot: [100, 5], stored: entries(101, 5, 6, 6), unstable: entries(104, 7) });
    expect(log.term(index)).toBe(term);
  });

  it('with a pending snapshot only the snapshot entry has a term', () => {
    const log = logOf({ snapshot: [100, 5], stored: entries(101, 5, 6, 6) });
    log.restore(snapshotAt(110, 8));
    expect(log.term(100)).toBeUndefined();
    expect(log.term(103)).toBeUndefined();
    expect(log.term(109)).toBeUndefined();
    expect(log.term(110)).toBe(8);
    expect(log.term(111)).toBeUndefined();
  });

  it('entries truncated in the unstable tail hide the stored ones after them', () => {
    const log = logOf({ stored: entries(1, 1, 1, 1) });
    log.append(entries(2, 2));
    expect(log.lastIndex()).toBe(2);
    expect(log.term(2)).toBe(2);
    expect(log.term(3)).toBeUndefined();
  });
});

describe('limitSize', () => {
  // Entries of 24, 34 and 44 bytes.
  const sized = [entry(1, 1, 0), entry(2, 1, 10), entry(3, 1, 20)];
  const cases: Array<{ bytesMax: number; count: number }> = [
    // Always at least one entry, however small the limit.
    { bytesMax: 0, count: 1 },
    { bytesMax: 24, count: 1 },
    { bytesMax: 57, count: 1 },
    { bytesMax: 58, count: 2 },
    { bytesMax: 101, count: 2 },
    { bytesMax: 102, count: 3 },
    { bytesMax: UNLIMITED_BYTES, count: 3 },
  ];
  for (const { bytesMax, count } of cases) it(`bytesMax ${bytesMax} keeps ${count} entries`, () => {
    expect(limitSize(sized, bytesMax)).toEqual(sized.slice(0, count));
  });

  it('keeps nothing of nothing', () => {
    expect(limitSize([], 0)).toEqual([]);
  });
});

describe('RaftLog.slice', () => {
  // Snapshot at 100; stored 101..150; unstable 151..199; all term 1, empty payloads.
  const slices: Array<{ name: string; lo: LogIndex; hi: LogIndex; bytesMax: number; expected: [LogIndex, LogIndex] | 'compacted' | 'assert' }> = [
    { name: 'at the snapshot index', lo: 100, hi: 101, bytesMax: UNLIMITED_BYTES, expected: 'compacted' },
    { name: 'below the snapshot index', lo: 99, hi: 102, bytesMax: UNLIMITED_BYTES, expected: 'compacted' },
    { name: 'empty range', lo: 101, hi: 101, bytesMax: UNLIMITED_BYTES, expected: [101, 101] },
    { name: 'stored only', lo: 101, hi: 103, bytesMax: UNLIMITED_BYTES, expected: [101, 103] },
    { name: 'across stored and unstable', lo: 149, hi: 153, bytesMax: UNLIMITED_BYTES, expected: [149, 153] },
    { name: 'a zero limit still returns one entry', lo: 149, hi: 153, bytesMax: 0, expected: [149, 150] },
    { name: 'limit ends exactly at the stored part', lo: 149, hi: 153, bytesMax: 2 * EMPTY_ENTRY_BYTES, expected: [149, 151] },
    { name: 'limit reaches into the unstable part', lo: 149, hi: 153, bytesMax: 3 * EMPTY_ENTRY_BYTES, expected: [149, 152] },
    { name: 'one byte short of a third entry', lo: 149, hi: 153, bytesMax: 3 * EMPTY_ENTRY_BYTES - 1, expected: [149, 151] },
    { name: 'unstable only, zero limit', lo: 151, hi: 153, bytesMax: 0, expected: [151, 152] },
    { name: 'unstable only, limited', lo: 151, hi: 160, bytesMax: 4 * EMPTY_ENTRY_BYTES, expected: [151, 155] },
    { name: 'the last entry', lo: 199, hi: 200, bytesMax: UNLIMITED_BYTES, expected: [199, 200] },
    { name: 'past the last index', lo: 199, hi: 201, bytesMax: UNLIMITED_BYTES, expected: 'assert' },
    { name: 'inverted range', lo: 103, hi: 102, bytesMax: UNLIMITED_BYTES, expected: 'assert' },
  ];
  for (const { name, lo, hi, bytesMax, expected } of slices) it(`${name}: [${lo}, ${hi}) within ${bytesName(bytesMax)}`, () => {
    const stored = Array.from({ length: 50 }, (_, i) => entry(101 + i, 1));
    const unstable = Array.from({ length: 49 }, (_, i) => entry(151 + i, 1));
    const log = logOf({ snapshot: [100, 1], stored, unstable });
    expect(log.unstable.offset).toBe(151);
    const result = caught(() => log.slice(lo, hi, bytesMax)) ?? log.slice(lo, hi, bytesMax);
    if (expected === 'compacted') expect(result).toBeInstanceOf(CompactedError);
    else if (expected === 'assert') expect(result).toBeInstanceOf(AssertionError);
    else expect((result as Entry[]).map((e) => e.index)).toEqual(Array.from({ length: expected[1] - expected[0] }, (_, i) => expected[0] + i));
  });
});

describe('RaftLog.slice over a storage that stops early', () => {
  /** A storage that counts bytes its own way (as an on-disk one may) and returns one entry per read. */
  class OneEntryPerReadStorage extends MemoryStorage {
    override entries(lo: LogIndex, hi: LogIndex, bytesMax: number): Entry[] {
      return super.entries(lo, hi, bytesMax).slice(0, 1);
    }
  }

  it('returns a contiguous run, never skipping to the unstable tail', () => {
    const storage = new OneEntryPerReadStorage();
    storage.append(entries(1, 1, 1, 1));
    const log = new RaftLog(storage, SILENT_LOGGER, UNLIMITED_BYTES);
    log.append(entries(4, 2, 2));
    expect(log.unstable.offset).toBe(4);

    const slice = log.slice(1, 6, UNLIMITED_BYTES);

    expect(slice.length).toBeGreaterThan(0);
    slice.forEach((e, i) => expect(e.index).toBe(1 + i));
  });
});

describe('MemoryStorage', () => {
  describe('entries', () => {
    // Snapshot at 3, entries 4..6 with terms 4 5 6, empty payloads.
    const cases: Array<{ lo: LogIndex; hi: LogIndex; bytesMax: number; expected: Array<[LogIndex, Term]> | 'compacted' | 'unavailable' }> = [
      { lo: 2, hi: 6, bytesMax: UNLIMITED_BYTES, expected: 'compacted' },
      { lo: 3, hi: 4, bytesMax: UNLIMITED_BYTES, expected: 'compacted' },
      { lo: 4, hi: 5, bytesMax: UNLIMITED_BYTES, expected: [[4, 4]] },
      { lo: 4, hi: 7, bytesMax: UNLIMITED_BYTES, expected: [[4, 4], [5, 5], [6, 6]] },
      { lo: 4, hi: 8, bytesMax: UNLIMITED_BYTES, expected: 'unavailable' },
      { lo: 4, hi: 7, bytesMax: 0, expected: [[4, 4]] },
      { lo: 4, hi: 7, bytesMax: 2 * EMPTY_ENTRY_BYTES, expected: [[4, 4], [5, 5]] },
      { lo: 4, hi: 7, bytesMax: 3 * EMPTY_ENTRY_BYTES - 1, expected: [[4, 4], [5, 5]] },
      { lo: 4, hi: 7, bytesMax: 3 * EMPTY_ENTRY_BYTES, expected: [[4, 4], [5, 5], [6, 6]] },
    ];
    for (const { lo, hi, bytesMax, expected } of cases) it(`[${lo}, ${hi}) within ${bytesName(bytesMax)}`, () => {
      const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5, 6) });
      const result = caught(() => storage.entries(lo, hi, bytesMax)) ?? storage.entries(lo, hi, bytesMax);
      if (expected === 'compacted') expect(result).toBeInstanceOf(CompactedError);
      else if (expected === 'unavailable') expect(result).toBeInstanceOf(UnavailableError);
      else expect(ids(result as Entry[])).toEqual(expected);
    });
  });

  describe('append', () => {
    // Snapshot at 3 (term 3), entries 4, 5 with terms 4, 5.
    const cases: Array<{ name: string; incoming: Entry[]; expected: Array<[LogIndex, Term]> | 'assert' }> = [
      { name: 'entirely compacted: ignored', incoming: entries(1, 1, 2), expected: [[4, 4], [5, 5]] },
      { name: 'identical', incoming: entries(3, 3, 4, 5), expected: [[4, 4], [5, 5]] },
      { name: 'conflicting suffix replaced', incoming: entries(3, 3, 6, 6), expected: [[4, 6], [5, 6]] },
      { name: 'extended', incoming: entries(3, 3, 4, 5, 5), expected: [[4, 4], [5, 5], [6, 5]] },
      { name: 'compacted prefix skipped', incoming: entries(2, 3, 3, 5), expected: [[4, 5]] },
      { name: 'truncates what follows the first new entry', incoming: entries(4, 5), expected: [[4, 5]] },
      { name: 'directly after the last entry', incoming: entries(6, 5), expected: [[4, 4], [5, 5], [6, 5]] },
      { name: 'a gap is our bug', incoming: entries(7, 5), expected: 'assert' },
    ];
    for (const { name, incoming, expected } of cases) it(`${name}`, () => {
      const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5) });
      const err = caught(() => storage.append(incoming));
      if (expected === 'assert') {
        expect(err).toBeInstanceOf(AssertionError);
        return;
      }
      expect(err).toBeUndefined();
      expect(ids(storage.entries(storage.firstIndex(), storage.lastIndex() + 1, UNLIMITED_BYTES))).toEqual(expected);
      expect(storage.term(3)).toBe(3);
    });
  });

  describe('createSnapshot', () => {
    const cases: Array<{ index: LogIndex; outcome: Term | 'outOfDate' }> = [
      { index: 3, outcome: 'outOfDate' },
      { index: 4, outcome: 4 },
      { index: 5, outcome: 5 },
    ];
    for (const { index, outcome } of cases) it(`at ${index}: ${outcome}`, () => {
      const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5) });
      const cs = { ...EMPTY_CONF_STATE, voters: [] };
      const result = caught(() => storage.createSnapshot(index, cs, Uint8Array.of(7)));
      if (outcome === 'outOfDate') {
        expect(result).toBeInstanceOf(SnapshotOutOfDateError);
        expect((result as SnapshotOutOfDateError).code).toBe('SNAPSHOT_OUT_OF_DATE');
        return;
      }
      const snap = storage.snapshot();
      expect(snap.metadata).toEqual({ index, term: outcome, confState: cs });
      expect(snap.data).toEqual(Uint8Array.of(7));
      // The log itself stays until compact().
      expect(storage.firstIndex()).toBe(4);
    });
  });

  it('createSnapshot below the compaction point fails with LOG_COMPACTED', () => {
    // Compacting past the latest snapshot is allowed; the term of index 4 is then gone.
    const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5, 6) });
    storage.compact(5);
    const err = caught(() => storage.createSnapshot(4, EMPTY_CONF_STATE, new Uint8Array(0)));
    expect(err).toBeInstanceOf(CompactedError);
    expect((err as CompactedError).code).toBe('LOG_COMPACTED');
    expect(storage.snapshot().metadata.index).toBe(3);
    // At the compaction point the term is still known.
    expect(storage.createSnapshot(5, EMPTY_CONF_STATE, new Uint8Array(0)).metadata).toMatchObject({ index: 5, term: 5 });
  });

  it('applySnapshot replaces the log and refuses an older snapshot', () => {
    const storage = storageOf({ snapshot: [3, 3], entries: entries(4, 4, 5) });
    storage.applySnapshot(snapshotAt(10, 6));
    expect(storage.firstIndex()).toBe(11);
    expect(storage.lastIndex()).toBe(10);
    expect(storage.term(10)).toBe(6);
    expect(() => storage.applySnapshot(snapshotAt(9, 6))).toThrow(SnapshotOutOfDateError);
    expect(storage.snapshot().metadata.index).toBe(10);
  });
});

describe('Unstable', () => {
  function unstableOf(options: { offset: LogIndex; entries?: Entry[]; snapshot?: [LogIndex, Term] }): Unstable {
    const u = new Unstable(options.offset);
    if (options.snapshot !== undefined) u.snapshot = snapshotAt(...options.snapshot);
    u.entries = [...(options.entries ?? [])];
    return u;
  }

  describe('maybeFirstIndex / maybeLastIndex', () => {
    const cases: Array<{ name: string; u: Parameters<typeof unstableOf>[0]; first: LogIndex | undefined; last: LogIndex | undefined }> = [
      { name: 'entries, no snapshot', u: { offset: 5, entries: entries(5, 1) }, first: undefined, last: 5 },
      { name: 'nothing', u: { offset: 0 }, first: undefined, last: undefined },
      { name: 'snapshot and entries', u: { offset: 5, entries: entries(5, 1), snapshot: [4, 1] }, first: 5, last: 5 },
      { name: 'snapshot only', u: { offset: 5, snapshot: [4, 1] }, first: 5, last: 4 },
    ];
    for (const { name, u, first, last } of cases) it(`${name}`, () => {
      const unstable = unstableOf(u);
      expect(unstable.maybeFirstIndex()).toBe(first);
      expect(unstable.maybeLastIndex()).toBe(last);
    });
  });

  describe('maybeTerm', () => {
    const cases: Array<{ name: string; u: Parameters<typeof unstableOf>[0]; index: LogIndex; term: Term | undefined }> = [
      { name: 'an entry', u: { offset: 5, entries: entries(5, 1) }, index: 5, term: 1 },
      { name: 'past the entries', u: { offset: 5, entries: entries(5, 1) }, index: 6, term: undefined },
      { name: 'before the entries', u: { offset: 5, entries: entries(5, 1) }, index: 4, term: undefined },
      { name: 'an entry after a snapshot', u: { offset: 5, entries: entries(5, 1), snapshot: [4, 1] }, index: 5, term: 1 },
      { name: 'the snapshot entry', u: { offset: 5, entries: entries(5, 1), snapshot: [4, 1] }, index: 4, term: 1 },
      { name: 'before the snapshot', u: { offset: 5, entries: entries(5, 1), snapshot: [4, 1] }, index: 3, term: undefined },
      { name: 'snapshot only: its entry', u: { offset: 5, snapshot: [4, 2] }, index: 4, term: 2 },
      { name: 'snapshot only: after it', u: { offset: 5, snapshot: [4, 2] }, index: 5, term: undefined },
      { name: 'nothing', u: { offset: 0 }, index: 5, term: undefined },
    ];
    for (const { name, u, index, term } of cases) it(`${name}`, () => {
      expect(unstableOf(u).maybeTerm(index)).toBe(term);
    });
  });

  describe('stableTo', () => {
    const cases: Array<{ name: string; u: Parameters<typeof unstableOf>[0]; index: LogIndex; term: Term; offset: LogIndex; length: number }> = [
      { name: 'nothing unstable', u: { offset: 0 }, index: 5, term: 1, offset: 0, length: 0 },
      { name: 'all entries', u: { offset: 5, entries: entries(5, 1) }, index: 5, term: 1, offset: 6, length: 0 },
      { name: 'a prefix', u: { offset: 5, entries: entries(5, 1, 1) }, index: 5, term: 1, offset: 6, length: 1 },
      // The entry was replaced (new term) while the old one was being written: keep the new one.
      { name: 'stale term', u: { offset: 6, entries: entries(6, 2) }, index: 6, term: 1, offset: 6, length: 1 },
      { name: 'index before the entries', u: { offset: 5, entries: entries(5, 1) }, index: 4, term: 1, offset: 5, length: 1 },
      { name: 'index before the entries, other term', u: { offset: 5, entries: entries(5, 1) }, index: 4, term: 2, offset: 5, length: 1 },
      { name: 'after a snapshot: all entries', u: { offset: 5, entries: entries(5, 1), snapshot: [4, 1] }, index: 5, term: 1, offset: 6, length: 0 },
      { name: 'after a snapshot: a prefix', u: { offset: 5, entries: entries(5, 1, 1), snapshot: [4, 1] }, index: 5, term: 1, offset: 6, length: 1 },
      { name: 'after a snapshot: stale term', u: { offset: 6, entries: entries(6, 2), snapshot: [5, 1] }, index: 6, term: 1, offset: 6, length: 1 },
      { name: 'the snapshot index is not an entry', u: { offset: 5, entries: entries(5, 1), snapshot: [4, 1] }, index: 4, term: 1, offset: 5, length: 1 },
      { name: 'the snapshot index, other term', u: { offset: 5, entries: entries(5, 2), snapshot: [4, 2] }, index: 4, term: 1, offset: 5, length: 1 },
    ];
    for (const { name, u, index, term, offset, length } of cases) it(`${name}`, () => {
      const unstable = unstableOf(u);
      unstable.stableTo(index, term);
      expect(unstable.offset).toBe(offset);
      expect(unstable.entries.length).toBe(length);
    });
  });

  describe('truncateAndAppend', () => {
    // Starts as entries 5..7 with term 1.
    const cases: Array<{ name: string; incoming: Entry[]; offset: LogIndex; expected: Array<[LogIndex, Term]> }> = [
      { name: 'directly after', incoming: entries(8, 1, 1), offset: 5, expected: [[5, 1], [6, 1], [7, 1], [8, 1], [9, 1]] },
      { name: 'replacing all', incoming: entries(5, 2, 2), offset: 5, expected: [[5, 2], [6, 2]] },
      { name: 'replacing from before the offset', incoming: entries(4, 2, 2, 2), offset: 4, expected: [[4, 2], [5, 2], [6, 2]] },
      { name: 'replacing a suffix', incoming: entries(6, 2), offset: 5, expected: [[5, 1], [6, 2]] },
      { name: 'replacing the last and extending', incoming: entries(7, 2, 2), offset: 5, expected: [[5, 1], [6, 1], [7, 2], [8, 2]] },
    ];
    for (const { name, incoming, offset, expected } of cases) it(`${name}`, () => {
      const unstable = unstableOf({ offset: 5, entries: entries(5, 1, 1, 1) });
      unstable.truncateAndAppend(incoming);
      expect(unstable.offset).toBe(offset);
      expect(ids(unstable.entries)).toEqual(expected);
    });
  });

  it('restore drops the entries and waits for the snapshot to be persisted', () => {
    const unstable = unstableOf({ offset: 5, entries: entries(5, 1) });
    unstable.restore(snapshotAt(6, 2));
    expect(unstable.offset).toBe(7);
    expect(unstable.entries).toEqual([]);
    expect(unstable.snapshot?.metadata.index).toBe(6);
    unstable.stableSnapTo(5); // not the pending snapshot
    expect(unstable.snapshot).toBeDefined();
    unstable.stableSnapTo(6);
    expect(unstable.snapshot).toBeUndefined();
  });
});

describe('RaftLog.restore', () => {
  it('moves the log to the snapshot and commits it', () => {
    const log = logOf({ snapshot: [100, 1], stored: entries(101, 1, 1), unstable: entries(103, 2) });
    log.restore(snapshotAt(200, 3));
    expect(log.committed).toBe(200);
    expect(log.firstIndex()).toBe(201);
    expect(log.lastIndex()).toBe(200);
    expect(log.lastTerm()).toBe(3);
    expect(log.unstableEntries()).toEqual([]);
    expect(log.hasPendingSnapshot()).toBe(true);
    expect(log.snapshot().metadata.index).toBe(200);
    // Nothing to apply until the snapshot is installed.
    expect(log.hasNextCommittedEntries()).toBe(false);
    expect(log.nextCommittedEntries()).toEqual([]);
    // New entries follow the snapshot.
    log.append(entries(201, 3));
    expect(log.lastIndex()).toBe(201);
  });

  it('a fresh log over a snapshot counts it as committed and applied', () => {
    const log = logOf({ snapshot: [100, 1], stored: entries(101, 1) });
    expect(log.committed).toBe(100);
    expect(log.applied).toBe(100);
    expect(log.firstIndex()).toBe(101);
  });
});

describe('RaftLog.nextCommittedEntries', () => {
  // Log 1..6 (term 1, 10-byte payloads), committed 5.
  const cases: Array<{ name: string; applied: LogIndex; applyBytesMax: number; expected: LogIndex[] }> = [
    { name: 'everything committed and unapplied', applied: 0, applyBytesMax: UNLIMITED_BYTES, expected: [1, 2, 3, 4, 5] },
    { name: 'from past the applied index', applied: 3, applyBytesMax: UNLIMITED_BYTES, expected: [4, 5] },
    { name: 'nothing left to apply', applied: 5, applyBytesMax: UNLIMITED_BYTES, expected: [] },
    { name: 'limited by bytes', applied: 0, applyBytesMax: 2 * (ENTRY_OVERHEAD_BYTES + 10), expected: [1, 2] },
    { name: 'at least one entry', applied: 0, applyBytesMax: 1, expected: [1] },
  ];
  for (const { name, applied, applyBytesMax, expected } of cases) it(`${name}`, () => {
    const stored = Array.from({ length: 6 }, (_, i) => entry(i + 1, 1, 10));
    const log = logOf({ stored, committed: 5, applyBytesMax });
    log.appliedTo(applied);
    expect(log.nextCommittedEntries().map((e) => e.index)).toEqual(expected);
    expect(log.hasNextCommittedEntries()).toBe(expected.length > 0);
  });

  it('hands out unstable committed entries too', () => {
    const log = logOf({ stored: entries(1, 1), unstable: entries(2, 1, 1) });
    log.commitTo(3);
    expect(log.nextCommittedEntries().map((e) => e.index)).toEqual([1, 2, 3]);
  });
});
