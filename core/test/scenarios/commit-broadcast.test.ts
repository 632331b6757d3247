// commitBroadcast 'lazy': a follower learns a new commit index from the next append or heartbeat, never
// from an append sent only to carry it; commitment on the leader is unchanged, and a committed conf
// change still goes out at once.
import { describe, expect, it } from 'vitest';
import { encodeConfChange } from '../../src/membership/codec.js';
import { nodeId, type Message } from '../../src/types.js';
import { Network, newRaft } from '../helpers.js';

function lazyNetwork(count: number, commitBroadcast: 'eager' | 'lazy'): { net: Network; sent: Message[] } {
  const net = Network.of(count, (id, voters) => newRaft(id, { voters, commitBroadcast }));
  const sent: Message[] = [];
  // Record every message the network delivers.
  const send = net.send.bind(net);
  net.send = (...messages: Message[]) => {
    for (const r of net.peers.values()) {
      const step = r.step.bind(r);
      r.step = (m: Message) => {
        sent.push(m);
        step(m);
      };
    }
    send(...messages);
    for (const r of net.peers.values()) delete (r as { step?: unknown }).step;
  };
  return { net, sent };
}

const emptyAppends = (sent: readonly Message[]) => sent.filter((m) => m.type === 'append' && m.entries.length === 0).length;

describe('commit broadcast', () => {
  for (const mode of ['eager', 'lazy'] as const) {
    it(`${mode}: the leader commits the same; followers learn it ${mode === 'eager' ? 'at once' : 'from the next heartbeat'}`, () => {
      const { net, sent } = lazyNetwork(3, mode);
      net.campaign(1);
      const leader = net.get(1);
      expect(leader.role).toBe('leader');
      sent.length = 0;
      net.propose(1, 'x');
      const index = leader.log.lastIndex();
      expect(leader.log.committed).toBe(index);
      if (mode === 'eager') {
        expect(emptyAppends(sent)).toBe(2);
        for (const id of [2, 3]) expect(net.get(id).log.committed).toBe(index);
        return;
      }
      // No append went out only to carry the commit index: the followers hold the entry, uncommitted.
      expect(emptyAppends(sent)).toBe(0);
      for (const id of [2, 3]) {
        expect(net.get(id).log.lastIndex()).toBe(index);
        expect(net.get(id).log.committed).toBe(index - 1);
      }
      // The next write's append carries it...
      net.propose(1, 'y');
      for (const id of [2, 3]) expect(net.get(id).log.committed).toBe(index);
      // ...and a heartbeat carries the rest.
      net.send({ type: 'beat', from: nodeId(1), to: nodeId(1), term: 0 });
      for (const id of [2, 3]) expect(net.get(id).log.committed).toBe(index + 1);
    });
  }

  it('lazy: a committed conf change goes out at once, so a removed replica learns of its removal', () => {
    const { net, sent } = lazyNetwork(3, 'lazy');
    net.campaign(1);
    const leader = net.get(1);
    sent.length = 0;
    const change = encodeConfChange({ changes: [{ type: 'removeNode', nodeId: nodeId(3) }], transition: 'auto' });
    net.send({ type: 'propose', from: nodeId(1), to: nodeId(1), term: 0, entries: [{ term: 0, index: 0, type: 'confChange', data: change }] });
    const index = leader.log.lastIndex();
    expect(leader.log.committed).toBe(index);
    // Every replica, the one being removed included, knows the change committed without waiting for a heartbeat.
    for (const id of [2, 3]) expect(net.get(id).log.committed).toBe(index);
    expect(emptyAppends(sent)).toBe(2);
  });
});
