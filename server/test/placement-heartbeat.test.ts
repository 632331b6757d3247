// The node's side of the store heartbeat (placement-service.ts): full at first, then only what changed,
// a full one from a big node in parts, and everything again when the driver asks for it.
import { DRIVER_CONFIG_DEFAULTS, PlacementDriver, SCHEDULER_CONFIG_DEFAULTS, decodeStoreHeartbeat, type StoreHeartbeat } from '@flotilla/placement';
import type { Host, ShardChange, ShardViewChanges } from '@flotilla/shards';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import type { HostKvStore } from '../src/kv/host-store.js';
import { HEARTBEAT_PART_ENTRIES_MAX, PlacementService } from '../src/placement-service.js';

const packr = new Packr({ useRecords: false, moreTypes: false });
const log = { info: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined } as never;
const { paused: _p, replicationFactor: _r, ...scheduler } = SCHEDULER_CONFIG_DEFAULTS;

const follower = (shardId: number): ShardChange => ({
  status: { shardId, role: 'follower', leader: 2, term: 1, commit: 5, applied: 5, lastIndex: 5, firstIndex: 1, quiesced: true, voters: [1, 2, 3], learners: [], start: Buffer.from([shardId >> 8, shardId & 255]), end: null, epoch: 1 },
  report: null,
});

/** Node 1 with `changes` as its view answers, heartbeating to a driver it can swap (a new meta leader). */
function harness(changes: (cursor: number) => ShardViewChanges) {
  const sent: StoreHeartbeat[] = [];
  const driver = { current: new PlacementDriver({ startMs: 0, config: { ...DRIVER_CONFIG_DEFAULTS, scheduler }, settings: { paused: true, replicationFactor: 3 }, ports: { runStep: async () => undefined, log } }) };
  const host = { nodeId: 1, shardChanges: async (cursor: number) => changes(cursor), hasShard: () => false, leaderOf: () => 2, coreOf: () => 0 } as unknown as Host;
  const store = {
    setPlacementHandler: () => undefined,
    runOnRange: async (op: { payload: Uint8Array }) => {
      const [, bytes] = packr.unpack(op.payload) as [string, Uint8Array];
      const h = decodeStoreHeartbeat(bytes);
      sent.push(h);
      const answer = driver.current.onHeartbeat(h, 0);
      return packr.pack([answer.collect, answer.resync]);
    },
  } as unknown as HostKvStore;
  const service = new PlacementService({ host, store, log, dir: '/nonexistent', config: { ...DRIVER_CONFIG_DEFAULTS, scheduler }, defaults: { paused: true, replicationFactor: 3 }, disk: () => ({ usedBytes: 0, availableBytes: 1 }) });
  return { sent, driver, tick: () => service.tick(Promise.resolve([])) };
}

describe('store heartbeats from a node', () => {
  it('sends everything in parts at first, then only what changed, and everything again to a new driver', async () => {
    const count = 2 * HEARTBEAT_PART_ENTRIES_MAX + 5;
    const all = Array.from({ length: count }, (_, i) => follower(i + 1));
    let view: ShardViewChanges = { cursor: 7, full: true, changed: all, removed: [] };
    const { sent, driver, tick } = harness((cursor) => (cursor === 0 ? { ...view, full: true, changed: all } : view));
    await tick();
    expect(sent.map((h) => [h.base === 0 ? 'full' : 'delta', h.replicas.length])).toEqual([['full', HEARTBEAT_PART_ENTRIES_MAX], ['delta', HEARTBEAT_PART_ENTRIES_MAX], ['delta', 5]]);
    // Each part builds on the one before.
    expect(sent.slice(1).map((h, i) => h.base === sent[i]!.seq)).toEqual([true, true]);
    // Next tick: one replica changed, one went.
    view = { cursor: 9, full: false, changed: [follower(3)], removed: [4] };
    sent.length = 0;
    await tick();
    expect(sent.map((h) => [h.base, h.replicas.map((r) => r.rangeId), h.removed])).toEqual([[sent[0]!.seq - 1, [3], [4]]]);
    // A new driver (the meta range's lead moved) knows nothing: it asks, and gets everything at once.
    driver.current = new PlacementDriver({ startMs: 0, config: { ...DRIVER_CONFIG_DEFAULTS, scheduler }, settings: { paused: true, replicationFactor: 3 }, ports: { runStep: async () => undefined, log } });
    sent.length = 0;
    await tick();
    expect(sent.map((h) => (h.base === 0 ? 'full' : 'delta'))).toEqual(['delta', 'full', 'delta', 'delta']);
  });
});
