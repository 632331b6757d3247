// How many quiesced groups a core wakes per tick for a peer gone down and for one back up
// (host/quiescence.ts): the budgets that pace a failover and a restarted node's catching up.
import { groupId, nodeId, type GroupId, type NodeId } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { zeroCoreStats } from '../src/host/core-protocol.js';
import type { Group } from '../src/host/group.js';
import { Quiescence } from '../src/host/quiescence.js';
import type { ShellLogger } from '../src/shell-logger.js';

const SELF = nodeId(1);
const PEER = nodeId(2);
const BUDGET = 3;
const GROUPS = 40;

/** Only what the wake paths read of a group: quiesced, its leader, and whom it replicates to. */
function fakeGroup(id: number, leader: NodeId): Group {
  return {
    id: groupId(id),
    quiesced: true,
    removed: false,
    leader,
    isLeader: leader === SELF,
    raw: { raft: { tracker: { progress: new Map([[SELF, {}], [PEER, {}], [nodeId(3), {}]]), confState: () => ({ voters: [SELF, PEER, nodeId(3)], votersOutgoing: [] }) } } },
  } as unknown as Group;
}

function core(leader: NodeId) {
  const groups = new Map<GroupId, Group>();
  for (let id = 1; id <= GROUPS; id++) groups.set(groupId(id), fakeGroup(id, leader));
  const stats = zeroCoreStats();
  const log = { info: () => undefined, debug: () => undefined, warn: () => undefined, error: () => undefined } as unknown as ShellLogger;
  const quiescence = new Quiescence({ self: SELF, stats, log, out: { outbox: { wake: () => undefined } } as never, groups, quiesce: true, wakeCountPerTickMax: BUDGET, touch: () => undefined });
  /** Wakes per tick until the queue is empty. */
  const perTick = (): number[] => {
    const counts: number[] = [];
    for (let before = stats.wakes; ; before = stats.wakes) {
      quiescence.wakeQueued();
      if (stats.wakes === before) return counts;
      counts.push(stats.wakes - before);
    }
  };
  return { quiescence, perTick };
}

describe('Quiescence: wakes per tick', () => {
  it('for a peer gone down, four times the budget: the followers of its leaders elect', () => {
    const { quiescence, perTick } = core(PEER);
    quiescence.onPeerDown(PEER);
    expect(perTick()).toEqual([12, 12, 12, 4]);
  });

  it('for a peer back up, twice the budget: our leaders that include it tell its replicas their leader', () => {
    const { quiescence, perTick } = core(SELF);
    quiescence.onPeerUp(PEER);
    expect(perTick()).toEqual([6, 6, 6, 6, 6, 6, 4]);
  });
});
