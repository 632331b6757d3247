// A follower an `unreachable` report moved to probe while it already held every entry must get back
// to replicate on the next heartbeat round, not only at the next write: the Host's quiescence waits for
// every live follower to be in replicate (host-bench's failover section found leaders that never
// quiesced after a peer restarted). etcd-raft answers such a heartbeat response with an empty append.
import { describe, expect, it } from 'vitest';
import { nodeId } from '../../src/types.js';
import { Network, newRaft } from '../helpers.js';

describe('probe recovery', () => {
  for (const commitBroadcast of ['eager', 'lazy'] as const) {
    it(`${commitBroadcast}: a caught-up follower in probe returns to replicate after one heartbeat round`, () => {
      const net = Network.of(3, (id, voters) => newRaft(id, { voters, commitBroadcast }));
      net.campaign(1);
      net.propose(1, 'x');
      const leader = net.get(1);
      const progress = () => leader.tracker.progress.get(nodeId(2))!;
      expect(progress().state).toBe('replicate');
      expect(progress().match).toBe(leader.log.lastIndex());

      net.send({ type: 'unreachable', from: nodeId(2), to: nodeId(1), term: 0 });
      expect(progress().state).toBe('probe');

      net.send({ type: 'beat', from: nodeId(1), to: nodeId(1), term: 0 });
      expect(progress().state).toBe('replicate');
      expect(progress().match).toBe(leader.log.lastIndex());
    });
  }
});
