// A healthy node must survive whatever one of its peers does: cut off or paused
// for ten seconds under write load, then back. Issue 14, bug 1: a peer that
// came back made every shard's leader catch it up at once, one core's segment
// for it outgrew a frame, and the transport's assertion took the healthy node down.
import { afterEach, describe, expect, it } from 'vitest';
import { BATCH_BYTES_MAX, type Transport } from '@flotilla/transport';
import { PEER_TURN_BYTES_MAX } from '../../src/host/host.js';
import { HostCluster, shardKey, withSend } from '../support/host-cluster.js';

const SHARD_IDS = [1, 2, 3, 4, 5, 6, 7, 8];
/** 10 s at the 100 ms default tick. */
const FAULT_TICKS = 100;
/** Per shard, enough that the backlog of the shards one node leads is past a frame (8 × 16 × 512 KiB = 64 MiB in all). */
const WRITES_PER_SHARD = 16;
const VALUE_BYTES = 512 * 1024;

/** What each node's Host handed its transport: the largest batch, and how many exceeded a frame. */
class SendWatch {
  batchBytesMax = 0;
  oversized = 0;

  wrap(endpoint: Transport): Transport {
    return withSend(endpoint, (to, batch) => {
      this.batchBytesMax = Math.max(this.batchBytesMax, batch.byteLength);
      if (batch.byteLength > BATCH_BYTES_MAX) this.oversized++;
      endpoint.send(to, batch);
    });
  }
}

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

async function start(): Promise<{ cluster: HostCluster; watch: Map<number, SendWatch> }> {
  const watch = new Map<number, SendWatch>();
  const c = await HostCluster.start({
    nodeCount: 3,
    coreCount: 1,
    seed: 14,
    transportFor: (id, endpoint) => {
      const w = new SendWatch();
      watch.set(id, w);
      return w.wrap(endpoint);
    },
  });
  cluster = c;
  await c.createShards(SHARD_IDS);
  await c.tickUntil('every shard led', async () => (await c.agreedLeaders(SHARD_IDS)) !== undefined, 100);
  return { cluster: c, watch };
}

/** Writes a backlog to every shard while `ticks` pass (writes tick the cluster as they wait). */
async function writeBacklog(c: HostCluster, ticks: number): Promise<void> {
  const value = new Uint8Array(VALUE_BYTES).fill(7);
  for (let i = 0; i < WRITES_PER_SHARD; i++) {
    for (const shardId of SHARD_IDS) await c.write(shardId, { op: 'put', key: shardKey(shardId, `k${i}`), value });
  }
  await c.tick(ticks);
}

/** Every replica of every shard has applied the same index, and the shard has one agreed leader. */
async function converged(c: HostCluster): Promise<boolean> {
  if ((await c.agreedLeaders(SHARD_IDS)) === undefined) return false;
  const statuses = await c.statuses();
  for (const shardId of SHARD_IDS) {
    const applied = new Set([...statuses.values()].map((list) => list.find((s) => s.shardId === shardId)?.applied));
    if (applied.size !== 1) return false;
  }
  return true;
}

function expectBounded(c: HostCluster, watch: Map<number, SendWatch>): void {
  for (const [id, w] of watch) {
    expect(w.oversized, `node ${id} handed its transport batches over a frame (largest ${w.batchBytesMax} B)`).toBe(0);
    expect(w.batchBytesMax).toBeLessThanOrEqual(BATCH_BYTES_MAX);
  }
  for (const id of c.nodeIds) expect(c.host(id).stats.peerTurnBytesMax, `node ${id}'s bytes for one peer in one turn`).toBeLessThanOrEqual(PEER_TURN_BYTES_MAX);
}

describe('a peer that comes back after a fault', () => {
  it('is caught up in bounded batches after being cut off for 10 s under write load', async () => {
    const { cluster: c, watch } = await start();
    c.network.partition([3], [1, 2]);
    // Writes go to the majority's leaders: node 3's own leaders are stale now and would time out.
    const majorityLeads = async (): Promise<boolean> => {
      for (const id of [1, 2]) {
        for (const s of await c.host(id).shards()) if (s.leader !== 1 && s.leader !== 2) return false;
      }
      return true;
    };
    const electionTicks = await c.tickUntil('the majority leads every shard', majorityLeads, 60);
    await writeBacklog(c, FAULT_TICKS - electionTicks);
    c.network.healAll();
    await c.tickUntil('every replica converged after the cut healed', () => converged(c), 300);
    expect(c.fatal).toEqual([]);
    expectBounded(c, watch);
    // The catch-up really was a burst the bounds had to cut: something was deferred or dropped.
    const deferred = (await c.host(1).coreStats())[0]!.appendsDeferred + (await c.host(2).coreStats())[0]!.appendsDeferred;
    expect(deferred + c.host(1).stats.segmentsDropped + c.host(2).stats.segmentsDropped).toBeGreaterThan(0);
  }, 120_000);

  it('is caught up in bounded batches after being paused for 10 s under write load', async () => {
    const { cluster: c, watch } = await start();
    // A paused process: its links hold what is sent to it (the kernel's buffers), it sends and ticks nothing.
    const paused = c.host(3);
    c.hosts.delete(3);
    for (const peer of [1, 2]) {
      c.network.clog(peer, 3);
      c.network.clog(3, peer);
    }
    await writeBacklog(c, FAULT_TICKS);
    for (const peer of [1, 2]) {
      c.network.unclog(peer, 3);
      c.network.unclog(3, peer);
    }
    c.hosts.set(3, paused);
    await c.tickUntil('every replica converged after the pause', () => converged(c), 300);
    expect(c.fatal).toEqual([]);
    expectBounded(c, watch);
  }, 120_000);
});
