// Node leases on running Hosts (src/host/node-leases.ts, core/src/read/node-leases.ts):
// a quiesced range's leader answers a linearizable read with no heartbeat round
// and stays quiesced; a leader cut off from its followers stops answering before
// they elect another, so it never returns a value the new leader overwrote.
import { afterEach, describe, expect, it } from 'vitest';
import { groupId, type Clock, type Timer } from '@flotilla/core';
import { HostCluster, key, shardKey } from '../support/host-cluster.js';
import { TICK_MS, VirtualClock, leasedCluster } from '../support/lease-cluster.js';
import { RATE_WINDOW_LONG_MS } from '../../src/host/node-leases.js';

/** One node's clock over the shared one, running at `rate` (its Host's leases and timers follow it). */
class SkewedClock implements Clock {
  constructor(
    private readonly base: VirtualClock,
    private readonly rate: number,
  ) {}
  nowMs(): number {
    return this.base.nowMs() * this.rate;
  }
  setTimer(ms: number, fn: () => void): Timer {
    return this.base.setTimer(ms / this.rate, fn);
  }
}

let cluster: HostCluster | undefined;
afterEach(async () => {
  if (cluster === undefined) return;
  for (const id of [...cluster.hosts.keys()]) await cluster.stopNode(id);
  cluster = undefined;
});

async function quiescedCluster(nodeLeases: boolean, options: { localReads?: boolean } = {}): Promise<{ c: HostCluster; clock: VirtualClock; leader: number }> {
  const { c, clock, tick } = await leasedCluster({ seed: 41, shardIds: [1], host: { nodeLeases, ...options } });
  cluster = c;
  const leaders = await c.agreedLeaders([1]);
  expect(leaders).toBeDefined();
  expect((await c.write(1, { op: 'put', key: shardKey(1, 'k'), value: key('v1') })).ok).toBe(true);
  await tick(30);
  const statuses = await c.statuses();
  for (const list of statuses.values()) expect(list.find((s) => s.shardId === 1)!.quiesced).toBe(true);
  return { c, clock, leader: leaders!.get(1)! };
}

const coreTotals = async (c: HostCluster, node: number) => (await c.host(node).coreStats()).reduce((t, s) => ({ leaseReads: t.leaseReads + s.leaseReads, messagesSent: t.messagesSent + s.messagesSent, wakes: t.wakes + s.wakes }), { leaseReads: 0, messagesSent: 0, wakes: 0 });

