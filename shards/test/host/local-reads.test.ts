// Local reads on running Hosts (src/host/local-reads.ts): the leader's Host
// serves a linearizable read itself only while every commit index its core
// has let out is applied. The case that needs the core to withdraw the shard
// at the start of a round: acknowledgements arrive between rounds and move
// the commit index, the next round sends it to the followers with its
// appends and then waits on its store write. Meanwhile a follower may apply
// the write and serve it (a ReadIndex answered in the same round), so the
// leader must not answer the old value from its Host.
import { afterEach, describe, expect, it } from 'vitest';
import { groupId } from '@flotilla/core';
import { HostCluster, key, shardKey } from '../support/host-cluster.js';
import { leasedCluster } from '../support/lease-cluster.js';

/** A node's store writes, passed through until `hold` says to keep the n-th from now waiting. */
class WriteGate {
  private passLeft: number | undefined;
  private held: (() => void)[] = [];
  holding = false;

  async beforeWrite(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (this.passLeft === undefined) return;
    if (this.passLeft > 0) {
      this.passLeft--;
      return;
    }
    this.holding = true;
    await new Promise<void>((resolve) => this.held.push(resolve));
  }

  /** Lets `passCount` writes through, then holds the next (and every one after) until release. */
  hold(passCount: number): void {
    this.passLeft = passCount;
  }

  release(): void {
    this.passLeft = undefined;
    this.holding = false;
    for (const r of this.held.splice(0)) r();
  }
}

let cluster: HostCluster | undefined;
afterEach(async () => {
  if (cluster === undefined) return;
  for (const id of [...cluster.hosts.keys()]) await cluster.stopNode(id);
  cluster = undefined;
});

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('local reads on running hosts', () => {
  it("are withdrawn before a round lets out a commit index its leader has not applied", async () => {
    const gates = new Map([1, 2, 3].map((id) => [id, new WriteGate()]));
    const { c, tick } = await leasedCluster({ seed: 51, shardIds: [1], host: { nodeLeases: true }, hostFor: (id) => ({ storeIo: { kind: 'simulated', beforeWrite: () => gates.get(id)!.beforeWrite() } }) });
    cluster = c;
    const leader = (await c.agreedLeaders([1]))!.get(1)!;
    const k = shardKey(1, 'k');
    expect((await c.write(1, { op: 'put', key: k, value: key('v1') })).ok).toBe(true);
    await tick(5);
    const host = c.host(leader);
    const localBefore = host.stats.localReads;
    expect((await host.get(groupId(1), k))?.value.toString()).toBe('v1');
    expect(host.stats.localReads).toBe(localBefore + 1);

    // v2's append round passes the gate (the first write); the followers persist it and acknowledge.
    // Their acknowledgements reach the leader together with a third write: the round that takes both
    // sends the new commit index out with that write's appends, then waits on the leader's store.
    const gate = gates.get(leader)!;
    gate.hold(1);
    let written: boolean | undefined;
    void host.propose(groupId(1), { op: 'put', key: k, value: key('v2') }).then((r) => (written = r.ok));
    const followers = c.nodeIds.filter((n) => n !== leader);
    const statusOf = async (node: number) => (await c.host(node).shards()).find((s) => s.shardId === 1)!;
    const appliedBefore = (await statusOf(leader)).applied;
    const v2Index = appliedBefore + 1;
    for (let i = 0; i < 500; i++) {
      await turn();
      let persisted = true;
      for (const f of followers) if ((await statusOf(f)).lastIndex < v2Index) persisted = false;
      if (persisted) break;
      c.network.deliver();
    }
    for (let i = 0; i < 20; i++) await turn(); // the acknowledgements are out
    c.network.deliver();
    void host.propose(groupId(1), { op: 'put', key: shardKey(1, 'other'), value: key('x') }).catch(() => undefined);
    for (let i = 0; i < 500 && !(gate.holding && (await statusOf(followers[0]!)).commit >= v2Index); i++) {
      await turn();
      c.network.deliver();
    }
    expect(gate.holding).toBe(true);
    const commitOf = async (node: number) => (await statusOf(node)).commit;
    const leaderApplied = async () => (await statusOf(leader)).applied;
    // The followers know the new commit index; the leader has not applied it.
    expect(await commitOf(followers[0]!)).toBeGreaterThan(appliedBefore);
    expect(await leaderApplied()).toBe(appliedBefore);
    expect(written).toBeUndefined();

    // A read now must not come from the Host: the core answers it once the round applied v2.
    const localMid = host.stats.localReads;
    let read: string | undefined;
    void host.get(groupId(1), k).then((v) => (read = v?.value.toString()));
    for (let i = 0; i < 20; i++) await turn();
    expect(host.stats.localReads).toBe(localMid);
    expect(read).toBeUndefined();

    gate.release();
    for (let i = 0; i < 200 && (read === undefined || written === undefined); i++) {
      await turn();
      c.network.deliver();
    }
    expect(written).toBe(true);
    expect(read).toBe('v2');
    // Applied: the Host serves it again.
    await tick(2);
    expect((await host.get(groupId(1), k))?.value.toString()).toBe('v2');
    expect(host.stats.localReads).toBeGreaterThan(localMid);
  }, 120_000);
});
