// The crash tests' workload, shared by the child that writes it and the parent
// that checks it. Every log entry's command is a pure function of
// (shard, index, term), so the data a shard must hold after applying entries
// 1..n is a replay of the terms of its log: nothing else has to be recorded,
// and compaction or a snapshot install cannot hide what the data should be.
import { encodeCommand, type KvCommand } from '@flotilla/shards';

export type CrashMode = 'log' | 'snapshot' | 'receive';

export interface WorkloadSpec {
  /** Distinct keys per shard: small enough that keys are overwritten and deleted often. */
  readonly keyCount: number;
  readonly valueBytes: (index: number) => number;
}

export const WORKLOADS: Record<CrashMode, WorkloadSpec> = {
  // Small entries, many per commit: the log path.
  log: { keyCount: 64, valueBytes: (index) => 16 + ((index * 31) % 150) },
  // ~1.3 MB of live data per shard once every key was written, so a snapshot
  // is two chunks of SNAPSHOT_CHUNK_BYTES_MAX and staging spans transactions.
  snapshot: { keyCount: 900, valueBytes: () => 1536 },
  // ~2.3 MB: three chunks, so a kill lands between a transfer's chunks as well as in them.
  receive: { keyCount: 1500, valueBytes: () => 1536 },
};

/**
 * Receive mode's node (crash-child.ts runReceive): an empty replica of the
 * receiver's range gets its snapshot straight into the data, between two
 * neighbours whose ranges touch it on both sides. The neighbours' records
 * are written once, as they are (neighbourRecords), and must never change.
 */
export const RECEIVE_LAYOUT = {
  receiver: 3,
  left: 2,
  right: 4,
  /** The receiver's is shardRange(3); the neighbours end and start exactly at its bounds. */
  ranges: new Map<number, { start: Buffer; end: Buffer }>([
    [2, { start: Buffer.from('k2/'), end: shardRange(3).start }],
    [3, shardRange(3)],
    [4, { start: shardRange(3).end, end: Buffer.from('k5') }],
  ]),
  /** The source's snapshots start here: by then every receiver key was written. */
  indexMin: 1600,
} as const;

/** Every record of the neighbours, by key (latin1): keys next to both of the receiver's bounds among them. */
export function neighbourRecords(): Map<string, { version: number; value: Buffer }> {
  const records = new Map<string, { version: number; value: Buffer }>();
  const keys = ['k2/', 'k2/zz', 'k3', 'k3.\xff', 'k30', 'k30\x00', 'k4/', 'k4\xff\xff'];
  for (let i = 0; i < 40; i++) keys.push(`k2/${String(i).padStart(3, '0')}`, `k4/${String(i).padStart(3, '0')}`);
  for (const key of keys) records.set(Buffer.from(key, 'latin1').toString('latin1'), { version: 1, value: Buffer.from(`neighbour ${key};`.repeat(8), 'latin1') });
  return records;
}

/** A shard's key range: keys `k<shard>/…`; the end `k<shard>0` is the first key after that prefix. */
export function shardRange(shard: number): { start: Buffer; end: Buffer } {
  return { start: Buffer.from(`k${shard}/`), end: Buffer.from(`k${shard}0`) };
}

export function keyOf(shard: number, keyNo: number): Buffer {
  return Buffer.from(`k${shard}/${String(keyNo).padStart(4, '0')}`);
}

export function keyNoOf(index: number, spec: WorkloadSpec): number {
  // 7919 is prime and coprime with both key counts: consecutive entries touch scattered keys.
  return (index * 7919) % spec.keyCount;
}

type Op = 'put' | 'delete' | 'putIfAbsent';

export function opOf(index: number): Op {
  // Hashed, not index % 10: a key is touched at indexes congruent modulo
  // keyCount, so a plain modulus would give each key one op forever (its
  // deletes would never find a value to delete).
  const h = Math.imul(index ^ (index >>> 16), 0x45d9f3b) >>> 0;
  const r = (h >>> 8) % 10;
  if (r === 3) return 'delete';
  if (r === 7) return 'putIfAbsent';
  return 'put';
}

/** The value bytes an entry writes: its identity repeated, so a torn or swapped value cannot pass for another. */
export function valueOf(shard: number, index: number, term: number, spec: WorkloadSpec): Buffer {
  const tag = `${shard}:${index}:${term};`;
  const bytes = spec.valueBytes(index);
  return Buffer.from(tag.repeat(Math.ceil(bytes / tag.length)).slice(0, bytes));
}

export function commandOf(shard: number, index: number, term: number, spec: WorkloadSpec): KvCommand {
  const key = keyOf(shard, keyNoOf(index, spec));
  switch (opOf(index)) {
    case 'delete':
      return { op: 'delete', key };
    case 'putIfAbsent':
      return { op: 'put', key, value: valueOf(shard, index, term, spec), ifVersion: 0 };
    case 'put':
      return { op: 'put', key, value: valueOf(shard, index, term, spec) };
  }
}

export function entryDataOf(shard: number, index: number, term: number, spec: WorkloadSpec): Uint8Array {
  return encodeCommand(commandOf(shard, index, term, spec));
}

/** What a key holds: written by the entry at `index` (its version, see KvStateMachine) in `term`. */
export interface ExpectedValue {
  readonly index: number;
  readonly term: number;
}

/**
 * A deliberately naive replay of one shard's workload: it applies entries in
 * index order, knowing nothing of LMDB, and only moves forward (applied
 * entries are committed, so their terms never change).
 */
export class ReplayOracle {
  readonly values = new Map<number, ExpectedValue>();
  applied = 0;

  constructor(
    readonly shard: number,
    readonly spec: WorkloadSpec,
  ) {}

  advanceTo(index: number, termAt: (index: number) => number): void {
    if (index < this.applied) throw new Error(`oracle for shard ${this.shard} cannot go back from ${this.applied} to ${index}`);
    for (let i = this.applied + 1; i <= index; i++) {
      const keyNo = keyNoOf(i, this.spec);
      const op = opOf(i);
      if (op === 'delete') this.values.delete(keyNo);
      else if (op === 'put' || !this.values.has(keyNo)) this.values.set(keyNo, { index: i, term: termAt(i) });
    }
    this.applied = index;
  }
}
