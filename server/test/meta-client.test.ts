// The meta range client's writes, against an in-memory meta range that counts what reaches it: range ids
// come a block per compare-and-set, and descriptors are recorded only for replicas that changed, several
// at a time, a failed one kept for the next call.
import { RANGE_ID_ALLOCATOR_KEY, RangeTable, decodeCounter, decodeRangeDescriptor, rangeKey } from '@flotilla/placement';
import type { ShardStatus, ShardViewChanges } from '@flotilla/shards';
import { describe, expect, it } from 'vitest';
import { HostCalls } from '../src/kv/host-calls.js';
import { MetaClient } from '../src/kv/meta-client.js';
import type { RangeOp } from '../src/kv/range-ops.js';
import { Deadline } from '../src/kv/store.js';

const clock = { nowMs: () => performance.now(), setTimer: (ms: number, fn: () => void) => { const t = setTimeout(fn, ms); return { cancel: () => clearTimeout(t) }; } };

/** A meta range in a map: gets, conditional puts, and what each kind of op cost. */
function fakeMeta(o: { failPutsTo?: (key: Buffer) => boolean } = {}) {
  const data = new Map<string, { value: Uint8Array; version: number }>();
  const ops = { get: 0, put: 0, inFlight: 0, inFlightMax: 0 };
  const run = async (op: RangeOp) => {
    ops.inFlight++;
    ops.inFlightMax = Math.max(ops.inFlightMax, ops.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    ops.inFlight--;
    if (op.kind === 'get') {
      ops.get++;
      return data.get(Buffer.from(op.key).toString('hex'));
    }
    if (op.kind === 'put') {
      ops.put++;
      if (o.failPutsTo?.(Buffer.from(op.key)) === true) throw new Error('meta write failed');
      const k = Buffer.from(op.key).toString('hex');
      const version = data.get(k)?.version ?? 0;
      if (op.ifVersion !== undefined && op.ifVersion !== version) return { ok: false, code: 'VERSION_MISMATCH' };
      data.set(k, { value: op.value, version: version + 1 });
      return { ok: true, version: version + 1 };
    }
    throw new Error(`unexpected meta op ${op.kind}`);
  };
  return { data, ops, run };
}

function client(meta: ReturnType<typeof fakeMeta>, changes: () => ShardViewChanges = () => ({ cursor: 0, full: true, changed: [], removed: [] })): MetaClient {
  return new MetaClient({ ranges: new RangeTable(), calls: new HostCalls(clock), clock, run: (op) => meta.run(op) as never, localReplicaChanges: async () => changes(), checkOpen: () => undefined });
}

const led = (shardId: number, epoch: number, voters = [1, 2, 3]): ShardStatus => ({ shardId, role: 'leader', leader: 1, term: 2, commit: 9, applied: 9, lastIndex: 9, firstIndex: 1, quiesced: true, voters, learners: [], start: Buffer.from([shardId]), end: Buffer.from([shardId + 1]), epoch });

describe('MetaClient', () => {
  it('hands out range ids from blocks: one compare-and-set per 64, unique across clients and concurrent callers', async () => {
    const meta = fakeMeta();
    const a = client(meta);
    const b = client(meta);
    const deadline = Deadline.after(5_000);
    const ids = await Promise.all([...Array.from({ length: 100 }, () => a.allocateRangeId(deadline)), ...Array.from({ length: 10 }, () => b.allocateRangeId(deadline))]);
    expect(new Set(ids).size).toBe(110);
    expect(Math.min(...ids)).toBeGreaterThanOrEqual(1024);
    // Client a needed two blocks, b one: three taken (a and b race for the key: a lost race is tried again).
    expect(decodeCounter(meta.data.get(Buffer.from(RANGE_ID_ALLOCATOR_KEY).toString('hex'))!.value)).toBe(1024 + 3 * 64);
    expect(meta.ops.put).toBeLessThanOrEqual(6);
  });

  it('records the descriptors of led replicas that changed, several at once; one whose write failed is tried on the next call', async () => {
    const failing = new Set<string>([Buffer.from(rangeKey(7)).toString('hex')]);
    const meta = fakeMeta({ failPutsTo: (key) => failing.has(key.toString('hex')) });
    let next: ShardViewChanges = { cursor: 5, full: true, changed: Array.from({ length: 40 }, (_, i) => ({ status: led(i + 1, 1), report: null })), removed: [] };
    const c = client(meta, () => next);
    const deadline = Deadline.after(5_000);
    await expect(c.reportDescriptors(deadline)).rejects.toThrow('meta write failed');
    expect(meta.data.size).toBe(39);
    expect(meta.ops.inFlightMax).toBeGreaterThan(1);
    // Nothing changed since, but range 7 is still to record; range 3 moved to epoch 2.
    failing.clear();
    next = { cursor: 6, full: false, changed: [{ status: led(3, 2), report: null }], removed: [] };
    const puts = meta.ops.put;
    expect(await c.reportDescriptors(deadline)).toBe(2);
    expect(meta.ops.put - puts).toBe(2);
    expect(decodeRangeDescriptor(meta.data.get(Buffer.from(rangeKey(3)).toString('hex'))!.value).epoch).toBe(2);
    // Then only what changes: nothing.
    next = { cursor: 7, full: false, changed: [], removed: [] };
    const gets = meta.ops.get;
    expect(await c.reportDescriptors(deadline)).toBe(0);
    expect(meta.ops.get).toBe(gets);
  });
});
