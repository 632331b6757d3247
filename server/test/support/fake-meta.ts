// A meta range in a sorted map, for MetaClient's unit tests: gets, conditional puts, scans (forward and
// reverse, bounded) and atomic batches with the range's rules (versions are a counter; 0 means absent;
// a batch's conditions are checked against the batch's own earlier ops, and it applies all or none),
// and a count of every kind of op that reached it.
import { RangeTable } from '@flotilla/placement';
import type { ShardStatus, ShardViewChanges } from '@flotilla/shards';
import { HostCalls } from '../../src/kv/host-calls.js';
import { MetaClient } from '../../src/kv/meta-client.js';
import type { RangeOp } from '../../src/kv/range-ops.js';
import { Deadline } from '../../src/kv/store.js';

export const testClock = {
  nowMs: () => performance.now(),
  setTimer: (ms: number, fn: () => void) => {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

export interface FakeMetaOps {
  get: number;
  put: number;
  scan: number;
  batch: number;
  inFlight: number;
  inFlightMax: number;
}

export type FakeMeta = ReturnType<typeof fakeMeta>;

const hex = (key: Uint8Array) => Buffer.from(key).toString('hex');

export function fakeMeta(o: { failPutsTo?: (key: Buffer) => boolean } = {}) {
  // Keyed by hex: two hex strings of bytes sort as the bytes do.
  const data = new Map<string, { value: Uint8Array; version: number }>();
  const ops: FakeMetaOps = { get: 0, put: 0, scan: 0, batch: 0, inFlight: 0, inFlightMax: 0 };
  let nextVersion = 1;
  const versionOf = (key: string) => data.get(key)?.version ?? 0;
  const write = (key: Uint8Array, value: Uint8Array | undefined) => {
    const k = hex(key);
    if (value === undefined) data.delete(k);
    else data.set(k, { value, version: nextVersion++ });
    return value === undefined ? 0 : nextVersion - 1;
  };
  const run = async (op: RangeOp) => {
    ops.inFlight++;
    ops.inFlightMax = Math.max(ops.inFlightMax, ops.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    ops.inFlight--;
    switch (op.kind) {
      case 'get':
        ops.get++;
        return data.get(hex(op.key));
      case 'put': {
        ops.put++;
        if (o.failPutsTo?.(Buffer.from(op.key)) === true) throw new Error('meta write failed');
        if (op.ifVersion !== undefined && op.ifVersion !== versionOf(hex(op.key))) return { ok: false, code: 'VERSION_MISMATCH', currentVersion: versionOf(hex(op.key)) };
        return { ok: true, version: write(op.key, op.value) };
      }
      case 'atomicBatch': {
        ops.batch++;
        if (op.ops.some((w) => o.failPutsTo?.(Buffer.from(w.key)) === true)) throw new Error('meta write failed');
        // Conditions against the batch's own earlier writes, then all or none.
        const pending = new Map<string, number>();
        for (const [opIndex, w] of op.ops.entries()) {
          const k = hex(w.key);
          const current = pending.get(k) ?? versionOf(k);
          if (w.ifVersion !== undefined && w.ifVersion !== current) return { ok: false, code: 'VERSION_MISMATCH', currentVersion: current, opIndex };
          pending.set(k, w.op === 'put' ? -1 : 0);
        }
        return { ok: true, version: 0, versions: op.ops.map((w) => write(w.key, w.op === 'put' ? w.value : undefined)) };
      }
      case 'scan': {
        ops.scan++;
        const start = hex(op.start);
        const end = op.end === null ? undefined : hex(op.end);
        const keys = [...data.keys()].filter((k) => k >= start && (end === undefined || k < end)).sort();
        if (op.reverse === true) keys.reverse();
        return keys.slice(0, op.limit).map((k) => ({ key: Buffer.from(k, 'hex'), value: data.get(k)!.value, version: data.get(k)!.version }));
      }
      default:
        throw new Error(`unexpected meta op ${op.kind}`);
    }
  };
  /** Writes a key as a buggy or older writer would: no condition, no companion write. */
  const poke = (key: Uint8Array, value: Uint8Array | undefined) => write(key, value);
  return { data, ops, run, poke };
}

export const noChanges = (): ShardViewChanges => ({ cursor: 0, full: true, changed: [], removed: [] });

/** A MetaClient over `meta`, routing into `ranges`, this node's replicas as `changes` says. */
export function metaClient(meta: FakeMeta, o: { ranges?: RangeTable; changes?: () => ShardViewChanges } = {}): MetaClient {
  const changes = o.changes ?? noChanges;
  return new MetaClient({ ranges: o.ranges ?? new RangeTable(), calls: new HostCalls(testClock), clock: testClock, run: (op) => meta.run(op) as never, localReplicaChanges: async () => changes(), checkOpen: () => undefined });
}

/** A replica this node leads of range `shardId` over [start, end) at `epoch`. */
export function ledStatus(d: { shardId: number; start: Uint8Array; end: Uint8Array | null; epoch: number; voters?: number[] }): ShardStatus {
  return { shardId: d.shardId, role: 'leader', leader: 1, term: 2, commit: 9, applied: 9, lastIndex: 9, firstIndex: 1, quiesced: true, voters: d.voters ?? [1, 2, 3], learners: [], start: d.start, end: d.end, epoch: d.epoch };
}

/** Records `statuses` as their leader does: one reportDescriptors call of a node that never recorded them before. */
export async function record(meta: FakeMeta, statuses: readonly ShardStatus[], deadlineMs = 5_000): Promise<number> {
  const client = metaClient(meta, { changes: () => ({ cursor: 1, full: true, changed: statuses.map((status) => ({ status, report: null })), removed: [] }) });
  return client.reportDescriptors(Deadline.after(deadlineMs));
}
