import type { ShardStatus } from '@flotilla/shards';

/** What /metrics counts of the ranges this node holds (gauges; see rangeHealthOf for each one's meaning). */
export interface RangeHealth {
  readonly led: number;
  readonly underReplicated: number;
  readonly leaderless: number;
  readonly unavailable: number;
}

/**
 * This node's view of the ranges it holds a replica of: only what it knows
 * locally (its replicas' Raft state and which peers it heard from within
 * the liveness timeout), so it answers at once whatever the cluster's state
 * and never asks the meta range. Each range is counted by every node that
 * holds it; a dashboard sums `led`-based gauges over nodes and takes the
 * maximum of the others.
 *
 * - underReplicated: ranges this node leads with a voter it has not heard
 *   from (fewer healthy replicas than voters). A range with fewer voters
 *   than the replication factor is the placement driver's to repair and
 *   report (GET /placement).
 * - leaderless: active replicas here that know no leader (an election in
 *   progress, or no quorum to elect one). A quiesced replica without one (a
 *   restarted node before any traffic) is idle, not leaderless.
 * - unavailable: replicas here whose voters this node hears from, itself
 *   included, are fewer than a majority: the range cannot commit as far as
 *   this node can tell.
 *
 * A replica still waiting for its first snapshot (epoch 0, added by a move)
 * holds no range yet and is not counted.
 */
export function rangeHealthOf(shards: readonly ShardStatus[], o: { readonly self: number; readonly livePeers: ReadonlySet<number> }): RangeHealth {
  let led = 0;
  let underReplicated = 0;
  let leaderless = 0;
  let unavailable = 0;
  const isLive = (nodeId: number): boolean => nodeId === o.self || o.livePeers.has(nodeId);
  for (const s of shards) {
    if (s.epoch === 0) continue;
    const liveVoters = s.voters.filter(isLive).length;
    if (s.role === 'leader') {
      led++;
      if (liveVoters < s.voters.length) underReplicated++;
    }
    if (s.leader === 0 && !s.quiesced) leaderless++;
    if (s.voters.length > 0 && liveVoters <= s.voters.length / 2) unavailable++;
  }
  return { led, underReplicated, leaderless, unavailable };
}