describe('node leases on running hosts', () => {
  it('a quiesced leader answers a linearizable read at once: no heartbeat round, and it stays quiesced', async () => {
    const { c, leader } = await quiescedCluster(true);
    const before = await coreTotals(c, leader);
    const localBefore = c.host(leader).stats.localReads;
    const got = await c.host(leader).get(groupId(1), shardKey(1, 'k'));
    expect(got?.value.toString()).toBe('v1');
    // Served on the Host's thread (local-reads.ts); the core counts it at the next tick.
    expect(c.host(leader).stats.localReads - localBefore).toBe(1);
    await c.tick();
    const after = await coreTotals(c, leader);
    expect(after.leaseReads - before.leaseReads).toBe(1);
    expect(after.messagesSent - before.messagesSent).toBe(0);
    expect(after.wakes - before.wakes).toBe(0);
  }, 120_000);

  it('with local reads off the core answers the same read under the lease, as quietly', async () => {
    const { c, leader } = await quiescedCluster(true, { localReads: false });
    const before = await coreTotals(c, leader);
    const got = await c.host(leader).get(groupId(1), shardKey(1, 'k'));
    expect(got?.value.toString()).toBe('v1');
    const after = await coreTotals(c, leader);
    expect(c.host(leader).stats.localReads).toBe(0);
    expect(after.leaseReads - before.leaseReads).toBe(1);
    expect(after.messagesSent - before.messagesSent).toBe(0);
    expect(after.wakes - before.wakes).toBe(0);
  }, 120_000);

  it('with node leases off the same read takes a heartbeat round (the control)', async () => {
    const { c, leader } = await quiescedCluster(false);
    const before = await coreTotals(c, leader);
    const read = c.host(leader).get(groupId(1), shardKey(1, 'k'));
    await c.tick(2);
    expect((await read)?.value.toString()).toBe('v1');
    const after = await coreTotals(c, leader);
    expect(after.leaseReads - before.leaseReads).toBe(0);
    expect(after.messagesSent - before.messagesSent).toBeGreaterThan(0);
  }, 120_000);

  it('a leader whose clock runs slow holds no lease: its followers see their clocks run fast against it', async () => {
    const clock = new VirtualClock();
    // Node 1's clock at half speed: a lease it counted on it would outlast its followers' promises.
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 43, host: { nodeLeases: true }, hostFor: (id) => ({ clock: id === 1 ? new SkewedClock(clock, 0.5) : clock }) }));
    const tick = async (n: number) => {
      for (let i = 0; i < n; i++) {
        clock.advance(TICK_MS);
        await c.tick();
      }
    };
    await c.createShards([1, 2]);
    await tick(RATE_WINDOW_LONG_MS / TICK_MS + 30);
    // Node 1 leads range 1, another node range 2.
    for (const [range, to] of [[1, 1], [2, 2]] as const) {
      const led = (await c.agreedLeaders([range]))!.get(range)!;
      if (led !== to) {
        const moved = c.host(led).transferLeader(groupId(range), to);
        await tick(5);
        await moved;
      }
    }
    await tick(20);
    expect((await c.agreedLeaders([1, 2]))!.get(1)).toBe(1);
    const leaseReads = async (node: number) => (await coreTotals(c, node)).leaseReads;
    const [slowBefore, fastBefore] = [await leaseReads(1), await leaseReads(2)];
    for (const [node, range] of [[1, 1], [2, 2]] as const) {
      const read = c.host(node).get(groupId(range), shardKey(range, 'k'));
      await tick(3);
      await read;
    }
    expect((await leaseReads(1)) - slowBefore).toBe(0);
    expect((await leaseReads(2)) - fastBefore).toBe(1);
  }, 120_000);

  it('a leader cut off from its followers stops answering before they elect another: it never returns what the new leader overwrote', async () => {
    const { c, clock, leader } = await quiescedCluster(true);
    const others = c.nodeIds.filter((n) => n !== leader);
    for (const o of others) {
      c.network.cut(leader, o);
      c.network.cut(o, leader);
    }
    // Reads on the old leader while the followers elect and the new leader takes a write.
    const oldReads: Promise<string | undefined>[] = [];
    let newLeader: number | undefined;
    for (let t = 0; t < 200 && newLeader === undefined; t++) {
      oldReads.push(
        c
          .host(leader)
          .get(groupId(1), shardKey(1, 'k'))
          .then((v) => v?.value.toString(), () => 'failed'),
      );
      clock.advance(TICK_MS);
      await c.tick();
      const statuses = await c.statuses();
      newLeader = others.find((o) => statuses.get(o)!.find((s) => s.shardId === 1)?.role === 'leader');
    }
    expect(newLeader).toBeDefined();
    let written: boolean | undefined;
    void c
      .host(newLeader!)
      .propose(groupId(1), { op: 'put', key: shardKey(1, 'k'), value: key('v2') })
      .then((r) => (written = r.ok), () => (written = false));
    for (let t = 0; t < 20 && written === undefined; t++) {
      clock.advance(TICK_MS);
      await c.tick();
    }
    expect(written).toBe(true);
    // Linearizability: a read that starts after v2 was acknowledged must not answer v1. Cut off, the old
    // leader can only fail it (its lease ran out before the election, so it needs a round it cannot have).
    const afterWrite: Promise<string | undefined>[] = [];
    for (let t = 0; t < 10; t++) {
      afterWrite.push(
        c
          .host(leader)
          .get(groupId(1), shardKey(1, 'k'))
          .then((v) => v?.value.toString(), () => 'failed'),
      );
      clock.advance(TICK_MS);
      await c.tick();
    }
    for (let t = 0; t < 80; t++) {
      clock.advance(TICK_MS);
      await c.tick();
    }
    expect(await Promise.all(afterWrite)).toEqual(Array.from({ length: 10 }, () => 'failed'));
    // The first read after the cut was answered under the lease, before any election could end it.
    const during = await Promise.all(oldReads);
    expect(during[0]).toBe('v1');
    expect(during).not.toContain('v2');
  }, 240_000);
});
