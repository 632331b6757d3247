import { describe, expect, it } from 'vitest';
import { Network, newRaft } from './helpers.js';

describe('smoke', () => {
  it('three replicas elect a leader and commit a proposal', () => {
    const net = Network.of(3);
    net.campaign(1);
    expect(net.get(1).role).toBe('leader');
    net.propose(1, 'hello');
    for (const id of [1, 2, 3]) expect(net.get(id).log.committed).toBe(2);
  });

  it('a single voter commits alone', () => {
    const r = newRaft(1, { voters: [1] });
    const net = new Network([r]);
    net.campaign(1);
    expect(r.role).toBe('leader');
    net.propose(1, 'x');
    expect(r.log.committed).toBe(2);
  });
});
